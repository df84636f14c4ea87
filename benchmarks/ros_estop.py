#!/usr/bin/env python3
"""/medrobot/estop publish -> robot halted in the sim, over real DDS (target p99 <= 20 ms).

    bash -c 'source ros_ws/install/medrobot_env.sh && python benchmarks/ros_estop.py [--trials 30] [--load 2]'

A skill server process runs the X-ray scene in real time; the supervisor node runs in this process.
Each trial: the supervisor starts ``move_to_view`` (a long gantry move), and 0.2-0.4 s into the motion
this process publishes ``true`` on ``/medrobot/estop``. "Halted" is the moment the skill server's e-stop
subscriber has halted the scene (halt latched and every actuator commanded to hold, on the skill
server's monotonic clock, which is this machine's). Also printed: publish -> this process receiving
the skill server's status that says halted (a round trip, an upper bound). Then reset, next trial.

``--load N`` starts N busy-loop processes for the run (one per core saturates the machine) and stops them
after: the target holds with the cores busy, not only on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@contextmanager
def busy_loops(n: int) -> Iterator[None]:
    """``n`` processes that each keep a core busy (at the default priority) until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="busy-loop processes to run during the trials (default 0; one per core saturates it)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.load < 0:
        ap.error("--load must be >= 0")
    import rclpy
    from std_msgs.msg import Bool, String

    from medrobot_llm.core.plan import Plan, PlanStatus, Step
    from medrobot_llm.backends.ros.bench import percentiles, supervised_skill_server
    from medrobot_llm.backends.ros.common import TOPIC_ESTOP, TOPIC_ROBOT_STATUS, latched_qos, reliable_qos

    log = Path(tempfile.gettempdir()) / "medrobot_bench_estop_server.log"
    one_way: list[float] = []
    round_trip: list[float] = []
    rng = random.Random(1)
    anatomy = ["pelvis", "chest", "skull", "sacrum"]
    with supervised_skill_server("xray", 1.0, log) as supervised, busy_loops(a.load):
        node = supervised.node
        # the e-stop comes from a node of its own (anyone may stop): the supervisor ignores what its own
        # publishers say on the e-stop topic (its echo). The reset is the supervisor's own, in this process:
        # what is timed is the stop, and a release comes only through the supervisor (its signed heartbeat)
        operator = rclpy.create_node("medrobot_bench_operator")
        estop = operator.create_publisher(Bool, TOPIC_ESTOP, latched_qos(5))
        deadline = time.monotonic() + 10
        while estop.get_subscription_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        cond = threading.Condition()
        last: dict[str, Any] = {}

        def on_status(msg: String) -> None:
            obj = json.loads(msg.data)
            obj["_rx"] = time.monotonic()
            with cond:
                last.clear()
                last.update(obj)
                cond.notify_all()

        node.create_subscription(String, TOPIC_ROBOT_STATUS, on_status, reliable_qos(5))
        for i in range(a.trials):
            plan = Plan(status=PlanStatus.OK, domain="xray",
                        steps=[Step(skill="move_to_view", args={"anatomy": anatomy[i % 4], "view": "lateral"})])
            reply = node.sup.submit_plan(plan)
            if not reply.accepted:
                raise SystemExit(f"plan refused: {reply.message}")
            with cond:
                if not cond.wait_for(lambda: bool(last.get("busy")), 10):
                    raise SystemExit("the move did not start")
            time.sleep(rng.uniform(0.2, 0.4))
            t0 = time.monotonic()
            estop.publish(Bool(data=True))

            def halted_since(t: float = t0) -> bool:
                return bool(last.get("halted")) and float(last.get("halted_at") or 0) >= t

            with cond:
                if not cond.wait_for(halted_since, 5):
                    raise SystemExit(f"no halted status after the e-stop: {last}")
                one_way.append((float(last["halted_at"]) - t0) * 1000)
                round_trip.append((float(last["_rx"]) - t0) * 1000)
            if not node.sup.wait_for(node.sup.state.__class__.ESTOP, timeout=5):
                raise SystemExit(f"supervisor not in ESTOP: {node.sup.status()}")
            node.sup.wait_idle(5)
            estop.publish(Bool(data=False))
            node.sup.reset(source="bench operator")
            if not node.sup.wait_for(node.sup.state.__class__.IDLE, timeout=5):
                raise SystemExit(f"reset failed: {node.sup.status()}")
    ow, rt = percentiles(one_way), percentiles(round_trip)
    if a.json:
        print(json.dumps({"benchmark": "ros_estop", "publish_to_halted": ow, "publish_to_status_rx": rt,
                          "load": a.load, "target_p99_ms": 20.0}))
    else:
        print(f"/medrobot/estop -> robot halted ({ow['n']} trials, mid-motion, {a.load} busy loops): p50 {ow['p50_ms']:.2f} ms, "
              f"p99 {ow['p99_ms']:.2f} ms, max {ow['max_ms']:.2f} ms (target p99 <= 20 ms)")
        print(f"/medrobot/estop -> halted status received back: p50 {rt['p50_ms']:.2f} ms, p99 {rt['p99_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
