"""``medrobot skills``: the command set as a table, or as JSON Schema for scripts and LLM tooling."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import domain_names

    p = sub.add_parser("skills", help="print the command set of a domain",
                       description="Print a domain's command set: a readable table, or JSON Schema with --json.")
    p.add_argument("--domain", "-d", required=True, help=domain_names())
    p.add_argument("--json", action="store_true", help="print JSON Schema (one object)")
    p.add_argument("--markdown", action="store_true", help="print the Markdown table used in the README")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medrobot_llm.core.docs import command_table
    from medrobot_llm.core.schema import json_schema
    from medrobot_llm.core.command_set import DOMAINS, SkillFileError, unknown_domain

    if args.domain not in DOMAINS:
        print(f"medrobot skills: {unknown_domain(args.domain)}", file=sys.stderr)
        return 2
    try:
        if args.json:
            print(json.dumps(json_schema(args.domain), indent=2))
        else:
            print(command_table(args.domain, markdown=args.markdown))
    except SkillFileError as exc:
        print(f"medrobot skills: {exc}", file=sys.stderr)
        return 1
    return 0
