"""X-ray scene benchmark: every valid anatomy x view over several seeds, judged by the scene's checker.

Per seed the scene is reset once, then each task "take a <view> of the <anatomy>" runs as
move_to_view -> take_shot from wherever the gantry is, and is judged on that exposure (central ray
through the anatomy, view angle, anatomy inside the field, and no exposure that no step asked for).
Prints the success table with the failure reasons, the real-time factor of the scene headless (simulated
time / wall time inside the control loop) and the wall time of a typical task. Not a test.

    python benchmarks/sim_xray.py [--seeds 10] [--pixels 128] [--json]
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
from medrobot_llm.backends.sim.xray import XrayScene
from medrobot_llm.backends.sim.xray.checks import check_shot
from medrobot_llm.core.command_set import load_command_set

TARGET_RTF = 20.0
TARGET_TASK_S = 2.0


def valid_tasks() -> list[tuple[str, str | None, str]]:
    """Every anatomy (each side) x view that the command set allows."""
    cs = load_command_set("xray")
    out = []
    for anatomy, value in cs.entities["anatomy"].values.items():
        for side in value.attr("sides") or (None,):
            for view, v in cs.entities["view"].values.items():
                if v.only_for and anatomy not in v.only_for.get("anatomy", ()):
                    continue
                out.append((anatomy, side, view))
    return out


def run_task(scene: XrayScene, anatomy: str, side: str | None, view: str, seed: int) -> dict[str, Any]:
    args: dict[str, Any] = {"anatomy": anatomy, "view": view}
    if side:
        args["side"] = side
    expected = [e["skill"] for e in scene.exposures] + ["take_shot"]
    t0 = time.perf_counter()
    sim0 = scene.sim_time
    failure = ""
    motion_wall = 0.0
    motion_sim = 0.0
    for skill, a in (("move_to_view", args), ("take_shot", {})):
        t1, s1 = time.perf_counter(), scene.sim_time
        result = scene.execute(Step(skill=skill, args=a), CancelToken())
        if skill == "move_to_view":
            motion_wall, motion_sim = time.perf_counter() - t1, scene.sim_time - s1
        if not result.success:
            failure = f"{skill}: {result.failure.value}: {result.message}"
            if scene.halted:
                scene.clear_halt()
            break
    verdict = check_shot(scene, anatomy, view, side, expected=expected)
    return {"task": f"{anatomy}{'/' + side if side else ''} {view}", "seed": seed,
            "success": verdict.success and not failure, "reason": failure or verdict.reason,
            "task_s": time.perf_counter() - t0, "sim_s": scene.sim_time - sim0, "motion_s": motion_wall,
            "motion_sim_s": motion_sim, "miss_mm": verdict.metrics.get("central_ray_miss_mm")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Every valid anatomy x view of the X-ray scene over N seeds.")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    p.add_argument("--pixels", type=int, default=128, help="radiograph size (default 128)")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    args = p.parse_args(argv)
    tasks = valid_tasks()
    rows: list[dict[str, Any]] = []
    resets: list[float] = []
    with tempfile.TemporaryDirectory(prefix="medrobot_bench_xray_") as tmp:
        scene = XrayScene(record_dir=Path(tmp), image_px=args.pixels)
        try:
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                scene.reset(seed=seed)
                resets.append(time.perf_counter() - t0)
                for anatomy, side, view in tasks:
                    rows.append(run_task(scene, anatomy, side, view, seed))
                if not args.json:
                    print(f"  seed {seed}: {sum(r['success'] for r in rows)}/{len(rows)} so far", file=sys.stderr)
        finally:
            scene.close()
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    table = {k: {"success": sum(r["success"] for r in v), "runs": len(v),
                 "reasons": dict(Counter(r["reason"] for r in v if not r["success"])),
                 "max_miss_mm": max((r["miss_mm"] or 0.0) for r in v)} for k, v in by_task.items()}
    motion_sim = sum(r["motion_sim_s"] for r in rows)
    motion_wall = sum(r["motion_s"] for r in rows)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    result = {
        "scene": XrayScene.scene_id, "seeds": args.seeds, "tasks": len(rows), "pixels": args.pixels,
        "success": sum(r["success"] for r in rows), "success_rate": sum(r["success"] for r in rows) / len(rows),
        "rtf": motion_sim / motion_wall, "rtf_with_imaging": sum(r["sim_s"] for r in rows) / sum(r["task_s"] for r in rows),
        "task_wall_s_median": statistics.median(r["task_s"] for r in rows),
        "task_wall_s_max": max(r["task_s"] for r in rows),
        "task_sim_s_median": statistics.median(r["sim_s"] for r in rows),
        "reset_s_median": statistics.median(resets), "table": table, "command": command,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{XrayScene.scene_id}: move_to_view + take_shot, {len(tasks)} anatomy x view tasks x {args.seeds} seeds, "
          f"{args.pixels}x{args.pixels} radiographs")
    print(f"  {'task':<32}{'success':>10}{'max miss':>10}  failures")
    for k, v in table.items():
        reasons = "; ".join(f"{n}x {why}" for why, n in v["reasons"].items()) or "-"
        print(f"  {k:<32}{v['success']:>5}/{v['runs']:<4}{v['max_miss_mm']:>7.1f} mm  {reasons}")
    print(f"  total: {result['success']}/{result['tasks']} ({result['success_rate']:.0%})")
    print(f"  real-time factor, headless: {result['rtf']:.0f}x gantry motion, {result['rtf_with_imaging']:.0f}x "
          f"with imaging (target >= {TARGET_RTF:g}x)")
    print(f"  typical task wall time: median {result['task_wall_s_median']:.2f} s, max {result['task_wall_s_max']:.2f} s "
          f"for {result['task_sim_s_median']:.1f} s simulated (target <= {TARGET_TASK_S:g} s); reset "
          f"{result['reset_s_median']:.2f} s per seed")
    print(f"  command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
