#!/usr/bin/env python3
"""ExecuteSkill round trip of a no-op step over real DDS (target p99 <= 5 ms).

    bash -c 'source ros_ws/install/medrobot_env.sh && python benchmarks/ros_roundtrip.py [--steps 300]'

A skill server process runs the ultrasound scene; the supervisor node runs in this process. Each sample
is one ``RosSkillBackend.execute`` of ``set_imaging(gain_pct=50)`` (one control cycle on the robot):
supervisor state published, goal sent, the skill server's checks (form, authorisation, busy,
re-validation against the robot's world), the step, the result back. Plans of 20 such steps are
submitted through the real ``Supervisor`` until enough samples are in; the first plan is warm-up.

First it measures the floor: the same action between two processes with nothing of ours in between (a
server that succeeds at once, a bare ``ActionClient``), so the figure shows what the supervision adds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="timed steps (default 300)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from medrobot_llm.backends.base import CancelToken, FeedbackFn, StepResult
    from medrobot_llm.core.plan import Plan, PlanStatus, Step
    from medrobot_llm.backends.ros.bench import percentiles, plain_action_round_trips, supervised_skill_server

    floor = percentiles(plain_action_round_trips(a.steps))

    log = Path(tempfile.gettempdir()) / "medrobot_bench_roundtrip_server.log"
    samples: list[float] = []
    with supervised_skill_server("ultrasound", 0.0, log) as node:
        backend = node.backend
        inner = backend.execute

        def timed(step: Step, token: CancelToken, on_feedback: FeedbackFn | None = None) -> StepResult:
            t0 = time.perf_counter()
            r: StepResult = inner(step, token, on_feedback)
            samples.append((time.perf_counter() - t0) * 1000)
            if not r.success:
                raise SystemExit(f"the no-op step failed: {r.failure.value}: {r.message}")
            return r

        backend.execute = timed
        plan = Plan(status=PlanStatus.OK, domain="ultrasound",
                    steps=[Step(skill="set_imaging", args={"gain_pct": 50})] * 20)
        warm = 20
        while len(samples) < a.steps + warm:
            reply = node.sup.submit_plan(plan)
            if not reply.accepted:
                raise SystemExit(f"plan refused: {reply.message}")
            if not node.sup.wait_idle(30):
                raise SystemExit(f"the plan did not finish: {node.sup.status()}")
            if node.sup.state.value != "IDLE":
                raise SystemExit(f"supervisor ended {node.sup.state.value}: {node.sup.reason}")
    stats = percentiles(samples[warm:warm + a.steps])
    if a.json:
        print(json.dumps({"benchmark": "ros_roundtrip", **stats, "target_p99_ms": 5.0, "plain_action": floor}))
    else:
        print(f"plain rclpy action round trip (the floor, {floor['n']} goals): p50 {floor['p50_ms']:.2f} ms, "
              f"p90 {floor['p90_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms, max {floor['max_ms']:.2f} ms")
        print(f"ExecuteSkill round trip (no-op step, real DDS, {stats['n']} steps): p50 {stats['p50_ms']:.2f} ms, "
              f"p90 {stats['p90_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms, max {stats['max_ms']:.2f} ms "
              f"(target p99 <= 5 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
