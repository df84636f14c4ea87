"""``medrobot plan`` and ``medrobot skills``' sibling: text in, a plan out (human-readable or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from medrobot_llm.consoles.render import render_plan
from medrobot_llm.core.reasons import Reason
from medrobot_llm.planning.admission import plan_text
from medrobot_llm.planning.factory import add_planner_arguments, close_planner, make_planner

if TYPE_CHECKING:
    from medrobot_llm.planning.base import Planner

__all__ = ["register"]


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import domain_names

    p = sub.add_parser(
        "plan",
        help="turn a command into a validated plan",
        description="Plan one command (TEXT), or with --jsonl read {\"domain\", \"text\"} lines on stdin and write "
        "one plan object per line. Exit code 0 whatever the plan's status; 2 for a usage error.",
    )
    p.add_argument("text", nargs="?", help="the command, e.g. \"scan the left kidney\"")
    p.add_argument("--domain", "-d", help=f"{domain_names()} (required unless --jsonl lines carry it)")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.add_argument("--jsonl", action="store_true", help="stream: JSON lines on stdin, one plan per line on stdout")
    add_planner_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        planner = make_planner(args)
    except ValueError as exc:
        print(f"medrobot plan: {exc}", file=sys.stderr)
        return 2
    try:
        return _plan(args, planner)
    finally:
        close_planner(planner)   # an --llm-audit log ends with its close record, not as if killed


def _plan(args: argparse.Namespace, planner: Planner) -> int:
    if args.jsonl:
        return _stream(planner, args.domain)
    if args.text is None:
        print("medrobot plan: give the command TEXT, or --jsonl to read lines on stdin", file=sys.stderr)
        return 2
    from medrobot_llm.cli.options import domain_names
    from medrobot_llm.core.command_set import DOMAINS, unknown_domain

    if args.domain is None:
        print(f"medrobot plan: --domain is required ({domain_names()})", file=sys.stderr)
        return 2
    if args.domain not in DOMAINS:
        print(f"medrobot plan: {unknown_domain(args.domain)}", file=sys.stderr)
        return 2
    plan = plan_text(planner, args.domain, args.text)
    if args.json:
        print(json.dumps(plan.to_json()))
    else:
        print(render_plan(plan))
    return 0


def _stream(planner: Planner, default_domain: str | None) -> int:
    from medrobot_llm.core.plan import Plan

    stdin = sys.stdin.buffer
    for raw in stdin:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            plan = Plan.refused(default_domain or "unknown", "the input line is not valid UTF-8", Reason.INVALID_TEXT)
            print(json.dumps(plan.to_json()), flush=True)
            continue
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):  # deep nesting exhausts the parser's stack: one bad line, not the end
            plan = Plan.refused(default_domain or "unknown", "the input line is not a JSON object "
                                "{\"domain\": ..., \"text\": ...}", Reason.MALFORMED)
            print(json.dumps(plan.to_json()), flush=True)
            continue
        domain = item.get("domain", default_domain)
        text = item.get("text")
        if not isinstance(text, str):
            plan = Plan.refused(str(domain)[:40], "the input line has no \"text\" string", Reason.MALFORMED)
        else:
            try:
                plan = plan_text(planner, str(domain), text)
            except Exception as exc:  # a stream answers every line: a planner bug refuses this one, the next is read
                plan = Plan.refused(str(domain)[:40], f"the planner failed on this command ({type(exc).__name__}); "
                                    "nothing was planned", Reason.PLANNER_ERROR)
        print(json.dumps(plan.to_json()), flush=True)
    return 0
