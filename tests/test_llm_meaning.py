"""The LLM planner keeps the meaning (issue 16): a model's plan is held to what the person said, argument by
argument — sign, value, unit, named value, count — and may add no hazardous or motion step nobody asked for.

The scripted-model cases (``tests/data/llm_meaning.jsonl``, also run by ``benchmarks/llm_meaning.py``) go
through a real HTTP server on 127.0.0.1 and the real ``openai`` client, and each test asserts the whole
exchange: what was sent back to the model, how many times, and what came out. The properties run over the
command set's own vocabulary (axes and their sign words, unit spellings, named values, exposure counts,
negations), read from ``skills/`` and ``language/``: a wording nobody here wrote is what broke it before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _openai_server import ScriptedOpenAIServer, make_planner, wire_reply
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medrobot_llm.core.command_set import Hazard, load_command_set
from medrobot_llm.core.plan import PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.units import DIMENSION_OF_UNIT, UNIT_WORDS
from medrobot_llm.core.validator import Issue, PlanValidationError, check_steps
from medrobot_llm.language.negation import DEFERRALS, NEGATORS
from medrobot_llm.language.numbers import MINUS_CHARACTERS, number_words
from medrobot_llm.planning.hybrid import HybridPlanner
from medrobot_llm.planning.llm.grounding import ground_plan, ground_words
from medrobot_llm.planning.llm.reading import difference, rule_reading
from medrobot_llm.planning.rule.planner import RulePlanner

CASES = [json.loads(line) for line in (Path(__file__).parent / "data" / "llm_meaning.jsonl")
         .read_text(encoding="utf-8").splitlines() if line.strip()]
XRAY = load_command_set("xray")
ULTRASOUND = load_command_set("ultrasound")


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as s:
        yield s


def _feedback(body: dict[str, Any]) -> str:
    """The validator feedback a repair request carries (the last user or tool message)."""
    return str([m for m in body["messages"] if m["role"] in ("user", "tool")][-1]["content"])


def _normalised(domain: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s.model_dump() for s in check_steps(domain, steps)[0]]


def _issues(domain: str, text: str, raw: list[dict[str, Any]], words_only: bool = False) -> list[Issue]:
    try:
        steps, _ = check_steps(domain, raw)
    except PlanValidationError as exc:
        return exc.issues
    return (ground_words if words_only else ground_plan)(domain, text, raw, steps)


# -- the scripted-model suite, through the real client -------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_a_stubborn_wrong_model_is_refused_with_the_reason(server: ScriptedOpenAIServer, case: dict[str, Any]) -> None:
    server.responder = lambda body: wire_reply(body, case["model"])
    h = make_planner(server, repair_retries=2)
    plan = h.planner.plan(case["domain"], case["text"])
    assert plan.status is PlanStatus.REFUSED and plan.code is Reason(case["code"]), plan
    requests = server.chat_requests
    assert len(requests) == 3  # the first answer and two repairs, each rejected
    for k, body in enumerate(requests[1:], start=1):
        sent = _feedback(body)
        assert f"repair {k} of 2" in sent and f'"code": "{case["code"]}"' in sent, sent
    assert h.planner.last.repairs == 2 and [c["status"] for c in h.audit.of("llm_call")] == ["ok"] * 3


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_a_model_that_corrects_itself_gets_the_meaning_through(server: ScriptedOpenAIServer,
                                                              case: dict[str, Any]) -> None:
    right = {"status": "ok", "steps": case["truth"]}
    answers = iter([case["model"], right])
    server.responder = lambda body: wire_reply(body, next(answers))
    h = make_planner(server)
    plan = h.planner.plan(case["domain"], case["text"])
    assert plan.status is PlanStatus.OK, plan
    assert [s.model_dump() for s in plan.steps] == _normalised(case["domain"], case["truth"])
    first, repair = server.chat_requests
    assert "repair" not in _feedback(first) and f'"code": "{case["code"]}"' in _feedback(repair)
    hazards = load_command_set(case["domain"]).hazardous_skills
    assert plan.needs_confirmation == [k for k, s in enumerate(plan.steps) if s.skill in hazards]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_the_hybrid_planner_keeps_the_meaning_too(server: ScriptedOpenAIServer, case: dict[str, Any]) -> None:
    """Text the offline planner reads never reaches the model; for the rest the word-level checks hold."""
    server.responder = lambda body: wire_reply(body, case["model"])
    h = make_planner(server, repair_retries=1)
    hybrid = HybridPlanner(RulePlanner(), h.planner)
    plan = hybrid.plan(case["domain"], case["text"])
    if rule_reading(case["domain"], case["text"]) is not None:
        assert server.chat_requests == [] and plan.status is PlanStatus.OK
        assert [s.model_dump() for s in plan.steps] == _normalised(case["domain"], case["truth"])
    else:
        assert len(server.chat_requests) == 2 and hybrid.llm_commands == 1
        assert plan.status is PlanStatus.REFUSED and plan.code is Reason(case["code"]), plan


# -- the rule behind the cases --------------------------------------------------------------------------------
def _signed_axes() -> list[tuple[str, str, int]]:
    """(axis, sign word, sign) for every X-ray axis with sign words, from skills/xray.yaml."""
    out = []
    for name, ev in XRAY.entities["axis"].values.items():
        out += [(name, w, 1) for w in ev.positive] + [(name, w, -1) for w in ev.negative]
    return out


def _spellings(dimension: str, factor: float = 1.0) -> list[str]:
    return sorted(w for w, (d, f) in UNIT_WORDS.items() if d == dimension and f == factor and w.isalpha())


def _axis_command(axis: str, said: str, n: int, unit: str) -> str:
    ev = XRAY.entities["axis"].values[axis]
    verb = next((s for s in ev.synonyms if s not in ev.positive + ev.negative and " " not in s), "move")
    return f"AP of the pelvis, {verb} {said} {n} {unit}"


def _adjust(axis: str, amount: float) -> list[dict[str, Any]]:
    return [{"skill": "move_to_view", "args": {"anatomy": "pelvis", "view": "ap"}},
            {"skill": "adjust", "args": {"axis": axis, "amount": amount}}]


@settings(max_examples=120, deadline=None)
@given(case=st.sampled_from(_signed_axes()), n=st.integers(1, 30), words_only=st.booleans(), data=st.data())
def test_a_direction_word_signs_the_amount_and_the_other_sign_is_refused(case: tuple[str, str, int], n: int,
                                                                         words_only: bool, data: st.DataObject) -> None:
    """"tilt back 20" is +20 on the tilt axis, "toward the feet" negative: the model's amount must have the
    sign the words give, on both paths (the offline reading, and the word-level checks alone)."""
    axis, word, sign = case
    ev = XRAY.entities["axis"].values[axis]
    unit = data.draw(st.sampled_from(_spellings("angle" if ev.unit == "deg" else "length")))
    assume(n <= (ev.max or 0))
    text = _axis_command(axis, word, n, unit)
    assert not _issues("xray", text, _adjust(axis, sign * n), words_only), text
    refused = _issues("xray", text, _adjust(axis, -sign * n), words_only)
    assert refused and refused[0].code is Reason.UNGROUNDED_VALUE, text


@settings(max_examples=120, deadline=None)
@given(minus=st.sampled_from([*MINUS_CHARACTERS, "minus ", "negative "]), n=st.integers(1, 30),
       axis=st.sampled_from(["tilt", "orbit"]), words_only=st.booleans())
def test_any_minus_character_grounds_only_the_negative_amount(minus: str, n: int, axis: str, words_only: bool) -> None:
    text = f"AP of the pelvis, {axis} {minus}{n} degrees"
    assert not _issues("xray", text, _adjust(axis, -n), words_only), text
    assert _issues("xray", text, _adjust(axis, n), words_only), text


def _numeric_args(cs: Any, dimension: str) -> list[tuple[str, str, float, float]]:
    """(skill, argument, min, max) of every number argument of another dimension than ``dimension``."""
    return [(name, a, spec.min, spec.max) for name, skill in cs.skills.items() for a, spec in skill.args.items()
            if spec.type == "number" and spec.unit and DIMENSION_OF_UNIT.get(spec.unit) != dimension
            and spec.min is not None and spec.max is not None]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(5, 20))
def test_a_number_said_with_a_unit_grounds_no_argument_of_another_kind(data: st.DataObject, n: int) -> None:
    """"a 20 mm sweep" says a length: 20 N or 20 mm/s on any argument was never said, whatever the unit's
    spelling; the length itself, in that spelling, grounds the sweep."""
    unit = data.draw(st.sampled_from(_spellings("length")))
    text = f"sweep {n} {unit}"
    skill, arg, low, high = data.draw(st.sampled_from(_numeric_args(ULTRASOUND, "length")))
    assume(low <= n <= high and n != ULTRASOUND.skills[skill].args[arg].default)  # a default needs no words
    sweep = {"skill": "sweep", "args": {"distance_mm": n}}
    assert not _issues("ultrasound", text, [sweep], words_only=True), text
    if skill == "sweep":
        other = [{"skill": "sweep", "args": {"distance_mm": n, arg: n}}]
    else:
        other = [sweep, {"skill": skill, "args": {arg: n}}]
    for words_only in (True, False):
        assert _issues("ultrasound", text, other, words_only), (text, other)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), n=st.integers(1, 9), words_only=st.booleans())
def test_a_number_in_one_unit_is_not_grounded_in_another(data: st.DataObject, n: int, words_only: bool) -> None:
    """"3 cm" is 30 mm, not 3 mm or 3000: a number counts in the unit it was said in."""
    unit = data.draw(st.sampled_from(_spellings("length", 10.0)))
    text = f"sweep {n} {unit} toward the feet"
    ok = [{"skill": "sweep", "args": {"direction": "caudal", "distance_mm": 10 * n}}]
    assume(5 <= 10 * n <= 100)
    assert not _issues("ultrasound", text, ok, words_only), text
    assume(5 <= n)
    wrong = [{"skill": "sweep", "args": {"direction": "caudal", "distance_mm": n}}]
    assert _issues("ultrasound", text, wrong, words_only), text


def _named_values(cs: Any, skill: str, arg: str) -> list[tuple[str, str]]:
    """(value, a one-word synonym) for each value of the argument other than its default."""
    spec = cs.skills[skill].args[arg]
    out = []
    for value in cs.allowed_values(spec):
        ev = cs.entity_value(value, spec)
        if value == spec.default or ev is None:
            continue
        out += [(value, s) for s in (*ev.synonyms, value) if s.isalpha() and len(s) > 2]
    return out


@settings(max_examples=100, deadline=None)
@given(case=st.sampled_from(_named_values(XRAY, "move_to_view", "view")), omit=st.booleans(), words_only=st.booleans())
def test_a_named_view_may_not_become_the_default(case: tuple[str, str], omit: bool, words_only: bool) -> None:
    value, said = case
    text = f"{said} of the pelvis"
    try:
        check_steps("xray", [{"skill": "move_to_view", "args": {"anatomy": "pelvis", "view": value}}])
    except PlanValidationError:
        assume(False)
    named = _issues("xray", text, [{"skill": "move_to_view", "args": {"anatomy": "pelvis", "view": value}}],
                    words_only)
    assume(not named)  # a synonym the offline planner reads as something else is its own question
    default = XRAY.skills["move_to_view"].args["view"].default
    args: dict[str, Any] = {"anatomy": "pelvis"} if omit else {"anatomy": "pelvis", "view": default}
    refused = _issues("xray", text, [{"skill": "move_to_view", "args": args}], words_only)
    assert refused and refused[0].code is Reason.UNGROUNDED_VALUE, text


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(_named_values(ULTRASOUND, "sweep", "direction")), n=st.integers(1, 9),
       words_only=st.booleans())
def test_a_named_direction_may_not_become_the_default(case: tuple[str, str], n: int, words_only: bool) -> None:
    value, said = case
    text = f"sweep {n} cm {said}"
    ok = _issues("ultrasound", text, [{"skill": "sweep", "args": {"direction": value, "distance_mm": 10 * n}}],
                 words_only)
    assume(not ok)
    refused = _issues("ultrasound", text, [{"skill": "sweep", "args": {"distance_mm": 10 * n}}], words_only)
    assert refused and refused[0].code is Reason.UNGROUNDED_VALUE, text


@settings(max_examples=80, deadline=None)
@given(k=st.integers(1, 5), spelled=st.booleans(), words_only=st.booleans(),
       other=st.sampled_from(sorted(XRAY.radiation_skills - {"take_shot"})))
def test_the_exposures_are_the_ones_asked_for(k: int, spelled: bool, words_only: bool, other: str) -> None:
    """k shots asked: k exposures, not k + 1, and no exposure of another kind in place of one."""
    count = " ".join(number_words(k)) if spelled else str(k)
    text = f"take {count} shot{'s' if k > 1 else ''} of the pelvis"
    view = {"skill": "move_to_view", "args": {"anatomy": "pelvis", "view": "ap"}}
    assert not _issues("xray", text, [view] + [{"skill": "take_shot", "args": {}}] * k, words_only), text
    more = _issues("xray", text, [view] + [{"skill": "take_shot", "args": {}}] * (k + 1), words_only)
    assert more and more[0].code in (Reason.EXPOSURE_COUNT, Reason.EXPOSURE_LIMIT), text
    swapped = [view] + [{"skill": "take_shot", "args": {}}] * (k - 1) + [{"skill": other, "args": {}}]
    assert _issues("xray", text, swapped, words_only), text


def _hazard_phrases(cs: Any, hazard: Hazard) -> list[str]:
    return sorted(s for name, skill in cs.skills.items() if skill.hazard is hazard for s in skill.synonyms)


@settings(max_examples=150, deadline=None)
@given(neg=st.sampled_from([" ".join(n) for n in NEGATORS]), phrase=st.sampled_from(_hazard_phrases(XRAY, Hazard.RADIATION)),
       words_only=st.booleans())
def test_a_negated_exposure_is_never_grounded(neg: str, phrase: str, words_only: bool) -> None:
    text = f"AP of the pelvis, {neg} {phrase}"
    view = {"skill": "move_to_view", "args": {"anatomy": "pelvis", "view": "ap"}}
    for skill in sorted(XRAY.radiation_skills):
        assert _issues("xray", text, [view, {"skill": skill, "args": {}}], words_only), (text, skill)


@settings(max_examples=100, deadline=None)
@given(later=st.sampled_from([" ".join(d) for d in DEFERRALS]),
       phrase=st.sampled_from(_hazard_phrases(XRAY, Hazard.RADIATION)), words_only=st.booleans())
def test_a_deferred_exposure_is_never_grounded(later: str, phrase: str, words_only: bool) -> None:
    text = f"AP of the pelvis, {phrase} {later}"
    view = {"skill": "move_to_view", "args": {"anatomy": "pelvis", "view": "ap"}}
    for skill in sorted(XRAY.radiation_skills):
        assert _issues("xray", text, [view, {"skill": skill, "args": {}}], words_only), (text, skill)


@pytest.mark.parametrize(("domain", "text", "steps", "extra"), [
    ("xray", "AP of the pelvis and a shot", [("move_to_view", {"anatomy": "pelvis"}), ("take_shot", {})], "park"),
    ("surgery", "grab the needle with the right arm", [("locate", {"object": "needle"}),
                                                        ("grasp", {"arm": "psm1", "object": "needle"})], "lift"),
    ("surgery", "lift the needle 2 cm with the right arm",
     [("locate", {"object": "needle"}), ("grasp", {"arm": "psm1", "object": "needle"}),
      ("lift", {"arm": "psm1", "height_mm": 20})], "release"),
    ("ultrasound", "sweep 3 cm toward the feet", [("sweep", {"direction": "caudal", "distance_mm": 30})], "lift_probe"),
])
@pytest.mark.parametrize("words_only", [False, True])
def test_a_motion_step_nobody_asked_for_is_refused(domain: str, text: str, steps: list[tuple[str, dict[str, Any]]],
                                                  extra: str, words_only: bool) -> None:
    raw = [{"skill": s, "args": a} for s, a in steps]
    assert not _issues(domain, text, raw, words_only), text
    arm = {"arm": "psm1"} if "arm" in load_command_set(domain).skills[extra].args else {}
    refused = _issues(domain, text, [*raw, {"skill": extra, "args": arm}], words_only)
    assert refused and refused[0].code is Reason.UNGROUNDED_STEP, (text, refused)


def test_difference_names_how_a_value_differs() -> None:
    assert difference(20, 20.0) is None and difference(-20, 20) == "sign" and difference(2, 20) == "unit"
    assert difference(20, 5) == "value" and difference("ap", "lateral") == "enum"
    assert difference([50, 0, 0], [5, 0, 0]) == "unit" and difference(None, 5) == "value"


def test_the_reading_is_the_offline_planners_and_none_where_it_reads_no_plan() -> None:
    assert rule_reading("xray", "tilt back 20 degrees") == [Step(skill="adjust", args={"axis": "tilt", "amount": 20})]
    assert rule_reading("xray", "where is the gantry?") is None
    assert rule_reading("ultrasound", "glorp the spleen") is None
