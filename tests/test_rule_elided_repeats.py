"""What a later clause leaves out and the clause before said (the rule planner).

Left over from blind attack 22 and found again on the voice benchmark's tuned rows: "scan the left kidney, then the
right one" moved to the right kidney's window with no contact and no sweep (a plan that moves and is not what was
said); "scan the liver then scan the spleen" was refused for the first scan's contact instead of lifting the probe
between them; "AP of the left knee, then the right one" was a right oblique of the left knee; "... with the same
force" took the default. Each rule is tested over every organ, anatomy, view and connector of the command set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.core.plan import Plan, PlanStatus
from medrobot_llm.planning.rule.planner import RulePlanner

planner = RulePlanner()
_US = load_command_set("ultrasound")
_XR = load_command_set("xray")

#: every organ as said with its side, where it has several ("the left kidney"), or alone ("the spleen")
ORGANS = [f"{side} {organ}" if side else organ for organ, v in _US.entities["organ"].values.items()
          for side in ([x for x in v.sides or () if x != "midline"] if len(v.sides or ()) > 1 else [""])]
SIDED = [a.replace("_", " ") for a, v in _XR.entities["anatomy"].values.items() if v.sides and len(v.sides) == 2]
VIEWS = {"ap": "AP", "lateral": "lateral"}
JOINS = [", then", " then", " and then", ", and then", ". Then"]


def _steps(plan: Plan) -> list[tuple[str, dict[str, object]]]:
    return [(s.skill, dict(s.args)) for s in plan.steps]


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(ORGANS), st.sampled_from(ORGANS), st.sampled_from(JOINS))
def test_a_second_organ_without_a_verb_is_scanned_like_the_first(first: str, second: str, join: str) -> None:
    said = planner.plan("ultrasound", f"scan the {first}{join} the {second}")
    spelled = planner.plan("ultrasound", f"scan the {first}{join} scan the {second}")
    assert _steps(said) == _steps(spelled), (first, second, said.to_json(), spelled.to_json())
    if first != second:
        assert spelled.status is PlanStatus.OK, spelled.to_json()
        skills = [s for s, _ in _steps(spelled)]
        assert skills.count("make_contact") == 2 and skills.count("sweep") == 2, skills
        # the probe leaves the first organ before it goes to the second
        assert skills.index("lift_probe") < len(skills) - skills[::-1].index("move_to_window") - 1, skills


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["kidney", "carotid"]), st.sampled_from(["left", "right"]), st.sampled_from(JOINS),
       st.sampled_from(["one", ""]))
def test_the_other_side_of_the_organ_is_scanned_whole(organ: str, side: str, join: str, one: str) -> None:
    other = "right" if side == "left" else "left"
    said = planner.plan("ultrasound", f"scan the {side} {organ}{join} the {other} {one}".rstrip())
    spelled = planner.plan("ultrasound", f"scan the {side} {organ}{join} scan the {other} {organ}")
    assert said.status is PlanStatus.OK and _steps(said) == _steps(spelled), said.to_json()


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SIDED), st.sampled_from(sorted(VIEWS)), st.sampled_from(["left", "right"]),
       st.sampled_from(JOINS))
def test_the_right_one_after_a_view_is_the_other_side_in_the_same_view(anatomy: str, view: str, side: str,
                                                                       join: str) -> None:
    other = "right" if side == "left" else "left"
    said = planner.plan("xray", f"{VIEWS[view]} of the {side} {anatomy}{join} the {other} one")
    assert said.status is PlanStatus.OK, said.to_json()
    moves = [args for skill, args in _steps(said) if skill == "move_to_view"]
    assert [m["view"] for m in moves] == [view, view] and [m["side"] for m in moves] == [side, other], moves


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ORGANS), st.sampled_from(ORGANS), st.integers(2, 20), st.sampled_from(JOINS),
       st.sampled_from(["with the same force", "with the same pressure", "at the same force as the first one"]))
def test_the_same_force_is_the_force_said_before(first: str, second: str, newtons: int, join: str,
                                                 same: str) -> None:
    plan = planner.plan("ultrasound", f"scan the {first} with {newtons} N{join} scan the {second} {same}")
    forces = [args["force_n"] for skill, args in _steps(plan) if skill == "make_contact"]
    assert plan.status is not PlanStatus.OK or forces == [newtons, newtons], plan.to_json()
    if first != second:
        assert plan.status is PlanStatus.OK, plan.to_json()


def test_the_same_amount_with_nothing_before_is_asked() -> None:
    plan = planner.plan("surgery", "lift the needle with psm1 to the same height")
    assert plan.status is not PlanStatus.OK, plan.to_json()
    plan = planner.plan("ultrasound", "scan the liver with the same force")
    assert plan.status is PlanStatus.CLARIFY and "same force" in (plan.question or ""), plan.to_json()


#: relative steps, said with an amount in {a} and the unit after it, and the argument the amount sets
RELATIVE = [
    ("ultrasound", "rotate the probe {a} degrees", "rotate_probe", "angle_deg", "degrees", (5, 40)),
    ("ultrasound", "tilt the probe roll {a} degrees", "tilt_probe", "angle_deg", "degrees", (5, 15)),
    ("ultrasound", "sweep caudal {a} mm", "sweep", "distance_mm", "mm", (10, 50)),
    ("xray", "tilt back {a} degrees", "adjust", "amount", "degrees", (2, 15)),
    ("xray", "move up {a} mm", "adjust", "amount", "mm", (5, 50)),
    ("surgery", "grasp the vessel with psm1 and retract it {a} mm", "retract", "distance_mm", "mm", (2, 15)),
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(RELATIVE), st.data(), st.sampled_from(["another {b} {u}", "{b} more {u}", "{b} {u} more",
                                                              "another {b}", "{b} more"]), st.sampled_from(JOINS))
def test_another_amount_alone_repeats_the_step(case: tuple[str, str, str, str, str, tuple[int, int]],
                                               data: st.DataObject, again: str, join: str) -> None:
    """"rotate the probe 90 degrees, then another 10" was a 10 N contact; "retract it 10 mm, then 20 more" a lift.
    An amount alone is more of the step just said, in the unit it was said in; "N more" alone is asked about."""
    domain, template, skill, arg, unit, (lo, hi) = case
    a, b = data.draw(st.integers(lo, hi)), data.draw(st.integers(lo, hi))
    text = f"{template.format(a=a)}{join} {again.format(b=b, u=unit)}"
    plan = planner.plan(domain, text)
    if again == "{b} more":
        # two more what: the amount's unit, or two more of the step? (no noun was counted before)
        assert plan.status is PlanStatus.CLARIFY, (text, plan.to_json())
        return
    assert plan.status is PlanStatus.OK, (text, plan.to_json())
    steps = [args for s, args in _steps(plan) if s == skill]
    assert len(steps) == 2 and {k: v for k, v in steps[1].items() if k != arg} == {
        k: v for k, v in steps[0].items() if k != arg}, (text, steps)
    assert abs(steps[1][arg]) == b, (text, steps)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["another 10 degrees", "5 more mm", "another 2 cm", "3 cm more", "2 more", "more",
                        "a little more", "some more"]),
       st.sampled_from(["ultrasound", "surgery", "xray"]))
def test_more_with_nothing_before_is_asked(words: str, domain: str) -> None:
    plan = planner.plan(domain, words)
    assert plan.status is not PlanStatus.OK, plan.to_json()


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(RELATIVE), st.sampled_from(JOINS), st.sampled_from(["more", "a bit more", "a little more"]))
def test_more_alone_after_a_step_is_asked(case: tuple[str, str, str, str, str, tuple[int, int]], join: str,
                                          more: str) -> None:
    """"take a shot, then more" was refused as an unknown action: more of what, and how much?"""
    domain, template, _, _, _, (lo, _) = case
    plan = planner.plan(domain, f"{template.format(a=lo)}{join} {more}")
    assert plan.status is PlanStatus.CLARIFY, plan.to_json()


@pytest.mark.parametrize("domain,text", [("surgery", "lift the needle with psm1 one more cm"),
                                         ("ultrasound", "sweep caudal 3 cm more"),
                                         ("ultrasound", "make contact with 5 N, then 2 more N")])
def test_more_than_an_unknown_value_is_asked(domain: str, text: str) -> None:
    assert planner.plan(domain, text).status is PlanStatus.CLARIFY


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(RELATIVE), st.sampled_from(JOINS),
       st.sampled_from([("one more time", 1), ("again", 1), ("two more times", 2), ("once more", 1)]))
def test_a_count_alone_repeats_the_step_before(case: tuple[str, str, str, str, str, tuple[int, int]], join: str,
                                               again: tuple[str, int]) -> None:
    domain, template, skill, _, _, (lo, _) = case
    words, times = again
    plan = planner.plan(domain, f"{template.format(a=lo)}{join} {words}")
    assert plan.status is PlanStatus.OK, plan.to_json()
    steps = [args for s, args in _steps(plan) if s == skill]
    assert len(steps) == 1 + times and all(s == steps[0] for s in steps), steps


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([("ultrasound", "set the depth to {a} cm", "cm"), ("ultrasound", "set the gain to {a} percent",
                                                                         "percent"),
                        ("ultrasound", "make contact with {a} N", "N"), ("ultrasound", "set the force to {a}", "N")]),
       st.integers(2, 9), st.sampled_from(["another {b} {u}", "{b} more {u}", "another {b}"]), st.sampled_from(JOINS))
def test_another_amount_after_a_setting_is_asked(case: tuple[str, str, str], b: int, again: str, join: str) -> None:
    """"set the depth to 9 cm, then another 2 cm" would have set 2 cm; "set the force to 10, then another 2" set 2 N."""
    domain, template, unit = case
    plan = planner.plan(domain, f"{template.format(a=10)}{join} {again.format(b=b, u=unit)}")
    assert plan.status is PlanStatus.CLARIFY, plan.to_json()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([("ultrasound", "sweep caudal {v}"), ("ultrasound", "set the depth to {v}"),
                        ("ultrasound", "gain {v}"), ("xray", "collimate to {v}"), ("surgery", "lift the needle {v} with psm1"),
                        ("ultrasound", "rotate the probe {v}")]),
       st.integers(1, 300), st.integers(1, 300), st.sampled_from(["", " mm", " cm", " degrees", " percent"]),
       st.sampled_from(["{a}{u} to {b}{u}", "{a} to {b}{u}", "between {a} and {b}{u}", "from {a} to {b}{u}"]))
def test_a_range_is_asked_about(case: tuple[str, str], a: int, b: int, unit: str, form: str) -> None:
    """"sweep caudal 30 to 15" swept 30 mm at 15 mm/s; "depth 30 to 50" set the gain to 50 %."""
    domain, template = case
    text = template.format(v=form.format(a=a, b=b, u=unit))
    assert planner.plan(domain, text).status is not PlanStatus.OK, text


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(SIDED), st.sampled_from(["left", "right"]), st.sampled_from(JOINS))
def test_another_of_a_second_target_is_another_exposure(anatomy: str, side: str, join: str) -> None:
    """"take a shot of the left knee, then another of the right" moved to the right knee without the shot."""
    other = "right" if side == "left" else "left"
    plan = planner.plan("xray", f"take a shot of the {side} {anatomy}{join} another of the {other}")
    assert [s for s, _ in _steps(plan)] == ["move_to_view", "take_shot", "move_to_view", "take_shot"], plan.to_json()


#: steps said with a way, (domain, template with {a}, skill, argument, the way's sign, the opposite way's words)
WAYS = [
    ("xray", "tilt forward {a} degrees", "adjust", "amount", -1, "back"),
    ("xray", "tilt back {a} degrees", "adjust", "amount", 1, "forward"),
    ("xray", "move toward the feet {a} mm", "adjust", "amount", -1, "toward the head"),
    ("xray", "move toward the head {a} mm", "adjust", "amount", 1, "toward the feet"),
    ("ultrasound", "rotate the probe -{a} degrees", "rotate_probe", "angle_deg", -1, "clockwise"),
    ("ultrasound", "rotate the probe {a} degrees counterclockwise", "rotate_probe", "angle_deg", -1, "clockwise"),
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(WAYS), st.integers(2, 9), st.integers(2, 9), st.sampled_from(JOINS),
       st.sampled_from(["another {b}", "another {b} {u}", "{b} {u} more"]), st.booleans())
def test_an_amount_alone_goes_the_way_of_the_step_before(case: tuple[str, str, str, str, int, str], a: int, b: int,
                                                        join: str, again: str, other_way: bool) -> None:
    """"tilt forward 5 degrees, then another 5" tilted back the second time, undoing the first."""
    domain, template, skill, arg, sign, opposite = case
    unit = "mm" if "mm" in template else "degrees"
    second = again.format(b=b, u=unit) + (f" {opposite}" if other_way else "")
    text = f"{template.format(a=a)}{join} {second}"
    plan = planner.plan(domain, text)
    if plan.status is not PlanStatus.OK:
        # a way said again after the amount ("another 2 back", "2 mm more toward the head") may be refused or
        # asked about, never guessed
        assert other_way, (text, plan.to_json())
        return
    amounts = [args[arg] for s, args in _steps(plan) if s == skill]
    assert amounts == [sign * a, (-sign if other_way else sign) * b], (text, amounts)


def test_every_command_the_repeat_attack_judged_right_keeps_its_status() -> None:
    """Blind attack 23, round 2 (`tests/data/attack23_repeat.jsonl`: 175 commands on what later clauses leave out,
    written with their wanted result before any run; used for fixing since). Its "got" is shorthand, so the check
    is the plan's status."""
    rows = [json.loads(line) for line in (Path(__file__).parent / "data" / "attack23_repeat.jsonl")
            .read_text(encoding="utf-8").splitlines() if line.strip()]
    changed = [r["text"] for r in rows if r["as_wanted"]
               and planner.plan(r["domain"], r["text"]).status.value != r["got"].split(":")[0].split("[")[0]]
    assert changed == []
