"""E-stop latency under a loaded executor: from ``stop`` issued to the backend's ``halt`` called.

Not a test: timings depend on the machine. The executor is kept busy with long motion steps on a fast
control loop, every record goes to an fsync-ed audit log, a listener drains the event stream, the
watchdog runs, and extra threads hammer the supervisor (status queries) and the interpreter (pure
Python work contending for the GIL). Each trial stops the robot at a random moment mid-step, then
resets. Target: p99 of stop -> halt <= 5 ms, in-process.

    python benchmarks/estop_latency.py [--trials 200] [--busy-threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from medrobot_llm.safety.audit import AuditLog
from medrobot_llm.backends.base import CancelToken, FeedbackFn, StepResult
from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.core.plan import Plan, PlanStatus, Step
from medrobot_llm.safety.supervisor import Supervisor, SupervisorState


class _TimedBackend(MemoryBackend):
    """Stamps when a step's execute returns, so the benchmark also sees when motion actually ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.returned_ns: list[int] = []

    def execute(self, step: Step, token: CancelToken, on_feedback: FeedbackFn | None = None) -> StepResult:
        try:
            return super().execute(step, token, on_feedback)
        finally:
            self.returned_ns.append(time.perf_counter_ns())


def _until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)
    return True


def _plan(n: int) -> Plan:
    steps = [Step(skill="move_to_view", args={"anatomy": "pelvis"})]
    steps += [Step(skill="adjust", args={"axis": "orbit", "amount": (-1) ** k * 10}) for k in range(n)]
    return Plan(status=PlanStatus.OK, domain="xray", steps=steps)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _summary(values_ms: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(values_ms), "p99_ms": _percentile(values_ms, 0.99), "max_ms": max(values_ms),
            "mean_ms": statistics.fmean(values_ms)}


def run(trials: int, control_period_s: float, steps_per_skill: int, status_threads: int, busy_threads: int,
        seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="estop-bench-"))
    backend = _TimedBackend("xray", control_period_s=control_period_s, steps_per_skill=steps_per_skill)
    audit = AuditLog(workdir / "audit.jsonl")
    sup = Supervisor(backend, audit=audit, watchdog_period_s=0.01, heartbeat_timeout_s=2.0)
    events = [0]
    sup.subscribe(lambda rec: events.__setitem__(0, events[0] + 1))
    done = threading.Event()

    def query() -> None:
        while not done.wait(0.001):  # a console redrawing its status line at 1 kHz
            sup.status()

    def burn() -> None:
        x = 0
        while not done.is_set():
            for k in range(2000):
                x = (x * 31 + k) % 1_000_003

    load = [threading.Thread(target=query, daemon=True) for _ in range(status_threads)]
    load += [threading.Thread(target=burn, daemon=True) for _ in range(busy_threads)]
    for t in load:
        t.start()
    plan = _plan(40)
    to_halt: list[float] = []
    to_still: list[float] = []
    try:
        for _ in range(trials):
            reply = sup.submit_plan(plan)
            assert reply.accepted, reply.message
            sent = len(backend.sent)
            want = sent + 1 + rng.randrange(2)
            _until(lambda want=want: len(backend.sent) >= want)
            time.sleep(rng.uniform(0.0, control_period_s * steps_per_skill * 0.8))  # somewhere mid-step
            returned = len(backend.returned_ns)
            halts = len(backend.halts)
            moving = backend.executing
            t0 = time.perf_counter_ns()
            sup.stop("benchmark")
            t_halt = backend.halts[halts].t_ns
            to_halt.append((t_halt - t0) / 1e6)
            if moving and _until(lambda returned=returned: len(backend.returned_ns) > returned):
                to_still.append((backend.returned_ns[returned] - t0) / 1e6)
            assert sup.state is SupervisorState.ESTOP
            reply = sup.reset()
            assert reply.accepted, reply.message
    finally:
        done.set()
        sup.close()
        audit.close()
    return {
        "trials": trials,
        "stop_to_halt": _summary(to_halt),
        "stop_to_motion_ended": _summary(to_still) if to_still else None,
        "stopped_mid_step": len(to_still),
        "control_period_ms": control_period_s * 1000,
        "load": {"status_threads": status_threads, "busy_threads": busy_threads, "events_delivered": events[0],
                 "audit_records": audit.next_seq, "fsync": True},
        "python": sys.version.split()[0],
        "switch_interval_ms": sys.getswitchinterval() * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Measure e-stop latency (stop issued -> backend halt called).")
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--control-period-ms", type=float, default=2.0, help="the backend's control step (2 ms)")
    p.add_argument("--steps-per-skill", type=int, default=10, help="control steps per skill (10)")
    p.add_argument("--status-threads", type=int, default=2, help="threads polling supervisor.status() at 1 kHz (2)")
    p.add_argument("--busy-threads", type=int, default=1, help="threads doing pure-Python work (1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    args = p.parse_args(argv)
    result = run(args.trials, args.control_period_ms / 1000, args.steps_per_skill, args.status_threads,
                 args.busy_threads, args.seed)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    result["command"] = command
    if args.json:
        print(json.dumps(result))
        return 0
    h, s = result["stop_to_halt"], result["stop_to_motion_ended"]
    print(f"e-stop latency over {result['trials']} trials, loaded executor "
          f"({args.status_threads} status threads, {args.busy_threads} busy threads, fsync-ed audit log, "
          f"{result['control_period_ms']:g} ms control step)")
    print(f"  stop -> backend.halt():   p50 {h['p50_ms']:.3f} ms   p99 {h['p99_ms']:.3f} ms   max {h['max_ms']:.3f} ms"
          f"   (target p99 <= 5 ms: {'met' if h['p99_ms'] <= 5 else 'MISSED'})")
    if s is not None:
        print(f"  stop -> step ended:       p50 {s['p50_ms']:.3f} ms   p99 {s['p99_ms']:.3f} ms   "
              f"max {s['max_ms']:.3f} ms   ({result['stopped_mid_step']} trials stopped mid-step)")
    print(f"  command: {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
