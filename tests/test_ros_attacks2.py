"""Blind attacks on issue 15's graph, second round: what one graph's supervisor signs, said on another graph, and
what a console is shown.

Two X-ray graphs run on one machine, each on a ROS_DOMAIN_ID of its own, with one keys folder: what two
``medrobot bringup`` runs of one user get by default (``~/.config/medrobot/keys``). The attacker
(``tests/attackers/cross_graph.py``) holds no key; it listens on graph A and speaks on graph B. Graph A is the
test process's (``RemoteSupervisor`` as its operator), graph B is driven by its own operator process
(``tests/_second_graph.py``). What B's robot did is read from B's skill server: its audit log (each exposure is a
``hazard`` record) and its ``/medrobot/robot_status``. The attack on what a console shows needs graph A only.
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
from tests._second_graph import SecondGraph, second_graph

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

CROSS_GRAPH = "tests.attackers.cross_graph"
STATE_SPOOF = "tests.attackers.state_spoof"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RosGraph, SecondGraph]]:
    tmp = tmp_path_factory.mktemp("ros_attacks2")
    with ros_graph("xray", tmp) as a:
        assert a.keys_dir is not None
        with second_graph("xray", tmp, a.keys_dir) as b:
            yield a, b


@pytest.fixture
def own_xray(tmp_path: Path) -> Iterator[RosGraph]:
    """A graph of its own, for an attack that leaves it unusable."""
    with ros_graph("xray", tmp_path) as g:
        yield g


class Attacker:
    """The cross-graph attacker's process and the JSON lines it prints."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None


@contextmanager
def attacker(module: str, *args: str) -> Iterator[Attacker]:
    proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        rogue = Attacker(proc)
        ready = rogue.next(timeout=20.0)
        assert ready == {"ready": True}, f"the attacker did not start: {ready}"
        yield rogue
    finally:
        proc.kill()
        proc.wait(5.0)


def exposures(b: SecondGraph) -> int:
    """Exposures graph B's skill server took, from its own audit log."""
    return sum(1 for r in b.audit("skill_server_audit_log")
               if r.get("kind") == "hazard" and r.get("hazard") == "exposure" and r.get("phase") == "done")


def confirmed_shot(a: RosGraph) -> None:
    """A's operator takes one lateral of the sacrum, confirming its exposure: the normal flow on graph A."""
    reply = a.remote.command("lateral of the sacrum then take a shot")
    assert reply.accepted, reply
    assert a.remote.wait_for("AWAITING_CONFIRMATION", timeout=20), a.remote.status()
    assert a.remote.confirm().accepted
    assert a.remote.wait_status(lambda s: s["state"] == "IDLE" and "done" in s["reason"], timeout=20), \
        a.remote.status()


def test_a_capability_heard_on_another_graph_takes_no_exposure_here(pair: tuple[RosGraph, SecondGraph]) -> None:
    a, b = pair
    a.at_rest()
    b.operate("rest", "lateral of the sacrum")  # B's own operator puts B's gantry in a view, and takes no shot
    before = exposures(b)
    refused_before = sum(1 for r in b.audit("skill_server_audit_log") if r.get("kind") == "goal_refused")
    b_steps = sum(1 for r in b.audit() if r.get("kind") == "step_sent")
    with attacker(CROSS_GRAPH, "goals", str(a.ros_domain_id), str(b.ros_domain_id), "25", "take_shot") as rogue:
        relayed = None
        for _ in range(3):  # the rogue's silent server may not be discovered by A's supervisor before the first shot
            confirmed_shot(a)
            relayed = rogue.next(timeout=10.0)
            if relayed is not None:
                break
    assert relayed is not None, "the attacker never heard graph A's take_shot in 3 confirmed shots"
    assert sum(1 for r in b.audit() if r.get("kind") == "step_sent") == b_steps, "B's supervisor sent a step"
    assert exposures(b) == before, (
        f"graph B took an exposure its supervisor never sent nor asked to confirm: {relayed}")
    assert not relayed.get("success"), relayed
    refused = [r for r in b.audit("skill_server_audit_log") if r.get("kind") == "goal_refused"][refused_before:]
    assert refused and refused[-1]["skill"] == "take_shot", "B's skill server did not audit the refusal"
    assert refused[-1]["code"] == "other_graph" and "signed for another graph" in refused[-1]["reason"], refused[-1]


def test_a_reset_on_another_graph_does_not_release_this_graphs_stop(pair: tuple[RosGraph, SecondGraph]) -> None:
    a, b = pair
    a.at_rest()
    stopped = b.operate("rest", "stop")[-1]
    assert stopped["state"] == "ESTOP" and stopped["robot"]["halted"], stopped
    try:
        with attacker(CROSS_GRAPH, "beats", str(a.ros_domain_id), str(b.ros_domain_id), "15"):
            # A's operator stops and resets A: a normal flow on A, after B's stop
            assert a.remote.stop().accepted
            assert a.remote.wait_for("ESTOP", timeout=5)
            assert a.remote.reset().accepted
            assert a.remote.wait_for("IDLE", timeout=10)
            time.sleep(1.0)
            after = b.operate()[-1]
        assert after["state"] == "ESTOP", after
        assert after["robot"]["halted"], (
            f"B's robot was released while B's supervisor is latched in ESTOP: {after['robot']['supervisor']}")
    finally:
        b.operate("rest")



BENIGN = "Confirm moving the gantry home: move_to_view"


def test_the_console_shows_the_question_the_supervisor_asks(pair: tuple[RosGraph, SecondGraph]) -> None:
    a, _ = pair
    a.at_rest()
    try:
        with attacker(STATE_SPOOF, "question", str(a.ros_domain_id), "10", BENIGN):
            reply = a.remote.command("lateral of the sacrum then take a shot")
            assert reply.accepted, reply
            assert a.remote.wait_for("AWAITING_CONFIRMATION", timeout=20), a.remote.status()
            time.sleep(1.0)
            shown = []
            for _ in range(30):
                shown.append((a.remote.status().get("question") or {}).get("text", ""))
                time.sleep(0.05)
            forged = [text for text in shown if "exposure" not in text]
            assert not forged, (
                f"while the supervisor asks to confirm an exposure the console showed {forged[0]!r} "
                f"({len(forged)} of {len(shown)} looks); a yes to that is taken as a yes to the exposure")
    finally:
        a.remote.deny()
        a.at_rest()


def _exposure_records(a: RosGraph, since: int) -> list[dict[str, Any]]:
    path = Path(a.info["skill_server_audit_log"])
    lines = path.read_text(encoding="utf-8").splitlines()[since:] if path.exists() else []
    return [r for r in map(json.loads, lines) if r.get("hazard") == "exposure"]


def test_an_estop_pressed_during_an_exposure_ends_it(pair: tuple[RosGraph, SecondGraph]) -> None:
    a, _ = pair
    for _attempt in range(3):
        a.at_rest()
        path = Path(a.info["skill_server_audit_log"])
        since = len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0
        events = a.n_events()
        reply = a.remote.command("lateral of the sacrum then take a shot")
        assert reply.accepted, reply
        assert a.remote.wait_for("AWAITING_CONFIRMATION", timeout=20), a.remote.status()
        assert a.remote.confirm().accepted
        pressed = time.time()
        a.remote.stop()
        assert a.remote.wait_for("ESTOP", timeout=5)
        end = a.wait_event(lambda e: e.get("kind") == "run_end", events, timeout=10)
        assert end is not None and end["outcome"] == "estop", end
        time.sleep(1.0)
        records = _exposure_records(a, since)
        started = [r for r in records if r["phase"] == "intended"]
        done = [r for r in records if r["phase"] == "done"]
        if not started or (done and done[0]["t_wall"] < pressed):
            continue  # the stop came before the exposure began, or after it ended: this attempt says nothing
        shot = [e for e in a.events_of("step_result", events) if e["skill"] == "take_shot"]
        assert not (done and done[0]["t_wall"] > pressed), (
            f"the exposure started {pressed - started[0]['t_wall']:.3f} s before the stop and finished "
            f"{done[0]['t_wall'] - pressed:.3f} s after it; step result {shot}")
        assert not (shot and shot[0]["success"]), f"take_shot succeeded after the e-stop: {shot}"
        return
    pytest.fail("in 3 attempts the stop never landed while an exposure was under way: this machine is too fast for "
                "the race, so this run says nothing")


def test_the_operators_reset_frees_the_robot_after_a_forged_estop_state(own_xray: RosGraph) -> None:
    a = own_xray
    with attacker(STATE_SPOOF, "estop-ahead", str(a.ros_domain_id), "3", "86400") as rogue:
        assert rogue.next(timeout=5.0) == {"published": 5}
    assert a.wait_robot(lambda s: s["halted"], timeout=3), "the forged ESTOP did not even stop the robot"
    # the operator does what the console says after any stop: stop, then reset
    assert a.remote.stop().accepted
    assert a.remote.wait_for("ESTOP", timeout=5)
    time.sleep(1.5)  # the supervisor's own states overtake the forged one in the console's view
    reply = a.remote.reset()
    freed = a.wait_robot(lambda s: not s["halted"], timeout=5)
    assert reply.accepted and freed, (
        f"the operator's reset did not free the robot ({reply.message}); robot {a.robot_status().get('halt_reason')}")


def test_another_graphs_beats_keep_no_dead_supervisor_of_this_graph_alive(pair: tuple[RosGraph, SecondGraph]) -> None:
    """The neighbour of the release attack: graph B's supervisor is killed while A's beats are copied onto B. B's
    skill server must see no supervisor (and refuse every goal), never A's. It kills B's supervisor, so it runs
    after every other test of the pair."""
    from medrobot_llm.backends.ros.nodes import SUPERVISOR

    a, b = pair
    a_instance = a.robot_status()["supervisor"]["instance"]
    with attacker(CROSS_GRAPH, "beats", str(a.ros_domain_id), str(b.ros_domain_id), "12") as rogue:
        time.sleep(1.0)  # A's beats flow onto B before B's supervisor goes
        os.killpg(int(b.info["nodes"][SUPERVISOR.name]["pid"]), signal.SIGKILL)
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            line = rogue.next(timeout=0.5)
            if line is not None:
                seen.append(line)
    supervisors = [line["supervisor"] for line in seen]
    assert supervisors and not supervisors[-1]["alive"], f"B's skill server still sees a supervisor: {supervisors}"
    assert all(s.get("instance") != a_instance for s in supervisors), (
        f"graph A's supervisor ({a_instance}) was taken as B's: {supervisors}")
    dead = next(i for i, s in enumerate(supervisors) if not s["alive"])
    assert not any(s["alive"] for s in supervisors[dead:]), f"a supervisor came back on B: {supervisors}"

