"""``medrobot bench``: the task-success benchmark over the suite, in local processes or on Ray."""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["register"]

#: flags of this command that are not the planner's (everything else in the namespace configures the planner)
_OWN = frozenset({"func", "command", "suite", "seeds", "workers", "engine", "out", "json", "limit", "domain",
                  "task_timeout", "heartbeat_timeout"})


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import add_domain_argument
    from medrobot_llm.planning.factory import add_planner_arguments

    p = sub.add_parser(
        "bench",
        help="task-success benchmark: plan, validate, execute and check every suite task in simulation",
        description="For each task of the suite and each seed: plan the command, validate it, let the supervisor "
        "execute it in the PyBullet scene with confirmations answered, and judge the result with the scene's "
        "checker. Reports plan accuracy, execution success, safety violations, refusals and latency per task "
        "and domain; writes results.jsonl, summary.json, summary.md and PNG plots into --out. Exit code 0 when "
        "there was no safety violation and every must-refuse task was refused, 1 otherwise, 2 for a usage error.",
        epilog="example: medrobot bench --workers 2 --out bench_out",
    )
    p.add_argument("--suite", type=Path, metavar="FILE",
                   help="suite JSONL (default: benchmarks/suite/tasks.jsonl, or the generated suite)")
    p.add_argument("--seeds", type=int, default=None, metavar="K",
                   help="run each task with K consecutive seeds from its first one (default: the task's seeds)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes, each with its own scenes (default: the number of CPUs)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local processes (default) or a Ray cluster (RAY_ADDRESS, else a local one)")
    p.add_argument("--out", type=Path, default=Path("bench_out"), metavar="DIR",
                   help="where to write results and the report (default: bench_out)")
    p.add_argument("--json", action="store_true", help="print the headline figures as one JSON object only")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="run N tasks, taken round-robin over the task families")
    add_domain_argument(p, required=False, help="only this domain's tasks")
    p.add_argument("--task-timeout", dest="task_timeout", type=float, default=120.0, metavar="S",
                   help="stop a task's robot if it has not finished after S seconds (default 120)")
    p.add_argument("--heartbeat-timeout", dest="heartbeat_timeout", type=float, default=None, metavar="S",
                   help="fault a step whose backend shows no sign of life for S seconds (default: the supervisor's "
                   "1 s); raise it only on a machine so loaded that a long control step cannot get a core")
    add_planner_arguments(p)
    p.set_defaults(func=_run)


def _command_line(args: argparse.Namespace, workers: int) -> str:
    parts = ["medrobot", "bench"]
    if args.suite is not None:
        parts += ["--suite", str(args.suite)]
    parts += ["--planner", args.planner]
    if args.seeds is not None:
        parts += ["--seeds", str(args.seeds)]
    parts += ["--workers", str(workers), "--engine", args.engine, "--out", str(args.out)]
    if args.limit is not None:
        parts += ["--limit", str(args.limit)]
    if args.domain:
        parts += ["--domain", args.domain]
    if args.heartbeat_timeout is not None:
        parts += ["--heartbeat-timeout", str(args.heartbeat_timeout)]
    return shlex.join(parts)


def _run(args: argparse.Namespace) -> int:
    import os

    from medrobot_llm.bench.runner import run_jobs, summarize
    from medrobot_llm.bench.report import environment, write_outputs
    from medrobot_llm.core.paths import file_sha256
    from medrobot_llm.bench.suite import default_suite_path, dumps, generate, load_suite, select

    if args.seeds is not None and args.seeds < 1:
        print("medrobot bench: --seeds must be at least 1", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print("medrobot bench: --limit must be at least 1", file=sys.stderr)
        return 2
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        print("medrobot bench: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.heartbeat_timeout is not None and not args.heartbeat_timeout > 0:
        print("medrobot bench: --heartbeat-timeout must be positive", file=sys.stderr)
        return 2
    planner_args = {k: v for k, v in vars(args).items() if k not in _OWN}
    try:
        from medrobot_llm.planning.factory import make_planner

        make_planner(argparse.Namespace(**planner_args))
    except ValueError as exc:
        print(f"medrobot bench: {exc}", file=sys.stderr)
        return 2
    try:
        suite = load_suite(args.suite)
    except (OSError, ValueError) as exc:
        print(f"medrobot bench: {exc}", file=sys.stderr)
        return 2
    suite_path = args.suite or default_suite_path()
    sha = file_sha256(suite_path) if suite_path.is_file() else hashlib.sha256(dumps(generate()).encode()).hexdigest()
    tasks = select(suite, domain=args.domain, limit=args.limit)
    if not tasks:
        print("medrobot bench: no tasks selected", file=sys.stderr)
        return 2
    n_runs = sum(len(t.seeds_for(args.seeds)) for t in tasks)

    from tqdm import tqdm

    t0 = time.perf_counter()
    bar = tqdm(total=n_runs, file=sys.stderr, unit="run", desc="bench", dynamic_ncols=True)
    # rows as they arrive, in completion order: what a long run leaves behind if it is interrupted
    args.out.mkdir(parents=True, exist_ok=True)
    partial_path = args.out / "results.partial.jsonl"
    partial = open(partial_path, "w", encoding="utf-8")  # noqa: SIM115 - closed below, after the last row
    failures = {"n": 0}

    def on_result(row: dict[str, Any]) -> None:
        failures["n"] += not row["success"]
        bar.set_postfix_str(f"failed {failures['n']}", refresh=False)
        bar.update(1)
        partial.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        partial.flush()

    try:
        rows = run_jobs(tasks, seeds=args.seeds, workers=workers, engine=args.engine, planner_args=planner_args,
                        timeout_s=args.task_timeout, heartbeat_timeout_s=args.heartbeat_timeout,
                        on_result=on_result)
    except RuntimeError as exc:
        bar.close()
        print(f"medrobot bench: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        partial.close()
    wall = time.perf_counter() - t0
    summary = summarize(rows)
    env = environment()
    planner = {k: v for k, v in planner_args.items() if v is not None and k in ("planner", "model", "base_url", "mode",
                                                                             "fallback")}
    meta = {"command": _command_line(args, workers), "suite": str(suite_path), "suite_sha256": sha,
            "tasks": len(tasks), "runs": len(rows),
            "seeds": f"{args.seeds} per task" if args.seeds is not None else "the task's own",
            "seed_values": sorted({r["seed"] for r in rows}),
            "planner": ", ".join(f"{k}={v}" for k, v in planner.items()), "engine": args.engine,
            "workers": workers, "heartbeat_timeout_s": args.heartbeat_timeout, "wall_s": round(wall, 2), **env}
    paths = write_outputs(args.out, rows, summary, meta)
    partial_path.unlink()
    o = summary["overall"]
    headline = {"tasks": len(tasks), "plan_accuracy": o["plan_accuracy"], "execution_success": o["execution_success"],
                "safety_violations": o["safety_violations"], "refusals_correct": o["refusals_correct"],
                "wall_s": round(wall, 2), "runs": len(rows), "out": str(args.out), "git": env["git"]["commit"],
                "planner": meta["planner"]}
    if args.json:
        print(json.dumps(headline))
    else:
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.1f}%"

        print(f"tasks {len(tasks)}, runs {len(rows)} ({meta['seeds']} seeds), planner {meta['planner']}, "
              f"{args.engine} x{workers}")
        print(f"  execution success  {pct(o['execution_success'])} ({o['executed_ok']}/{o['should_run']})")
        print(f"  safety violations  {o['safety_violations']}")
        print(f"  refusals correct   {pct(o['refusals_correct'])} ({o['refused_ok']}/{o['must_refuse']})")
        print(f"  plan accuracy      {pct(o['plan_accuracy'])} ({o['plan_correct']}/{o['runs']})")
        print(f"  planning latency   p50 {o['plan_ms']['p50'] or 0:.2f} ms, p99 {o['plan_ms']['p99'] or 0:.2f} ms")
        print(f"  report             {paths['summary_md']}")
        print(f"wall time: {wall:.1f} s")
    if not args.json:
        sys.stdout.flush()
    else:
        print(f"wall time: {wall:.1f} s", file=sys.stderr)
    ok = o["safety_violations"] == 0 and (o["refusals_correct"] in (None, 1.0))
    return 0 if ok else 1
