"""Both planners read English through ``medrobot_llm.language``: a fraction, a gapped phrase or an inflected
word means the same to the rule planner's parser and to the LLM planner's grounding check."""

from __future__ import annotations

import pytest

from medrobot_llm.core.plan import PlanStatus
from medrobot_llm.core.validator import check_steps
from medrobot_llm.language.inflection import is_form, same_word, verb_bases
from medrobot_llm.language.numbers import FRACTIONS, SPOKEN_ONES, SPOKEN_TENS, number_words, words_to_numbers
from medrobot_llm.language.phrases import MAX_GAP, said
from medrobot_llm.language.text import tokenize
from medrobot_llm.planning.llm.planner import ground_plan
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


@pytest.mark.parametrize(("token", "word"), [("scans", "scan"), ("scanning", "scan"), ("moving", "move"),
                                             ("moved", "move"), ("pressed", "press"), ("passes", "pass")])
def test_inflected_forms(token: str, word: str) -> None:
    assert is_form(token, word)


def test_phrase_matching_takes_plurals_only() -> None:
    assert same_word("shots", "shot") and not same_word("scanning", "scan")
    assert "scan" in verb_bases("scanning") and "move" in verb_bases("moving")
    assert not is_form("scanner", "scan")


def test_spoken_numbers_come_from_the_number_words() -> None:
    assert SPOKEN_ONES[7] == "seven" and SPOKEN_TENS[4] == "forty"
    assert number_words(142) == ["one", "hundred", "and", "forty", "two"]
    assert words_to_numbers(number_words(142)) == ["142"]
