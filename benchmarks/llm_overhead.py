#!/usr/bin/env python3
"""The LLM planner's own overhead per command, excluding the model's time, and model calls per command.

    python benchmarks/llm_overhead.py [SUITE.jsonl ...] [--repeat 5] [--json]

Runs the planner in-process against a scripted OpenAI-compatible server on 127.0.0.1 (the real ``openai``
client, real sockets) over the given suites (default: the shared dev set and this repo's planner cases).
"Model time" is everything inside the HTTP call (client serialisation, loopback, the scripted server);
overhead is the rest: screening, prompt and schema assembly, answer parsing, validation, grounding,
repair bookkeeping. Target: overhead <= 5 ms per command. Three scenarios:

- ``openai/rule-model``: every command through the model; the model answers what the rule planner would.
- ``openai/obeying-model``: the model answers every command with a hazardous plan, so most commands take the
  whole repair budget (3 calls) before being refused: the worst case for overhead.
- ``hybrid/rule-model``: the offline planner first; the model only for what it cannot read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _openai_server import ScriptedOpenAIServer, make_planner, obeying_responder, rule_responder  # noqa: E402

DEFAULT = [ROOT.parent / "shared" / "benchmarks" / "plans-dev.jsonl", ROOT / "tests" / "data" / "planner_cases.jsonl"]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def scenario(name: str, items: list[dict[str, Any]], responder: Any, hybrid: bool, repeat: int) -> dict[str, Any]:
    from medrobot_llm.planning.hybrid import HybridPlanner
    from medrobot_llm.planning.rule.planner import RulePlanner

    with ScriptedOpenAIServer(responder=responder) as server:
        h = make_planner(server, timeout=10.0)
        llm = h.planner
        planner: Any = HybridPlanner(RulePlanner(), llm) if hybrid else llm
        for it in items:
            planner.plan(it["domain"], it["text"])
        overhead: list[float] = []
        total: list[float] = []
        calls: list[int] = []
        http_ms: list[float] = []
        for _ in range(repeat):
            for it in items:
                before = len(server.chat_requests)
                llm.last = type(llm.last)()
                t0 = time.perf_counter()
                planner.plan(it["domain"], it["text"])
                wall = time.perf_counter() - t0
                n = len(server.chat_requests) - before
                model_s = llm.last.model_s if n else 0.0
                total.append(wall * 1000)
                overhead.append((wall - model_s) * 1000)
                calls.append(n)
                if n:
                    http_ms.append(model_s * 1000 / n)
    return {
        "scenario": name,
        "commands": len(total),
        "overhead_ms_mean": round(statistics.fmean(overhead), 3),
        "overhead_ms_p50": round(_pct(overhead, 0.5), 3),
        "overhead_ms_p95": round(_pct(overhead, 0.95), 3),
        "overhead_ms_p99": round(_pct(overhead, 0.99), 3),
        "overhead_ms_max": round(max(overhead), 3),
        "calls_per_command": round(statistics.fmean(calls), 3),
        "http_roundtrip_ms_mean": round(statistics.fmean(http_ms), 3) if http_ms else None,
        "wall_ms_mean": round(statistics.fmean(total), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suites", nargs="*", type=Path, default=[p for p in DEFAULT if p.exists()])
    ap.add_argument("--repeat", type=int, default=5, help="timed passes over the commands (default 5)")
    ap.add_argument("--json", action="store_true", help="one JSON object per scenario")
    a = ap.parse_args()
    items = [json.loads(line) for s in a.suites for line in s.read_text().splitlines() if line.strip()]
    results = [
        scenario("openai/rule-model", items, rule_responder(), False, a.repeat),
        scenario("openai/obeying-model", items, obeying_responder(), False, max(1, a.repeat // 2)),
        scenario("hybrid/rule-model", items, rule_responder(), True, a.repeat),
    ]
    for r in results:
        if a.json:
            print(json.dumps(r))
            continue
        rt = f"{r['http_roundtrip_ms_mean']:.2f} ms" if r["http_roundtrip_ms_mean"] is not None else "n/a"
        print(f"{r['scenario']:22s} {r['commands']:5d} commands  overhead mean {r['overhead_ms_mean']:.2f} ms  "
              f"p50 {r['overhead_ms_p50']:.2f}  p95 {r['overhead_ms_p95']:.2f}  p99 {r['overhead_ms_p99']:.2f}  "
              f"max {r['overhead_ms_max']:.2f}  |  model calls/command {r['calls_per_command']:.2f}  "
              f"|  HTTP round trip {rt} (client + loopback + scripted model)")
    worst = max(r["overhead_ms_p95"] for r in results)
    print(f"planner overhead excluding model time: p95 <= {worst:.2f} ms (target 5 ms); "
          f"model calls/command: " + ", ".join(f"{r['scenario']} {r['calls_per_command']:.2f}" for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
