#!/usr/bin/env python3
"""Planning latency of the offline planner, in-process, per command (target p99 <= 5 ms).

    python benchmarks/plan_latency.py [--repeat 20] [SUITE.jsonl ...]

Times ``RulePlanner().plan`` (parse, chain, validate) on every command of the given suites (default:
the shared dev set, this repo's planner cases and the blind held-out set), after one warm-up pass.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [ROOT.parent / "shared" / "benchmarks" / "plans-dev.jsonl", ROOT / "tests" / "data" / "planner_cases.jsonl",
           ROOT / "benchmarks" / "heldout" / "plans-heldout.jsonl"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suites", nargs="*", type=Path, default=[p for p in DEFAULT if p.exists()])
    ap.add_argument("--repeat", type=int, default=20, help="timed passes over the commands (default 20)")
    a = ap.parse_args()
    from medrobot_llm.planning.rule.planner import RulePlanner

    items = [json.loads(line) for s in a.suites for line in s.read_text().splitlines() if line.strip()]
    planner = RulePlanner()
    for it in items:
        planner.plan(it["domain"], it["text"])
    samples = []
    for _ in range(a.repeat):
        for it in items:
            t0 = time.perf_counter()
            planner.plan(it["domain"], it["text"])
            samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
    print(f"commands: {len(items)} x {a.repeat} passes = {len(samples)} plans")
    print(f"planning latency ms: mean {statistics.fmean(samples):.3f}  p50 {p(0.5):.3f}  p99 {p(0.99):.3f}  "
          f"max {samples[-1]:.3f}")
    print(f"target p99 <= 5 ms: {'met' if p(0.99) <= 5 else 'NOT met'}")
    print("command: python benchmarks/plan_latency.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
