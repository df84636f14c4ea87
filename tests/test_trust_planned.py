"""The planner's signed answer: a plan is acted on only when the graph's planner signed exactly it, for exactly
the command the supervisor asked about."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.planned import sign_answer, verify_answer
from medrobot_llm.safety.signing import Untrusted

SECRET, OTHER = b"g" * 32, b"o" * 32
ANSWER = {"request_id": "ab" * 32, "domain": "xray", "text": "take a shot", "status": "ok",
          "plan_json": '{"status":"ok","steps":[{"skill":"take_shot","args":{}}]}'}
_text = st.text(max_size=40)


def _refused(secret: bytes, signature: str, **fields: str) -> Untrusted:
    with pytest.raises(Untrusted) as exc:
        verify_answer(secret, signature, **{**ANSWER, **fields})
    return exc.value


def test_the_planners_own_answer_verifies() -> None:
    verify_answer(SECRET, sign_answer(SECRET, **ANSWER), **ANSWER)


def test_an_unsigned_answer_is_refused_saying_so() -> None:
    err = _refused(SECRET, "")
    assert err.code is Reason.BAD_SIGNATURE and "not signed" in err.message


def test_an_answer_signed_without_the_graph_secret_is_refused() -> None:
    assert _refused(SECRET, sign_answer(OTHER, **ANSWER)).code is Reason.BAD_SIGNATURE


def test_an_answer_of_another_graphs_planner_is_refused() -> None:
    """One keys folder serves two graphs: the planner of graph A signs with A's key, which graph B's supervisor
    does not accept."""
    signature = sign_answer(SECRET, **ANSWER, graph="ros-domain=25;range=LOCALHOST")
    verify_answer(SECRET, signature, **ANSWER, graph="ros-domain=25;range=LOCALHOST")
    with pytest.raises(Untrusted) as exc:
        verify_answer(SECRET, signature, **ANSWER, graph="ros-domain=26;range=LOCALHOST")
    assert exc.value.code is Reason.BAD_SIGNATURE and "another graph" in exc.value.message


@pytest.mark.parametrize("field", sorted(ANSWER))
def test_an_answer_for_anything_else_is_refused(field: str) -> None:
    signature = sign_answer(SECRET, **ANSWER)
    assert _refused(SECRET, signature, **{field: ANSWER[field] + "x"}).code is Reason.BAD_SIGNATURE


@given(request_id=_text, domain=_text, text=_text, status=_text, plan_json=_text, field=st.sampled_from(sorted(ANSWER)),
       change=st.text(min_size=1, max_size=5))
def test_any_change_to_any_field_breaks_the_signature(request_id: str, domain: str, text: str, status: str,
                                                      plan_json: str, field: str, change: str) -> None:
    fields = {"request_id": request_id, "domain": domain, "text": text, "status": status, "plan_json": plan_json}
    signature = sign_answer(SECRET, **fields)
    verify_answer(SECRET, signature, **fields)
    with pytest.raises(Untrusted):
        verify_answer(SECRET, signature, **{**fields, field: fields[field] + change})


@given(garbage=st.text(max_size=80))
def test_a_signature_that_is_not_one_never_passes(garbage: str) -> None:
    with pytest.raises(Untrusted):
        verify_answer(SECRET, garbage, **ANSWER)
