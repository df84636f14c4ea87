"""A press on ``/medrobot/estop`` that the skill server heard and the supervisor did not (issue 15: it came before
discovery matched the supervisor, or was lost) must still end in ESTOP: the robot's ``/medrobot/robot_status`` says
it is halted, the supervisor latches on that report, the console is told why, and the operator's signed reset alone
releases the robot.

The press the supervisor cannot hear is made the way it happens: while no supervisor listens. The graph runs with
``--on-node-exit keep``; its supervisor is killed, a rogue process (tests/attackers/rogue.py) presses the e-stop
with an ordinary volatile publisher and exits, so its press is in no history a late joiner could read; then the
supervisor is started again exactly as bringup starts it (``Graph.command``). Everything runs in processes of its own,
on a ROS_DOMAIN_ID of the test's (``ros_graph``).
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
from typing import Any

import pytest

from medrobot_llm.backends.ros.nodes import SUPERVISOR
from medrobot_llm.safety.machine import ROBOT_HALT
from tests._ros_helpers import ROOT, RosGraph, ros_graph

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

ATTACKER = ROOT / "tests" / "attackers" / "rogue.py"
PRESS = "e-stop on /medrobot/estop"  # what the skill server says of a press on the e-stop topic


def _press_while_nobody_supervises(g: RosGraph, log: Path) -> list[dict[str, Any]]:
    """A rogue process presses the e-stop and exits (it waits for no supervisor: there is none). It presses a few
    times, a second apart: its publisher counts the dead supervisor's subscriptions as matched until discovery
    drops them, so a first press can go out before the skill server's subscription matched it, and be lost."""
    from medrobot_llm.backends.ros.env import child_env, ros_python

    env = child_env(g.ros_domain_id)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    press = [{"do": "bool", "topic": "TOPIC_ESTOP", "data": True}, {"do": "sleep", "seconds": 1.0}]
    spec = {"await_state": False, "actions": press * 5}
    with open(log, "wb") as err:
        done = subprocess.run([ros_python(), str(ATTACKER), json.dumps(spec)], stdout=subprocess.PIPE, stderr=err,
                              env=env, cwd=ROOT, text=True, timeout=90, check=False)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = next((line["results"] for line in lines if "results" in line), None)
    assert results is not None, f"the rogue made no press: {done.stdout}\n{log.read_text(errors='replace')[-2000:]}"
    assert all("error" not in r for r in results), results
    return list(results)


@contextmanager
def _supervisor_again(g: RosGraph, folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The graph's supervisor started again as bringup starts it, with an audit log of its own; killed after."""
    from medrobot_llm.cli.bringup import Graph

    audit = folder / "audit-restarted.jsonl"
    graph = Graph(g.domain, params_file=Path(g.info["params_file"]), ros_domain_id=g.ros_domain_id, log_dir=folder,
                  keys_dir=g.keys_dir, overrides={SUPERVISOR.name: {"audit_log": str(audit)}})
    graph.graph_id = g.info["graph_id"]
    log_path = folder / "supervisor-restarted.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(graph.command(SUPERVISOR.name), env=graph.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    try:
        yield proc, audit
    finally:
        for sig in (signal.SIGINT, signal.SIGKILL):
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(10.0)
                except subprocess.TimeoutExpired:
                    pass


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def test_a_press_only_the_skill_server_heard_latches_estop_from_the_robots_report_until_the_operators_reset(
        tmp_path: Path) -> None:
    with ros_graph("xray", tmp_path, options=["--on-node-exit", "keep"]) as g:
        g.at_rest()
        first = g.remote.status()["session"]
        os.killpg(g.pid(SUPERVISOR.name), signal.SIGKILL)
        dead = g.wait_robot(lambda s: not s["supervisor"]["alive"], timeout=10)
        assert dead is not None and not dead["halted"], g.robot_status()  # no supervisor: goals refused, no latch

        _press_while_nobody_supervises(g, tmp_path / "rogue.log")
        halted = g.wait_robot(lambda s: s["halted"], timeout=5)
        assert halted is not None and halted["halt_reason"] == PRESS, g.robot_status()

        with _supervisor_again(g, tmp_path) as (proc, audit):
            latched = g.remote.wait_status(lambda s: s["session"] != first and s["state"] == "ESTOP", timeout=60)
            assert latched is not None, (f"the supervisor did not latch over the halted robot: {g.remote.status()}\n"
                                         f"{(tmp_path / 'supervisor-restarted.log').read_text(errors='replace')[-2000:]}")
            # the console is told on /medrobot/state, which a console joining late gets too (the records on
            # /medrobot/events go to whoever matched the restarted supervisor by then, and it latches at once)
            assert latched["reason"] == f"{ROBOT_HALT} while IDLE: {PRESS}", latched
            assert latched["estop_latched"] and latched["halted"], latched
            # the supervisor never heard the press: it latched on the robot's report alone, once
            records = _records(audit)
            assert [(r["reason"], r.get("source")) for r in records if r["kind"] == "estop"] == \
                [(latched["reason"], "robot")], records
            assert not [r for r in records if r["kind"] == "command"], records

            assert g.robot_status()["halted"], g.robot_status()
            reply = g.remote.reset()
            assert reply.accepted and reply.state.value == "IDLE", (reply, g.remote.status())
            freed = g.wait_robot(lambda s: not s["halted"] and s["supervisor"]["alive"], timeout=5)
            assert freed is not None, g.robot_status()
            time.sleep(2.0)  # past the window after a reset in which an old halted report is not taken for news
            assert g.remote.status()["state"] == "IDLE", g.remote.status()
            assert not g.robot_status()["halted"], g.robot_status()
            changes = [(r["from"], r["to"], r.get("cause")) for r in _records(audit) if r["kind"] == "state"]
            assert changes == [("IDLE", "ESTOP", "robot"), ("ESTOP", "RECOVERING", None),
                               ("RECOVERING", "IDLE", None)], changes
            assert proc.poll() is None, "the restarted supervisor died"
