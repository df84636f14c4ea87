"""The rules attack16 found missing, each over the words the command set and the language layer define
(not over the attacker's sentences, which tests/test_attack16.py replays)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medrobot_llm.core.command_set import SkillFileError, load_command_set, parse_command_set, skills_dir
from medrobot_llm.core.plan import PlanStatus
from medrobot_llm.language.lexicon import hazard_phrases
from medrobot_llm.language.negation import HEDGES_AFTER, HEDGES_BEFORE, NEGATED_AFTER, RESTATING, ZERO_COUNTS
from medrobot_llm.language.numbers import FRACTIONS, MINUS_CHARACTERS, normalise_numerals
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import SPEAKER_POSSESSIVES
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.planning.rule.returns import RETURN_CLAUSES, RETURN_PHRASES

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


# -- "both" over several listed views: every view of every side ---------------------------------------------------


def _name(domain: str, entity: str, value: str) -> str:
    """The first word the command set gives a value ("left oblique" for oblique_left)."""
    return load_command_set(domain).entities[entity].values[value].synonyms[0]


def _views_for(anatomy: str) -> list[str]:
    views = load_command_set("xray").entities["view"].values
    return [v for v, ev in views.items() if not ev.only_for or anatomy in ev.only_for.get("anatomy", ())]


#: ways of saying "the left and the right one" of a sided anatomy
_BOTH_FORMS = ["both {a}s", "each {a}", "the left and right {a}", "the left {a} and the right {a}"]
#: ways of saying one exposure per view
_EACH_FORMS = [" with a shot each", ", a shot each", ", one shot of each", " with one shot each"]


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_views_listed_for_both_sides_are_every_view_of_every_side(data: st.DataObject) -> None:
    anatomy = data.draw(st.sampled_from(_sided("xray", "anatomy")))
    views = data.draw(st.lists(st.sampled_from(_views_for(anatomy)), min_size=2, max_size=2, unique=True))
    both = data.draw(st.sampled_from(_BOTH_FORMS)).format(a=_name("xray", "anatomy", anatomy))
    each = data.draw(st.sampled_from(_EACH_FORMS))
    text = f"{_name('xray', 'view', views[0])} and {_name('xray', 'view', views[1])} of {both}{each}"
    plan = planner.plan("xray", text)
    assert plan.status is PlanStatus.OK, (text, plan)
    got = [(s.args["anatomy"], s.args.get("side"), s.args["view"]) for s in plan.steps if s.skill == "move_to_view"]
    assert got == [(anatomy, side, v) for side in ("left", "right") for v in views], (text, got)
    assert [s.skill for s in plan.steps] == ["move_to_view", "take_shot"] * 4, (text, plan)


def _unsided() -> list[str]:
    values = load_command_set("xray").entities["anatomy"].values
    return [v for v, ev in values.items() if not ev.sides]


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_views_listed_for_listed_anatomies_are_every_combination(data: st.DataObject) -> None:
    first, second = data.draw(st.lists(st.sampled_from(_unsided()), min_size=2, max_size=2, unique=True))
    common = [v for v in _views_for(first) if v in _views_for(second)]
    views = data.draw(st.lists(st.sampled_from(common), min_size=2, max_size=2, unique=True))
    text = (f"{_name('xray', 'view', views[0])} and {_name('xray', 'view', views[1])} of the "
            f"{_name('xray', 'anatomy', first)} and the {_name('xray', 'anatomy', second)}")
    plan = planner.plan("xray", text)
    assert plan.status is PlanStatus.OK, (text, plan)
    got = [(s.args["anatomy"], s.args["view"]) for s in plan.steps]
    assert got == [(a, v) for a in (first, second) for v in views], (text, got)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_view_said_with_its_own_anatomy_is_one_step_not_a_list(data: st.DataObject) -> None:
    """"AP of the pelvis and the sacrum and a lateral of the chest": the lateral belongs to the chest only."""
    a, b, c = data.draw(st.lists(st.sampled_from(_unsided()), min_size=3, max_size=3, unique=True))
    v, w = data.draw(st.lists(st.sampled_from([x for x in _views_for(c) if x in _views_for(a) and x in _views_for(b)]),
                              min_size=2, max_size=2, unique=True))
    text = (f"{_name('xray', 'view', v)} of the {_name('xray', 'anatomy', a)} and the {_name('xray', 'anatomy', b)} "
            f"and a {_name('xray', 'view', w)} of the {_name('xray', 'anatomy', c)}")
    plan = planner.plan("xray", text)
    assert plan.status is PlanStatus.OK, (text, plan)
    assert [(s.args["anatomy"], s.args["view"]) for s in plan.steps] == [(a, v), (b, v), (c, w)], (text, plan)


@pytest.mark.parametrize("anatomy", _sided("xray", "anatomy"))
@pytest.mark.parametrize("both", _BOTH_FORMS)
def test_one_shot_after_views_of_both_sides_asks(anatomy: str, both: str) -> None:
    text = f"AP and lateral of {both.format(a=_name('xray', 'anatomy', anatomy))} with a shot"
    plan = planner.plan("xray", text)
    assert plan.status is PlanStatus.CLARIFY and not plan.steps, (text, plan)


@pytest.mark.parametrize("anatomy", _sided("xray", "anatomy"))
def test_every_view_of_both_sides_counts_every_exposure(anatomy: str) -> None:
    """"all views of both hips, a shot each" is 2 x (views) exposures, judged against the limit as a whole."""
    n = 2 * len(_views_for(anatomy))
    plan = planner.plan("xray", f"all views of both {_name('xray', 'anatomy', anatomy)}s, a shot each")
    limit = load_command_set("xray").max_exposures
    assert limit is not None
    if n > limit:
        assert plan.status is PlanStatus.REFUSED, plan
    else:
        assert plan.status is PlanStatus.OK and [s.skill for s in plan.steps].count("take_shot") == n, plan


def _objects() -> list[str]:
    return list(load_command_set("surgery").entities["object"].values)


@pytest.mark.parametrize(("first", "second"), [(a, b) for a in _objects() for b in _objects() if a != b])
@pytest.mark.parametrize("form", ["move {x} and {y} to the {a} and the {b}", "grasp the {a} and the {b} with {x} and {y}"])
def test_two_lists_of_what_a_step_acts_on_ask_which_goes_with_which(first: str, second: str, form: str) -> None:
    """Arms and targets both listed: each with each, or one with one? The words do not say."""
    x, y = load_command_set("surgery").arms
    plan = planner.plan("surgery", form.format(x=x, y=y, a=first, b=second))
    assert plan.status is PlanStatus.CLARIFY, plan


# -- "and back": the step again the other way, or a question ---------------------------------------------------

#: every way of saying "and back" the planner reads, after a step and after a step's clause
_RETURNS = [" " + " ".join(w) for w in RETURN_PHRASES] + [f", then {' '.join(w)}" for w in sorted(RETURN_CLAUSES)] \
    + [f" and then {' '.join(w)}" for w in sorted(RETURN_CLAUSES)]


def _opposites(domain: str, entity: str) -> list[tuple[str, str, str]]:
    """(value, a word for it, its opposite) for every value of the entity that names its opposite."""
    values = load_command_set(domain).entities[entity].values
    return [(v, w, ev.opposite) for v, ev in values.items() if ev.opposite for w in ev.synonyms]


def test_the_command_sets_name_opposite_sweep_directions() -> None:
    assert {v for v, _, _ in _opposites("ultrasound", "direction")} == set(
        load_command_set("ultrasound").entities["direction"].values)


def test_an_opposite_must_point_back() -> None:
    text = (skills_dir() / "ultrasound.yaml").read_text()
    assert "opposite: caudal}" in text
    with pytest.raises(SkillFileError, match="opposite"):
        parse_command_set(text.replace("opposite: caudal}", "opposite: medial}", 1), "ultrasound.yaml")


@settings(max_examples=200, deadline=None)
@given(way=st.sampled_from(_opposites("ultrasound", "direction")), mm=st.integers(5, 100),
       back=st.sampled_from(_RETURNS))
def test_a_sweep_and_back_is_the_sweep_then_the_opposite_sweep(way: tuple[str, str, str], mm: int,
                                                               back: str) -> None:
    value, word, opposite = way
    plain = planner.plan("ultrasound", f"sweep {word} {mm} mm")
    assume(plain.status is PlanStatus.OK and plain.steps[-1].args.get("direction") == value)
    text = f"sweep {word} {mm} mm{back}"
    plan = planner.plan("ultrasound", text)
    assert plan.status is PlanStatus.OK, (text, plan)
    assert plan.steps[:-1] == plain.steps, (text, plan)
    assert plan.steps[-1].args == {**plain.steps[-1].args, "direction": opposite}, (text, plan)


def _signed_steps() -> list[tuple[str, str, frozenset[str]]]:
    """(domain, a command with a signed amount and a '{n}', the words of its way) from the command sets' signs."""
    out = [(d, f"{_verb(axis)} {w} {{n}} {unit}", frozenset(tokenize(pos)) | frozenset(tokenize(neg)))
           for d, axis, unit, pos, neg in _signed_axes() for w in (pos, neg)]
    us = load_command_set("ultrasound")
    angle = us.skills["rotate_probe"].args["angle_deg"]
    out += [("ultrasound", f"rotate the probe {{n}} degrees {w}", frozenset(tokenize(w)))
            for w in (angle.positive[0], angle.negative[0])]
    for ev in us.entities["axis"].values.values():
        out += [("ultrasound", f"tilt the probe {{n}} degrees {w}", frozenset(tokenize(w)))
                for w in (ev.positive[0], ev.negative[0])]
    return out


@settings(max_examples=200, deadline=None)
@given(step=st.sampled_from(_signed_steps()), n=st.integers(1, 30), back=st.sampled_from(_RETURNS))
def test_a_signed_step_and_back_is_the_step_then_the_negated_step(step: tuple[str, str, frozenset[str]], n: int,
                                                                  back: str) -> None:
    domain, form, way = step
    plain = planner.plan(domain, form.format(n=n))
    assume(plain.status is PlanStatus.OK and len(plain.steps) == 1)
    text = form.format(n=n) + back
    plan = planner.plan(domain, text)
    if "back" in way:
        # "tilt back 10 degrees and back": back is the tilt's own way; which is meant, the words do not say
        assert plan.status is PlanStatus.CLARIFY, (text, plan)
        return
    assert plan.status is PlanStatus.OK and len(plan.steps) == 2 and plan.steps[0] == plain.steps[0], (text, plan)
    there, again = plan.steps[0].args, plan.steps[1].args
    negated = [a for a in there if again[a] != there[a]]
    assert len(negated) == 1 and again[negated[0]] == -there[negated[0]] != 0, (text, plan)


def _back_words(domain: str) -> set[str]:
    """Skills in which "back" says a way or a value (the gantry's tilt, a retraction)."""
    cs = load_command_set(domain)
    out = set()
    for name, spec in cs.skills.items():
        for a in spec.args.values():
            words = {*a.positive, *a.negative}
            for v in cs.allowed_values(a) if a.type == "enum" else ():
                ev = cs.entity_value(v, a)
                if ev is not None:
                    words |= {*ev.synonyms, *ev.positive, *ev.negative}
            if any("back" in tokenize(w) for w in words):
                out.add(name)
    return out


def test_back_is_a_word_of_some_steps_in_the_command_sets() -> None:
    assert "adjust" in _back_words("xray") and "retract" in _back_words("surgery")


#: commands whose step the command set cannot run the other way: a place reached, a lift, a task, a grasp
_NO_RETURN = [("xray", "lateral of the sacrum"), ("ultrasound", "move over the liver"), ("ultrasound", "scan the liver"),
              ("surgery", "grasp the vessel with psm1"), ("surgery", "move psm1 to the needle"),
              ("surgery", "lift the needle with psm1 2 cm"), ("surgery", "retract the vessel with psm1 5 mm"),
              ("ultrasound", "sweep cranial and caudal 3 cm")]


@pytest.mark.parametrize(("domain", "text"), _NO_RETURN)
@pytest.mark.parametrize("back", _RETURNS)
def test_and_back_without_a_return_in_the_command_set_asks(domain: str, text: str, back: str) -> None:
    assert planner.plan(domain, text).status is PlanStatus.OK, text
    plan = planner.plan(domain, text + back)
    assert plan.status is PlanStatus.CLARIFY and not plan.steps, (text + back, plan)


@pytest.mark.parametrize("count", ["twice", "3 times", "x2"])
def test_a_count_with_and_back_asks(count: str) -> None:
    """Twice there and back, or twice there and once back? The words do not say."""
    plan = planner.plan("ultrasound", f"sweep cranial 3 cm and back {count}")
    assert plan.status is PlanStatus.CLARIFY, plan


def test_a_return_is_judged_as_its_step() -> None:
    assert planner.plan("xray", "move up 300 mm and back").status is PlanStatus.REFUSED
    assert planner.plan("ultrasound", "sweep cranial 12 cm and back").status is PlanStatus.REFUSED


def test_back_in_a_skill_phrase_is_that_skill() -> None:
    """"and back off" lifts the probe; it is no return sweep."""
    plan = planner.plan("ultrasound", "sweep cranial 3 cm and back off")
    assert plan.status is PlanStatus.OK and [s.skill for s in plan.steps] == ["sweep", "lift_probe"], plan
