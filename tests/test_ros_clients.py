"""The client side of the bridge, on a real rclpy node: ``RemoteSupervisor`` never shows a state ahead of the
events it follows (two DDS topics, no common order; messages are handed to its callbacks in the worst order
DDS may deliver them), signs what it sends with its operator's key, bound to the nonce it was shown, and
withdraws a command nobody answered; ``GoalClient`` registers each goal once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medrobot_llm.core.clock import ManualClock
from medrobot_llm.safety import events as ev
from tests._ros_helpers import require_ros

pytestmark = [pytest.mark.ros]


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock(100.0)


@pytest.fixture()
def keys_dir(tmp_path: Path) -> Path:
    from medrobot_llm.safety.keys import init_keys

    init_keys(tmp_path / "keys", ["alice"])
    return tmp_path / "keys"


@pytest.fixture()
def remote(clock: ManualClock, keys_dir: Path) -> Iterator[Any]:
    require_ros()
    from medrobot_llm.backends.ros.env import unique_domain_id
    from medrobot_llm.backends.ros.remote import RemoteSupervisor

    from medrobot_llm.safety.graph_id import claim_graph

    claim = unique_domain_id()
    bringup = claim_graph(keys_dir, claim.domain_id, GRAPH_ID)  # what medrobot bringup writes for its consoles
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        r = RemoteSupervisor("medrobot_test_remote", operator="alice", keys_dir=keys_dir, clock=clock)
        try:
            yield r
        finally:
            r.close()
            bringup.release()
            claim.release()


#: the graph id of the bringup the console follows
GRAPH_ID = "0123456789abcdef"


def this_graph() -> str:
    """The graph the ``remote`` fixture's console is on (its ROS domain, and the bringup's id)."""
    from medrobot_llm.backends.ros.env import graph_identity

    return graph_identity(int(os.environ["ROS_DOMAIN_ID"]), GRAPH_ID)


def state(seq: int, name: str, through: int, session: str = "s1", reason: str = "", nonce: str = "",
          question: dict[str, Any] | None = None, sealed_by: tuple[str, bytes] | None = None,
          graph: str | None = None) -> Any:
    """A supervisor state; its question sealed for operator ``sealed_by`` (name, key) as the supervisor of
    ``graph`` (default: the console's) does."""
    from medrobot_interfaces.msg import SupervisorState

    from medrobot_llm.safety.asked import question_digest, seals

    status: dict[str, Any] = {"records_through": through, "reason": reason, "nonce": nonce, "question": question}
    if question is not None and sealed_by is not None:
        status["question_seals"] = seals(dict([sealed_by]), graph=this_graph() if graph is None else graph,
                                         session=session, nonce=nonce,
                                         digest=question_digest(question))
    return SupervisorState(seq=seq, session=session, state=name, reason=reason, nonce=nonce,
                           status_json=json.dumps(status))


EXPOSURE = {"run": 1, "step_index": 0, "skill": "take_shot", "hazard": "radiation",
            "text": "Confirm exposure 1 of 1: take_shot", "asked_at": 1.0, "expires_at": 61.0}


def alice(keys_dir: Path) -> tuple[str, bytes]:
    from medrobot_llm.safety.keys import load_operator_key

    return "alice", load_operator_key("alice", keys_dir)


def event(e: ev.SupervisorEvent, seq: int | None = None) -> Any:
    """``e`` as the supervisor node publishes it; ``seq``: the audit log's number (records only)."""
    from std_msgs.msg import String

    numbered = e.model_copy(update={"seq": seq, "clock": 0.0}) if seq is not None else e
    return String(data=json.dumps(numbered.record()))


def test_a_state_waits_for_the_records_it_reflects(remote: Any) -> None:
    seen_at_result: list[str] = []
    remote.subscribe(lambda e: seen_at_result.append(remote.status()["state"])
                     if isinstance(e, ev.StepResultEvent) else None)
    remote._on_state(state(1, "EXECUTING", 10))
    assert remote.status()["state"] == "EXECUTING"
    # the final state overtakes the step's result and the finish record
    remote._on_state(state(2, "IDLE", 12, reason="all 1 step(s) done"))
    assert remote.status()["state"] == "EXECUTING"
    assert not remote.wait_for("IDLE", timeout=0.05)
    remote._on_event(event(ev.StepResultEvent(run=1, step=0, skill="take_shot", success=True, failure="none",
                                              message="done", outcome={}), seq=11))
    assert remote.status()["state"] == "EXECUTING"
    # no seq: not a record
    remote._on_event(event(ev.FeedbackEvent(run=1, step=0, phase="done", progress=1.0, telemetry={})))
    remote._on_event(event(ev.StateEvent(source="EXECUTING", to="IDLE", trigger="finish",
                                         reason="all 1 step(s) done"), seq=12))
    assert remote.status()["state"] == "IDLE" and remote.status()["reason"] == "all 1 step(s) done"
    assert seen_at_result == ["EXECUTING"]  # listeners had the result before anyone could see IDLE


def test_a_state_is_not_held_forever_when_events_are_lost(remote: Any, clock: ManualClock) -> None:
    from medrobot_llm.backends.ros.remote import HOLD_S

    remote._on_state(state(1, "EXECUTING", 3))
    remote._on_state(state(2, "FAULT", 7))
    assert remote.status()["state"] == "EXECUTING"
    clock.advance(HOLD_S / 2)
    remote._on_state(state(3, "FAULT", 8))
    assert remote.status()["state"] == "EXECUTING"  # held since the first FAULT, not since this one
    clock.advance(HOLD_S / 2)
    remote._on_state(state(4, "FAULT", 9))
    assert remote.status()["state"] == "FAULT"


def test_a_new_supervisor_session_starts_afresh(remote: Any) -> None:
    remote._on_state(state(1, "EXECUTING", 100))
    remote._on_state(state(1, "IDLE", 4, session="s2"))  # restarted: its records start again
    assert remote.status()["state"] == "IDLE"
    remote._on_state(state(2, "EXECUTING", 4, session="s2"))
    assert remote.status()["state"] == "EXECUTING"


def test_goal_client_registers_each_goal_once_with_its_feedback_callback(remote: Any) -> None:
    """The stock rclpy 9.1.2 ``send_goal_async`` registers a second future outside its lock (two here)."""
    from medrobot_interfaces.action import ExecuteSkill

    from medrobot_llm.backends.ros.common import GoalClient

    client = GoalClient(remote.node, ExecuteSkill, "/medrobot_test/no_server")
    try:
        with pytest.raises(TypeError, match="Goal"):
            client.send_goal_async(ExecuteSkill.Result())
        futures = [client.send_goal_async(ExecuteSkill.Goal(skill="sweep"), feedback_callback=print) for _ in range(3)]
        assert len(client._futures) == 3 and len(client._pending_goal_requests) == 3
        assert set(client._pending_goal_requests.values()) == set(futures)
        assert len(client._feedback_callbacks) == 3
    finally:
        client.destroy()


class Sent:
    """What the remote publishes on the operator topics, as the supervisor's verifier reads it."""

    def __init__(self, remote: Any, keys_dir: Path) -> None:
        from medrobot_interfaces.msg import OperatorMessage as OperatorMsg

        from medrobot_llm.backends.ros.common import TOPIC_COMMAND, TOPIC_CONFIRM, TOPIC_RESET, reliable_qos
        from medrobot_llm.backends.ros.signed import operator_wire
        from medrobot_llm.safety.keys import load_keyring
        from medrobot_llm.safety.operator import OperatorVerifier

        self.verifier = OperatorVerifier(load_keyring(keys_dir), graph=remote.graph)
        self.got: list[tuple[str, str]] = []
        self.cond = threading.Condition()
        for topic in (TOPIC_COMMAND, TOPIC_CONFIRM, TOPIC_RESET):
            def on(msg: Any, topic: str = topic) -> None:
                with self.cond:
                    self.got.append((topic, operator_wire(msg)))
                    self.cond.notify_all()

            remote.node.create_subscription(OperatorMsg, topic, on, reliable_qos(10))
        deadline = time.monotonic() + 5
        while remote.node.count_subscribers(TOPIC_COMMAND) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)

    def wait(self, n: int, timeout: float = 5.0) -> list[tuple[str, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return list(self.got)


def test_a_command_is_signed_with_the_nonce_shown_and_withdrawn_when_nobody_answers(remote: Any,
                                                                                     keys_dir: Path) -> None:
    from medrobot_llm.safety.operator import OperatorKind

    sent = Sent(remote, keys_dir)
    remote._on_state(state(1, "IDLE", 0, nonce="ab" * 16))
    reply = remote.command("take a shot", timeout=0.3)
    assert not reply.accepted and "sent a cancel so it cannot run later" in reply.message
    (topic1, command), (topic2, cancel) = sent.wait(2)[:2]
    msg = sent.verifier.verify(command, open_nonce="ab" * 16)
    assert (topic1, msg.kind, msg.operator, msg.body) == ("/medrobot/command", OperatorKind.COMMAND, "alice",
                                                          "take a shot")
    assert topic2 == "/medrobot/command"
    assert sent.verifier.verify(cancel, open_nonce=None).kind is OperatorKind.CANCEL


@pytest.mark.parametrize("text,kind", [("cancel", "cancel"), ("never mind", "cancel"), ("Stop!", "stop"),
                                       ("halt", "stop")])
def test_cancel_and_stop_phrases_go_as_their_own_kinds(remote: Any, keys_dir: Path, text: str, kind: str) -> None:
    remote.STOP_SEEN_S = 0.1
    sent = Sent(remote, keys_dir)
    remote._on_state(state(1, "EXECUTING", 0, nonce="cd" * 16))
    remote.command(text, timeout=0.2)
    got = sent.wait(1)
    assert [sent.verifier.verify(wire, open_nonce=None).kind.value for _, wire in got][:1] == [kind]


def test_a_confirmation_answers_the_question_it_saw(remote: Any, keys_dir: Path) -> None:
    from medrobot_llm.safety.operator import OperatorKind

    from medrobot_llm.safety.asked import question_digest

    sent = Sent(remote, keys_dir)
    remote._on_state(state(1, "AWAITING_CONFIRMATION", 0, nonce="ef" * 16, question=EXPOSURE,
                           sealed_by=alice(keys_dir)))
    remote.confirm(0, timeout=0.2)
    (topic, wire), = sent.wait(1)
    msg = sent.verifier.verify(wire, open_nonce="ef" * 16)
    assert topic == "/medrobot/confirm" and msg.kind is OperatorKind.CONFIRM
    assert msg.body == question_digest(EXPOSURE)  # the question it showed, for the supervisor to compare


def test_a_question_the_supervisor_did_not_seal_for_this_operator_is_never_shown(remote: Any, keys_dir: Path) -> None:
    sealed = state(1, "AWAITING_CONFIRMATION", 0, nonce="ef" * 16, question=EXPOSURE, sealed_by=alice(keys_dir))
    remote._on_state(sealed)
    reworded = {**EXPOSURE, "skill": "move_to_view", "hazard": "motion", "text": "Confirm moving the gantry home"}
    forged = state(2, "AWAITING_CONFIRMATION", 0, nonce="ef" * 16, question=reworded)
    forged.status_json = json.dumps({**json.loads(forged.status_json),
                                     "question_seals": json.loads(sealed.status_json)["question_seals"]})
    for fake in (forged, state(3, "AWAITING_CONFIRMATION", 0, nonce="ef" * 16, question=reworded),
                 state(4, "AWAITING_CONFIRMATION", 0, nonce="ef" * 16, question=reworded,
                       sealed_by=("alice", b"m" * 32))):
        remote._on_state(fake)
        assert remote.status()["question"]["text"] == EXPOSURE["text"] and remote.status()["seq"] == 1


def other_graph() -> str:
    """A bringup on the console's domain id but another network, with a copy of its keys folder."""
    from medrobot_llm.backends.ros.env import graph_identity

    return graph_identity(int(os.environ["ROS_DOMAIN_ID"]), "fedcba9876543210")


def test_the_console_signs_for_the_graph_its_bringup_wrote_in_the_keys_folder(remote: Any) -> None:
    from medrobot_llm.backends.ros.env import graph_identity

    assert remote.graph == this_graph() != graph_identity(int(os.environ["ROS_DOMAIN_ID"]))


def test_a_question_sealed_on_another_graph_is_never_shown(remote: Any, keys_dir: Path) -> None:
    """Two rooms on one domain id, one keys folder copied to both: the other room's supervisor seals its exposure
    question for the same operator key, in the same session name even; relayed here, it is not this graph's."""
    from medrobot_llm.backends.ros.env import graph_identity

    remote._on_state(state(1, "IDLE", 0, nonce="ab" * 16))
    for graph in (other_graph(), graph_identity(int(os.environ["ROS_DOMAIN_ID"]))):
        remote._on_state(state(2, "AWAITING_CONFIRMATION", 0, nonce="ef" * 16, question=EXPOSURE,
                               sealed_by=alice(keys_dir), graph=graph))
        assert remote.status()["state"] == "IDLE" and remote.status()["seq"] == 1


def test_a_question_event_is_shown_only_once_a_sealed_state_asks_it(remote: Any, keys_dir: Path) -> None:
    shown: list[str] = []
    remote.subscribe(lambda e: shown.append(e.text) if isinstance(e, ev.QuestionEvent) else None)
    fields = {k: EXPOSURE[k] for k in ("run", "step_index", "skill", "hazard", "text", "asked_at", "expires_at")}
    remote._on_event(event(ev.QuestionEvent(**{**fields, "text": "Confirm moving the gantry home"}), seq=4))
    remote._on_event(event(ev.QuestionEvent(**fields), seq=5))
    assert shown == []  # nothing sealed asks either yet
    remote._on_state(state(1, "AWAITING_CONFIRMATION", 5, nonce="ef" * 16, question=EXPOSURE,
                           sealed_by=alice(keys_dir)))
    assert shown == [EXPOSURE["text"]]
    remote._on_event(event(ev.QuestionEvent(**fields), seq=6))  # asked by the state shown now: at once
    assert shown == [EXPOSURE["text"]] * 2


def test_a_console_without_its_key_says_what_to_do(tmp_path: Path) -> None:
    require_ros()
    from medrobot_llm.backends.ros.remote import RemoteSupervisor
    from medrobot_llm.safety.keys import KeyMissing

    with pytest.raises(KeyMissing, match="medrobot keys init"):
        RemoteSupervisor("medrobot_test_nokey", operator="nobody", keys_dir=tmp_path)


def sealed_reply(keys_dir: Path, reply: ev.ReplyEvent, session: str = "s1", key: bytes | None = None,
                 graph: str | None = None) -> Any:
    """``reply`` as the supervisor node of ``graph`` (default: the console's) publishes it: sealed for alice (or
    with ``key``, a forger's)."""
    from std_msgs.msg import String

    from medrobot_llm.safety.asked import SEALS_KEY, reply_digest, seals

    record = json.loads(json.dumps(reply.record()))
    record[SEALS_KEY] = seals({"alice": key or alice(keys_dir)[1]}, graph=this_graph() if graph is None else graph,
                              session=session, nonce="", digest=reply_digest(record))
    return String(data=json.dumps(record))


def test_only_a_sealed_fresh_reply_answers_a_command(remote: Any, keys_dir: Path) -> None:
    from medrobot_llm.safety.replies import Reply
    from medrobot_llm.safety.supervisor import SupervisorState

    remote._on_state(state(7, "IDLE", 0, nonce="ef" * 16))

    def answer(r: ev.ReplyEvent) -> bool:
        return r.op == "command" and r.text == "take a shot"

    def refused(seq: int) -> ev.ReplyEvent:
        return ev.ReplyEvent.answering("command", Reply(False, SupervisorState.IDLE, "refused: nothing done"),
                                       text="take a shot", state_seq=seq)

    for wrong in (event(refused(8)), sealed_reply(keys_dir, refused(8), key=b"m" * 32),
                  sealed_reply(keys_dir, refused(8), session="s0"),  # another supervisor's
                  sealed_reply(keys_dir, refused(8), graph=other_graph()),  # another bringup's, relayed
                  sealed_reply(keys_dir, refused(6))):  # an old reply, replayed: it came with an older state
        assert remote._ask(lambda w=wrong: remote._on_event(w), answer, 0.1).message == remote.NO_ANSWER
    genuine = sealed_reply(keys_dir, refused(8))

    def supervisor_answers() -> None:
        remote._on_event(genuine)
        remote._on_state(state(8, "IDLE", 0, nonce="ef" * 16))

    assert remote._ask(supervisor_answers, answer, 1.0).message == "refused: nothing done"
