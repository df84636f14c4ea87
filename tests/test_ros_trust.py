"""Issue 15's operator attacks over real DDS, against ``medrobot bringup`` in separate processes: a node of the
test process plays the attacker with ordinary rclpy publishers. Each forged, replayed or misdirected operator
message is refused, nothing moves, no exposure is taken, the audit log records the refusal with the identity
the message claimed, and the genuine operator's flow still works."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._ros_helpers import RosGraph, ros_graph

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosGraph]:
    with ros_graph("xray", tmp_path_factory.mktemp("ros_trust")) as g:
        yield g


@pytest.fixture
def at_rest(graph: RosGraph) -> RosGraph:
    graph.at_rest()
    return graph


class Attacker:
    """Publishes operator messages as any node could, and records what the genuine console sends."""

    def __init__(self, graph: RosGraph) -> None:
        from medrobot_interfaces.msg import OperatorMessage as OperatorMsg

        from medrobot_llm.backends.ros.common import TOPIC_COMMAND, TOPIC_CONFIRM, TOPIC_RESET, reliable_qos

        node = graph.remote.node
        self.pubs = {topic: node.create_publisher(OperatorMsg, topic, reliable_qos(10))
                     for topic in (TOPIC_COMMAND, TOPIC_CONFIRM, TOPIC_RESET)}
        self.sniffed: list[Any] = []
        self._lock = threading.Lock()
        node.create_subscription(OperatorMsg, TOPIC_CONFIRM, self._sniff, reliable_qos(10))
        deadline = time.monotonic() + 5
        while any(p.get_subscription_count() < 1 for p in self.pubs.values()) and time.monotonic() < deadline:
            time.sleep(0.01)

    def _sniff(self, msg: Any) -> None:
        with self._lock:
            self.sniffed.append(msg)

    def last_sniffed(self) -> Any:
        with self._lock:
            return self.sniffed[-1]

    def send(self, topic: str, msg: Any) -> None:
        self.pubs[topic].publish(msg)


def _signed(graph: str, operator: str, key: bytes, kind: str, answers: str = "", body: str = "") -> Any:
    """An operator message signed for ``graph`` (a genuine console's is ``RosGraph.remote.graph``)."""
    from medrobot_llm.backends.ros.signed import operator_msg
    from medrobot_llm.safety.operator import OperatorKind, OperatorSigner

    return operator_msg(OperatorSigner(operator, key, graph=graph).sign(OperatorKind(kind), answers, body))


def _operator_key(graph: RosGraph) -> tuple[str, bytes]:
    from medrobot_llm.safety.keys import default_operator, load_operator_key

    name = default_operator()
    return name, load_operator_key(name, graph.keys_dir)


def _refused(graph: RosGraph, since: int, code: str, claimed: str) -> dict[str, Any]:
    event = graph.wait_event(lambda e: e.get("kind") == "untrusted" and e.get("code") == code, since, timeout=5)
    assert event is not None, f"no untrusted/{code} record: {[e.get('kind') for e in graph.events[since:]]}"
    assert event["claimed"] == claimed, event
    reply = graph.wait_event(lambda e: e.get("kind") == "reply" and not e.get("accepted") and code in e["message"],
                             since, timeout=5)
    assert reply is not None, "the console was not told why"
    return event


def _in_audit_log(graph: RosGraph, code: str, claimed: str) -> bool:
    path = Path(graph.info["audit_log"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if any(r.get("kind") == "untrusted" and r.get("code") == code and r.get("claimed") == claimed for r in records):
            return True
        time.sleep(0.05)
    return False


def _exposure_question(graph: RosGraph) -> str:
    reply = graph.remote.command("AP of the pelvis and take a shot")
    assert reply.accepted, reply
    status = graph.remote.wait_status(lambda s: s["state"] == "AWAITING_CONFIRMATION"
                                      and "exposure" in (s.get("question") or {}).get("text", ""), timeout=20)
    assert status is not None, graph.remote.status()
    return str(status["nonce"])


def _no_shot(graph: RosGraph, since: int) -> None:
    time.sleep(0.5)
    assert not [e for e in graph.events_of("step_sent", since) if e["skill"] == "take_shot"]
    assert graph.remote.status()["state"] == "AWAITING_CONFIRMATION", graph.remote.status()


def test_forged_confirmations_are_refused_audited_and_take_no_shot(at_rest: RosGraph) -> None:
    from medrobot_llm.backends.ros.common import TOPIC_CONFIRM
    from medrobot_llm.backends.ros.env import graph_identity

    graph = at_rest
    attacker = Attacker(graph)
    nonce = _exposure_question(graph)
    name, key = _operator_key(graph)
    since = graph.n_events()
    attacker.send(TOPIC_CONFIRM, _signed(graph.remote.graph, "mallory", b"m" * 32, "confirm", nonce))
    _refused(graph, since, "unknown_operator", "mallory")
    attacker.send(TOPIC_CONFIRM, _signed(graph.remote.graph, name, b"m" * 32, "confirm", nonce))  # the operator's name, not its key
    _refused(graph, since, "bad_signature", name)
    # the operator's own key, signed as a console that has not read this bringup's graph id does
    attacker.send(TOPIC_CONFIRM, _signed(graph_identity(graph.ros_domain_id), name, key, "confirm", nonce))
    _refused(graph, since, "other_graph", name)
    _no_shot(graph, since)
    assert _in_audit_log(graph, "unknown_operator", "mallory") and _in_audit_log(graph, "bad_signature", name)
    assert _in_audit_log(graph, "other_graph", name)
    assert graph.remote.deny().accepted


def test_a_replayed_confirmation_and_one_for_another_question_are_refused(at_rest: RosGraph) -> None:
    from medrobot_llm.backends.ros.common import TOPIC_CONFIRM, TOPIC_COMMAND

    graph = at_rest
    attacker = Attacker(graph)
    old_nonce = _exposure_question(graph)
    assert graph.remote.confirm().accepted
    genuine = attacker.last_sniffed()
    assert graph.remote.wait_status(lambda s: s["state"] == "IDLE", timeout=20), graph.remote.status()
    nonce = _exposure_question(graph)
    name, key = _operator_key(graph)
    since = graph.n_events()
    attacker.send(TOPIC_CONFIRM, genuine)
    _refused(graph, since, "replayed", name)
    attacker.send(TOPIC_CONFIRM, _signed(graph.remote.graph, name, key, "confirm", old_nonce))  # the operator's, for the old question
    _refused(graph, since, "not_open", name)
    attacker.send(TOPIC_COMMAND, _signed(graph.remote.graph, name, key, "confirm", nonce))  # a genuine confirm where commands go
    _refused(graph, since, "malformed", name)
    _no_shot(graph, since)
    assert graph.remote.deny().accepted


def test_a_yes_to_a_question_the_supervisor_did_not_ask_confirms_nothing(at_rest: RosGraph) -> None:
    """The operator's own signed yes, for the open nonce, but to a reworded question (what a console shown a
    forged state would sign) is refused as not_asked and audited; the sealed question is still there to answer."""
    from medrobot_llm.backends.ros.common import TOPIC_CONFIRM
    from medrobot_llm.safety.asked import question_digest

    graph = at_rest
    attacker = Attacker(graph)
    nonce = _exposure_question(graph)
    asked = graph.remote.status()["question"]
    assert graph.remote.status()["question_digest"] == question_digest(asked)
    name, key = _operator_key(graph)
    since = graph.n_events()
    shown = question_digest({**asked, "skill": "move_to_view", "text": "Confirm moving the gantry home"})
    attacker.send(TOPIC_CONFIRM, _signed(graph.remote.graph, name, key, "confirm", nonce, shown))
    event = _refused(graph, since, "not_asked", name)
    assert "answered a question the supervisor did not ask" in event["reason"], event
    assert _in_audit_log(graph, "not_asked", name)
    _no_shot(graph, since)
    assert graph.remote.deny().accepted


def test_only_the_operators_signed_reset_releases_a_latched_stop(at_rest: RosGraph) -> None:
    from medrobot_llm.backends.ros.common import TOPIC_RESET

    graph = at_rest
    attacker = Attacker(graph)
    assert graph.remote.stop().accepted
    nonce = graph.remote.status()["nonce"]
    since = graph.n_events()
    attacker.send(TOPIC_RESET, _signed(graph.remote.graph, "mallory", b"m" * 32, "reset", nonce))
    _refused(graph, since, "unknown_operator", "mallory")
    time.sleep(0.5)
    assert graph.remote.status()["state"] == "ESTOP"
    assert graph.robot_status()["halted"], graph.robot_status()
    reply = graph.remote.reset()
    assert reply.accepted, reply
    assert graph.wait_robot(lambda s: not s["halted"], timeout=5), graph.robot_status()
    resets = [e for e in graph.events_of("command", since) if e.get("op") == "reset"]
    assert resets and resets[-1]["source"] == f"operator:{_operator_key(graph)[0]}", resets
