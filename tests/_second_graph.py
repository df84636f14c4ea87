"""A second ``medrobot bringup`` graph next to the one ``_ros_helpers.ros_graph`` gives a test, and its operator.

The test process's rclpy already lives on the first graph's ROS domain, so the second graph's operator runs in a
process of its own: ``python -m tests._second_graph DOMAIN_ID WORD...`` with ``$MEDROBOT_KEYS`` set, where each
WORD is ``stop``, ``reset``, ``rest`` (reset a latched or faulted supervisor, cancel a busy one) or a command
(waited for to end). It prints one JSON line per word, then ``{"state", "world", "robot"}``: the supervisor's
state and world and the skill server's last ``/medrobot/robot_status``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests._ros_helpers import ROOT, stop_bringup


@dataclass
class SecondGraph:
    ros_domain_id: int
    keys_dir: Path
    info: dict[str, Any]

    def operate(self, *words: str, timeout: float = 90.0) -> list[dict[str, Any]]:
        """Run the operator process on this graph; its JSON lines."""
        env = dict(os.environ, ROS_DOMAIN_ID=str(self.ros_domain_id), MEDROBOT_KEYS=str(self.keys_dir))
        out = subprocess.run([sys.executable, "-m", "tests._second_graph", str(self.ros_domain_id), *words],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        assert lines and "state" in lines[-1], f"graph B's operator failed: {out.stdout}\n{out.stderr[-2000:]}"
        return lines

    def audit(self, which: str = "audit_log") -> list[dict[str, Any]]:
        path = Path(self.info[which])
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextmanager
def second_graph(domain: str, tmp: Path, keys_dir: Path) -> Iterator[SecondGraph]:
    """``medrobot bringup`` of ``domain`` on a ROS_DOMAIN_ID of its own, with the keys folder ``keys_dir``."""
    from medrobot_llm.backends.ros.env import unique_domain_id

    claim = unique_domain_id()
    argv = [sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", domain, "--json",
            "--ros-domain-id", str(claim.domain_id), "--log-dir", str(tmp / f"bringup-b-{domain}"),
            "--keys", str(keys_dir), "--real-time-factor", "0.0",
            "--on-node-exit", "keep"]  # a test kills B's supervisor to see what its skill server does
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, cwd=ROOT)
    pids = [proc.pid]
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"graph B did not start: {proc.stderr.read().decode() if proc.stderr else ''}"
        info = json.loads(line)
        pids += [int(n["pid"]) for n in info["nodes"].values()]
        graph = SecondGraph(claim.domain_id, keys_dir, info)
        graph.operate()  # waits for its supervisor to be ready
        yield graph
    finally:
        stop_bringup(proc, pids)
        claim.release()


def _operate(words: list[str]) -> None:
    from std_msgs.msg import String

    from medrobot_llm.backends.ros.common import TOPIC_ROBOT_STATUS, reliable_qos
    from medrobot_llm.backends.ros.remote import RemoteSupervisor
    from medrobot_llm.safety.keys import default_operator

    remote = RemoteSupervisor(f"medrobot_operator_b_{os.getpid()}", operator=default_operator())
    robot: list[dict[str, Any]] = []
    remote.node.create_subscription(String, TOPIC_ROBOT_STATUS, lambda m: robot.append(json.loads(m.data)),
                                    reliable_qos(50))
    try:
        assert remote.wait_ready(timeout=40.0), "graph B's supervisor is not ready"
        for word in words:
            state = remote.status()["state"]
            if word == "rest":
                reply = remote.reset() if state in ("ESTOP", "FAULT") else remote.cancel()
                remote.wait_for("IDLE", timeout=10)
            elif word == "stop":
                reply = remote.stop()
                remote.wait_for("ESTOP", timeout=5)
            elif word == "reset":
                reply = remote.reset()
            else:
                reply = remote.command(word)
                remote.wait_for("IDLE", timeout=30)
            print(json.dumps({"word": word, "accepted": reply.accepted, "message": reply.message}), flush=True)
        n = len(robot)
        # the robot's 20 Hz status needs discovery first: on a loaded CI machine that took over 3 s, and the test
        # then judged a robot it had not heard from (still fails if none comes)
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and len(robot) <= n:
            time.sleep(0.02)
        # a status already in flight when the stop or reset was acted on says the old latch: give the robot's own
        # report up to 5 s to follow (the test still fails if it never does)
        settles = {"stop": True, "rest": False, "reset": False}.get(words[-1]) if words else None
        deadline = time.monotonic() + 5.0
        while settles is not None and time.monotonic() < deadline and bool((robot or [{}])[-1].get("halted")) != settles:
            time.sleep(0.02)
        status = remote.status()
        print(json.dumps({"state": status["state"], "world": status["world"], "robot": robot[-1] if robot else None}),
              flush=True)
    finally:
        remote.close()


if __name__ == "__main__":
    _operate(sys.argv[2:])
