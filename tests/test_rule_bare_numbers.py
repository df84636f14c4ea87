"""A number said without its unit (the rule planner).

Found on the voice benchmark's tuned rows: "lift it 1 cm with psm2" heard as "lift it one psm with psm2" was planned
as a 1 mm lift, since a bare number took the argument's plan unit. A tenfold slip (mm for cm) is the worst way to
get a length wrong, and a bare number in a spoken command is common, so the rule is about every number argument of
every domain: a bare number is read in the plan unit only when no other unit of the same kind (units finer than
the plan's aside) would make it an allowed value; otherwise the planner asks which unit ("sweep 1" was refused as
1 mm, below the limit, when 1 cm is a fine sweep).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.core.plan import PlanStatus
from medrobot_llm.core.units import DIMENSION_OF_UNIT, unit_readings
from medrobot_llm.planning.rule.planner import RulePlanner

planner = RulePlanner()

#: (domain, skill, argument or "argument@axis", command with {v} where the number goes, the plan unit's word)
TEMPLATES = [
    ("surgery", "lift", "height_mm", "lift the needle {v} with psm1", "mm"),
    ("surgery", "retract", "distance_mm", "grasp the vessel with psm1 and retract it {v}", "mm"),
    ("surgery", "insert", "depth_mm", "insert the shunt into the vessel {v} deep with psm1", "mm"),
    ("ultrasound", "sweep", "distance_mm", "sweep caudal {v}", "mm"),
    ("ultrasound", "sweep", "speed_mm_s", "sweep caudal 3 cm at {v}", "mm/s"),
    ("ultrasound", "lift_probe", "height_mm", "lift the probe {v}", "mm"),
    ("ultrasound", "set_imaging", "depth_mm", "set the depth to {v}", "mm"),
    ("ultrasound", "rotate_probe", "angle_deg", "rotate the probe {v}", "degrees"),
    ("ultrasound", "fan", "angle_deg", "fan {v}", "degrees"),
    ("xray", "collimate", "width_mm", "collimate to {v} by {v}", "mm"),
    ("xray", "adjust", "amount@up_down", "move up {v}", "mm"),
    ("xray", "adjust", "amount@tilt", "tilt the gantry {v}", "degrees"),
]


def _range(domain: str, skill: str, arg: str) -> tuple[str, float, float]:
    """The argument's kind of quantity and its allowed range, read from the command set."""
    cs = load_command_set(domain)
    name, _, axis = arg.partition("@")
    spec = cs.skills[skill].args[name]
    if axis:
        ev = cs.entities["axis"].values[axis]
        assert ev.unit is not None and ev.min is not None and ev.max is not None
        return DIMENSION_OF_UNIT[ev.unit], ev.min, ev.max
    assert spec.unit is not None and spec.min is not None and spec.max is not None
    return DIMENSION_OF_UNIT[spec.unit], spec.min, spec.max


def _readings(dim: str, lo: float, hi: float, value: float) -> dict[str, float]:
    return {w: f for w, f in unit_readings(dim) if lo <= value * f <= hi}


def _number(template: tuple[str, str, str, str, str]) -> st.SearchStrategy[float]:
    _, lo, hi = _range(*template[:3])
    return st.one_of(st.integers(1, int(hi) * 2).map(float),
                     st.decimals(min_value="0.1", max_value=hi, places=1).map(float))


def _said(value: float) -> str:
    return f"{value:g}"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TEMPLATES).flatmap(lambda t: st.tuples(st.just(t), _number(t))))
def test_a_bare_number_plans_only_when_one_unit_reads_it_as_allowed(case: tuple[tuple[str, str, str, str, str],
                                                                                   float]) -> None:
    (domain, skill, arg, template, _), value = case
    dim, lo, hi = _range(domain, skill, arg)
    text = template.format(v=_said(value))
    plan = planner.plan(domain, text)
    readings = _readings(dim, lo, hi, value)
    if any(f != 1.0 for f in readings.values()):
        assert plan.status is PlanStatus.CLARIFY, (text, plan.to_json())
        assert plan.question is not None and all(w in plan.question for w in readings), plan.question
        assert not plan.steps
    elif lo <= value <= hi:
        assert plan.status is PlanStatus.OK, (text, plan.to_json())
        step = next(s for s in plan.steps if s.skill == skill)
        assert step.args[arg.partition("@")[0]] == pytest.approx(value)
    else:
        assert plan.status is not PlanStatus.OK, (text, plan.to_json())


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TEMPLATES).flatmap(lambda t: st.tuples(st.just(t), _number(t))))
def test_a_number_with_its_unit_is_never_asked_about(case: tuple[tuple[str, str, str, str, str], float]) -> None:
    (domain, skill, arg, template, unit), value = case
    _, lo, hi = _range(domain, skill, arg)
    text = template.format(v=f"{_said(value)} {unit}")
    plan = planner.plan(domain, text)
    assert "in what unit" not in (plan.question or ""), (text, plan.question)
    if lo <= value <= hi:
        assert plan.status is PlanStatus.OK, (text, plan.to_json())


@pytest.mark.parametrize("domain,text", [
    ("surgery", "grasp the needle with psm1 hand it over to psm2 then lift it one psm with psm2"),
    ("xray", "collimate to 20 by 20"),
    ("ultrasound", "set the depth to 9"),
])
def test_the_misheard_and_unitless_commands_ask(domain: str, text: str) -> None:
    plan = planner.plan(domain, text)
    assert plan.status is PlanStatus.CLARIFY and "in what unit" in (plan.question or ""), plan.to_json()


def test_zero_needs_no_unit() -> None:
    plan = planner.plan("surgery", "move psm2 to the vessel with an offset of 0 0 20 mm")
    assert "in what unit" not in (plan.question or ""), plan.to_json()


#: a counted step of each domain, said once, and the skill it plans
COUNTED = [("xray", "take a shot", "take_shot"), ("xray", "take one exposure", "take_shot"),
           ("ultrasound", "scan the liver and capture an image", "capture")]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(COUNTED), st.integers(1, 7), st.sampled_from(["then", "and", ", then", ", and"]),
       st.sampled_from(["", " please"]))
def test_n_more_without_a_noun_counts_the_last_counted_thing(counted: tuple[str, str, str], more: int, join: str,
                                                             tail: str) -> None:
    """"take three shots, then three more" was a 3 mm collimation (refused for the width, not for six exposures);
    "take a shot and another one" was one exposure."""
    domain, command, skill = counted
    said = "another one" if more == 1 and join.endswith("and") else f"{more} more"
    text = f"{command} {join} {said}{tail}".replace(" ,", ",")
    whole = f"{command} {join} {more} more {command.split()[-1]}s"
    plan, spelled = planner.plan(domain, text), planner.plan(domain, whole)
    assert plan.status is spelled.status, (text, plan.to_json(), spelled.to_json())
    assert [s.skill for s in plan.steps] == [s.skill for s in spelled.steps], text
    if plan.status is PlanStatus.OK:
        assert sum(s.skill == skill for s in plan.steps) == 1 + more, text


def _shape(plan_or_said: object) -> str:
    """A plan's status and skills, or the same read from an attacker's "got"/"want" text ("ok: a(..); b(..)",
    "ok:take_shot x3", "clarify[ambiguous]: ...", "ask", "refuse")."""
    if not isinstance(plan_or_said, str):
        plan = plan_or_said
        assert hasattr(plan, "status") and hasattr(plan, "steps")
        return "ok:" + ";".join(s.skill for s in plan.steps) if plan.status is PlanStatus.OK else plan.status.value
    kind, _, rest = plan_or_said.partition(":")
    kind = kind.split("[")[0].strip()
    if kind != "ok":
        return {"ask": "clarify", "refuse": "refused"}.get(kind, kind)
    skills: list[str] = []
    for step in (s.strip() for s in rest.split(";") if s.strip()):
        name, _, times = step.split("(")[0].partition(" x")
        skills += [name.strip()] * int(times or step.rpartition(" x")[2] if step.rpartition(" x")[2].isdigit() else 1)
    return "ok:" + ";".join(skills)


def test_every_command_attack_23_judged_right_stays_right() -> None:
    """Blind attack 23 (`tests/data/attack23_units.jsonl`: 325 commands on unit-less numbers and "N more", written
    with their wanted result before any run; used for fixing since): a command it judged right keeps its plan's
    shape, or now has the shape the attacker wrote as wanted."""
    rows = [json.loads(line) for line in (Path(__file__).parent / "data" / "attack23_units.jsonl")
            .read_text(encoding="utf-8").splitlines() if line.strip()]
    changed = [r["text"] for r in rows if r["as_wanted"] and r["text"] not in DEPARTED
               and _shape(planner.plan(r["domain"], r["text"])) not in (_shape(r["got"]), _shape(r["want"]))]
    assert changed == []
    assert all(_shape(planner.plan("surgery", text)) == shape for text, (shape, _) in DEPARTED.items())


#: commands attack 23 judged right whose result a later rule changed on purpose, with why (README, stop 23)
DEPARTED = {
    "lift the needle 5 mm with psm1, then 20 more": (
        "clarify", "'N more' alone asks whether it is more of the amount or more steps; it was a 20 mm lift"),
    "grasp the shunt with psm2 and insert it 3 mm, then another 3": (
        "ok:locate;grasp;locate;insert;insert", "the attacker wanted a question (the depth is absolute); it was a "
        "question about a lift height; now a second 3 mm insertion: left open"),
}


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([("xray", "take {n} shots", "take_shot"), ("ultrasound", "scan the liver and capture {n} images",
                                                                  "capture")]),
       st.sampled_from(["a couple of", "a pair of"]), st.sampled_from(["mm", "cm", "centimetres", "degrees"]))
def test_a_couple_is_two_things_but_no_amount(case: tuple[str, str, str], couple: str, unit: str) -> None:
    """"take a couple of shots" was asked about; "a couple of centimetres" is no exact amount and stays a question."""
    domain, template, skill = case
    plan = planner.plan(domain, template.format(n=couple))
    assert [s.skill for s in plan.steps].count(skill) == 2, plan.to_json()
    assert planner.plan("surgery", f"lift the needle {couple} {unit} with psm1").status is not PlanStatus.OK


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[A-Z]{1,3}[0-9]{1,2}[a-z]?", fullmatch=True),
       st.sampled_from(["labelled", "labeled", "named", "called"]))
def test_a_label_with_digits_is_kept_as_said(label: str, word: str) -> None:
    """"labelled RK1" was saved as "rk 1": the label is the person's text, not the planner's tokens."""
    plan = planner.plan("ultrasound", f"scan the liver and capture an image {word} {label}")
    assert plan.status is PlanStatus.OK and plan.steps[-1].args["label"] == label, plan.to_json()
