"""The supervisor's operator gate, without ROS: every refusal path of issue 15 on a ``ManualClock``.

Each refusal must do nothing, name why for the console and, when it is about trust, give the audit log an
``UntrustedEvent`` with the identity the sender claimed.
"""

from __future__ import annotations

import json

import pytest

from medrobot_llm.core.clock import ManualClock
from medrobot_llm.core.plan import Control, Plan
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.asked import question_digest, seal_matches, seals
from medrobot_llm.safety.operator import DEFAULT_WINDOW_S, OperatorKind, OperatorSigner, OperatorVerifier
from medrobot_llm.safety.operator_gate import (
    DEFAULT_COMMAND_WINDOW_S, Admitted, Channel, Dropped, OperatorGate, PlanAnswer, Planned, Refusal,
)
from medrobot_llm.safety.planned import sign_answer

ALICE, MALLORY, GRAPH = b"a" * 32, b"m" * 32, b"g" * 32
#: the graph the supervisor and its console are on (``env.graph_identity``)
ON = "ros-domain=7;graph=0123456789abcdef"
T0 = 1_700_000_000.0
TOPIC = {Channel.COMMAND: "/medrobot/command", Channel.CONFIRM: "/medrobot/confirm", Channel.RESET: "/medrobot/reset"}
SCAN = Plan.model_validate({"status": "ok", "domain": "xray", "steps": [{"skill": "take_shot", "args": {}}]})


class Rig:
    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self.nonces = iter(f"{i:032x}" for i in range(1, 1000))
        self.gate = OperatorGate(OperatorVerifier({"alice": ALICE}, graph=ON, clock=self.clock), GRAPH, domain="xray",
                                 clock=self.clock, make_nonce=lambda: next(self.nonces))
        self.alice = OperatorSigner("alice", ALICE, graph=ON, clock=self.clock)
        self.nonce = self.gate.observe("IDLE", None, None)

    def send(self, channel: Channel, kind: OperatorKind, answers: str | None = None, body: str = "",
             signer: OperatorSigner | None = None) -> Admitted | Refusal:
        msg = (signer or self.alice).sign(kind, self.nonce if answers is None else answers, body)
        return self.gate.receive(channel, msg.to_wire(), topic=TOPIC[channel], open_nonce=self.nonce)

    def command(self, text: str = "take a shot") -> Admitted:
        out = self.send(Channel.COMMAND, OperatorKind.COMMAND, body=text)
        assert isinstance(out, Admitted) and out.pending is not None, out
        return out

    def answer(self, admitted: Admitted, plan: Plan = SCAN, *, secret: bytes | None = GRAPH,
               request_id: str | None = None) -> Planned | Dropped | Refusal | None:
        assert admitted.pending is not None
        fields = {"request_id": request_id or admitted.pending.request_id, "domain": "xray",
                  "text": admitted.pending.text, "status": plan.status.value, "plan_json": json.dumps(plan.to_json())}
        signature = sign_answer(secret, **fields) if secret is not None else ""
        return self.gate.answer(PlanAnswer(**fields, signature=signature), topic="/medrobot/plan",
                                nonce_now=self.nonce)


def _untrusted(out: object, code: Reason, claimed: str = "alice") -> Refusal:
    assert isinstance(out, Refusal), out
    assert out.event is not None and out.event.code == code.value and out.event.claimed == claimed, out
    assert code.value in out.message
    return out


def test_a_signed_command_is_planned_and_acts_as_its_operator() -> None:
    rig = Rig()
    admitted = rig.command()
    assert admitted.source == "operator:alice" and admitted.pending is not None
    assert admitted.pending.request_id == admitted.msg.mac
    out = rig.answer(admitted)
    assert isinstance(out, Planned) and out.plan == SCAN and out.pending.source == "operator:alice"
    assert rig.gate.pending is None


def test_an_unsigned_message_is_refused_and_audited() -> None:
    rig = Rig()
    out = rig.gate.receive(Channel.CONFIRM, "true", topic=TOPIC[Channel.CONFIRM], open_nonce=rig.nonce)
    assert isinstance(out, Refusal) and out.event is not None and out.event.code == Reason.MALFORMED.value
    assert out.event.topic == "/medrobot/confirm"


def test_an_unknown_operator_is_refused_and_named() -> None:
    rig = Rig()
    out = rig.send(Channel.CONFIRM, OperatorKind.CONFIRM, signer=OperatorSigner("mallory", MALLORY, graph=ON, clock=rig.clock))
    refusal = _untrusted(out, Reason.UNKNOWN_OPERATOR, "mallory")
    assert refusal.op == "confirm" and refusal.event is not None and refusal.event.op == "confirm"


def test_a_bad_mac_is_refused() -> None:
    rig = Rig()
    _untrusted(rig.send(Channel.RESET, OperatorKind.RESET, signer=OperatorSigner("alice", MALLORY, graph=ON, clock=rig.clock)),
               Reason.BAD_SIGNATURE)


def test_a_stale_message_is_refused() -> None:
    rig = Rig()
    msg = rig.alice.sign(OperatorKind.CONFIRM, rig.nonce)
    rig.clock.advance(DEFAULT_WINDOW_S + 1)
    _untrusted(rig.gate.receive(Channel.CONFIRM, msg.to_wire(), topic="/medrobot/confirm", open_nonce=rig.nonce),
               Reason.STALE_MESSAGE)


def test_a_replayed_message_is_refused() -> None:
    rig = Rig()
    msg = rig.alice.sign(OperatorKind.DENY, rig.nonce)
    first = rig.gate.receive(Channel.CONFIRM, msg.to_wire(), topic="/medrobot/confirm", open_nonce=rig.nonce)
    assert isinstance(first, Admitted)
    _untrusted(rig.gate.receive(Channel.CONFIRM, msg.to_wire(), topic="/medrobot/confirm", open_nonce=rig.nonce),
               Reason.REPLAYED)


def test_an_answer_to_another_question_is_refused() -> None:
    rig = Rig()
    asked = rig.gate.observe("AWAITING_CONFIRMATION", {"run": 1, "step_index": 0}, 1)
    old = asked
    rig.nonce = rig.gate.observe("AWAITING_CONFIRMATION", {"run": 1, "step_index": 1}, 1)
    assert rig.nonce != old
    _untrusted(rig.send(Channel.CONFIRM, OperatorKind.CONFIRM, answers=old), Reason.NOT_OPEN)


def test_a_yes_typed_with_no_question_cannot_confirm_the_question_asked_later() -> None:
    rig = Rig()
    # a console with no question showing has nothing to answer
    _untrusted(rig.send(Channel.CONFIRM, OperatorKind.CONFIRM, answers=""), Reason.NOT_OPEN)
    # typed as text, planned as "confirm": by the time its plan is back a question opened, so the nonce moved
    admitted = rig.command("yes")
    rig.nonce = rig.gate.observe("AWAITING_CONFIRMATION", {"run": 1, "step_index": 0}, 1)
    _untrusted(rig.answer(admitted, Plan.of_control("xray", Control.CONFIRM)), Reason.NOT_OPEN)


@pytest.mark.parametrize("control", [Control.PAUSE, Control.CANCEL, Control.STOP, Control.STATUS])
def test_a_planned_control_that_starts_nothing_acts_even_if_the_supervisor_moved_on(control: Control) -> None:
    rig = Rig()
    admitted = rig.command(control.value)
    rig.nonce = rig.gate.observe("EXECUTING", None, 1)
    assert isinstance(rig.answer(admitted, Plan.of_control("xray", control)), Planned)


def test_the_nonce_is_renewed_on_every_change_and_only_then() -> None:
    rig = Rig()
    assert rig.gate.observe("IDLE", None, None) == rig.nonce
    seen = {rig.nonce}
    for key in [("PLANNING", None, None), ("EXECUTING", None, 1), ("AWAITING_CONFIRMATION", {"step_index": 0}, 1),
                ("AWAITING_CONFIRMATION", {"step_index": 1}, 1), ("IDLE", None, None)]:
        nonce = rig.gate.observe(*key)
        assert nonce not in seen
        seen.add(nonce)


def test_a_command_planned_after_its_window_is_refused() -> None:
    rig = Rig()
    admitted = rig.command()
    rig.clock.advance(DEFAULT_COMMAND_WINDOW_S + 0.5)
    refusal = _untrusted(rig.answer(admitted), Reason.STALE_MESSAGE)
    assert "planned too late" in refusal.message and refusal.text == "take a shot"


@pytest.mark.parametrize("secret", [None, MALLORY])
def test_a_plan_answer_without_the_planners_signature_is_refused(secret: bytes | None) -> None:
    rig = Rig()
    admitted = rig.command()
    refusal = _untrusted(rig.answer(admitted, secret=secret), Reason.BAD_SIGNATURE)
    assert refusal.event is not None and refusal.event.op == "plan"
    assert rig.gate.pending is None, "a refused answer ends the command"


def test_an_answer_signed_for_another_command_is_nothing_of_ours() -> None:
    rig = Rig()
    admitted = rig.command()
    assert rig.answer(admitted, request_id="cd" * 32) is None
    assert rig.gate.pending is not None


def test_cancel_withdraws_the_command_being_planned_and_its_plan_is_dropped() -> None:
    rig = Rig()
    admitted = rig.command()
    cancel = rig.send(Channel.COMMAND, OperatorKind.CANCEL, answers="")
    assert isinstance(cancel, Admitted) and cancel.withdrawn == admitted.pending
    out = rig.answer(admitted)
    assert isinstance(out, Dropped) and out.plan == SCAN
    assert rig.gate.pending is None


@pytest.mark.parametrize("kind", [OperatorKind.CANCEL, OperatorKind.STOP])
def test_cancel_and_stop_are_never_queued_behind_planning(kind: OperatorKind) -> None:
    rig = Rig()
    rig.command()
    rig.nonce = rig.gate.observe("PAUSED", None, 1)  # whatever happened meanwhile, they need no nonce
    assert isinstance(rig.send(Channel.COMMAND, kind, answers=""), Admitted)


def test_a_second_command_while_one_is_planned_is_refused_naming_the_first() -> None:
    rig = Rig()
    rig.command("take a shot")
    out = rig.send(Channel.COMMAND, OperatorKind.COMMAND, body="move the gantry")
    assert isinstance(out, Refusal) and out.event is None
    assert "still planning 'take a shot'" in out.message and "cancel" in out.message
    assert out.text == "move the gantry"


@pytest.mark.parametrize("channel,kind", [(Channel.COMMAND, OperatorKind.CONFIRM), (Channel.CONFIRM, OperatorKind.RESET),
                                          (Channel.RESET, OperatorKind.COMMAND), (Channel.CONFIRM, OperatorKind.STOP)])
def test_a_kind_on_the_wrong_topic_is_malformed(channel: Channel, kind: OperatorKind) -> None:
    rig = Rig()
    _untrusted(rig.send(channel, kind), Reason.MALFORMED)


def test_a_planner_that_never_answers_frees_the_gate_after_the_window() -> None:
    rig = Rig()
    admitted = rig.command()
    assert rig.gate.expire() is None
    rig.clock.advance(DEFAULT_COMMAND_WINDOW_S + 0.1)
    refusal = rig.gate.expire()
    assert isinstance(refusal, Refusal) and "did not answer" in refusal.message
    assert isinstance(rig.answer(admitted), Dropped)
    rig.nonce = rig.gate.observe("IDLE", None, None)
    rig.command("again")


def test_a_planner_failure_ends_the_command_with_its_reason() -> None:
    rig = Rig()
    admitted = rig.command()
    assert admitted.pending is not None
    refusal = rig.gate.planner_failed(admitted.pending.request_id, "no planner")
    assert isinstance(refusal, Refusal) and refusal.message == "no planner" and rig.gate.pending is None
    assert rig.gate.planner_failed(admitted.pending.request_id, "again") is None


EXPOSURE = {"run": 1, "step_index": 1, "skill": "take_shot", "hazard": "radiation",
            "text": "Confirm exposure 1 of 1: take_shot", "asked_at": T0, "expires_at": T0 + 60}


def test_a_yes_to_a_question_other_than_the_one_asked_confirms_nothing() -> None:
    rig = Rig()
    rig.nonce = rig.gate.observe("AWAITING_CONFIRMATION", EXPOSURE, 1)
    asked = question_digest(EXPOSURE)
    shown = question_digest({**EXPOSURE, "skill": "move_to_view", "text": "Confirm moving the gantry home"})
    for body in (shown, ""):
        msg = rig.alice.sign(OperatorKind.CONFIRM, rig.nonce, body)
        out = rig.gate.receive(Channel.CONFIRM, msg.to_wire(), topic="/medrobot/confirm", open_nonce=rig.nonce,
                               asked=asked)
        refusal = _untrusted(out, Reason.NOT_ASKED)
        assert "answered a question the supervisor did not ask" in refusal.message
    msg = rig.alice.sign(OperatorKind.CONFIRM, rig.nonce, asked)
    assert isinstance(rig.gate.receive(Channel.CONFIRM, msg.to_wire(), topic="/medrobot/confirm",
                                       open_nonce=rig.nonce, asked=asked), Admitted)


def test_a_deny_of_any_question_still_counts() -> None:
    """Saying no only makes things safer: a deny needs the nonce, not the digest."""
    rig = Rig()
    rig.nonce = rig.gate.observe("AWAITING_CONFIRMATION", EXPOSURE, 1)
    msg = rig.alice.sign(OperatorKind.DENY, rig.nonce, "")
    assert isinstance(rig.gate.receive(Channel.CONFIRM, msg.to_wire(), topic="/medrobot/confirm",
                                       open_nonce=rig.nonce, asked=question_digest(EXPOSURE)), Admitted)


def test_each_field_of_a_question_changes_its_digest_and_a_malformed_one_has_none() -> None:
    digests = {question_digest(EXPOSURE)}
    for field, other in (("run", 2), ("step_index", 0), ("skill", "move_to_view"), ("hazard", "motion"),
                         ("text", "Confirm moving the gantry home")):
        digests.add(question_digest({**EXPOSURE, field: other}))
    assert len(digests) == 6
    assert question_digest({**EXPOSURE, "asked_at": 0.0}) == question_digest(EXPOSURE)  # not what is shown
    for bad in ({}, {**EXPOSURE, "run": "1"}, {**EXPOSURE, "step_index": True}, {**EXPOSURE, "text": None}):
        with pytest.raises(ValueError):
            question_digest(bad)


def test_a_seal_shows_only_its_operators_console_the_question_of_this_nonce() -> None:
    digest = question_digest(EXPOSURE)
    sealed = seals({"alice": ALICE, "bob": MALLORY}, graph=ON, session="s1", nonce="n1", digest=digest)
    assert seal_matches(ALICE, sealed["alice"], graph=ON, session="s1", nonce="n1", digest=digest)
    assert not seal_matches(ALICE, sealed["bob"], graph=ON, session="s1", nonce="n1", digest=digest)
    assert not seal_matches(ALICE, sealed["alice"], graph=ON, session="s1", nonce="n2", digest=digest)
    assert not seal_matches(ALICE, sealed["alice"], graph=ON, session="s2", nonce="n1", digest=digest)
    assert not seal_matches(ALICE, sealed["alice"], graph=ON, session="s1", nonce="n1",
                            digest=question_digest({**EXPOSURE, "text": "Confirm moving the gantry home"}))
    assert not seal_matches(ALICE, None, graph=ON, session="s1", nonce="n1", digest=digest)
    # two rooms on one ROS domain id, one keys folder copied to both: the other room's seal is not this graph's,
    # nor is one for the domain alone (a supervisor started without bringup's graph id)
    for other in ("ros-domain=7;graph=fedcba9876543210", "ros-domain=7"):
        assert not seal_matches(ALICE, sealed["alice"], graph=other, session="s1", nonce="n1", digest=digest)
    # a seal is not an operator message's MAC, though both use the operator's key
    signed = OperatorSigner("alice", ALICE, graph=ON, clock=ManualClock(T0)).sign(OperatorKind.CONFIRM, "n1", digest)
    assert signed.mac != sealed["alice"]
