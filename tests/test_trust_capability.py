"""Capabilities: a skill server admits a goal only with the supervisor's capability for exactly that goal, once.

Every refusal path has its code; the properties say the same for any change an attacker can make: a field,
a bit of the MAC, the key, a replay, a late delivery. A genuine capability is admitted exactly once.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.core.clock import ManualClock
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety import heartbeat
from medrobot_llm.safety.capability import (
    DEFAULT_TTL_S,
    CapabilityMinter,
    CapabilityVerifier,
    canonical_args,
)
from medrobot_llm.safety.signing import Untrusted, graph_key, mac

SECRET = bytes(range(32))
GOAL: dict[str, Any] = {"plan_id": "a1b2c3:4", "step_index": 1, "skill": "take_shot",
                        "args": '{"view": "ap", "kv": 70}', "domain": "xray", "goal_id": "9f" * 16}


def _pair(ttl_s: float = DEFAULT_TTL_S, **verifier: Any) -> tuple[CapabilityMinter, CapabilityVerifier, ManualClock]:
    clock = ManualClock(1_700_000_000.0)
    return (CapabilityMinter(SECRET, ttl_s=ttl_s, clock=clock), CapabilityVerifier(SECRET, clock=clock, **verifier),
            clock)


def _refused(verifier: CapabilityVerifier, wire: str, **goal: Any) -> Untrusted:
    with pytest.raises(Untrusted) as exc:
        verifier.admit(wire, **{**GOAL, **goal})
    return exc.value


def test_a_genuine_capability_is_admitted_once() -> None:
    minter, verifier, _ = _pair()
    wire = minter.mint(**GOAL).to_wire()
    cap = verifier.admit(wire, **GOAL)
    assert (cap.plan_id, cap.step_index, cap.skill) == ("a1b2c3:4", 1, "take_shot")
    err = _refused(verifier, wire)
    assert err.code is Reason.REPLAYED and "already used" in err.message


def test_a_nonce_drawn_ahead_serves_exactly_one_capability() -> None:
    minter, verifier, _ = _pair()
    minter.draw_ahead()
    minter.draw_ahead()  # a second draw keeps the first: nothing is drawn twice for nothing
    first = minter.mint(**GOAL)
    second = minter.mint(**{**GOAL, "step_index": 2})  # nothing drawn ahead: drawn at once
    minter.draw_ahead()
    third = minter.mint(**{**GOAL, "step_index": 3})
    assert len({first.nonce, second.nonce, third.nonce}) == 3
    for cap in (first, second, third):
        verifier.admit(cap.to_wire(), **{**GOAL, "step_index": cap.step_index})


def test_arguments_are_compared_by_value_not_by_spelling() -> None:
    minter, verifier, _ = _pair()
    wire = minter.mint(**{**GOAL, "args": {"kv": 70, "view": "ap"}}).to_wire()
    verifier.admit(wire, **{**GOAL, "args": ' {"view":"ap",\n "kv":70} '})
    assert canonical_args("") == "{}" and canonical_args({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"\\u00e9"],"b":1}'


def test_a_goal_without_a_capability_is_refused() -> None:
    _, verifier, _ = _pair()
    err = _refused(verifier, "")
    assert err.code is Reason.NO_CAPABILITY and "only the supervisor may start motion" in err.message


@pytest.mark.parametrize("wire", [
    "not json", "[]", "NaN", json.dumps({"plan_id": "x"}), "[" * 70_000, "[" * 50_000,
])
def test_a_capability_of_the_wrong_shape_is_malformed(wire: str) -> None:
    _, verifier, _ = _pair()
    assert _refused(verifier, wire).code is Reason.MALFORMED


@pytest.mark.parametrize(("field", "value"), [
    ("step_index", True), ("step_index", "1"), ("expires_ms", 1.5), ("skill", None), ("nonce", "00"),
    ("mac", "A" * 64), ("mac", "0" * 63), ("extra", 1),
])
def test_each_field_must_have_its_type_and_shape(field: str, value: Any) -> None:
    minter, verifier, _ = _pair()
    raw = json.loads(minter.mint(**GOAL).to_wire())
    raw[field] = value
    assert _refused(verifier, json.dumps(raw)).code is Reason.MALFORMED


def test_the_goals_arguments_must_be_a_json_object() -> None:
    minter, verifier, _ = _pair()
    wire = minter.mint(**GOAL).to_wire()
    assert _refused(verifier, wire, args="[1]").code is Reason.MALFORMED
    assert _refused(verifier, wire, args='{"kv": NaN}').code is Reason.MALFORMED
    assert _refused(verifier, wire, args='{"kv":' + "[" * 50_000).code is Reason.MALFORMED


def test_another_key_or_another_purpose_does_not_verify() -> None:
    _, verifier, _ = _pair()
    clock = ManualClock(1_700_000_000.0)
    other = CapabilityMinter(secrets.token_bytes(32), clock=clock).mint(**GOAL)
    assert _refused(verifier, other.to_wire()).code is Reason.BAD_SIGNATURE
    genuine = CapabilityMinter(SECRET, clock=clock).mint(**GOAL)
    as_heartbeat = replace(genuine, mac=mac(graph_key(SECRET, ""), heartbeat.PURPOSE, genuine.fields()))
    err = _refused(verifier, as_heartbeat.to_wire())
    assert err.code is Reason.BAD_SIGNATURE and "graph's key" in err.message


GRAPH_A, GRAPH_B = "ros-domain=25", "ros-domain=26"


def test_a_capability_minted_for_another_graph_is_refused_saying_so() -> None:
    """Two graphs of one user share the secret (one keys folder): graph A's capability, copied onto a goal of
    graph B, is refused there, and the refusal can tell a relay from a forgery."""
    clock = ManualClock(1_700_000_000.0)
    on_a = CapabilityMinter(SECRET, graph=GRAPH_A, clock=clock).mint(**GOAL)
    b = CapabilityVerifier(SECRET, graph=GRAPH_B, clock=clock)
    err = _refused(b, on_a.to_wire())
    assert err.code is Reason.OTHER_GRAPH and "signed for another graph" in err.message and GRAPH_A in err.message
    # naming graph B does not help: the MAC was made with A's key
    assert _refused(b, replace(on_a, graph=GRAPH_B).to_wire()).code is Reason.BAD_SIGNATURE
    # nor does naming another graph make a forgery look like a relay
    forged = CapabilityMinter(secrets.token_bytes(32), graph=GRAPH_A, clock=clock).mint(**GOAL)
    assert _refused(b, forged.to_wire()).code is Reason.BAD_SIGNATURE
    # and graph A's own skill server admits it
    assert CapabilityVerifier(SECRET, graph=GRAPH_A, clock=clock).admit(on_a.to_wire(), **GOAL) == on_a


@pytest.mark.parametrize(("field", "value"), [
    ("plan_id", "a1b2c3:5"), ("step_index", 2), ("skill", "acquire_3d"), ("args", '{"view": "lat", "kv": 70}'),
    ("domain", "surgery"), ("goal_id", "00" * 16),
])
def test_a_capability_for_another_goal_is_refused(field: str, value: Any) -> None:
    minter, verifier, _ = _pair()
    wire = minter.mint(**GOAL).to_wire()
    err = _refused(verifier, wire, **{field: value})
    assert err.code is Reason.CAPABILITY_MISMATCH and field in err.message
    verifier.admit(wire, **GOAL)  # a mismatch does not spend it: the right goal still runs


def test_without_a_goal_id_the_capability_binds_the_rest() -> None:
    minter, verifier, _ = _pair()
    wire = minter.mint(**{**GOAL, "goal_id": ""}).to_wire()
    verifier.admit(wire, **{**GOAL, "goal_id": "12" * 16})
    assert _refused(verifier, wire).code is Reason.REPLAYED


def test_expiry() -> None:
    minter, verifier, clock = _pair(ttl_s=2.0)
    on_time, late = minter.mint(**GOAL).to_wire(), minter.mint(**GOAL).to_wire()
    clock.advance(2.0)
    verifier.admit(on_time, **GOAL)  # at its expiry, still valid
    clock.advance(0.001)
    err = _refused(verifier, late)
    assert err.code is Reason.EXPIRED and "expired 0.001 s ago" in err.message


def test_the_single_use_registry_is_bounded_and_forgets_only_expired_nonces() -> None:
    minter, verifier, clock = _pair(ttl_s=1.0, max_spent=2)
    first = minter.mint(**GOAL).to_wire()
    verifier.admit(first, **GOAL)
    verifier.admit(minter.mint(**GOAL).to_wire(), **GOAL)
    err = _refused(verifier, minter.mint(**GOAL).to_wire())
    assert err.code is Reason.TOO_MANY_CAPABILITIES
    clock.advance(1.001)
    verifier.admit(minter.mint(**GOAL).to_wire(), **GOAL)  # the two spent ones expired and were dropped
    assert _refused(verifier, first).code is Reason.EXPIRED  # a forgotten nonce still cannot pass


# -- properties ---------------------------------------------------------------------------------------------------

_TEXT = st.text(max_size=12)
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "plan_id": _TEXT, "step_index": st.integers(-2, 50), "skill": _TEXT,
    "args": st.dictionaries(st.sampled_from(["kv", "view", "arm"]), st.integers(0, 200) | _TEXT, max_size=3).map(
        canonical_args),
    "domain": _TEXT, "goal_id": st.text("0123456789abcdef", min_size=1, max_size=32),
    "issued_ms": st.integers(0, 2**53), "expires_ms": st.integers(0, 2**53), "nonce": st.text("0123456789abcdef", min_size=32, max_size=32),
}


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(sorted(_FIELD_VALUES)), data=st.data())
def test_any_single_field_change_in_the_capability_is_refused(field: str, data: st.DataObject) -> None:
    minter, verifier, _ = _pair()
    cap = minter.mint(**GOAL)
    value = data.draw(_FIELD_VALUES[field].filter(lambda v: v != getattr(cap, field)))
    forged = replace(cap, **{field: value})
    assert _refused(verifier, forged.to_wire()).code is Reason.BAD_SIGNATURE
    verifier.admit(cap.to_wire(), **GOAL)


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(["plan_id", "step_index", "skill", "args", "domain", "goal_id"]), data=st.data())
def test_any_single_field_change_in_the_goal_is_refused(field: str, data: st.DataObject) -> None:
    minter, verifier, _ = _pair()
    wire = minter.mint(**GOAL).to_wire()
    value = data.draw(_FIELD_VALUES[field].filter(lambda v: v != canonical_args(GOAL["args"]) if field == "args"
                                                  else v != GOAL[field]))
    assert _refused(verifier, wire, **{field: value}).code is Reason.CAPABILITY_MISMATCH


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(0, 255))
def test_any_bit_flip_of_the_mac_is_refused(bit: int) -> None:
    minter, verifier, _ = _pair()
    cap = minter.mint(**GOAL)
    raw = bytearray(bytes.fromhex(cap.mac))
    raw[bit // 8] ^= 1 << (bit % 8)
    assert _refused(verifier, replace(cap, mac=raw.hex()).to_wire()).code is Reason.BAD_SIGNATURE


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=1, max_size=64).filter(lambda k: k != SECRET))
def test_any_other_key_is_refused(key: bytes) -> None:
    _, verifier, clock = _pair()
    wire = CapabilityMinter(key, clock=clock).mint(**GOAL).to_wire()
    assert _refused(verifier, wire).code is Reason.BAD_SIGNATURE


@settings(max_examples=100, deadline=None)
@given(replays=st.integers(1, 5), waits=st.lists(st.floats(0, DEFAULT_TTL_S / 6), min_size=5, max_size=5))
def test_a_genuine_capability_is_admitted_exactly_once_however_often_it_is_replayed(replays: int,
                                                                                    waits: list[float]) -> None:
    minter, verifier, clock = _pair()
    wire = minter.mint(**GOAL).to_wire()
    verifier.admit(wire, **GOAL)
    for wait in waits[:replays]:
        clock.advance(wait)
        assert _refused(verifier, wire).code is Reason.REPLAYED


@settings(max_examples=100, deadline=None)
@given(ttl=st.floats(0.05, 30), late=st.floats(0.002, 1e6))  # stamps are whole ms: 2 ms is late after rounding
def test_any_expired_capability_is_refused(ttl: float, late: float) -> None:
    minter, verifier, clock = _pair(ttl_s=ttl)
    wire = minter.mint(**GOAL).to_wire()
    clock.advance(ttl + late)
    assert _refused(verifier, wire).code is Reason.EXPIRED
