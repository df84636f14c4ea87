"""Meaning is kept (issue 16, command-set.md): negated, deferred and past hazards never become steps,
confirmation words never add or confirm one, signs survive every dash, units convert exactly or are
refused by name, and no plan is longer than 20 steps.

The properties run over the phrase tables, not over a few examples: a wording nobody here wrote is what
broke the planner before.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.core.command_set import Hazard, load_command_set
from medrobot_llm.core.plan import Plan, PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.validator import MAX_PLAN_STEPS, validate_plan
from medrobot_llm.language.negation import NEGATED_TAILS, asked_only
from medrobot_llm.language.numbers import MINUS_CHARACTERS, normalise_numerals
from medrobot_llm.language.text import tokenize
from medrobot_llm.planning.llm.grounding import ground_plan
from medrobot_llm.planning.rule.planner import RulePlanner

planner = RulePlanner()

NEGATIONS = ("don't", "do not", "never", "no", "without", "skip", "avoid", "hold off on", "not yet", "dont",
             "please don't", "we won't", "no need for")
#: hazardous step phrases per domain, and the hazard class none of them may become
HAZARDS = {
    "xray": (("take a shot", "a shot", "the shot", "shots", "the exposure", "an exposure", "take an x-ray",
              "a 3d spin", "shoot"), Hazard.RADIATION),
    "ultrasound": (("contact", "make contact", "the contact", "touch down", "press on the skin"), Hazard.CONTACT),
}
#: what comes before the negated hazard: a step that is still asked for, or nothing
BEFORE = {"xray": ("", "lateral of the sacrum, ", "AP of the pelvis and ", "go to the AP of the pelvis "),
          "ultrasound": ("", "go to the liver, ", "move over the left kidney and ", "go to the spleen ")}
DEFERRED = ("{h} later", "we'll {h} later", "{h} after I say so", "{h} when I say so", "{h} on my signal")
PAST = ("the previous {n} was blurry", "the last {n} was fine", "{n} was already made", "the earlier {n} looked off")


def _hazard_steps(plan: Plan, hazard: Hazard) -> list[str]:
    cs = load_command_set(plan.domain)
    return [s.skill for s in plan.steps if cs.skills[s.skill].hazard is hazard]


@settings(max_examples=150, deadline=None)
@given(domain=st.sampled_from(sorted(HAZARDS)), data=st.data())
def test_any_negation_before_any_hazard_never_yields_it(domain: str, data: st.DataObject) -> None:
    phrases, hazard = HAZARDS[domain]
    text = data.draw(st.sampled_from(BEFORE[domain])) + data.draw(st.sampled_from(NEGATIONS)) + " " \
        + data.draw(st.sampled_from(phrases))
    plan = planner.plan(domain, text)
    assert not _hazard_steps(plan, hazard), (text, plan)


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_words_qualifying_a_negation_belong_to_it(data: st.DataObject) -> None:
    """ "do not take a shot yet": the words after a negated hazard that qualify the negation ("yet", "for now")
    are part of the refusal to act, not words the planner failed to read (they were left as unknown words)."""
    before = data.draw(st.sampled_from([b for b in BEFORE["xray"] if b]))
    text = before + data.draw(st.sampled_from(NEGATIONS)) + " " + data.draw(st.sampled_from(HAZARDS["xray"][0])) + \
        " " + " ".join(data.draw(st.sampled_from(NEGATED_TAILS)))
    plan = planner.plan("xray", text)
    assert plan.status is PlanStatus.OK and [s.skill for s in plan.steps] == ["move_to_view"], (text, plan)


@settings(max_examples=100, deadline=None)
@given(domain=st.sampled_from(sorted(HAZARDS)), data=st.data())
def test_deferred_and_past_hazards_never_become_steps(domain: str, data: st.DataObject) -> None:
    phrases, hazard = HAZARDS[domain]
    noun = {"xray": "shot", "ultrasound": "contact"}[domain]
    form = data.draw(st.sampled_from(DEFERRED + PAST))
    text = data.draw(st.sampled_from(BEFORE[domain])) + form.format(h=data.draw(st.sampled_from(phrases)), n=noun)
    plan = planner.plan(domain, text)
    assert not _hazard_steps(plan, hazard), (text, plan)


@pytest.mark.parametrize(("text", "view"), [
    ("lateral of the sacrum, don't take a shot", "lateral"), ("lateral of the sacrum without a shot", "lateral"),
    ("AP of the pelvis, skip the shot", "ap"), ("AP of the pelvis, we'll take the shot later", "ap"),
    ("the previous shot was blurry, lateral of the pelvis", "lateral"), ("AP pelvis, shoot after I say so", "ap"),
])
def test_the_negation_governs_only_its_step(text: str, view: str) -> None:
    plan = planner.plan("xray", text)
    assert plan.status is PlanStatus.OK and [s.skill for s in plan.steps] == ["move_to_view"], (text, plan)
    assert plan.steps[0].args["view"] == view


@pytest.mark.parametrize(("domain", "text"), [
    ("xray", "the previous shot was blurry"), ("ultrasound", "contact was already made"),
    ("xray", "we'll take the shot later"), ("ultrasound", "avoid contact"),
])
def test_a_negated_hazard_that_leaves_nothing_is_no_plan(domain: str, text: str) -> None:
    plan = planner.plan(domain, text)
    assert plan.status is not PlanStatus.OK, (text, plan)
    assert plan.status is PlanStatus.CONTROL or plan.code is Reason.NEGATED, plan


def test_a_negated_hazard_the_rest_would_still_do_is_refused() -> None:
    plan = planner.plan("ultrasound", "scan the liver without contact")
    assert plan.status is PlanStatus.REFUSED and plan.code is Reason.NEGATED, plan


@pytest.mark.parametrize("text", [
    "AP of the pelvis and take a shot, exposure confirmed", "I confirm the exposure, AP of the pelvis and a shot",
    "AP of the pelvis and a shot, confirm shot", "confirmed, AP of the pelvis and take a shot",
    "AP of the pelvis, shot confirmed, take a shot", "AP of the pelvis and a shot, I confirm",
])
def test_confirmation_words_never_add_or_confirm_a_step(text: str) -> None:
    plan = planner.plan("xray", text)
    assert plan.status is PlanStatus.OK, (text, plan)
    assert [s.skill for s in plan.steps] == ["move_to_view", "take_shot"], (text, plan)
    assert plan.needs_confirmation == [1]


def test_confirmed_then_a_command_is_the_command() -> None:
    plan = planner.plan("xray", "confirmed, take a shot")
    assert plan.status is PlanStatus.OK and [s.skill for s in plan.steps] == ["take_shot"], plan
    # a confirmation alone still answers the supervisor
    for text in ("Confirmed, go ahead", "confirm the exposure", "Yes, confirmed"):
        assert planner.plan("xray", text).status is PlanStatus.CONTROL, text


SIGNS = (*MINUS_CHARACTERS, "minus ", "negative ")
#: (domain, command with the signed amount, skill, argument)
SIGNED = (
    ("xray", "AP of the pelvis, tilt {s}{n} degrees", "adjust", "amount"),
    ("xray", "AP of the pelvis, orbit {s}{n} degrees", "adjust", "amount"),
    ("ultrasound", "rotate the probe {s}{n} degrees", "rotate_probe", "angle_deg"),
)


@settings(max_examples=150, deadline=None)
@given(sign=st.sampled_from(SIGNS), case=st.sampled_from(SIGNED), n=st.integers(1, 30))
def test_any_sign_character_gives_the_negative_value(sign: str, case: tuple[str, str, str, str], n: int) -> None:
    domain, form, skill, arg = case
    text = form.format(s=sign, n=n)
    plan = planner.plan(domain, text)
    assert plan.status is PlanStatus.OK, (text, plan)
    step = next(s for s in plan.steps if s.skill == skill)
    assert step.args[arg] == -n, (text, plan)


def test_signs_are_normalised_once_for_every_reader() -> None:
    for ch in MINUS_CHARACTERS:
        assert tokenize(f"tilt {ch}20") == ["tilt", "minus", "20"], ch
    # a dash between words or between two numbers is no sign
    assert "minus" not in tokenize("AP \u2014 then lateral, 10\u201320 mm")


#: unit spellings -> mm per unit; every one converts exactly
LENGTH_UNITS = {"mm": 1, "millimetres": 1, "cm": 10, "centimeters": 10, "in": 25.4, "inch": 25.4, "inches": 25.4,
                "um": 0.001, "\u00b5m": 0.001, "micrometres": 0.001, "microns": 0.001, "m": 1000, "metres": 1000,
                "meters": 1000, "yards": 914.4, "mile": 1609344, "miles": 1609344, "km": 1_000_000}


@settings(max_examples=200, deadline=None)
@given(unit=st.sampled_from(sorted(LENGTH_UNITS)), n=st.integers(1, 120))
def test_any_unit_spelling_converts_exactly_or_is_refused_by_name(unit: str, n: int) -> None:
    text = f"lift the probe {n} {unit}"
    plan = planner.plan("ultrasound", text)
    mm = round(n * LENGTH_UNITS[unit], 6)
    if 5 <= mm <= 100:
        assert plan.status is PlanStatus.OK, (text, plan)
        assert plan.steps[-1].args["height_mm"] == pytest.approx(mm, abs=1e-9), (text, plan)
    else:
        assert plan.status is PlanStatus.REFUSED and plan.code is Reason.OUT_OF_RANGE, (text, plan)
        assert "height_mm" in plan.reason


@pytest.mark.parametrize(("said", "mm"), [("\u00bd cm", 5), ("\u215b cm", 1.25), ("1\u00bd cm", 15),
                                          ("2\u00be cm", 27.5), ("half a centimetre", 5)])
def test_fraction_characters_are_exact(said: str, mm: float) -> None:
    plan = planner.plan("surgery", f"grab the vessel with psm1 and retract it {said}")
    if mm > 30 or mm < 1:
        assert plan.status is PlanStatus.REFUSED
        return
    assert plan.status is PlanStatus.OK, plan
    assert plan.steps[-1].args["distance_mm"] == mm


@pytest.mark.parametrize("text", [
    "scan the liver and lift the probe infinity mm", "scan the liver and lift the probe nan mm",
    "scan the liver and lift the probe inf mm", "scan the liver and lift the probe as high as possible",
    "scan the liver and lift the probe \u2153 cm", "lift the probe all the way",
])
def test_vague_and_non_finite_amounts_are_refused_by_name(text: str) -> None:
    plan = planner.plan("ultrasound", text)
    assert plan.status is PlanStatus.REFUSED and plan.code is Reason.VAGUE_VALUE, (text, plan)
    assert plan.reason and "'" in plan.reason


@pytest.mark.parametrize(("text", "why"), [
    ("scan the liver and lift the probe 20 um", "0.02"), ("scan the liver and lift the probe a mile", "1609344"),
    ("scan the liver and sweep cranially at 1 m/s", "1000 mm/s"),
    ("scan the liver and fan a quarter turn", "fan"), ("lift the probe 3 metres", "3000"),
])
def test_a_value_said_is_never_replaced_by_a_default(text: str, why: str) -> None:
    plan = planner.plan("ultrasound", text)
    assert plan.status is PlanStatus.REFUSED and plan.code is Reason.OUT_OF_RANGE, (text, plan)
    assert why in (plan.reason or ""), plan


def test_inches_convert_exactly() -> None:
    plan = planner.plan("ultrasound", "scan the liver and lift the probe 3 in")
    assert plan.status is PlanStatus.OK and plan.steps[-1].args["height_mm"] == 76.2, plan
    # "in" before a noun is still the preposition
    assert normalise_numerals("insert 3 in the vessel") == "insert 3 in the vessel"


def test_a_plan_longer_than_the_cap_is_refused_with_the_reason() -> None:
    steps = [Step(skill="sweep", args={"direction": "cranial"})] * (MAX_PLAN_STEPS + 1)
    plan = validate_plan(Plan(status=PlanStatus.OK, domain="ultrasound", steps=steps))
    assert plan.status is PlanStatus.REFUSED and plan.code is Reason.TOO_MANY_STEPS
    assert str(MAX_PLAN_STEPS) in (plan.reason or "")
    said = planner.plan("ultrasound", "go to the liver, make contact and sweep caudally 30 times")
    assert said.status is PlanStatus.REFUSED and said.code is Reason.TOO_MANY_STEPS, said
    ok = [Step(skill="sweep", args={"direction": "cranial"})] * MAX_PLAN_STEPS
    assert validate_plan(Plan(status=PlanStatus.OK, domain="ultrasound", steps=ok)).status is PlanStatus.OK


@pytest.mark.parametrize("text", ["AP of the pelvis, do not take a shot yet", "AP of the pelvis, skip the shot",
                                  "AP of the pelvis, exposure confirmed", "AP of the pelvis, shot later"])
def test_the_llm_grounding_reads_the_same_negations(text: str) -> None:
    steps = [Step(skill="move_to_view", args={"anatomy": "pelvis", "view": "ap"}), Step(skill="take_shot", args={})]
    raw = [{"skill": s.skill, "args": dict(s.args)} for s in steps]
    assert any(i.code is Reason.UNGROUNDED_HAZARD for i in ground_plan("xray", text, raw, steps)), text
    assert not ground_plan("xray", "AP of the pelvis and a shot", raw, steps)


def test_asked_only_keeps_what_is_asked() -> None:
    rest, found = asked_only("xray", tokenize("lateral of the sacrum, don't take a shot"))
    assert rest == ["lateral", "of", "the", "sacrum"] and [g.how for g in found] == ["negated"]


VULGAR = {"\u00bd": (1, 2), "\u00bc": (1, 4), "\u00be": (3, 4), "\u215b": (1, 8), "\u215c": (3, 8), "\u2155": (1, 5)}


@settings(max_examples=150, deadline=None)
@given(whole=st.integers(0, 12), frac=st.sampled_from(sorted(VULGAR)), slash=st.booleans())
def test_any_fraction_spelling_is_exact(whole: int, frac: str, slash: bool) -> None:
    num, den = VULGAR[frac]
    said = (f"{whole} {num}/{den}" if whole else f"{num}/{den}") if slash else (f"{whole}{frac}" if whole else frac)
    text = f"lift the probe {said} cm"
    plan = planner.plan("ultrasound", text)
    mm = round((whole + num / den) * 10, 6)
    if 5 <= mm <= 100:
        assert plan.status is PlanStatus.OK and plan.steps[-1].args["height_mm"] == mm, (text, plan)
    else:
        assert plan.status is PlanStatus.REFUSED and plan.code is Reason.OUT_OF_RANGE, (text, plan)


def test_a_fraction_without_an_exact_decimal_is_refused_by_name() -> None:
    for said in ("\u2153 cm", "2/3 cm", "1 1/3 cm"):
        plan = planner.plan("ultrasound", f"lift the probe {said}")
        assert plan.status is PlanStatus.REFUSED and plan.code is Reason.VAGUE_VALUE, (said, plan)
    assert normalise_numerals("psm1/2 and 10 mm/s") == "psm1/2 and 10 mm/s"
