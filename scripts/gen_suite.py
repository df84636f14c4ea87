#!/usr/bin/env python3
"""Regenerate benchmarks/suite/tasks.jsonl from the templates in medrobot_llm/bench/templates.py.

    python scripts/gen_suite.py          # write the file
    python scripts/gen_suite.py --check  # exit 1 if the committed file is stale

Deterministic: the same command set and templates give the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from medrobot_llm.bench.suite import default_suite_path, dumps, generate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=default_suite_path(), help="suite file (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 if different")
    args = p.parse_args(argv)
    tasks = generate()
    text = dumps(tasks)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is stale: run python scripts/gen_suite.py", file=sys.stderr)
            return 1
        print(f"{args.out} is fresh ({len(tasks)} tasks)")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    kinds = Counter(t["kind"] for t in tasks)
    print(f"wrote {len(tasks)} tasks to {args.out}: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
