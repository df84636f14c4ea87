"""Trials of tests/attackers/estop_flood.py against a graph of its own: two keyless nodes flood ``false`` on
/medrobot/estop while a stop-only client presses once; each trial reports when the robot and the supervisor
took the press (from /medrobot/robot_status and the supervisor's audit log, both on this machine's monotonic clock).

    python -m tests.attackers.estop_flood_trials TRIALS   (ROS environment sourced)

Prints one JSON line per trial: robot_halted_after_s (first halted report after the press), supervisor_latch_after_s
(its first estop record), supervisor_heard (a ``stop`` record: it heard the press itself, not only the robot's
report), state_1_5s (the supervisor's state 1.5 s after the press).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests._ros_helpers import ROOT, ros_graph

FLOOD = ROOT / "tests" / "attackers" / "estop_flood.py"


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(trials: int) -> None:
    from medrobot_llm.backends.ros.env import child_env, ros_python

    with tempfile.TemporaryDirectory() as tmp, ros_graph("xray", Path(tmp)) as g:
        env = child_env(g.ros_domain_id)
        env["PYTHONPATH"] = str(ROOT)
        audit = Path(g.info["audit_log"])
        dom = str(g.ros_domain_id)
        for trial in range(trials):
            g.at_rest()
            time.sleep(1.0)
            n0, k0 = len(_records(audit)), len(g.status_log)
            floods = [subprocess.Popen([ros_python(), str(FLOOD), "flood", dom, "6"], stdout=subprocess.PIPE,
                                       text=True, env=env, cwd=ROOT) for _ in range(2)]
            for f in floods:
                assert f.stdout is not None
                f.stdout.readline()
            time.sleep(0.5)
            press = subprocess.Popen([ros_python(), str(FLOOD), "press", dom, "8"], stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=ROOT)
            assert press.stdout is not None
            pressed = json.loads(press.stdout.readline())
            time.sleep(1.5)
            state_1_5s = g.remote.status()["state"]
            for f in floods:
                f.wait(30)
            press.wait(30)
            recs = _records(audit)[n0:]
            with g.lock:
                halted = [s for s in g.status_log[k0:] if s.get("halted")]
            latch = next((r for r in recs if r["kind"] == "estop"), None)
            print(json.dumps({
                "trial": trial, "state_1_5s": state_1_5s,
                "robot_halted_after_s": round(halted[0]["_rx"] - pressed["mono"], 3) if halted else None,
                "supervisor_latch_after_s": round(latch["t_mono"] - pressed["mono"], 3) if latch else None,
                "supervisor_heard": any(r["kind"] == "command" and r.get("op") == "stop" for r in recs),
                "latch_reason": latch and latch["reason"]}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
