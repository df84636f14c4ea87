"""Blind attacks on issue 15's graph, third round: the first two rounds' fixes and their neighbours.

Each test here is a real problem, marked ``xfail(strict=True)``: it passes (XPASS, and fails the run) once the
problem is fixed, so the mark must then go.

Two graphs on the SAME ROS_DOMAIN_ID that cannot hear each other stand for two operating rooms on two networks
that both keep one domain id (0 is everyone's default) and one keys folder (a home directory copied to both, or
one user's): here graph B runs in a network namespace of its own (``unshare -n``), the attacker's halves are
``tests/attackers/netns_relay.py`` and ``tests/attackers/pipe.py``, one per namespace, piped together.
"""

from __future__ import annotations

import json
import os
import queue
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

from tests._ros_helpers import ROOT, RosGraph, ros_graph

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
    """``medrobot bringup`` of graph B, in a network namespace of its own, on graph A's ROS_DOMAIN_ID and keys."""
    assert a.keys_dir is not None
    bringup = [sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", "--json",
               "--ros-domain-id", str(a.ros_domain_id), "--log-dir", str(tmp / "bringup-netns"),
               "--keys", str(a.keys_dir), "--real-time-factor", "0.0"]
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
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                pass
        for node in info.get("nodes", {}).values() if "info" in locals() else []:
            try:
                os.killpg(int(node["pid"]), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _stop(proc)


@pytest.fixture
def xray(tmp_path: Path) -> Iterator[RosGraph]:
    with ros_graph("xray", tmp_path) as g:
        yield g


@pytest.mark.xfail(strict=True, reason="the graph key is derived from the ROS domain id alone, so two graphs "
                   "on one domain id that cannot hear each other (two rooms, two networks, one keys folder) share "
                   "every key: graph A's relayed heartbeats keep graph B's killed supervisor alive")
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


@pytest.mark.xfail(strict=True, reason="the graph key is derived from the ROS domain id alone, so a take_shot "
                   "capability that graph A's supervisor minted, relayed to graph B on the same domain id (another "
                   "network, one keys folder), is admitted by B's skill server: an exposure B never asked for")
def test_a_capability_from_an_isolated_graph_on_the_same_domain_id_takes_no_exposure(
        xray: RosGraph, tmp_path: Path) -> None:
    a = xray
    assert a.keys_dir is not None
    with isolated_graph(a, tmp_path) as b:
        env = dict(os.environ, ROS_DOMAIN_ID=str(a.ros_domain_id), MEDROBOT_KEYS=str(a.keys_dir))
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


@pytest.mark.xfail(strict=False, reason="(not strict: whether the relayed yes reaches B while B's question is open is a race, and a CI run saw it miss) question seals are bound to the operator, the session and the nonce, but "
                   "not to the graph: graph B's sealed exposure question relayed onto graph A (same domain id, "
                   "another network, one keys folder) is shown by A's console, and A's operator's yes, refused on A, "
                   "relayed to B takes B's exposure")
def test_an_operator_on_one_graph_cannot_be_made_to_confirm_another_graphs_exposure(
        xray: RosGraph, tmp_path: Path) -> None:
    a = xray
    assert a.keys_dir is not None
    a.at_rest()
    d = str(a.ros_domain_id)
    procs: list[subprocess.Popen[Any]] = []

    def start(argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        p = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    with isolated_graph(a, tmp_path) as b:
        env = dict(os.environ, ROS_DOMAIN_ID=d, MEDROBOT_KEYS=str(a.keys_dir))
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
            shown = None
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline and shown is None:
                q = a.remote.status().get("question") or {}
                if "exposure" in (q.get("text") or ""):
                    shown = q
                time.sleep(0.05)
            # the operator says yes while the question shows, again if nothing happened
            deadline = time.monotonic() + 12.0
            while shown is not None and time.monotonic() < deadline and _exposures(b) == before:
                if "exposure" in ((a.remote.status().get("question") or {}).get("text") or ""):
                    a.remote.confirm()
                time.sleep(0.2)
        finally:
            for p in procs:
                _stop(p)
        after = _exposures(b)
    assert after == before, (
        f"A's console showed graph B's question {shown and shown['text']!r}, and A's operator's yes took "
        f"{after - before} exposure(s) on graph B")
