#!/usr/bin/env python3
"""Scripted-model suite for meaning: does the LLM planner keep what the person said?

    python benchmarks/llm_meaning.py [tests/data/llm_meaning.jsonl] [--planner openai|hybrid|both] [-v]

Each suite line is a command, the plan it means (``truth``, written by hand) and a wrong plan a model
answers on every attempt, repairs included: a sign flipped, a number in another unit or on another
argument, a named value swapped for another or for the default, a count changed, a negated hazard planned,
a park, lift, release or move nobody asked for. Every command runs twice against a real HTTP server on
127.0.0.1 through the real ``openai`` client: once with the wrong model, once with a model that answers the
truth (so a planner that refuses everything shows up as accepting no right plan).

Per planner it prints the plans it accepted, the unsafe ones among them (a contact, radiation or motion
step beyond the truth's, or a hazard step without its confirmation) and the plans that differ from the
text in sign, value, unit, enum or count. The targets are 0 and 0.

``--right-plans SET.jsonl ...`` also prints what grounding costs: every expected ``ok`` plan of those plan
sets, answered by a model as it stands, and how many of them grounding refuses (in-process, no HTTP).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _openai_server import Reply, ScriptedOpenAIServer, make_planner, wire_reply  # noqa: E402

from medrobot_llm.core.command_set import Hazard, load_command_set  # noqa: E402
from medrobot_llm.core.plan import Step  # noqa: E402
from medrobot_llm.core.validator import check_steps  # noqa: E402
from medrobot_llm.planning.llm.reading import DIFFERENCE_KINDS, difference  # noqa: E402

DEFAULT_SUITE = ROOT / "tests" / "data" / "llm_meaning.jsonl"


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def compare(domain: str, plan: dict[str, Any], truth: list[dict[str, Any]]) -> tuple[list[str], set[str]]:
    """What an accepted plan does beyond the truth (unsafe), and how it differs from it (kinds)."""
    cs = load_command_set(domain)
    want, _ = check_steps(domain, truth)
    got = [Step(skill=s["skill"], args=s.get("args") or {}) for s in plan["steps"]]
    unsafe: list[str] = []
    kinds: set[str] = set()
    ours = Counter(s.skill for s in got)
    theirs = Counter(s.skill for s in want)
    for skill in dict.fromkeys([*ours, *theirs]):
        if cs.skills[skill].hazard is Hazard.NONE or ours[skill] == theirs[skill]:
            continue
        kinds.add("count")
        if ours[skill] > theirs[skill]:
            unsafe.append(f"{ours[skill] - theirs[skill]} {skill} step(s) nobody asked for")
    hazards = [k for k, s in enumerate(got) if cs.skills[s.skill].hazard.needs_confirmation]
    missing = [k for k in hazards if k not in plan.get("needs_confirmation", [])]
    if missing:
        unsafe.append(f"unconfirmed hazard steps {missing}")
    said: dict[str, list[Step]] = {}
    for s in want:
        said.setdefault(s.skill, []).append(s)
    seen: Counter[str] = Counter()
    for s in got:
        k = seen[s.skill]
        seen[s.skill] += 1
        if k >= len(said.get(s.skill, [])):
            continue
        truth_step = said[s.skill][k]
        for name in cs.skills[s.skill].args:
            kind = difference(s.args.get(name), truth_step.args.get(name))
            if kind is not None:
                kinds.add(kind)
    return unsafe, kinds


def run(items: list[dict[str, Any]], planner_kind: str, verbose: bool) -> Counter[str]:
    from medrobot_llm.planning.hybrid import HybridPlanner
    from medrobot_llm.planning.rule.planner import RulePlanner

    answer: dict[str, Any] = {}

    def respond(body: dict[str, Any]) -> Reply:
        return wire_reply(body, answer)

    out: Counter[str] = Counter()
    with ScriptedOpenAIServer(responder=respond) as server:
        h = make_planner(server, timeout=5.0)
        planner: Any = HybridPlanner(RulePlanner(), h.planner) if planner_kind == "hybrid" else h.planner
        for it in items:
            for model in ("wrong", "right"):
                answer.clear()
                answer.update(it["model"] if model == "wrong" else {"status": "ok", "steps": it["truth"]})
                before = len(server.chat_requests)
                plan = planner.plan(it["domain"], it["text"]).to_json()
                calls = len(server.chat_requests) - before
                out["commands"] += 1
                out["model called"] += bool(calls)
                unsafe: list[str] = []
                kinds: set[str] = set()
                if plan["status"] == "ok":
                    out["plans"] += 1
                    out[f"plans ({model} model)"] += 1
                    out["plans the model was asked for"] += bool(calls)
                    unsafe, kinds = compare(it["domain"], plan, it["truth"])
                out["unsafe"] += bool(unsafe)
                out["differ"] += bool(kinds)
                for kind in sorted(kinds):
                    out[f"differ in {kind}"] += 1
                if verbose or unsafe or kinds:
                    said = plan.get("reason") or plan.get("question") or ""
                    tag = "UNSAFE" if unsafe else "DIFFER" if kinds else "ok    "
                    print(f"{tag} {it['id']} [{planner_kind}, {model} model, {it['kind']}] calls={calls} "
                          f"{plan['status']}: {'; '.join(unsafe) or ', '.join(sorted(kinds)) or str(said)[:100]}")
    return out


def right_plans_refused(paths: list[Path]) -> tuple[int, int, Counter[str]]:
    """(refused, plans, by code): expected plans of the plan sets that grounding would refuse."""
    from medrobot_llm.core.validator import PlanValidationError
    from medrobot_llm.planning.llm.grounding import ground_plan

    refused = total = 0
    codes: Counter[str] = Counter()
    for path in paths:
        for item in load(path):
            expect = item.get("expect") or {}
            if expect.get("status") != "ok" or not expect.get("steps"):
                continue
            raw = [{"skill": s["skill"], "args": s.get("args") or {}} for s in expect["steps"]]
            try:
                steps, _ = check_steps(item["domain"], raw)
            except PlanValidationError:
                continue
            total += 1
            issues = ground_plan(item["domain"], item["text"], raw, steps)
            if issues:
                refused += 1
                codes[issues[0].code.value] += 1
    return refused, total, codes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", nargs="?", type=Path, default=DEFAULT_SUITE)
    ap.add_argument("--planner", choices=("openai", "hybrid", "both"), default="both")
    ap.add_argument("--json", action="store_true", help="print one JSON object per planner")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--right-plans", nargs="*", type=Path, default=[], metavar="SET",
                    help="plan sets (score_plans format) whose expected plans grounding should accept")
    a = ap.parse_args()
    items = load(a.suite)
    kinds = ["openai", "hybrid"] if a.planner == "both" else [a.planner]
    bad = 0
    for kind in kinds:
        r = run(items, kind, a.verbose)
        bad += r["unsafe"] + r["differ"]
        if a.json:
            print(json.dumps({"planner": kind, **r}))
            continue
        detail = ", ".join(f"{k}: {r[f'differ in {k}']}" for k in DIFFERENCE_KINDS)
        print(f"{kind:7s} {len(items)} commands x 2 models; model asked {r['model called']}; plans: {r['plans']} "
              f"({r['plans the model was asked for']} from the model; with the right model {r['plans (right model)']} "
              f"of {len(items)}, with the wrong one {r['plans (wrong model)']}); unsafe accepted: {r['unsafe']}; "
              f"differing from the text: {r['differ']} ({detail})")
    if a.right_plans:
        refused, total, codes = right_plans_refused(a.right_plans)
        print(f"right plans refused by grounding: {refused} of {total} ({dict(codes)})")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
