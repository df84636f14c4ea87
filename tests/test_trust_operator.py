"""Operator messages: only a keyed operator acts, only on what is open now, each message once, while fresh.

Every refusal carries the identity the sender claimed, so the audit log can say who was impersonated.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.core.clock import ManualClock
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.operator import (
    BOUND_KINDS,
    DEFAULT_WINDOW_S,
    OperatorKind,
    OperatorMessage,
    OperatorSigner,
    OperatorVerifier,
)
from medrobot_llm.safety.signing import Untrusted

ALICE, BOB = b"a" * 32, b"b" * 32
QUESTION = "5e" * 16  # the nonce the supervisor announced with "Confirm exposure 1 of 1?"
T0 = 1_700_000_000.0
#: the graph the supervisor and its consoles are on (``env.graph_identity``)
GRAPH = "ros-domain=7;graph=0123456789abcdef"


def _setup() -> tuple[OperatorSigner, OperatorVerifier, ManualClock]:
    clock = ManualClock(T0)
    return (OperatorSigner("alice", ALICE, graph=GRAPH, clock=clock),
            OperatorVerifier({"alice": ALICE, "bob": BOB}, graph=GRAPH, clock=clock), clock)


def _refused(verifier: OperatorVerifier, wire: str, open_nonce: str | None = QUESTION) -> Untrusted:
    with pytest.raises(Untrusted) as exc:
        verifier.verify(wire, open_nonce=open_nonce)
    return exc.value


def test_a_genuine_confirmation_of_the_open_question_is_accepted_once() -> None:
    signer, verifier, _ = _setup()
    wire = signer.sign(OperatorKind.CONFIRM, QUESTION).to_wire()
    msg = verifier.verify(wire, open_nonce=QUESTION)
    assert (msg.kind, msg.operator, msg.answers) == (OperatorKind.CONFIRM, "alice", QUESTION)
    assert "mac" not in OperatorVerifier.describe(msg)
    err = _refused(verifier, wire)
    assert err.code is Reason.REPLAYED and err.claimed == "alice"


def test_an_unknown_operator_is_refused_and_named() -> None:
    _, verifier, clock = _setup()
    wire = OperatorSigner("mallory", b"m" * 32, graph=GRAPH, clock=clock).sign(OperatorKind.RESET, QUESTION).to_wire()
    err = _refused(verifier, wire)
    assert err.code is Reason.UNKNOWN_OPERATOR and err.claimed == "mallory" and "mallory" in err.message


def test_a_message_claiming_to_be_alice_without_her_key_is_refused() -> None:
    _, verifier, clock = _setup()
    wire = OperatorSigner("alice", BOB, graph=GRAPH, clock=clock).sign(OperatorKind.CONFIRM, QUESTION).to_wire()
    err = _refused(verifier, wire)
    assert err.code is Reason.BAD_SIGNATURE and err.claimed == "alice"


@pytest.mark.parametrize("offset", [DEFAULT_WINDOW_S + 0.001, -(DEFAULT_WINDOW_S + 0.001), 13.0])
def test_a_message_outside_the_window_is_stale(offset: float) -> None:
    msg = OperatorSigner("alice", ALICE, graph=GRAPH, clock=ManualClock(T0)).sign(OperatorKind.CONFIRM, QUESTION)
    verifier = OperatorVerifier({"alice": ALICE}, graph=GRAPH, clock=ManualClock(T0 + offset))
    err = _refused(verifier, msg.to_wire())
    assert err.code is Reason.STALE_MESSAGE and err.claimed == "alice"
    assert ("old" if offset > 0 else "ahead") in err.message


def test_at_the_edge_of_the_window_a_message_still_counts() -> None:
    signer, verifier, clock = _setup()
    wire = signer.sign(OperatorKind.DENY, QUESTION).to_wire()
    clock.advance(DEFAULT_WINDOW_S)
    verifier.verify(wire, open_nonce=QUESTION)


def test_counters_must_increase_per_operator() -> None:
    signer, verifier, clock = _setup()
    first, second = signer.sign(OperatorKind.CANCEL), signer.sign(OperatorKind.STOP)
    assert second.counter > first.counter
    verifier.verify(second.to_wire(), open_nonce=None)
    err = _refused(verifier, first.to_wire())
    assert err.code is Reason.REPLAYED and "not above the last accepted" in err.message
    bob = OperatorSigner("bob", BOB, graph=GRAPH, clock=ManualClock(T0 - 1)).sign(OperatorKind.STOP)  # lower, but his own
    assert bob.counter < second.counter
    verifier.verify(bob.to_wire(), open_nonce=None)


def test_a_restarted_console_counts_above_its_last_message() -> None:
    signer, verifier, clock = _setup()
    for _ in range(3):
        verifier.verify(signer.sign(OperatorKind.STOP).to_wire(), open_nonce=None)
    clock.advance(0.01)
    restarted = OperatorSigner("alice", ALICE, graph=GRAPH, clock=clock)
    verifier.verify(restarted.sign(OperatorKind.STOP).to_wire(), open_nonce=None)


@pytest.mark.parametrize("kind", sorted(BOUND_KINDS, key=lambda k: k.value))
def test_a_bound_message_must_answer_what_is_open_now(kind: OperatorKind) -> None:
    signer, verifier, _ = _setup()
    err = _refused(verifier, signer.sign(kind, "ab" * 16).to_wire())
    assert err.code is Reason.NOT_OPEN and "another question" in err.message and err.claimed == "alice"
    err = _refused(verifier, signer.sign(kind, QUESTION).to_wire(), open_nonce=None)
    assert err.code is Reason.NOT_OPEN and "nothing is open" in err.message


def test_a_yes_typed_before_the_question_cannot_confirm_it_later() -> None:
    """Issue 15's attack 7: the answer names the question it saw (none), so a later question is not it."""
    signer, verifier, clock = _setup()
    early = signer.sign(OperatorKind.CONFIRM, "").to_wire()
    assert _refused(verifier, early, open_nonce=None).code is Reason.NOT_OPEN
    clock.advance(1.0)
    assert _refused(verifier, early).code is Reason.REPLAYED  # spent, whatever it answered


@pytest.mark.parametrize("kind", [OperatorKind.CANCEL, OperatorKind.STOP])
def test_cancel_and_stop_need_no_open_question(kind: OperatorKind) -> None:
    signer, verifier, _ = _setup()
    assert verifier.verify(signer.sign(kind, "").to_wire(), open_nonce=None).kind is kind


def test_a_command_carries_its_text_under_the_mac() -> None:
    signer, verifier, _ = _setup()
    msg = signer.sign(OperatorKind.COMMAND, QUESTION, "take an AP shot")
    assert _refused(verifier, replace(msg, body="take 9 AP shots").to_wire()).code is Reason.BAD_SIGNATURE
    assert verifier.verify(msg.to_wire(), open_nonce=QUESTION).body == "take an AP shot"


@pytest.mark.parametrize(("change", "claimed"), [
    (lambda raw: "not json", ""),
    (lambda raw: json.dumps({**raw, "pad": "x" * 70_000}), ""),
    (lambda raw: "[" * 50_000, ""),
    (lambda raw: json.dumps([raw]), ""),
    (lambda raw: json.dumps({k: v for k, v in raw.items() if k != "mac"}), "alice"),
    (lambda raw: json.dumps({**raw, "kind": "launch"}), "alice"),
    (lambda raw: json.dumps({**raw, "counter": True}), "alice"),
    (lambda raw: json.dumps({**raw, "stamp_ms": 1.5}), "alice"),
    (lambda raw: json.dumps({**raw, "operator": "../alice"}), "../alice"),
    (lambda raw: json.dumps({**raw, "operator": 7}), ""),
    (lambda raw: json.dumps({**raw, "mac": "X" * 64}), "alice"),
    (lambda raw: json.dumps({**raw, "body": "x" * 9000}), "alice"),
])
def test_a_malformed_message_is_refused_with_whatever_identity_it_claims(change: Any, claimed: str) -> None:
    signer, verifier, _ = _setup()
    raw = json.loads(signer.sign(OperatorKind.CONFIRM, QUESTION).to_wire())
    err = _refused(verifier, change(raw))
    assert err.code is Reason.MALFORMED and err.claimed == claimed
    assert err.to_json()["code"] == "malformed"


def test_a_signer_name_must_be_a_key_identity() -> None:
    with pytest.raises(ValueError):
        OperatorSigner("Alice Smith", ALICE, graph=GRAPH)


# -- properties ---------------------------------------------------------------------------------------------------

_CHANGES: dict[str, st.SearchStrategy[Any]] = {
    "kind": st.sampled_from(list(OperatorKind)), "operator": st.sampled_from(["bob", "alice2", "root"]),
    "answers": st.text("0123456789abcdef", max_size=32), "counter": st.integers(0, 2**62),
    "stamp_ms": st.integers(0, 2**45), "body": st.text(max_size=20),
}


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(sorted(_CHANGES)), data=st.data())
def test_any_single_field_change_is_refused(field: str, data: st.DataObject) -> None:
    signer, verifier, _ = _setup()
    msg = signer.sign(OperatorKind.CONFIRM, QUESTION, "")
    value = data.draw(_CHANGES[field].filter(lambda v: v != getattr(msg, field)))
    err = _refused(verifier, replace(msg, **{field: value}).to_wire())
    assert err.code in (Reason.BAD_SIGNATURE, Reason.UNKNOWN_OPERATOR)
    assert verifier.verify(msg.to_wire(), open_nonce=QUESTION) is not None  # the genuine one is unharmed


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(0, 255))
def test_any_bit_flip_of_the_mac_is_refused(bit: int) -> None:
    signer, verifier, _ = _setup()
    msg = signer.sign(OperatorKind.RESET, QUESTION)
    raw = bytearray(bytes.fromhex(msg.mac))
    raw[bit // 8] ^= 1 << (bit % 8)
    assert _refused(verifier, replace(msg, mac=raw.hex()).to_wire()).code is Reason.BAD_SIGNATURE


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=1, max_size=64).filter(lambda k: k != ALICE))
def test_any_other_key_is_refused(key: bytes) -> None:
    _, verifier, clock = _setup()
    wire = OperatorSigner("alice", key, graph=GRAPH, clock=clock).sign(OperatorKind.CONFIRM, QUESTION).to_wire()
    assert _refused(verifier, wire).code is Reason.BAD_SIGNATURE


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(list(OperatorKind)), replays=st.integers(1, 4),
       waits=st.lists(st.floats(0, DEFAULT_WINDOW_S / 5), min_size=4, max_size=4))
def test_a_genuine_message_is_accepted_exactly_once(kind: OperatorKind, replays: int, waits: list[float]) -> None:
    signer, verifier, clock = _setup()
    wire = signer.sign(kind, QUESTION).to_wire()
    assert verifier.verify(wire, open_nonce=QUESTION).kind is kind
    for wait in waits[:replays]:
        clock.advance(wait)
        assert _refused(verifier, wire).code is Reason.REPLAYED


@settings(max_examples=100, deadline=None)
@given(late=st.floats(0.002, 1e6))
def test_any_message_older_than_the_window_is_refused(late: float) -> None:
    signer, verifier, clock = _setup()
    wire = signer.sign(OperatorKind.CONFIRM, QUESTION).to_wire()
    clock.advance(DEFAULT_WINDOW_S + late)
    assert _refused(verifier, wire).code is Reason.STALE_MESSAGE


def test_message_round_trips_through_its_wire_form() -> None:
    signer, _, _ = _setup()
    msg = signer.sign(OperatorKind.COMMAND, QUESTION, "scan the left kidney")
    assert OperatorMessage.from_wire(msg.to_wire()) == msg


def test_a_message_signed_for_another_graph_is_refused_naming_it_only_when_the_supervisor_knows_it() -> None:
    """One operator key serves every graph of one user: a message relayed from another graph (two rooms on one ROS
    domain id, a keys folder copied to both) must not act here, even a cancel; a console that signed for the
    domain-only identity (it did not find the bringup's graph id) is told so, and its counter is not spent."""
    clock = ManualClock(T0)
    domain_only, other = "ros-domain=7", "ros-domain=7;graph=fedcba9876543210"
    verifier = OperatorVerifier({"alice": ALICE}, graph=GRAPH, other_graphs=(domain_only,), clock=clock)
    for kind, answers in ((OperatorKind.CONFIRM, QUESTION), (OperatorKind.CANCEL, "")):
        relayed = OperatorSigner("alice", ALICE, graph=other, clock=clock).sign(kind, answers).to_wire()
        err = _refused(verifier, relayed)
        assert err.code is Reason.BAD_SIGNATURE and err.claimed == "alice"
    lost = OperatorSigner("alice", ALICE, graph=domain_only, clock=clock).sign(OperatorKind.CONFIRM, QUESTION)
    err = _refused(verifier, lost.to_wire())
    assert err.code is Reason.OTHER_GRAPH and "another graph" in err.message and domain_only in err.message
    # none of them spent alice's counter: her genuine yes with the same counter (same clock) still acts
    genuine = OperatorSigner("alice", ALICE, graph=GRAPH, clock=clock).sign(OperatorKind.CONFIRM, QUESTION)
    assert genuine.counter == lost.counter
    assert verifier.verify(genuine.to_wire(), open_nonce=QUESTION) == genuine
