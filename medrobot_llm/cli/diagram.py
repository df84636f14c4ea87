"""``medrobot diagram``: regenerate ``docs/supervisor.md`` from the supervisor's transition table.

The diagram is never drawn by hand; ``--check`` fails when the committed file no longer matches the
table, so a changed rule cannot ship with a stale picture.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from medrobot_llm.core.paths import SOURCE_ROOT

__all__ = ["default_path", "register"]


def default_path() -> Path:
    """``docs/supervisor.md`` of the source tree this package runs from."""
    return SOURCE_ROOT / "docs" / "supervisor.md"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diagram",
        help="regenerate the supervisor state diagram (docs/supervisor.md)",
        description="Write the supervisor's state machine as a Mermaid diagram and tables, generated from its "
        "transition table. With --check, write nothing and exit 1 if the file is out of date.",
    )
    p.add_argument("--output", "-o", type=Path, default=None, help="file to write (default: docs/supervisor.md)")
    p.add_argument("--check", action="store_true", help="only check that the file is up to date (exit 1 if not)")
    p.add_argument("--stdout", action="store_true", help="print the document instead of writing it")
    p.add_argument("--json", action="store_true", help="print one JSON object with the outcome")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medrobot_llm.safety.machine import mermaid_diagram, supervisor_doc

    text = supervisor_doc()
    path: Path = args.output or default_path()
    if args.stdout:
        if args.json:
            print(json.dumps({"document": text, "mermaid": mermaid_diagram()}))
        else:
            sys.stdout.write(text)
        return 0
    try:
        current = path.read_text(encoding="utf-8") if path.exists() else None
    except OSError as exc:
        return _report(args, path, False, False, f"cannot read {path}: {exc.strerror}", 2)
    up_to_date = current == text
    if args.check:
        msg = f"{path} is up to date" if up_to_date else f"{path} is out of date; run `medrobot diagram`"
        return _report(args, path, up_to_date, False, msg, 0 if up_to_date else 1)
    if up_to_date:
        return _report(args, path, True, False, f"{path} is already up to date", 0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _report(args, path, False, False, f"cannot write {path}: {exc.strerror}", 2)
    return _report(args, path, True, True, f"wrote {path}", 0)


def _report(args: argparse.Namespace, path: Path, up_to_date: bool, written: bool, message: str, code: int) -> int:
    if args.json:
        print(json.dumps({"path": str(path), "up_to_date": up_to_date, "written": written, "message": message}))
    else:
        print(message, file=sys.stderr if code else sys.stdout)
    return code
