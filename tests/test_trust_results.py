"""Signed step results (safety/results.py): the supervisor believes an outcome only from a skill server of its graph.

Found by the blind attack tests of issue 15: a second action server under the same name hears every goal request
and could answer first with a result for a step that never ran."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety import planned
from medrobot_llm.safety.results import PURPOSE, sign_result, verify_result
from medrobot_llm.safety.signing import Untrusted, graph_key, mac

SECRET = b"g" * 32
RESULT: dict[str, Any] = {"goal_id": "0f" * 16, "success": True, "failure_kind": "none", "message": "done",
                          "outcome_json": '{"captured":1}', "world_json": '{"known":true,"facts":{"probe":"contact"}}'}


def test_a_genuine_result_verifies() -> None:
    verify_result(SECRET, sign_result(SECRET, **RESULT), **RESULT)


@pytest.mark.parametrize("signature", ["", "00" * 32, "not hex", "AB" * 32])
def test_a_missing_or_made_up_signature_is_refused(signature: str) -> None:
    with pytest.raises(Untrusted) as e:
        verify_result(SECRET, signature, **RESULT)
    assert e.value.code is Reason.BAD_SIGNATURE and "taken as failed" in e.value.message


_CHANGES: dict[str, st.SearchStrategy[Any]] = {
    "goal_id": st.text("0123456789abcdef", min_size=32, max_size=32), "success": st.booleans(),
    "failure_kind": st.sampled_from(["none", "invalid", "halted", "error", "cancelled"]),
    "message": st.text(max_size=20), "outcome_json": st.text(max_size=20), "world_json": st.text(max_size=20),
}


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(sorted(_CHANGES)), data=st.data())
def test_any_single_field_change_is_refused(field: str, data: st.DataObject) -> None:
    """A result for another goal, a failure turned into success, another world: none passes the genuine MAC."""
    signature = sign_result(SECRET, **RESULT)
    value = data.draw(_CHANGES[field].filter(lambda v: v != RESULT[field]))
    with pytest.raises(Untrusted):
        verify_result(SECRET, signature, **{**RESULT, field: value})


@settings(max_examples=50, deadline=None)
@given(key=st.binary(min_size=32, max_size=32).filter(lambda k: k != SECRET))
def test_any_other_key_is_refused(key: bytes) -> None:
    with pytest.raises(Untrusted):
        verify_result(SECRET, sign_result(key, **RESULT), **RESULT)


def test_a_plan_answers_mac_is_not_a_results() -> None:
    """The purpose tag keeps a MAC the planner made (same graph secret) from passing as a result's."""
    fields = [RESULT["goal_id"], 1, RESULT["failure_kind"], RESULT["message"], RESULT["outcome_json"],
              RESULT["world_json"]]
    key = graph_key(SECRET, "")
    assert mac(key, PURPOSE, fields) == sign_result(SECRET, **RESULT)
    with pytest.raises(Untrusted):
        verify_result(SECRET, mac(key, planned.PURPOSE, fields), **RESULT)


def test_a_result_signed_on_another_graph_is_refused() -> None:
    """A result from graph A's skill server, copied into graph B's answer: one keys folder, two graph keys."""
    signature = sign_result(SECRET, **RESULT, graph="ros-domain=25;range=LOCALHOST")
    verify_result(SECRET, signature, **RESULT, graph="ros-domain=25;range=LOCALHOST")
    with pytest.raises(Untrusted) as e:
        verify_result(SECRET, signature, **RESULT, graph="ros-domain=26;range=LOCALHOST")
    assert e.value.code is Reason.BAD_SIGNATURE
