"""Surgery scene benchmark: SuFIA's four tasks over several seeds, planned from text, judged by the checkers.

Each task is a sentence a person would say; the offline rule planner turns it into a plan, each step
runs in the scene from a fresh reset, and the scene's checker judges the outcome from the physics state
(needle lift, needle handover, vessel dilation, shunt insertion). The asked heights, distances and
depths vary with the seed. Prints the success table with the failure reasons, the real-time factor of
the scene headless (simulated time / time inside the control loop; wall clock and the process's CPU
time, which differ when other work shares the machine), the wall time of a typical task and the largest
tissue-force sample of any run against the scene's force cap. Not a test: timings depend on the machine.

    python benchmarks/sim_surgery.py [--seeds 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from medrobot_llm.backends.base import CancelToken
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.backends.sim.surgery import SurgeryScene
from medrobot_llm.backends.sim.surgery.checks import check_task

TARGET_RTF = 20.0
TARGET_TASK_S = 2.0
ARM_WORDS = {"psm1": "right arm", "psm2": "left arm"}


def task_texts(seed: int) -> dict[str, str]:
    """The four tasks' sentences for a seed; the values are drawn from the seed so runs differ."""
    rng = np.random.default_rng(10_000 + seed)
    giver, taker = ("psm1", "psm2") if seed % 2 == 0 else ("psm2", "psm1")
    return {
        "needle lift": f"pick up the needle with the {ARM_WORDS[giver]} and lift it {int(rng.integers(10, 41))} mm",
        "needle handover": f"pick up the needle with the {ARM_WORDS[giver]} and hand it over to the {ARM_WORDS[taker]}",
        "vessel dilation": f"grasp the vessel with the left arm and dilate it {int(rng.integers(4, 21))} mm",
        "shunt insertion": f"pick up the shunt with the right arm and insert it into the vessel {int(rng.integers(3, 13))} mm",
    }


def run_task(scene: SurgeryScene, planner: RulePlanner, task: str, text: str, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    scene.reset(seed=seed)
    t_reset = time.perf_counter() - t0
    plan = planner.plan("surgery", text)
    sim0 = scene.sim_time
    loop_wall = loop_cpu = 0.0
    failure = ""
    if plan.status.value != "ok":
        failure = f"plan {plan.status.value}: {plan.reason or plan.question}"
    for step in plan.steps if not failure else []:
        w, c = time.perf_counter(), time.process_time()
        result = scene.execute(step, CancelToken())
        loop_wall += time.perf_counter() - w
        loop_cpu += time.process_time() - c
        if not result.success:
            failure = f"{step.skill}: {result.failure.value}: {result.message}"
            break
    verdict = check_task(scene, list(plan.steps))
    return {"task": task, "seed": seed, "text": text, "plan": [s.skill for s in plan.steps],
            "success": verdict.success and not failure, "reason": failure or verdict.reason,
            "sim_s": scene.sim_time - sim0, "loop_s": loop_wall, "loop_cpu_s": loop_cpu,
            "task_s": time.perf_counter() - t0, "reset_s": t_reset, "max_force_n": scene.max_force_n,
            "metrics": verdict.metrics}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="SuFIA's four tasks in the surgery scene over N seeds.")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    args = p.parse_args(argv)
    planner = RulePlanner()
    rows: list[dict[str, Any]] = []
    scene = SurgeryScene()
    try:
        cap = float(scene.limits["force_cap"])
        for seed in range(args.seeds):
            for task, text in task_texts(seed).items():
                rows.append(run_task(scene, planner, task, text, seed))
            if not args.json:
                print(f"  seed {seed}: {sum(r['success'] for r in rows)}/{len(rows)} so far", file=sys.stderr)
    finally:
        scene.close()
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    table = {k: {"success": sum(r["success"] for r in v), "runs": len(v),
                 "reasons": dict(Counter(r["reason"] for r in v if not r["success"])),
                 "max_force_n": max(r["max_force_n"] for r in v)} for k, v in by_task.items()}
    sim = sum(r["sim_s"] for r in rows)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    max_force = max(r["max_force_n"] for r in rows)
    result = {
        "scene": SurgeryScene.scene_id, "seeds": args.seeds, "tasks": len(rows),
        "success": sum(r["success"] for r in rows), "success_rate": sum(r["success"] for r in rows) / len(rows),
        "rtf": sim / sum(r["loop_s"] for r in rows), "rtf_cpu": sim / sum(r["loop_cpu_s"] for r in rows),
        "task_wall_s_median": statistics.median(r["task_s"] for r in rows),
        "task_wall_s_max": max(r["task_s"] for r in rows),
        "task_sim_s_median": statistics.median(r["sim_s"] for r in rows),
        "reset_s_median": statistics.median(r["reset_s"] for r in rows),
        "max_force_n": max_force, "force_cap_n": cap, "force_within_cap": max_force <= cap,
        "table": table, "failures": [{k: r[k] for k in ("task", "seed", "text", "reason")}
                                     for r in rows if not r["success"]],
        "command": command,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{SurgeryScene.scene_id}: SuFIA's tasks planned from text (rule planner) x {args.seeds} seeds")
    print(f"  {'task':<18}{'success':>10}{'max force':>11}  failures")
    for k, v in table.items():
        reasons = "; ".join(f"{n}x {why}" for why, n in v["reasons"].items()) or "-"
        print(f"  {k:<18}{v['success']:>5}/{v['runs']:<4}{v['max_force_n']:>9.2f} N  {reasons}")
    print(f"  total: {result['success']}/{result['tasks']} ({result['success_rate']:.0%})")
    for f in result["failures"]:
        print(f"  FAILED seed {f['seed']} {f['task']}: \"{f['text']}\": {f['reason']}")
    print(f"  real-time factor, headless: {result['rtf']:.1f}x wall clock, {result['rtf_cpu']:.1f}x CPU time "
          f"(target >= {TARGET_RTF:g}x)")
    print(f"  typical task wall time: median {result['task_wall_s_median']:.2f} s, max {result['task_wall_s_max']:.2f} s "
          f"for {result['task_sim_s_median']:.1f} s simulated (target <= {TARGET_TASK_S:g} s; reset "
          f"{result['reset_s_median']:.2f} s included)")
    print(f"  largest tissue-force sample: {max_force:.2f} N (cap {cap:g} N: "
          f"{'never exceeded' if max_force <= cap else 'EXCEEDED'})")
    print(f"  command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
