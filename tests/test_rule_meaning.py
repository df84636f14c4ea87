"""The rule planner keeps what a command means beyond its words' dictionary sense (issue 16): questions stay
questions, quantifiers become the steps they count, a landmark that says where to start is detail, and
every word of a command is accounted for.

Vocabulary comes from the skill files (entities, ``vocabulary``), so a name added there is tested here.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import DATA, load_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.core.command_set import DOMAINS, Hazard, load_command_set
from medrobot_llm.core.plan import Control, Plan, PlanStatus
from medrobot_llm.core.reasons import Reason
from medrobot_llm.language.lexicon import lexicon
from medrobot_llm.language.numbers import words_to_numbers
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import drop_fillers
from medrobot_llm.planning.rule.model import known
from medrobot_llm.planning.rule.planner import RulePlanner

planner = RulePlanner()

QUESTIONS = ("where is the {x}", "where's the {x}?", "where are the {x}s", "what is the position of the {x}",
             "can you tell me where the {x} is?", "what is the {x} doing", "which {x} is it?",
             "what's the {x} holding?", "tell me where the {x} is")


def _robot_words() -> list[tuple[str, str]]:
    return [(d, w) for d in DOMAINS for w in load_command_set(d).vocabulary.robot if w != "you"]


def _names(domain: str) -> list[str]:
    """Every synonym of every entity value of the domain: whatever a question may be about."""
    cs = load_command_set(domain)
    return sorted({s for ent in cs.entities.values() for ev in ent.values.values() for s in ev.synonyms})


def _moves_or_hazards(plan: Plan) -> list[str]:
    cs = load_command_set(plan.domain)
    return [s.skill for s in plan.steps if cs.skills[s.skill].hazard is not Hazard.NONE]


@pytest.mark.parametrize(("domain", "word"), _robot_words())
@pytest.mark.parametrize("form", QUESTIONS)
def test_a_question_about_the_robot_is_a_status_request(domain: str, word: str, form: str) -> None:
    plan = planner.plan(domain, form.format(x=word))
    assert (plan.status, plan.control) == (PlanStatus.CONTROL, Control.STATUS), (form, word, plan)


@settings(max_examples=200, deadline=None)
@given(domain=st.sampled_from(DOMAINS), data=st.data())
def test_a_question_is_never_motion(domain: str, data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(QUESTIONS)).format(x=data.draw(st.sampled_from(_names(domain))))
    plan = planner.plan(domain, text)
    assert plan.status is not PlanStatus.CLARIFY, (text, plan)
    assert not _moves_or_hazards(plan), (text, plan)


@pytest.mark.parametrize(("text", "object_"), [("where is the needle?", "needle"),
                                               ("can you tell me where the shunt is?", "shunt")])
def test_a_question_about_an_object_finds_it(text: str, object_: str) -> None:
    plan = planner.plan("surgery", text)
    assert plan.status is PlanStatus.OK and [s.skill for s in plan.steps] == ["locate"], plan
    assert plan.steps[0].args == {"object": object_}


def test_a_suggestion_is_not_a_question() -> None:
    plan = planner.plan("ultrasound", "how about scanning the liver")
    assert plan.status is PlanStatus.OK, plan


def _landmarks() -> list[str]:
    return list(load_command_set("ultrasound").vocabulary.landmarks)


def _organs() -> list[str]:
    """Every organ with a side it may be scanned on ("left kidney", "midline aorta")."""
    organ = load_command_set("ultrasound").entities["organ"]
    return [f"{ev.attr('sides')[0]} {name}" for name, ev in organ.values.items()]


@settings(max_examples=150, deadline=None)
@given(landmark=st.sampled_from(_landmarks()), organ=st.sampled_from(_organs()),
       lead=st.sampled_from(("starting below the", "from the", "just above the", "beginning at the",
                             "starting just under the patient's", "near the")))
def test_a_landmark_that_says_where_to_start_is_detail(landmark: str, organ: str, lead: str) -> None:
    plain = planner.plan("ultrasound", f"scan the {organ}")
    plan = planner.plan("ultrasound", f"scan the {organ} {lead} {landmark}")
    assert plain.status is PlanStatus.OK, plain
    assert plan.steps == plain.steps and plan.status is PlanStatus.OK, (organ, lead, landmark, plan)


@pytest.mark.parametrize("landmark", _landmarks())
def test_a_landmark_alone_is_no_target(landmark: str) -> None:
    plan = planner.plan("ultrasound", f"scan below the {landmark}")
    assert plan.status is not PlanStatus.OK, (landmark, plan)


def _pelvis_views() -> list[tuple[str, str]]:
    """(view, first synonym) of every view the pelvis takes."""
    cs = load_command_set("xray")
    return [(v, ev.synonyms[0]) for v, ev in cs.entities["view"].values.items()
            if "pelvis" in ((ev.only_for or {}).get("anatomy") or ["pelvis"])]


def _joined(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


EACH = (", {n} {shots} each", ", {a} {shots} of each", ", take {a} {shots} of each", ", {n} {shots} for each view",
        ", {a} {shots} per view", ", {n} {shots} apiece", " with {n} {shots} each", " with {a} {shots} of each",
        ", each with {a} {shots}")


@settings(max_examples=150, deadline=None)
@given(views=st.lists(st.sampled_from(_pelvis_views()), min_size=1, max_size=4, unique=True),
       n=st.integers(1, 3), form=st.sampled_from(EACH))
def test_each_means_once_per_view(views: list[tuple[str, str]], n: int, form: str) -> None:
    """Every view named gets the shots "each" counts; over the exposure limit the whole command is refused."""
    shots = "shot" if n == 1 else "shots"
    tail = form.format(n=n, a="a" if n == 1 else n, shots=shots)
    text = f"{_joined([w for _, w in views])} of the pelvis{tail}"
    plan = planner.plan("xray", text)
    limit = load_command_set("xray").max_exposures
    assert limit is not None
    if len(views) * n > limit:
        assert plan.status is PlanStatus.REFUSED and plan.code is not None \
            and plan.code.value == "exposure_limit", (text, plan)
        return
    assert plan.status is PlanStatus.OK, (text, plan)
    want: list[tuple[str, str | None]] = []
    for view, _ in views:
        want += [("move_to_view", view)] + [("take_shot", None)] * n
    assert [(s.skill, s.args.get("view")) for s in plan.steps] == want, (text, plan)


@pytest.mark.parametrize("text", ["one shot each", "a shot of each", "take two shots per view"])
def test_each_with_nothing_named_is_asked(text: str) -> None:
    plan = planner.plan("xray", text)
    assert plan.status is PlanStatus.CLARIFY and "each" in (plan.question or "") + text, plan
    assert not plan.steps


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 8), form=st.sampled_from(("take a shot {n} times", "shoot {n} times", "{n} shots")))
def test_n_times_is_n_exposures_or_the_limit(n: int, form: str) -> None:
    text = "AP of the pelvis, " + form.format(n=n)
    plan = planner.plan("xray", text)
    limit = load_command_set("xray").max_exposures
    assert limit is not None
    if n > limit:
        assert plan.status is PlanStatus.REFUSED, (text, plan)
    else:
        assert [s.skill for s in plan.steps] == ["move_to_view"] + ["take_shot"] * n, (text, plan)


@pytest.mark.parametrize("text", ["grab the needle with each arm", "move 4 mm each second"])
def test_each_before_what_it_quantifies_does_not_distribute(text: str) -> None:
    domain = "surgery" if "needle" in text else "ultrasound"
    plan = planner.plan(domain, text)
    assert "'each' of what" not in (plan.question or ""), plan


#: commands that plan as they are; a word nobody knows inserted anywhere must stop them planning
PLANNED = {
    "surgery": ("grab the needle with psm1", "lift the needle 2 cm with psm1", "send both arms home",
                "hand the needle from psm1 to psm2"),
    "ultrasound": ("scan the left kidney with 6 newtons", "set gain to 20 percent and depth to 10 cm",
                   "fan the probe 10 degrees", "go to the liver"),
    "xray": ("AP of the pelvis and take a shot", "tilt forward 10 degrees", "lateral of the left knee",
             "take a shot of the pelvis AP, then park"),
}


@settings(max_examples=200, deadline=None)
@given(domain=st.sampled_from(DOMAINS), data=st.data(),
       word=st.text(alphabet="bcdfghjklmnpqrstvwxz", min_size=4, max_size=8).filter(
           lambda w: bool(drop_fillers([w])) and not any(known(lexicon(d), w) for d in DOMAINS)))
def test_a_word_nobody_knows_is_asked_about_by_name(domain: str, data: st.DataObject, word: str) -> None:
    """Wherever it stands, an unknown word never lets the command plan as if it were not there."""
    base = data.draw(st.sampled_from(PLANNED[domain]))
    assert planner.plan(domain, base).status is PlanStatus.OK, base
    said = base.split()
    at = data.draw(st.integers(0, len(said)))
    text = " ".join([*said[:at], word, *said[at:]])
    plan = planner.plan(domain, text)
    assert plan.status is not PlanStatus.OK, (text, plan)
    if plan.status is PlanStatus.CLARIFY and plan.code is Reason.UNKNOWN_WORD:
        assert f"'{word}'" in (plan.question or ""), (text, plan)


@pytest.mark.parametrize(("domain", "text", "word"), [
    ("ultrasound", "scan the left kidney banana", "banana"), ("surgery", "grab the needle with psm1 zorbly", "zorbly"),
    ("xray", "AP of the pelvis and take a shot, frobnicate", "frobnicate")])
def test_the_question_names_the_word(domain: str, text: str, word: str) -> None:
    plan = planner.plan(domain, text)
    assert (plan.status, plan.code) == (PlanStatus.CLARIFY, Reason.UNKNOWN_WORD) and not plan.steps, plan
    assert f"'{word}'" in (plan.question or ""), plan


CASES = [c for c in load_jsonl(DATA / "planner_cases.jsonl") if c["expect"]["status"] == "ok"]


@pytest.mark.parametrize("item", CASES, ids=[c["id"] for c in CASES])
def test_every_argument_names_the_words_that_said_it(item: dict[str, Any]) -> None:
    """One entry per step; an argument's words are words of the command (normalised as the planner reads
    them), and only arguments the step has are named."""
    plan = planner.plan(item["domain"], item["text"])
    assert plan.status is PlanStatus.OK, plan
    assert len(plan.words) == len(plan.steps), plan
    said = set(words_to_numbers(tokenize(item["text"])))
    for step, words in zip(plan.steps, plan.words):
        assert set(words) <= set(step.args), (step, words)
        for arg, w in words.items():
            assert w and set(w.split()) <= said, (item["text"], arg, w)


def test_words_of_a_known_command() -> None:
    plan = planner.plan("ultrasound", "scan the left kidney with 6 newtons, then capture an image labelled LK")
    assert plan.words == [{"organ": "kidney", "side": "left"}, {"force_n": "6 newtons"}, {}, {"label": "LK"}]
    assert list(plan.to_json())[-2:] == ["code", "words"]
    tilt = planner.plan("xray", "tilt forward 10 degrees")
    assert tilt.steps[0].args["amount"] == -10 and tilt.words[0]["amount"] == "forward 10 degrees", tilt


def _anatomy_views() -> list[tuple[str, str, list[str]]]:
    """(anatomy, how it is said with its side, the views it takes) for every anatomy of the X-ray set."""
    cs = load_command_set("xray")
    out = []
    for name, ev in cs.entities["anatomy"].values.items():
        views = [v for v, vv in cs.entities["view"].values.items()
                 if name in ((vv.only_for or {}).get("anatomy") or [name])]
        said = f"{ev.sides[0]} {ev.synonyms[0]}" if ev.sides else ev.synonyms[0]
        out.append((name, said, views))
    return out


@pytest.mark.parametrize(("anatomy", "said", "views"), _anatomy_views())
def test_all_views_are_every_view_the_anatomy_takes(anatomy: str, said: str, views: list[str]) -> None:
    plan = planner.plan("xray", f"all views of the {said}, one shot each")
    limit = load_command_set("xray").max_exposures
    assert limit is not None
    if len(views) > limit:
        assert plan.status is PlanStatus.REFUSED and plan.code is Reason.EXPOSURE_LIMIT, plan
        return
    assert plan.status is PlanStatus.OK, plan
    assert [(s.skill, s.args.get("view")) for s in plan.steps] \
        == [x for v in views for x in (("move_to_view", v), ("take_shot", None))], plan
    assert {s.args.get("anatomy") for s in plan.steps if s.skill == "move_to_view"} == {anatomy}


@pytest.mark.parametrize(("anatomy", "said", "views"), _anatomy_views())
def test_a_count_of_views_that_is_not_the_anatomy_s_is_asked(anatomy: str, said: str, views: list[str]) -> None:
    plan = planner.plan("xray", f"all {len(views) + 1} views of the {said}")
    assert plan.status is PlanStatus.CLARIFY and not plan.steps, plan


def _two_sided_organs() -> list[str]:
    organ = load_command_set("ultrasound").entities["organ"]
    return [name for name, ev in organ.values.items() if {"left", "right"} <= set(ev.sides or ())]


@pytest.mark.parametrize("organ", _two_sided_organs())
@pytest.mark.parametrize("form", ["go to both {o}s", "go to both sides of the {o}", "go to the {o} on both sides"])
def test_both_is_the_left_and_the_right(organ: str, form: str) -> None:
    plan = planner.plan("ultrasound", form.format(o=organ))
    assert plan.status is PlanStatus.OK, plan
    assert [(s.args["organ"], s.args["side"]) for s in plan.steps] == [(organ, "left"), (organ, "right")], plan


@pytest.mark.parametrize(("domain", "text"), [("xray", "take all the shots"), ("xray", "all views, one shot each"),
                                              ("ultrasound", "capture every image")])
def test_a_quantifier_without_its_count_or_its_object_is_asked(domain: str, text: str) -> None:
    plan = planner.plan(domain, text)
    assert plan.status is PlanStatus.CLARIFY and not plan.steps, plan


@pytest.mark.parametrize("text", ["send both arms home", "home all arms", "Return all the arms home"])
def test_a_quantifier_the_command_set_names_is_its_value(text: str) -> None:
    plan = planner.plan("surgery", text)
    assert plan.status is PlanStatus.OK and plan.steps[0].args == {"arm": "all"}, plan


PURPOSES = ("for {w}", "to rule out {w}", "to get a better {w}", "looking for {w}", "so we can see the {w}",
            "to check the {w}")


@settings(max_examples=100, deadline=None)
@given(domain=st.sampled_from(DOMAINS), data=st.data(),
       word=st.text(alphabet="bcdfghjklmnpqrstvwxz", min_size=4, max_size=8).filter(
           lambda w: bool(drop_fillers([w])) and not any(known(lexicon(d), w) for d in DOMAINS)))
def test_a_purpose_after_the_command_is_known_detail(domain: str, data: st.DataObject, word: str) -> None:
    base = data.draw(st.sampled_from(PLANNED[domain]))
    purpose = data.draw(st.sampled_from(PURPOSES)).format(w=word)
    plan = planner.plan(domain, f"{base} {purpose}")
    assert plan.status is PlanStatus.OK and plan.steps == planner.plan(domain, base).steps, (base, purpose, plan)


@pytest.mark.parametrize(("domain", "text"), [
    ("ultrasound", "scan the liver to look at the heart"), ("surgery", "grab the needle with psm1 to cut the vessel"),
    ("xray", "AP of the pelvis to see the PA"), ("ultrasound", "scan the liver for elastography")])
def test_a_purpose_naming_what_no_command_set_has_is_refused(domain: str, text: str) -> None:
    assert planner.plan(domain, text).status is PlanStatus.REFUSED


@settings(max_examples=60, deadline=None)
@given(count=st.one_of(st.integers(0, 10**500).map(str), st.floats(0, 1e308).map(repr)),
       kind=st.sampled_from(("views of the pelvis", "sides of the thyroid", "shots")))
def test_any_count_after_all_is_a_plan_or_a_question(count: str, kind: str) -> None:
    plan = planner.plan("ultrasound" if "thyroid" in kind else "xray", f"all {count} {kind}")
    assert plan.status in (PlanStatus.OK, PlanStatus.CLARIFY, PlanStatus.REFUSED), plan


@settings(max_examples=80, deadline=None)
@given(views=st.lists(st.sampled_from(_pelvis_views()), min_size=2, max_size=3, unique=True),
       tail=st.sampled_from((" and a shot", " with a shot", ", take a shot", " and shoot")))
def test_views_listed_before_one_shot_are_asked_about(views: list[tuple[str, str]], tail: str) -> None:
    """Listed views then one exposure: one of each, or of the last? Never a silent single shot."""
    text = f"{_joined([w for _, w in views])} of the pelvis{tail}"
    plan = planner.plan("xray", text)
    shots = sum(1 for s in plan.steps if s.skill == "take_shot")
    assert plan.status is not PlanStatus.OK or shots == len(views), (text, plan)


def test_views_in_sequence_keep_their_one_shot() -> None:
    plan = planner.plan("xray", "AP of the pelvis, then lateral of the pelvis and take a shot")
    assert [s.skill for s in plan.steps] == ["move_to_view", "move_to_view", "take_shot"], plan
