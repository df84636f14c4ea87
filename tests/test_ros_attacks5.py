"""The fifth blind attack, on the e-stop, halt and start-up behaviour of the graph (docs/supervisor.md, "A halt the
robot reports"; README, "a robot that has not reported at all yet ... is refused as not ready yet"), made by
ordinary keyless rclpy nodes in processes of their own (tests/attackers/) on a ROS_DOMAIN_ID of the test's.

What it found (a keyless node's copies of the robot's reports hid a dead skill server, and made a supervisor
without one ready) failed here until the skill server signed its reports (safety.robot_status); what held is in the
report on branch attack19.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from medrobot_llm.backends.ros.nodes import SKILL_SERVER, SUPERVISOR
from tests._ros_helpers import ROOT, RosGraph, ros_graph
from tests.test_ros_estop_unheard import _supervisor_again

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

FORGE = ROOT / "tests" / "attackers" / "status_forge.py"


@contextmanager
def _forger(g: RosGraph, seconds: float, mode: str, rate_hz: float, log: Path) -> Iterator[subprocess.Popen[str]]:
    """tests/attackers/status_forge.py on the graph's domain, started and ready (it has a genuine report to copy)."""
    from medrobot_llm.backends.ros.env import child_env, ros_python

    env = child_env(g.ros_domain_id)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    with open(log, "wb") as err:
        proc = subprocess.Popen([ros_python(), str(FORGE), str(g.ros_domain_id), repr(seconds), mode, repr(rate_hz)],
                                stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT, text=True)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline() or "{}")
        assert ready.get("ready"), f"the forger found no report to copy: {ready}\n{log.read_text(errors='replace')}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10.0)


def test_a_forged_robot_status_does_not_hide_a_skill_server_that_died(tmp_path: Path) -> None:
    """A keyless node re-publishes the last report of a skill server that then dies: unsigned, those copies hid
    the death (skill_server true, the next command accepted as 'running', waiting for a goal nobody serves)."""
    with ros_graph("xray", tmp_path, options=["--on-node-exit", "keep"]) as g:
        g.at_rest()
        with _forger(g, 30.0, "alive", 20.0, tmp_path / "forger.log"):
            os.killpg(g.pid(SKILL_SERVER.name), signal.SIGKILL)
            time.sleep(3.0)  # three times the supervisor's heartbeat_timeout_s: the skill server is long silent
            assert not g.remote.status().get("skill_server"), g.remote.status()
            reply = g.remote.command("move to AP chest view", timeout=20.0)
            assert not reply.accepted, (reply, g.remote.status())
            assert g.remote.wait_for("FAULT", timeout=5.0), g.remote.status()


def test_a_forged_first_report_does_not_make_a_supervisor_without_a_skill_server_ready(tmp_path: Path) -> None:
    """A supervisor that has heard no skill server must not take a keyless node's copy for the robot's first
    report: unsigned, the command that must be refused as 'not ready yet' was validated against the copied world,
    accepted as 'running' and sent to no skill server."""
    with ros_graph("xray", tmp_path, options=["--on-node-exit", "keep"]) as g:
        g.at_rest()
        first = g.remote.status()["session"]
        with _forger(g, 90.0, "alive", 20.0, tmp_path / "forger.log"):
            os.killpg(g.pid(SKILL_SERVER.name), signal.SIGKILL)
            os.killpg(g.pid(SUPERVISOR.name), signal.SIGKILL)
            with _supervisor_again(g, tmp_path) as (proc, _audit):
                fresh = g.remote.wait_status(lambda s: s["session"] != first and bool(s.get("planner")), timeout=60)
                assert fresh is not None, g.remote.status()
                # the attacker publishes on: once discovery matched it with the new supervisor, a supervisor that
                # takes its copies for the robot's report shows their world (one that does not stays without)
                g.remote.wait_status(lambda s: bool(s.get("world")), timeout=10.0)
                reply = g.remote.command("move to AP chest view", timeout=20.0)
                assert not reply.accepted and "not ready" in reply.message, (reply, g.remote.status())
                assert g.remote.status()["state"] == "IDLE", g.remote.status()
                assert proc.poll() is None, "the restarted supervisor died"
