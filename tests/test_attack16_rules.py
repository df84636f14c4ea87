"""The rules attack16 found missing, each over the words the command set and the language layer define
(not over the attacker's sentences, which tests/test_attack16.py replays)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.core.plan import PlanStatus
from medrobot_llm.language.lexicon import hazard_phrases
from medrobot_llm.language.negation import HEDGES_AFTER, HEDGES_BEFORE, NEGATED_AFTER, RESTATING, ZERO_COUNTS
from medrobot_llm.language.numbers import FRACTIONS, MINUS_CHARACTERS, normalise_numerals
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import SPEAKER_POSSESSIVES
from medrobot_llm.planning.rule.planner import RulePlanner

planner = RulePlanner()

# -- every minus form is the sign ------------------------------------------------------------------------------

#: every code point Unicode files as a dash, and the minus signs of mathematics
_DASHES = [chr(c) for c in range(0x80, 0x10000) if unicodedata.category(chr(c)) == "Pd"]


@pytest.mark.parametrize("ch", [*_DASHES, "\u2212", "\u2796", "\u208b", "\u207b"])
def test_every_dash_and_math_minus_is_a_minus_character(ch: str) -> None:
    assert ch in MINUS_CHARACTERS


@settings(max_examples=120, deadline=None)
@given(ch=st.sampled_from(MINUS_CHARACTERS), space=st.sampled_from(["", " ", "  ", "\u00a0"]), n=st.integers(1, 29))
def test_a_minus_in_any_form_and_spacing_signs_the_number(ch: str, space: str, n: int) -> None:
    assert tokenize(f"tilt {ch}{space}{n} degrees") == ["tilt", "minus", str(n), "degrees"]
    plan = planner.plan("xray", f"tilt {ch}{space}{n} degrees")
    assert plan.status is PlanStatus.OK and plan.steps[0].args["amount"] == -n, plan


@settings(max_examples=60, deadline=None)
@given(ch=st.sampled_from(MINUS_CHARACTERS), space=st.sampled_from(["", " "]), a=st.integers(0, 50),
       b=st.integers(0, 50))
def test_a_dash_between_two_numbers_is_no_sign(ch: str, space: str, a: int, b: int) -> None:
    assert "minus" not in normalise_numerals(f"{a}{space}{ch}{space}{b} mm")


@pytest.mark.parametrize("ch", MINUS_CHARACTERS)
def test_a_number_ending_a_name_is_no_range(ch: str) -> None:
    """"psm1 \u2212 3 cm": the 1 belongs to the arm's name, so the dash signs the 3."""
    assert "minus" in normalise_numerals(f"lift the needle with psm1 {ch} 3 cm")


_EXACT_FRACTION_CHARACTERS = [c for c in "\u00bc\u00bd\u00be\u215b\u215c\u215d\u215e"]


@pytest.mark.parametrize("frac", _EXACT_FRACTION_CHARACTERS)
@pytest.mark.parametrize("ch", ["-", "\u2212", "\u2011"])
def test_a_sign_before_a_fraction_character_is_kept(ch: str, frac: str) -> None:
    turns = unicodedata.numeric(frac)
    plan = planner.plan("xray", f"orbit {ch}{frac} turn")
    if 360 * turns > 180:
        assert plan.status is not PlanStatus.OK, plan
        return
    assert plan.status is PlanStatus.OK and plan.steps[0].args["amount"] == -360 * turns, plan


@pytest.mark.parametrize("word", [w for w in FRACTIONS if w in ("half", "quarter")])
@pytest.mark.parametrize("space", ["", " "])
def test_a_sign_before_a_fraction_word_is_kept(word: str, space: str) -> None:
    plan = planner.plan("xray", f"orbit -{space}{word} a turn")
    assert plan.status is not PlanStatus.OK or plan.steps[0].args["amount"] < 0, plan


def _signed_axes() -> list[tuple[str, str, str, str, str]]:
    """(domain, axis value, its unit word, first positive way, first negative way) for every axis with ways."""
    out = []
    for d in ("xray",):
        for v, ev in load_command_set(d).entities["axis"].values.items():
            if ev.positive and ev.negative:
                out.append((d, v, "degrees" if ev.unit == "deg" else "mm", ev.positive[0], ev.negative[0]))
    return out


def _verb(axis: str) -> str:
    return axis if axis in ("tilt", "orbit") else "move"


@pytest.mark.parametrize(("domain", "axis", "unit", "pos", "neg"), _signed_axes())
@pytest.mark.parametrize("sign", ["\u00b1", "plus or minus "])
def test_plus_or_minus_on_a_signed_axis_asks(domain: str, axis: str, unit: str, pos: str, neg: str,
                                             sign: str) -> None:
    plan = planner.plan(domain, f"{_verb(axis)} {pos} {sign}20 {unit}")
    assert plan.status is PlanStatus.CLARIFY, plan


@pytest.mark.parametrize(("domain", "axis", "unit", "pos", "neg"), _signed_axes())
@pytest.mark.parametrize("n", [5, 20])
def test_two_opposite_ways_for_one_amount_ask(domain: str, axis: str, unit: str, pos: str, neg: str,
                                              n: int) -> None:
    for first, second in ((pos, neg), (neg, pos)):
        plan = planner.plan(domain, f"{_verb(axis)} {first} {n} {unit} {second}")
        assert plan.status is PlanStatus.CLARIFY, (first, second, plan)


@pytest.mark.parametrize(("domain", "axis", "unit", "pos", "neg"), _signed_axes())
@pytest.mark.parametrize("minus", ["-", "minus ", "negative ", "\u2212 "])
def test_a_way_and_a_minus_sign_together_ask(domain: str, axis: str, unit: str, pos: str, neg: str,
                                             minus: str) -> None:
    for way in (pos, neg):
        plan = planner.plan(domain, f"{_verb(axis)} {way} {minus}10 {unit}")
        assert plan.status is PlanStatus.CLARIFY, (way, plan)
        # the way alone still signs the amount
        alone = planner.plan(domain, f"{_verb(axis)} {way} 10 {unit}")
        assert alone.status is PlanStatus.OK, (way, alone)


# -- a side binds to the noun it is said with --------------------------------------------------------------------


def _sided(domain: str, entity: str) -> list[str]:
    """The anatomy or organ values that take both a left and a right side."""
    values = load_command_set(domain).entities[entity].values
    return [v for v, ev in values.items() if {"left", "right"} <= set(ev.sides or ())]


_LISTS = [("xray", "AP of", "anatomy", "move_to_view", a, b) for a in _sided("xray", "anatomy")
          for b in _sided("xray", "anatomy") if a != b]
_LISTS += [("ultrasound", "scan", "organ", "move_to_window", a, b) for a in _sided("ultrasound", "organ")
           for b in _sided("ultrasound", "organ") if a != b]


@pytest.mark.parametrize(("domain", "verb", "arg", "skill", "first", "second"), _LISTS)
@pytest.mark.parametrize(("side1", "side2"), [("left", "right"), ("right", "left"), ("left", "left")])
def test_each_listed_noun_keeps_its_own_side(domain: str, verb: str, arg: str, skill: str, first: str, second: str,
                                            side1: str, side2: str) -> None:
    for the in ("", "the "):
        text = f"{verb} the {side1} {first.replace('_', ' ')} and {the}{side2} {second.replace('_', ' ')}"
        plan = planner.plan(domain, text)
        assert plan.status is PlanStatus.OK, (text, plan)
        got = [(s.args[arg], s.args.get("side")) for s in plan.steps if s.skill == skill]
        assert got == [(first, side1), (second, side2)], (text, got)


@pytest.mark.parametrize(("domain", "verb", "arg", "skill", "first", "second"), _LISTS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_a_side_said_for_one_listed_noun_does_not_carry_over(domain: str, verb: str, arg: str, skill: str,
                                                             first: str, second: str, side: str) -> None:
    for text in (f"{verb} the {side} {first.replace('_', ' ')} and the {second.replace('_', ' ')}",
                 f"{verb} the {first.replace('_', ' ')} and the {side} {second.replace('_', ' ')}"):
        plan = planner.plan(domain, text)
        assert plan.status is PlanStatus.CLARIFY, (text, plan)


# -- negation after the noun, zero counts, hedges: the hazard is not planned -------------------------------------

#: a first clause that makes each domain's hazardous steps plannable (a view before a shot, a window before
#: contact, an arm holding something before a retraction)
_LEADS = {"xray": "lateral of the sacrum", "ultrasound": "move over the liver",
          "surgery": "grasp the vessel with psm1"}


def _hazards_planned(domain: str) -> list[tuple[str, str, frozenset[str]]]:
    """(domain, hazard phrase, the hazardous skills it adds after the lead) for every phrase that adds one."""
    out = []
    for phrase in sorted({" ".join(p.words) for p in hazard_phrases(domain)}):
        base = {s.skill for s in planner.plan(domain, _LEADS[domain]).steps}
        plan = planner.plan(domain, f"{_LEADS[domain]}, {phrase}")
        added = frozenset(s.skill for s in plan.steps) - base
        if plan.status is PlanStatus.OK and added:
            out.append((domain, phrase, added))
    return out


_HAZARDS = [h for d in _LEADS for h in _hazards_planned(d)]


def _plans_none_of(domain: str, text: str, skills: frozenset[str]) -> None:
    plan = planner.plan(domain, text)
    assert not {s.skill for s in plan.steps} & skills, (text, plan)


def test_every_domain_has_hazard_phrases_to_test() -> None:
    assert {d for d, _, _ in _HAZARDS} == set(_LEADS)


@settings(max_examples=150, deadline=None)
@given(hazard=st.sampled_from(_HAZARDS), after=st.sampled_from(NEGATED_AFTER))
def test_a_negation_after_the_step_strikes_it(hazard: tuple[str, str, frozenset[str]],
                                              after: tuple[str, ...]) -> None:
    domain, phrase, skills = hazard
    _plans_none_of(domain, f"{_LEADS[domain]}, {phrase} {' '.join(after)}", skills)


@settings(max_examples=100, deadline=None)
@given(hazard=st.sampled_from(_HAZARDS), zero=st.sampled_from(sorted(ZERO_COUNTS)))
def test_a_zero_count_is_no_step(hazard: tuple[str, str, frozenset[str]], zero: str) -> None:
    domain, phrase, skills = hazard
    _plans_none_of(domain, f"{_LEADS[domain]}, {zero} {phrase}", skills)


@settings(max_examples=150, deadline=None)
@given(hazard=st.sampled_from(_HAZARDS), hedge=st.sampled_from(HEDGES_BEFORE))
def test_a_hedge_before_the_step_asks(hazard: tuple[str, str, frozenset[str]], hedge: tuple[str, ...]) -> None:
    domain, phrase, skills = hazard
    text = f"{_LEADS[domain]}, {' '.join(hedge)} {phrase}"
    _plans_none_of(domain, text, skills)
    assert planner.plan(domain, text).status is not PlanStatus.OK, text


@settings(max_examples=150, deadline=None)
@given(hazard=st.sampled_from(_HAZARDS), hedge=st.sampled_from(HEDGES_AFTER))
def test_a_hedge_after_the_step_asks(hazard: tuple[str, str, frozenset[str]], hedge: tuple[str, ...]) -> None:
    domain, phrase, skills = hazard
    text = f"{_LEADS[domain]}, {phrase} {' '.join(hedge)}"
    _plans_none_of(domain, text, skills)
    assert planner.plan(domain, text).status is not PlanStatus.OK, text


@pytest.mark.parametrize("verb", ["pressing", "touching", "contacting", "pressing down"])
@pytest.mark.parametrize("negator", ["without", "no", "avoid", "w/o"])
def test_a_negated_verb_form_negates_the_contact_a_scan_implies(verb: str, negator: str) -> None:
    _plans_none_of("ultrasound", f"scan the left kidney {negator} {verb}", frozenset(["make_contact"]))


# -- a restated step is the same step ---------------------------------------------------------------------------


def _counts(domain: str, text: str) -> dict[str, int]:
    plan = planner.plan(domain, text)
    assert plan.status is PlanStatus.OK, (text, plan)
    return {skill: [s.skill for s in plan.steps].count(skill) for skill in {s.skill for s in plan.steps}}


@settings(max_examples=150, deadline=None)
@given(hazard=st.sampled_from(_HAZARDS), urge=st.sampled_from(sorted(RESTATING)), sep=st.sampled_from([", ", " ("]))
def test_a_step_phrase_said_again_with_urging_words_is_one_step(hazard: tuple[str, str, frozenset[str]], urge: str,
                                                                 sep: str) -> None:
    domain, phrase, _ = hazard
    once = _counts(domain, f"{_LEADS[domain]}, {phrase}")
    text = f"{_LEADS[domain]}, {phrase}{sep}{urge}, {phrase}"
    plan = planner.plan(domain, text)
    assert plan.status is not PlanStatus.OK or _counts(domain, text) == once, (text, plan)


@pytest.mark.parametrize("urge", ["ok", "yes", "go ahead and"])
def test_a_restated_lift_is_one_lift(urge: str) -> None:
    text = f"lift the needle with psm1 2 cm, {urge} lift"
    assert _counts("surgery", text)["lift"] == 1


@pytest.mark.parametrize("more", ["another shot", "one more shot", "a shot again", "two shots"])
def test_a_count_still_asks_for_more_steps(more: str) -> None:
    assert _counts("xray", f"AP of the pelvis, take a shot and {more}")["take_shot"] >= 2


# -- one frame for left and right; a speaker's side asks ---------------------------------------------------------


@pytest.mark.parametrize("way", ["left", "leftward", "right", "rightward"])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_a_surgery_offset_and_an_xray_move_agree_on_left(way: str, n: int) -> None:
    """command-set.md: +x toward the patient's left for a surgery offset, + toward the patient's left for the
    gantry; the same word has the same sign in both domains."""
    offset = planner.plan("surgery", f"move psm1 to the needle {n} cm to the {way}").steps[-1].args["offset_mm"]
    gantry = planner.plan("xray", f"move {n} cm {way}").steps[-1].args["amount"]
    assert offset == [gantry, 0, 0] and (gantry > 0) == way.startswith("left"), (offset, gantry)


@pytest.mark.parametrize("whose", sorted(SPEAKER_POSSESSIVES))
@pytest.mark.parametrize(("domain", "text"), [("surgery", "move psm1 to the needle 1 cm to {w} {s}"),
                                              ("xray", "move 20 mm to {w} {s}"),
                                              ("ultrasound", "tilt the probe 10 degrees to {w} {s}")])
@pytest.mark.parametrize("side", ["left", "right"])
def test_a_side_from_someone_elses_point_of_view_asks(whose: str, domain: str, text: str, side: str) -> None:
    plan = planner.plan(domain, text.format(w=whose, s=side))
    assert plan.status is PlanStatus.CLARIFY, (text, plan)


def test_an_arm_named_by_its_side_is_no_speakers_side() -> None:
    plan = planner.plan("surgery", "move your left arm to the needle")
    assert plan.status is PlanStatus.OK and plan.steps[-1].args["arm"] == "psm2", plan


# -- repetition marks, quoted steps, points of view ---------------------------------------------------------------


@pytest.mark.parametrize("mark", ["x", "X", "\u00d7", "\u2715"])
@pytest.mark.parametrize("n", [2, 3])
def test_a_repetition_mark_is_a_count_never_a_value(mark: str, n: int) -> None:
    assert tokenize(f"sweep caudal 3 cm {mark}{n}")[-2:] == [str(n), "times"]
    for domain, text, skill in (("ultrasound", f"sweep caudal 3 cm {mark}{n}", "sweep"),
                                ("surgery", f"lift the needle with psm1 {mark}{n}", "lift")):
        assert _counts(domain, text)[skill] == n, text
        assert _counts(domain, text) == _counts(domain, text.replace(f"{mark}{n}", f"{n} times")), text


@pytest.mark.parametrize("dims", ["10 x15 cm", "10x15 cm", "10 x 15 cm"])
def test_an_x_after_a_number_is_still_a_dimension(dims: str) -> None:
    plan = planner.plan("xray", f"collimate to {dims}")
    assert plan.status is PlanStatus.OK and plan.steps[0].args == {"width_mm": 100, "height_mm": 150}, plan


@settings(max_examples=80, deadline=None)
@given(hazard=st.sampled_from(_HAZARDS), quote=st.sampled_from([('"', '"'), ("\u201c", "\u201d")]))
def test_a_quoted_step_is_mentioned_not_commanded(hazard: tuple[str, str, frozenset[str]],
                                                  quote: tuple[str, str]) -> None:
    domain, phrase, skills = hazard
    _plans_none_of(domain, f"{_LEADS[domain]} {quote[0]}{phrase}{quote[1]}", skills)


@pytest.mark.parametrize("whose", sorted(SPEAKER_POSSESSIVES))
@pytest.mark.parametrize("view", ["side", "point of view", "perspective"])
def test_a_way_seen_from_someones_place_asks(whose: str, view: str) -> None:
    plan = planner.plan("ultrasound", f"rotate the probe 90 degrees clockwise from {whose} {view}")
    assert plan.status is PlanStatus.CLARIFY, plan


@pytest.mark.parametrize(("letters", "mm"), [("c m", 10), ("m m", 1), ("C M", 10)])
@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("space", ["", " "])
def test_a_unit_spelled_letter_by_letter_is_the_unit(letters: str, mm: int, n: int, space: str) -> None:
    plan = planner.plan("xray", f"move up {n}{space}{letters}")
    assert plan.status is PlanStatus.OK and plan.steps[0].args["amount"] == n * mm, plan


@settings(max_examples=80, deadline=None)
@given(hazard=st.sampled_from([h for h in _HAZARDS if " " not in h[1]]), value=st.sampled_from(["N", "Y", "0", "1", "no"]))
def test_a_step_noun_as_a_form_field_asks(hazard: tuple[str, str, frozenset[str]], value: str) -> None:
    domain, phrase, skills = hazard
    _plans_none_of(domain, f"{_LEADS[domain]}, {phrase}: {value}", skills)


@pytest.mark.parametrize("word", sorted(FRACTIONS))
@pytest.mark.parametrize("form", ["set gain to {w}", "set the gain to a {w}", "gain {w}"])
def test_a_fraction_word_for_a_percentage_asks(word: str, form: str) -> None:
    plan = planner.plan("ultrasound", form.format(w=word))
    assert plan.status is not PlanStatus.OK or all(s.args.get("gain_pct", 50) >= 1 for s in plan.steps), plan


def _same_step_pairs() -> list[tuple[str, str, str]]:
    """(domain, phrase, another phrase of the same step) for the hazard phrases that add a step after the lead."""
    named = {(d, p): {x.name for x in hazard_phrases(d) if " ".join(x.words) == p} for d, p, _ in _HAZARDS}
    return [(d, a, b) for d, a, _ in _HAZARDS for e, b, _ in _HAZARDS
            if d == e and a != b and named[(d, a)] & named[(d, b)]]


@settings(max_examples=120, deadline=None)
@given(pair=st.sampled_from(_same_step_pairs()), urge=st.sampled_from(["ok", "yes", "go ahead"]))
def test_another_phrase_of_the_same_step_restates_it(pair: tuple[str, str, str], urge: str) -> None:
    """"shot, ok shoot": which phrase comes first must not depend on the lexicon's order."""
    domain, first, second = pair
    once = _counts(domain, f"{_LEADS[domain]}, {first}")
    text = f"{_LEADS[domain]}, {first}, {urge} {second}"
    plan = planner.plan(domain, text)
    assert plan.status is not PlanStatus.OK or _counts(domain, text) == once, (text, plan)
