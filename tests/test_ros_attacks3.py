"""Blind attacks on issue 15's graph, third round: the first two rounds' fixes and their neighbours.

Two graphs on the SAME ROS_DOMAIN_ID that cannot hear each other stand for two operating rooms on two networks
that both keep one domain id (0 is everyone's default) and one keys folder (a home directory copied to both):
here graph B runs in a network namespace of its own (``unshare -n``) with a copy of graph A's keys folder (the
same folder is refused: one running bringup per keys folder and domain id), and the attacker's halves are
``tests/attackers/netns_relay.py`` and ``tests/attackers/pipe.py``, one per namespace, piped together. Each
bringup draws a graph id of its own (``safety.graph_id``), so nothing one graph signs or seals passes on the other.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests._ros_helpers import ROOT, RosGraph, ros_graph, stop_bringup

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

RELAY = "tests.attackers.netns_relay"


class Lines:
    """The JSON lines a process prints, as they come."""

    def __init__(self, stream: Any) -> None:
        self.q: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stream = stream
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stream:
            if line.startswith("{"):
                self.q.put(json.loads(line))

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None


def _stop(proc: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(5.0)


def _in_b(b: dict[str, Any], *argv: str) -> list[str]:
    """argv of a process that runs in graph B's network namespace."""
    return ["nsenter", "-t", str(b["_pid"]), "-n", "--", sys.executable, "-m", *argv]


@contextmanager
def isolated_graph(a: RosGraph, tmp: Path) -> Iterator[dict[str, Any]]:
    """``medrobot bringup`` of graph B, in a network namespace of its own, on graph A's ROS_DOMAIN_ID, with a copy
    of A's keys folder (A's graph id file included, as a copied home directory has it: nobody holds the copy)."""
    assert a.keys_dir is not None
    keys_b = tmp / "keys-b"
    shutil.copytree(a.keys_dir, keys_b)
    bringup = [sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", "--json",
               "--ros-domain-id", str(a.ros_domain_id), "--log-dir", str(tmp / "bringup-netns"),
               "--keys", str(keys_b), "--real-time-factor", "0.0",
               "--on-node-exit", "keep"]  # a test kills B's supervisor to see what its skill server does
    argv = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *bringup]
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"graph B did not start: {proc.stderr.read().decode() if proc.stderr else ''}"
        info = json.loads(line)
        info["_pid"] = proc.pid
        assert info["graph_id"] and info["graph_id"] != json.loads(
            (a.keys_dir / f"graph-{a.ros_domain_id}.json").read_text(encoding="utf-8"))["graph_id"], info
        yield info
    finally:
        nodes = info.get("nodes", {}).values() if "info" in locals() else []
        stop_bringup(proc, [proc.pid, *(int(node["pid"]) for node in nodes)])


@pytest.fixture
def xray(tmp_path: Path) -> Iterator[RosGraph]:
    with ros_graph("xray", tmp_path) as g:
        yield g


def test_beats_from_an_isolated_graph_on_the_same_domain_id_keep_no_dead_supervisor_alive(
        xray: RosGraph, tmp_path: Path) -> None:
    from medrobot_llm.backends.ros.nodes import SUPERVISOR

    a = xray
    up = a.wait_robot(lambda s: bool(s.get("supervisor", {}).get("alive")), timeout=10)
    assert up, f"graph A's skill server never saw its supervisor: {a.robot_status()}"
    a_instance = up["supervisor"]["instance"]
    with isolated_graph(a, tmp_path) as b:
        mouth = subprocess.Popen(_in_b(b, RELAY, "speak", str(a.ros_domain_id)), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, start_new_session=True)
        ear = None
        try:
            b_lines = Lines(mouth.stdout)
            assert b_lines.next(timeout=20.0) == {"ready": True}
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 40.0
            while time.monotonic() < deadline and not (seen and seen[-1]["supervisor"].get("alive")):
                line = b_lines.next(timeout=0.5)
                if line is not None:
                    seen.append(line)
            assert seen and seen[-1]["supervisor"].get("alive"), f"graph B's supervisor never came up: {seen}"
            b_instance = seen[-1]["supervisor"]["instance"]
            assert b_instance != a_instance, "graph B hears graph A: the namespaces do not isolate them"
            ear = subprocess.Popen([sys.executable, "-m", RELAY, "listen", str(a.ros_domain_id)],
                                   stdout=mouth.stdin, stderr=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)
            time.sleep(2.0)  # A's beats flow onto B before B's supervisor goes
            os.killpg(int(b["nodes"][SUPERVISOR.name]["pid"]), signal.SIGKILL)
            after: list[dict[str, Any]] = []
            deadline = time.monotonic() + 6.0
            while time.monotonic() < deadline:
                line = b_lines.next(timeout=0.5)
                if line is not None:
                    after.append(line)
        finally:
            if ear is not None:
                _stop(ear)
            _stop(mouth)
    supervisors = [line["supervisor"] for line in after]
    assert all(s.get("instance") != a_instance for s in supervisors), (
        f"graph A's supervisor ({a_instance}) was taken as graph B's after B's ({b_instance}) was killed: "
        f"{supervisors}")
    assert supervisors and not supervisors[-1]["alive"], f"B's skill server still sees a supervisor: {supervisors}"


def _exposures(b: dict[str, Any]) -> int:
    path = Path(b["skill_server_audit_log"])
    records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()] \
        if path.exists() else []
    return sum(1 for r in records if r.get("hazard") == "exposure" and r.get("phase") == "done")


def test_a_capability_from_an_isolated_graph_on_the_same_domain_id_takes_no_exposure(
        xray: RosGraph, tmp_path: Path) -> None:
    a = xray
    assert a.keys_dir is not None
    with isolated_graph(a, tmp_path) as b:
        env = dict(os.environ, ROS_DOMAIN_ID=str(a.ros_domain_id), MEDROBOT_KEYS=b["keys_dir"])
        # B's own operator puts B's gantry in a view, and takes no shot
        op = subprocess.run(_in_b(b, "tests._second_graph", str(a.ros_domain_id), "rest",
                                  "lateral of the sacrum"), env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=90, check=False)
        assert '"state": "IDLE"' in op.stdout, f"graph B's operator failed: {op.stdout}\n{op.stderr[-1500:]}"
        before = _exposures(b)
        mouth = subprocess.Popen(_in_b(b, RELAY, "send-goals", str(a.ros_domain_id)), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                                 start_new_session=True)
        ear = None
        try:
            out = Lines(mouth.stdout)
            assert out.next(timeout=25.0) == {"ready": True}, "no skill server on graph B"
            ear = subprocess.Popen([sys.executable, "-m", RELAY, "hear-goals", str(a.ros_domain_id), "take_shot"],
                                   stdout=mouth.stdin, stderr=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)
            time.sleep(3.0)  # the ear's server is discovered by A's supervisor
            reply = a.remote.command("lateral of the sacrum then take a shot")
            assert reply.accepted, reply
            assert a.remote.wait_for("AWAITING_CONFIRMATION", timeout=20), a.remote.status()
            assert a.remote.confirm().accepted
            assert a.remote.wait_status(lambda s: s["state"] == "IDLE", timeout=20), a.remote.status()
            relayed = out.next(timeout=15.0)
        finally:
            if ear is not None:
                _stop(ear)
            _stop(mouth)
        time.sleep(0.5)
        after = _exposures(b)
    assert relayed is not None, "the attacker never relayed graph A's take_shot"
    assert after == before and not relayed.get("success"), (
        f"graph B took {after - before} exposure(s) its supervisor never sent nor asked to confirm: {relayed}")
    assert "signed for another graph" in (relayed.get("message") or ""), relayed  # refused for the right reason


def test_a_second_bringup_on_a_running_graphs_keys_folder_and_domain_id_is_refused(xray: RosGraph,
                                                                                   tmp_path: Path) -> None:
    """It would draw another graph id and replace the running graph's under its consoles."""
    a = xray
    assert a.keys_dir is not None
    out = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", "--json",
                          "--ros-domain-id", str(a.ros_domain_id), "--keys", str(a.keys_dir),
                          "--log-dir", str(tmp_path / "bringup-second")],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert out.returncode != 0 and not out.stdout, out.stdout
    assert f"pid {a.bringup.pid}" in out.stderr and "--ros-domain-id" in out.stderr and "--keys" in out.stderr, \
        out.stderr
    assert not (tmp_path / "bringup-second").exists()
    a.at_rest()  # graph A runs on, undisturbed


@pytest.mark.parametrize("qos", [
    pytest.param(("reliable", "transient_local"), id="as-the-README-says"),
    pytest.param(("reliable", "volatile"), id="volatile"),  # a plain rclpy publisher's default
    pytest.param(("best_effort", "volatile"), id="best-effort"),  # sensor-data QoS, a wireless pendant
])
def test_a_press_from_any_node_halts_the_robot(xray: RosGraph, qos: tuple[str, str]) -> None:
    a = xray
    a.at_rest()
    proc = subprocess.run([sys.executable, "-m", "tests.attackers.estop_qos", str(a.ros_domain_id), *qos],
                          capture_output=True, text=True, cwd=ROOT, timeout=30, check=False)
    assert '"pressed": true' in proc.stdout, proc.stdout + proc.stderr[-1500:]
    halted = a.wait_robot(lambda s: s["halted"], timeout=3)
    assert halted, (f"a press with {qos} QoS reached {json.loads(proc.stdout)['subscribers']} subscription(s); "
                    f"the robot did not halt and the supervisor is {a.remote.status()['state']}")


PIPE = "tests.attackers.pipe"


def test_an_operator_on_one_graph_cannot_be_made_to_confirm_another_graphs_exposure(
        xray: RosGraph, tmp_path: Path) -> None:
    """Graph B's sealed exposure question, relayed onto graph A, is never shown by A's console (the seal binds B's
    graph); and the yes A's console would sign for it (A's operator key, B's nonce and question), relayed to B, is
    refused there (the MAC binds A's graph) and audited, with no exposure. Both halves are checked directly, not
    through whether a relayed yes happens to reach B while its question is open."""
    from medrobot_interfaces.msg import OperatorMessage as OperatorMsg
    from medrobot_interfaces.msg import SupervisorState as StateMsg

    from medrobot_llm.backends.ros.common import TOPIC_CONFIRM, TOPIC_STATE, latched_qos, reliable_qos
    from medrobot_llm.backends.ros.signed import operator_msg
    from medrobot_llm.safety.asked import question_digest
    from medrobot_llm.safety.events import QuestionEvent
    from medrobot_llm.safety.keys import default_operator, load_operator_key
    from medrobot_llm.safety.operator import OperatorKind, OperatorSigner

    a = xray
    assert a.keys_dir is not None
    a.at_rest()
    d = str(a.ros_domain_id)
    a_session = a.remote.status()["session"]
    relayed_states: list[Any] = []
    a.remote.node.create_subscription(
        StateMsg, TOPIC_STATE, lambda m: relayed_states.append(m) if m.session != a_session else None, latched_qos(1))
    shown: list[str] = []
    a.remote.subscribe(lambda e: shown.append(e.text) if isinstance(e, QuestionEvent) else None)
    yes = a.remote.node.create_publisher(OperatorMsg, TOPIC_CONFIRM, reliable_qos(10))
    operator = default_operator()
    # what A's console signs: A's operator key, for A's graph
    signer = OperatorSigner(operator, load_operator_key(operator, a.keys_dir), graph=a.remote.graph)
    procs: list[subprocess.Popen[Any]] = []

    def start(argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        p = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    def b_refusals() -> list[dict[str, Any]]:
        path = Path(b["audit_log"])
        records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()] \
            if path.exists() else []
        return [r for r in records if r.get("kind") == "untrusted" and r.get("claimed") == operator
                and r.get("topic") == TOPIC_CONFIRM]

    with isolated_graph(a, tmp_path) as b:
        env = dict(os.environ, ROS_DOMAIN_ID=d, MEDROBOT_KEYS=b["keys_dir"])
        try:
            op = subprocess.run(_in_b(b, "tests._second_graph", d, "rest", "AP of the pelvis"), env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=90, check=False)
            assert '"state": "IDLE"' in op.stdout, f"graph B's operator failed: {op.stdout}\n{op.stderr[-1500:]}"
            before = _exposures(b)
            # B's states and events onto A, A's confirmations onto B
            a_events = start([sys.executable, "-m", PIPE, "in", d, "string", "/medrobot/events"],
                             stdin=subprocess.PIPE, text=True)
            start(_in_b(b, PIPE, "out", d, "string", "/medrobot/events"), stdout=a_events.stdin)
            a_state = start([sys.executable, "-m", PIPE, "in", d, "state", "/medrobot/state"], stdin=subprocess.PIPE,
                            text=True)
            start(_in_b(b, PIPE, "out", d, "state", "/medrobot/state"), stdout=a_state.stdin)
            b_confirm = start(_in_b(b, PIPE, "in", d, "operator", "/medrobot/confirm"), stdin=subprocess.PIPE,
                              text=True)
            start([sys.executable, "-m", PIPE, "out", d, "operator", "/medrobot/confirm"], stdout=b_confirm.stdin)
            time.sleep(2.0)
            # B's own operator asks for a shot on B and waits (B's question stays open)
            start(_in_b(b, "tests._second_graph", d, "take a shot"), env=env, stdout=subprocess.DEVNULL)
            asked = None
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline and asked is None:
                for m in list(relayed_states):
                    q = json.loads(m.status_json or "{}").get("question") or {}
                    if "exposure" in (q.get("text") or ""):
                        asked = (m, q)
                time.sleep(0.05)
            assert asked is not None, "the attacker never relayed graph B's exposure question onto graph A"
            # the relay keeps B's question coming onto A for as long as it is open: A's console shows none of it
            seen = []
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                seen.append((a.remote.status().get("question") or {}).get("text"))
                time.sleep(0.05)
            assert not [t for t in seen if t] and not shown, (
                f"A's console showed graph B's question: {[t for t in seen if t] or shown}")
            # the yes A's console would have signed, had it shown B's question: sent on A until B audits its refusal
            msg, question = asked
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline and not b_refusals() and _exposures(b) == before:
                yes.publish(operator_msg(signer.sign(OperatorKind.CONFIRM, msg.nonce, question_digest(question))))
                time.sleep(0.3)
            time.sleep(0.5)
        finally:
            for p in procs:
                _stop(p)
        after = _exposures(b)
        refusals = b_refusals()
    assert after == before, f"A's operator's yes, relayed, took {after - before} exposure(s) on graph B"
    assert refusals and refusals[0]["code"] == "bad_signature", (
        f"graph B did not refuse A's relayed yes for its signature (signed for graph A): {refusals}")
