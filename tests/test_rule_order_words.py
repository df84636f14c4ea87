"""Order words, conditions and relative amounts in the rule planner (blind attack 22, `tests/data/attack22_order*.jsonl`:
371 commands of a helper that never read the code; used for fixing since). Each rule is tested over every word of its
table and every domain, not over the attacker's examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from _plan_judge import as_wanted
from medrobot_llm.core.plan import Plan, PlanStatus
from medrobot_llm.core.units import UNIT_WORDS
from medrobot_llm.language.negation import CONDITIONS, CONDITIONS_FIRST
from medrobot_llm.language.words import IN_TURN, PLACE_WORDS
from medrobot_llm.planning.rule.clauses import SEQUENCE_WORDS
from medrobot_llm.planning.rule.planner import RulePlanner

planner = RulePlanner()

#: commands each domain plans as they are, to put the words under test around
PLAIN = {
    "xray": ["lateral of the skull", "park", "take a shot", "AP of the left hip"],
    "ultrasound": ["scan the liver", "lift the probe", "sweep caudal 30 mm", "go home"],
    "surgery": ["grasp the needle with psm1", "home all arms", "lift the needle with psm1 1 cm"],
}
_CASES = [(d, c) for d, cs in PLAIN.items() for c in cs]


def _steps(plan: Plan) -> list[tuple[str, dict[str, object]]]:
    return [(s.skill, s.args) for s in plan.steps]


def test_the_plain_commands_plan() -> None:
    assert all(planner.plan(d, c).status is PlanStatus.OK for d, c in _CASES)


#: "when done" first is read as a question about the robot ("when ...?"), answered with its status
_LEADING = [w for w in SEQUENCE_WORDS if w[0] != "when"]


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(_CASES), st.sampled_from(_LEADING), st.sampled_from(["", ",", " ,"]),
       st.integers(1, 2))
def test_order_words_before_a_command_order_nothing(case: tuple[str, str], words: tuple[str, ...], comma: str,
                                                     times: int) -> None:
    """"next, park" and "then then scan the liver" were refused as the unknown action 'next'/'then'."""
    domain, command = case
    text = " ".join([" ".join(words)] * times) + comma + " " + command
    assert _steps(planner.plan(domain, text)) == _steps(planner.plan(domain, command)), text


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(_CASES), st.sampled_from(sorted(CONDITIONS)),
       st.sampled_from(["the needle is free", "it looks fine", "needed", "the view is clear"]), st.booleans())
def test_a_condition_is_asked_about_never_assumed(case: tuple[str, str], word: str, what: str, first: bool) -> None:
    """"if psm1 holds the needle then lift it" was planned as a grasp and a lift."""
    domain, command = case
    text = f"{word} {what}, {command}" if first else f"{command} {word} {what}"
    plan = planner.plan(domain, text)
    assert plan.status is PlanStatus.CLARIFY and word in (plan.question or ""), (text, plan)


@pytest.mark.parametrize("obj", ["needle", "vessel", "shunt"])
@pytest.mark.parametrize("place", ["next to", "beside", "near", "above", "just above", "over", "below", "behind"])
def test_a_place_by_a_target_without_an_amount_is_asked(place: str, obj: str) -> None:
    """"move psm1 next to the needle" went to the needle (offset 0) and "next" was read as "then"."""
    plan = planner.plan("surgery", f"move psm1 {place} the {obj}")
    assert plan.status is PlanStatus.CLARIFY and "how far" in (plan.question or "").lower(), plan
    said = planner.plan("surgery", f"move psm1 1 cm above the {obj}")
    assert said.status is PlanStatus.OK and said.steps[-1].args["offset_mm"] == [0, 0, 10], said


def test_over_to_is_a_particle_not_a_place() -> None:
    assert planner.plan("surgery", "move psm1 over to the vessel").status is PlanStatus.OK


_ADDED_UNITS = sorted(u for u, (dim, _) in UNIT_WORDS.items() if dim in ("length", "angle", "force")
                      and u.isalpha() and len(u) > 2)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["one", "two", "3", "five"]), st.sampled_from(["more", "extra", "additional", "further"]),
       st.sampled_from(_ADDED_UNITS), st.sampled_from(["ultrasound", "surgery", "xray"]))
def test_an_amount_added_to_the_present_one_is_asked(number: str, added: str, unit: str, domain: str) -> None:
    """"lift it one more centimetre" was a 1 mm lift and "two more newtons" a 2 N contact: the word between the
    number and its unit cut the unit off."""
    text = {"ultrasound": f"scan the spleen with {number} {added} {unit}",
            "surgery": f"grasp the needle with psm1 and lift it {number} {added} {unit}",
            "xray": f"move up {number} {added} {unit}"}[domain]
    plan = planner.plan(domain, text)
    assert plan.status is not PlanStatus.OK, (text, plan)
    assert plan.status is PlanStatus.CLARIFY and "more than what" in (plan.question or ""), (text, plan)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["increase the force by {n} newtons", "press {n} newtons harder", "push {n} n firmer",
                        "reduce the force by {n} newtons", "press {n} newtons softer"]),
       st.sampled_from(["2", "five", "3", "ten"]))
def test_a_change_of_the_force_by_an_amount_is_asked(form: str, n: str) -> None:
    """"increase the force by five newtons" set the force to 5 N."""
    plan = planner.plan("ultrasound", form.format(n=n))
    assert plan.status is PlanStatus.CLARIFY and "present force" in (plan.question or ""), plan
    assert planner.plan("ultrasound", f"increase the force to {n} newtons").status is not PlanStatus.CLARIFY


@pytest.mark.parametrize("times,count", [("one more time", 1), ("two more times", 2), ("3 more times", 3)])
def test_more_times_repeats_the_step(times: str, count: int) -> None:
    plan = planner.plan("ultrasound", f"sweep caudal {times}")
    assert [s.skill for s in plan.steps] == ["sweep"] * count and plan.steps[0].args["distance_mm"] == 40, plan


@pytest.mark.parametrize("phrase", [" ".join(p) for p in IN_TURN])
def test_in_turn_phrases_only_order(phrase: str) -> None:
    """"scan both kidneys, one at a time" made a 1 N contact."""
    for domain, command in (("ultrasound", "scan both kidneys"), ("surgery", "home all arms")):
        assert _steps(planner.plan(domain, f"{command}, {phrase}")) == _steps(planner.plan(domain, command))


@pytest.mark.parametrize("other", ["liver", "spleen", "left kidney", "bladder"])
@pytest.mark.parametrize("near", ["under", "next to", "near", "by"])
def test_the_one_described_by_another_organ_is_asked(near: str, other: str) -> None:
    """"scan the gallbladder, the one under the liver" scanned the liver."""
    plan = planner.plan("ultrasound", f"scan the gallbladder, the one {near} the {other}")
    assert plan.status is PlanStatus.CLARIFY and "Which is" in (plan.question or ""), plan


def test_the_one_on_a_side_is_that_side() -> None:
    plan = planner.plan("ultrasound", "scan the kidney, the one on the left")
    assert plan.status is PlanStatus.OK and plan.steps[0].args == {"organ": "kidney", "side": "left"}, plan


def test_every_command_the_attack_judged_right_stays_right() -> None:
    rows = [json.loads(line) for line in (Path(__file__).parent / "data" / "attack22_order_all.jsonl")
            .read_text(encoding="utf-8").splitlines() if line.strip()]
    broke = [r["text"] for r in rows if r["as_wanted"] and not as_wanted(
        r["domain"], planner.plan(r["domain"], r["text"]), [r["want"], *r.get("also_accepted", [])])]
    assert broke == []
    right = sum(as_wanted(r["domain"], planner.plan(r["domain"], r["text"]), [r["want"], *r.get("also_accepted", [])])
                for r in rows)
    assert right >= 268, right


_ORGANS = ["liver", "spleen", "left kidney", "right kidney", "gallbladder", "bladder"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(_ORGANS), st.sampled_from(_ORGANS), st.sampled_from(sorted(PLACE_WORDS)),
       st.sampled_from(["scan the {a} {p} the {b}", "move over the {a} {p} the {b}"]))
def test_a_second_target_that_only_says_where_the_first_is_is_asked(first: str, second: str, place: str,
                                                                     form: str) -> None:
    """"scan the left kidney beside the spleen" moved over the kidney, then made contact at the spleen."""
    assume(first != second)
    text = form.format(a=first, b=second, p="next to" if place == "next" else place)
    plan = planner.plan("ultrasound", text)
    assert plan.status is not PlanStatus.OK, (text, plan)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(_CASES), st.sampled_from(sorted(CONDITIONS_FIRST)),
       st.sampled_from(["psm1 holds the needle", "the view is clear", "it is in position"]))
def test_a_command_opened_by_a_condition_clause_is_asked_about(case: tuple[str, str], word: str, what: str) -> None:
    """"when psm1 holds the needle, lift it" was the status intent (a wh-question) and "once psm1 has the needle,
    hand it over" a handover without a grasp."""
    domain, command = case
    plan = planner.plan(domain, f"{word} {what}, {command}")
    assert plan.status is PlanStatus.CLARIFY and word in (plan.question or ""), plan


@pytest.mark.parametrize("word", sorted(CONDITIONS))
@pytest.mark.parametrize("form", ["capture an image labelled 'check {w} cyst'", 'capture an image named "{w} in doubt"',
                                  "capture an image labelled check {w} cyst"])
def test_a_condition_word_inside_a_label_is_the_label(word: str, form: str) -> None:
    plan = planner.plan("ultrasound", form.format(w=word))
    assert plan.status is PlanStatus.OK and word in plan.steps[0].args["label"], plan


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["raise", "increase", "decrease", "lower", "reduce", "bump"]), st.sampled_from(["2", "three"]),
       st.sampled_from([("force", "newtons", "ultrasound"), ("gain", "percent", "ultrasound"),
                        ("pressure", "n", "ultrasound")]))
def test_a_setting_changed_by_an_amount_without_by_is_asked(verb: str, n: str, what: tuple[str, str, str]) -> None:
    """"raise the force 3 N" set the force to 3 N and "gain up 10 %" the gain to 10 %."""
    name, unit, domain = what
    plan = planner.plan(domain, f"{verb} the {name} {n} {unit}")
    assert plan.status is PlanStatus.CLARIFY and "present" in (plan.question or ""), plan
    assert planner.plan(domain, f"{verb} the {name} to 12 {unit}").status is PlanStatus.OK


@pytest.mark.parametrize("text,domain", [("lift the needle with psm1 10 mm less", "surgery"),
                                         ("sweep caudal 2 cm less", "ultrasound"), ("move up 5 mm less", "xray")])
def test_an_amount_less_than_before_is_asked(text: str, domain: str) -> None:
    plan = planner.plan(domain, text)
    assert plan.status is PlanStatus.CLARIFY and "than what" in (plan.question or ""), plan


def _shape(plan: Plan) -> str:
    return "ok:" + ";".join(s.skill for s in plan.steps) if plan.status is PlanStatus.OK else plan.status.value


def _shape_said(got: str) -> str:
    kind, _, rest = got.partition(":")
    if kind == "ok":
        return "ok:" + ";".join(step.split("(")[0].strip() for step in rest.split(";") if step.strip())
    return {"ask": "clarify", "refuse": "refused"}.get(kind, kind)


def test_every_command_the_second_attack_judged_right_keeps_its_plan() -> None:
    """Round 2 (`tests/data/attack22_rel.jsonl`, 245 commands on conditions, places and relative amounts, used for
    fixing since): its judge allowed implied steps, so the check is the plan's shape (status and skills) as it
    judged it."""
    rows = [json.loads(line) for line in (Path(__file__).parent / "data" / "attack22_rel.jsonl")
            .read_text(encoding="utf-8").splitlines() if line.strip()]
    # a change to what the attacker wrote as wanted is no regression ("sweep caudal 3 cm more" now asks)
    changed = [r["text"] for r in rows if r["as_wanted"]
               and _shape(planner.plan(r["domain"], r["text"])) not in (_shape_said(r["got"]), _shape_said(r["want"]))]
    assert changed == []
