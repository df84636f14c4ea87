"""Ultrasound scene benchmark: scan every organ and side over several seeds, judged by the scene's checker.

Each task is the plan "scan the <side> <organ> and capture": move_to_window -> make_contact -> sweep
(the command set's defaults: 40 mm caudal at 5 mm/s) -> capture, from a fresh reset. Prints the success
table with the failure reasons, the real-time factor of the scene headless (simulated time / wall time
inside the control loop) and the wall time of a typical task. Not a test: timings depend on the machine.

    python benchmarks/sim_ultrasound.py [--seeds 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from medrobot_llm.backends.base import CancelToken
from medrobot_llm.core.plan import Step
from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.backends.sim.ultrasound import UltrasoundScene
from medrobot_llm.backends.sim.ultrasound.checks import check_scan

TARGET_RTF = 20.0
TARGET_TASK_S = 2.0
#: the command set's upper force limit (make_contact / set_force), from skills/
FORCE_LIMIT_N = float(load_command_set("ultrasound").skill("set_force").args["force_n"].max)  # type: ignore[union-attr]


class Peaks:
    """The largest contact force and skin indentation of any control step, read after every ``advance``:
    the limits hold for every sample, not only for what a skill reports at its end."""

    def __init__(self, scene: UltrasoundScene) -> None:
        self.force_n = 0.0
        self.penetration_mm = 0.0
        step = scene.advance

        def advance() -> None:
            step()
            self.force_n = max(self.force_n, scene.force_n)
            self.penetration_mm = max(self.penetration_mm, scene.penetration_mm)

        scene.advance = advance  # type: ignore[method-assign]


def run_task(scene: UltrasoundScene, organ: str, side: str, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    scene.reset(seed=seed)
    t_reset = time.perf_counter() - t0
    sim0 = scene.sim_time
    loop = 0.0
    failure = ""
    for skill, args in (("move_to_window", {"organ": organ, "side": side}), ("make_contact", {}), ("sweep", {}),
                        ("capture", {"label": f"{side} {organ}"})):
        t1 = time.perf_counter()
        result = scene.execute(Step(skill=skill, args=args), CancelToken())
        loop += time.perf_counter() - t1
        if not result.success:
            failure = f"{skill}: {result.failure.value}: {result.message}"
            break
    verdict = check_scan(scene, organ, side)
    return {"organ": organ, "side": side, "seed": seed, "success": verdict.success and not failure,
            "reason": failure or verdict.reason, "sim_s": scene.sim_time - sim0, "loop_s": loop,
            "task_s": time.perf_counter() - t0, "reset_s": t_reset, "share": verdict.metrics.get("share", 0.0),
            "max_force_error_n": verdict.metrics.get("force_max_error_n")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Scan every organ/side of the ultrasound scene over N seeds.")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="medrobot_bench_us_") as tmp:
        scene = UltrasoundScene(record_dir=Path(tmp))
        peaks = Peaks(scene)
        try:
            windows = list(scene.cfg["windows"])
            for seed in range(args.seeds):
                for key in windows:
                    organ, side = key.split("/")
                    rows.append(run_task(scene, organ, side, seed))
                if not args.json:
                    done = sum(r["success"] for r in rows)
                    print(f"  seed {seed}: {done}/{len(rows)} so far", file=sys.stderr)
        finally:
            scene.close()
    sim = sum(r["sim_s"] for r in rows)
    loop = sum(r["loop_s"] for r in rows)
    task_s = [r["task_s"] for r in rows]
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[f"{r['organ']}/{r['side']}"].append(r)
    table = {k: {"success": sum(r["success"] for r in v), "runs": len(v),
                 "reasons": dict(Counter(r["reason"] for r in v if not r["success"])),
                 "min_share": min(r["share"] for r in v)} for k, v in by_task.items()}
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    result = {
        "scene": UltrasoundScene.scene_id, "seeds": args.seeds, "tasks": len(rows),
        "success": sum(r["success"] for r in rows), "success_rate": sum(r["success"] for r in rows) / len(rows),
        "rtf": sim / loop, "task_wall_s_median": statistics.median(task_s), "task_wall_s_max": max(task_s),
        "task_sim_s_median": statistics.median(r["sim_s"] for r in rows),
        "reset_s_median": statistics.median(r["reset_s"] for r in rows), "table": table, "command": command,
        "max_force_n": peaks.force_n, "force_limit_n": FORCE_LIMIT_N, "max_penetration_mm": peaks.penetration_mm,
        "max_force_error_n": max((r["max_force_error_n"] or 0.0) for r in rows),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{UltrasoundScene.scene_id}: scan (move_to_window, make_contact, sweep, capture) x {args.seeds} seeds")
    print(f"  {'organ/side':<20}{'success':>10}{'min share':>11}  failures")
    for k, v in table.items():
        reasons = "; ".join(f"{n}x {why}" for why, n in v["reasons"].items()) or "-"
        print(f"  {k:<20}{v['success']:>5}/{v['runs']:<4}{v['min_share']:>10.1%}  {reasons}")
    print(f"  total: {result['success']}/{result['tasks']} ({result['success_rate']:.0%})")
    print(f"  real-time factor, headless: {result['rtf']:.1f}x (target >= {TARGET_RTF:g}x)")
    print(f"  typical task wall time: median {result['task_wall_s_median']:.2f} s, max {result['task_wall_s_max']:.2f} s "
          f"for {result['task_sim_s_median']:.1f} s simulated (target <= {TARGET_TASK_S:g} s; reset "
          f"{result['reset_s_median']:.2f} s included)")
    print(f"  largest force sample of any control step: {peaks.force_n:.2f} N (command-set limit {FORCE_LIMIT_N:g} N: "
          f"{'never exceeded' if peaks.force_n <= FORCE_LIMIT_N else 'EXCEEDED'}); largest force error during a "
          f"sweep: {result['max_force_error_n']:.2f} N (checker band 1.5 N)")
    print(f"  deepest skin indentation: {peaks.penetration_mm:.2f} mm (limit 5 mm)")
    print(f"  command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
