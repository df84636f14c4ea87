"""Both planners read English through ``medrobot_llm.language``: a fraction, a gapped phrase or an inflected
word means the same to the rule planner's parser and to the LLM planner's grounding check."""

from __future__ import annotations

import json

import pytest

from medrobot_llm.core.command_set import DOMAINS, SkillFileError, load_command_set, parse_command_set
from medrobot_llm.core.docs import json_schema
from medrobot_llm.core.plan import PlanStatus
from medrobot_llm.core.validator import check_steps
from medrobot_llm.language.inflection import is_form, same_word, verb_bases
from medrobot_llm.language.lexicon import shared_vocabulary
from medrobot_llm.language.numbers import FRACTIONS, SPOKEN_ONES, SPOKEN_TENS, number_words, words_to_numbers
from medrobot_llm.language.phrases import MAX_GAP, said
from medrobot_llm.language.text import tokenize
from medrobot_llm.planning.llm.grounding import ground_plan
from medrobot_llm.planning.rule.planner import RulePlanner


def _rotation_issues(text: str, angle: float) -> list[str]:
    raw = [{"skill": "rotate_probe", "args": {"angle_deg": angle}}]
    steps, _ = check_steps("ultrasound", raw)
    return [issue.code for issue in ground_plan("ultrasound", text, raw, steps)]


def test_an_eighth_is_a_fraction_for_both_planners() -> None:
    text = "rotate the probe an eighth of a turn"
    plan = RulePlanner().plan("ultrasound", text)
    assert plan.status is PlanStatus.OK and plan.steps[0].args["angle_deg"] == 45
    assert _rotation_issues(text, 45) == []


def test_a_third_is_not_a_fraction_for_either_planner() -> None:
    # "third" is an ordinal too ("the third arm"): a model's 120 degrees was never said
    text = "rotate the probe a third of a turn"
    assert "third" not in FRACTIONS
    assert RulePlanner().plan("ultrasound", text).status is not PlanStatus.OK
    assert _rotation_issues(text, 120) == ["ungrounded_value"]


def test_the_word_gap_limit_is_one_number() -> None:
    # the LLM planner's grounding allowed four words between, the rule planner's parser three: now both three
    assert MAX_GAP == 3
    assert said(tokenize("put the shunt 4 mm into"), ("put", "into"))
    assert not said(tokenize("put the shunt 4 mm deep into"), ("put", "into"))


@pytest.mark.parametrize(("token", "word"), [("scans", "scan"), ("scanning", "scan"), ("moved", "move"),
                                             ("pressed", "press"), ("passes", "pass"), ("tilting", "tilt")])
def test_inflected_forms(token: str, word: str) -> None:
    assert is_form(token, word)


def test_a_form_that_needs_an_e_put_back_is_known_but_does_not_say_the_word() -> None:
    # "go to a lateral of L2 without taking an image": read as "take an image", a model's exposure passed
    assert "take" in verb_bases("taking") and not is_form("taking", "take")
    assert "image" in verb_bases("imaging") and not is_form("imaging", "image")


def test_phrase_matching_takes_plurals_only() -> None:
    assert same_word("shots", "shot") and not same_word("scanning", "scan")
    assert "scan" in verb_bases("scanning") and "move" in verb_bases("moving")
    assert not is_form("scanner", "scan")


def test_spoken_numbers_come_from_the_number_words() -> None:
    assert SPOKEN_ONES[7] == "seven" and SPOKEN_TENS[4] == "forty"
    assert number_words(142) == ["one", "hundred", "and", "forty", "two"]
    assert words_to_numbers(number_words(142)) == ["142"]


def test_a_typo_in_a_vocabulary_section_fails_loudly() -> None:
    text = ("domain: surgery\nversion: 1\ntitle: t\nentities: {e: {values: {v: {}}}}\n"
            "skills:\n  x:\n    summary: s\n    hazard: none\n"
            "vocabulary:\n  count_noun: [shot]\n")
    with pytest.raises(SkillFileError) as err:
        parse_command_set(text, "bad.yaml")
    assert "bad.yaml" in str(err.value) and "vocabulary.count_noun" in str(err.value)


def test_the_vocabulary_is_read_from_the_skill_files() -> None:
    assert "dose" in load_command_set("xray").vocabulary.unsupported_settings
    assert "mhz" in load_command_set("ultrasound").vocabulary.unsupported_settings
    shared = shared_vocabulary()
    assert {"dose", "mhz"} <= shared.unsupported_settings and "pa" in shared.unsupported_views
    assert "shots" in shared.count_nouns and "scans" in shared.count_nouns


def test_a_setting_one_domain_lacks_is_refused_by_name_in_every_domain() -> None:
    for domain in ("surgery", "ultrasound"):
        plan = RulePlanner().plan(domain, "set the dose to 3")
        assert plan.status is PlanStatus.REFUSED and "'dose'" in (plan.reason or ""), domain
    plan = RulePlanner().plan("xray", "set the frequency to 5")
    assert plan.status is PlanStatus.REFUSED and "'frequency'" in (plan.reason or "")


def test_the_vocabulary_is_not_part_of_the_published_schema() -> None:
    for domain in DOMAINS:
        assert "vocabulary" not in json.dumps(json_schema(domain))


def test_in_for_into_reads_alike_for_both_planners() -> None:
    # the rule planner reads "place ... in" as "place into", an insertion; the LLM planner's grounding took
    # only "into" and refused the same plan from a model as a contact step nobody asked for
    text = "with the right arm, place the shunt in the vessel"
    plan = RulePlanner().plan("surgery", text)
    assert plan.status is PlanStatus.OK and any(s.skill == "insert" for s in plan.steps)
    raw = [{"skill": s.skill, "args": dict(s.args)} for s in plan.steps]
    steps, _ = check_steps("surgery", raw)
    assert "ungrounded_hazard" not in [issue.code for issue in ground_plan("surgery", text, raw, steps)]


@pytest.mark.parametrize("word", ["next", "last", "same", "other", "third", "previous", "opposite", "remaining"])
def test_one_after_an_order_or_identity_word_is_a_pronoun_not_a_force(word: str) -> None:
    """"scan the liver then the next one" made a contact of 1 N (refused as below the limit, a reason that named
    nothing the user said): after these words "one" points back at a thing, as in "the other one"."""
    assert words_to_numbers(tokenize(f"then the {word} one"))[-1] == "one"
    plan = RulePlanner().plan("ultrasound", f"scan the liver then the {word} one")
    assert not any(s.args.get("force_n") == 1 for s in plan.steps), plan
    assert "1 N" not in f"{plan.reason} {plan.question}", plan
    assert words_to_numbers(tokenize(f"the {word} one newton"))[-2:] == ["1", "newton"]
