"""``medrobot plan`` and ``medrobot skills``' sibling: text in, a plan out (human-readable or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from medrobot_llm.core.reasons import Reason

if TYPE_CHECKING:
    from medrobot_llm.core.plan import Plan
    from medrobot_llm.planning.base import Planner

__all__ = ["register", "make_planner", "clean_command", "PLANNERS"]

PLANNERS = ("rule", "openai", "hybrid")
MAX_TEXT_BYTES = 4096


def add_planner_arguments(parser: argparse.ArgumentParser) -> None:
    """The planner flags every planning command shares (plan, run, console, voice, bench)."""
    parser.add_argument("--planner", choices=PLANNERS, default="rule",
                        help="rule: the embedded offline planner (default); openai: an OpenAI-compatible "
                        "endpoint; hybrid: rule first, the model only for what it cannot parse")
    try:
        from medrobot_llm.planning.llm.config import add_llm_arguments
    except ModuleNotFoundError:
        return
    add_llm_arguments(parser)


def make_planner(args: argparse.Namespace) -> Planner:
    from medrobot_llm.planning.rule.planner import RulePlanner

    name = getattr(args, "planner", "rule")
    if name == "rule":
        return RulePlanner()
    from medrobot_llm.planning.hybrid import planner_from_args

    return planner_from_args(args)


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


def clean_command(text: str) -> tuple[str | None, tuple[Reason, str] | None]:
    """Bound and sanitise raw input before any planner sees it; returns (text, None) or (None, (code, reason))."""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_TEXT_BYTES:
        return None, (Reason.TOO_LONG, f"the command is longer than {MAX_TEXT_BYTES} bytes; say one command at a time")
    if "\ufffd" in text or any(0xDC80 <= ord(c) <= 0xDCFF for c in text):
        return None, (Reason.INVALID_TEXT, "the command is not valid UTF-8 text")
    if any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in text):
        return None, (Reason.INVALID_TEXT, "the command contains control characters; type plain text")
    text = " ".join(text.split())
    if not text:
        return None, (Reason.EMPTY, "the command is empty; say what the robot should do")
    return text, None


def _clean(text: str) -> tuple[str | None, str | None]:
    """``clean_command`` for the consoles, which print the reason and need no code."""
    clean, refusal = clean_command(text)
    return clean, refusal[1] if refusal else None


def plan_text(planner: Planner, domain: str, text: str) -> Plan:
    from medrobot_llm.core.plan import Plan
    from medrobot_llm.core.command_set import DOMAINS, unknown_domain

    if domain not in DOMAINS:
        return Plan.refused(str(domain)[:40], unknown_domain(str(domain)[:40]), Reason.UNKNOWN_DOMAIN)
    clean, refusal = clean_command(text)
    if clean is None:
        assert refusal is not None
        code, why = refusal
        return Plan.refused(domain, why, code)
    return planner.plan(domain, clean)


def render_plan(plan: Plan) -> str:
    """The plan as people read it: numbered steps, hazards marked, or the reason / question."""
    from medrobot_llm.core.command_set import load_command_set

    if plan.status.value == "refused":
        return f"REFUSED: {plan.reason}"
    if plan.status.value == "clarify":
        return f"QUESTION: {plan.question}"
    if plan.status.value == "control":
        return f"CONTROL: {plan.control.value if plan.control else '?'}"
    cs = load_command_set(plan.domain)
    lines = [f"Plan ({plan.domain}, {len(plan.steps)} step{'s' if len(plan.steps) != 1 else ''}):"]
    for k, step in enumerate(plan.steps):
        spec = cs.skill(step.skill)
        hazard = spec.hazard.value if spec else "?"
        mark = {"contact": "  [CONTACT - needs confirmation]", "radiation": "  [RADIATION - needs confirmation]",
                "motion": "  [motion]"}.get(hazard, "")
        lines.append(f"  {k + 1}. {step.describe()}{mark}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    try:
        planner = make_planner(args)
    except ValueError as exc:
        print(f"medrobot plan: {exc}", file=sys.stderr)
        return 2
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
        except ValueError:
            plan = Plan.refused(default_domain or "unknown", "the input line is not a JSON object "
                                "{\"domain\": ..., \"text\": ...}", Reason.MALFORMED)
            print(json.dumps(plan.to_json()), flush=True)
            continue
        domain = item.get("domain", default_domain)
        text = item.get("text")
        if not isinstance(text, str):
            plan = Plan.refused(str(domain), "the input line has no \"text\" string", Reason.MALFORMED)
        else:
            plan = plan_text(planner, str(domain), text)
        print(json.dumps(plan.to_json()), flush=True)
    return 0
