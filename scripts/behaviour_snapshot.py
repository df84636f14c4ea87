#!/usr/bin/env python3
"""Show that a refactor kept behaviour: the same inputs give byte-identical outputs at two commits.

A restructuring of the package is only safe if nothing a user or a benchmark sees has moved. This
script records what they see - ``medrobot plan --jsonl`` over every suite in the repository and in
``../shared/benchmarks/``, ``medrobot skills --json`` for every domain, and every command's ``--help``
- and compares two trees. ``--against REF`` checks the work tree against a git commit (checked out
in a temporary worktree); ``--write DIR`` and ``--compare DIR`` keep a snapshot on disk instead.
``--bench`` adds ``medrobot bench --json`` (minus the wall-clock figure), which takes minutes.
``--ignore-field NAME`` accepts a JSON field that the later tree adds: a line that parses as JSON and
differs only by fields of that name which the earlier line lacks counts as identical (JSON fields may
be added, never renamed, so a changed or removed field still differs).

Exit code 0 when identical, 1 when anything differs (each difference is printed), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "benchmarks"


def suites(root: Path) -> list[Path]:
    """Every JSONL file whose lines are commands (they carry a domain and a text)."""
    found: list[Path] = []
    for base in (root / "tests", root / "benchmarks", SHARED):
        for path in sorted(base.rglob("*.jsonl")) if base.is_dir() else []:
            try:
                first = next(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
                row = json.loads(first)
            except (StopIteration, ValueError, OSError):
                continue
            if isinstance(row, dict) and "domain" in row and "text" in row:
                found.append(path)
    return found


def _medrobot(tree: Path, argv: list[str], stdin: str | None = None) -> str:
    """Run the CLI of ``tree`` (its package first on the path, so an editable install elsewhere is ignored)."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0", COLUMNS="120")
    code = "import sys; from medrobot_llm.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *argv], input=stdin, capture_output=True, text=True,
                          env=env, cwd=str(tree), timeout=1800)
    return f"exit {proc.returncode}\n{proc.stdout}"


def _help_topics(tree: Path) -> list[list[str]]:
    """``--help`` of the program and of every sub-command it lists (flags are part of the contract)."""
    out = _medrobot(tree, ["--help"])
    names = re.findall(r"^    ([a-z][a-z_-]*)(?:\s|$)", out, flags=re.MULTILINE)
    if not names:
        raise SystemExit(f"cannot read the sub-commands from `medrobot --help` in {tree}")
    return [["--help"], *([name, "--help"] for name in names)]


def snapshot(tree: Path, bench: bool) -> dict[str, str]:
    """Every output this script compares, keyed by a name that says where it came from."""
    shot: dict[str, str] = {}
    for path in suites(tree):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        stdin = "".join(json.dumps({"domain": r["domain"], "text": r["text"]}) + "\n" for r in rows)
        name = path.relative_to(SHARED.parent) if path.is_relative_to(SHARED.parent) else path.relative_to(tree)
        shot[f"plan --jsonl < {name}"] = _medrobot(tree, ["plan", "--jsonl"], stdin)
    for domain in ("surgery", "ultrasound", "xray"):
        shot[f"skills --domain {domain} --json"] = _medrobot(tree, ["skills", "--domain", domain, "--json"])
    for topic in _help_topics(tree):
        shot[f"{' '.join(topic)}"] = _medrobot(tree, topic)
    if bench:
        with tempfile.TemporaryDirectory() as out:
            raw = _medrobot(tree, ["bench", "--json", "--out", out])
        code, _, body = raw.partition("\n")
        figures = json.loads(body)
        for key in ("wall_s", "git", "out"):  # the clock, the commit and the temporary folder differ by nature
            figures.pop(key, None)
        shot["bench --json (without wall_s, git, out)"] = f"{code}\n{json.dumps(figures, sort_keys=True)}\n"
    return shot


def _without_added(before: Any, after: Any, fields: frozenset[str]) -> Any:
    """``after`` minus the ``fields`` that ``before`` lacks, at any depth where the two have the same shape."""
    if isinstance(before, dict) and isinstance(after, dict):
        return {k: _without_added(before.get(k), v, fields) for k, v in after.items()
                if k in before or k not in fields}
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [_without_added(x, y, fields) for x, y in zip(before, after)]
    return after


#: the ways the CLI prints JSON: one line (``plan --json``, ``--jsonl``), or indented (``skills --json``)
_STYLES: tuple[dict[str, Any], ...] = ({}, {"indent": 2})


def _same_json(before: str, after: str, fields: frozenset[str]) -> bool:
    """Whether ``after`` is ``before`` plus the added ``fields``, byte for byte otherwise: both texts must be
    printed in the same style, so dropping the fields from ``after`` and printing it again gives ``before``."""
    try:
        old, new = json.loads(before), json.loads(after)
    except ValueError:
        return False
    for style in _STYLES:
        if json.dumps(old, **style) == before and json.dumps(new, **style) == after:
            return json.dumps(_without_added(old, new, fields), **style) == before
    return False


def same_output(before: str, after: str, fields: frozenset[str] = frozenset()) -> bool:
    """Whether two outputs (an exit line, then what was printed) are identical up to the added ``fields``,
    compared line by line, or as one JSON document when it spans lines."""
    if before == after:
        return True
    if not fields:
        return False
    old, new = before.splitlines(), after.splitlines()
    if len(old) == len(new) and all(x == y or _same_json(x, y, fields) for x, y in zip(old, new)):
        return True
    head_old, _, body_old = before.partition("\n")
    head_new, _, body_new = after.partition("\n")
    return head_old == head_new and _same_json(body_old.rstrip("\n"), body_new.rstrip("\n"), fields) \
        and body_old.endswith("\n") == body_new.endswith("\n")


def compare(before: dict[str, str], after: dict[str, str], fields: frozenset[str] = frozenset()) -> int:
    differ = 0
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is not None and b is not None and same_output(a, b, fields):
            continue
        differ += 1
        print(f"DIFFERS: {key}")
        if a is None or b is None:
            print(f"  only {'after' if a is None else 'before'}")
            continue
        for line in list(difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "after", lineterm=""))[:40]:
            print(f"  {line}")
    print(f"{len(set(before) | set(after)) - differ} outputs identical, {differ} differ")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python scripts/behaviour_snapshot.py --against HEAD~1")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--against", metavar="REF", help="compare the work tree with this git commit")
    mode.add_argument("--write", type=Path, metavar="DIR", help="write this tree's snapshot into DIR")
    mode.add_argument("--compare", type=Path, metavar="DIR", help="compare this tree with a snapshot in DIR")
    parser.add_argument("--bench", action="store_true", help="also compare `medrobot bench --json` (minutes)")
    parser.add_argument("--ignore-field", action="append", default=[], metavar="NAME",
                        help="a JSON field the work tree adds (absent before) that does not count as a difference; "
                        "repeat for several")
    args = parser.parse_args(argv)
    fields = frozenset(args.ignore_field)

    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        (args.write / "snapshot.json").write_text(json.dumps(snapshot(ROOT, args.bench), indent=1, sort_keys=True))
        print(f"snapshot written to {args.write / 'snapshot.json'}")
        return 0
    if args.compare:
        before = json.loads((args.compare / "snapshot.json").read_text(encoding="utf-8"))
        return compare(before, snapshot(ROOT, args.bench), fields)
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), args.against],
                       check=True, capture_output=True)
        try:
            before = snapshot(other, args.bench)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    return compare(before, snapshot(ROOT, args.bench), fields)


if __name__ == "__main__":
    sys.exit(main())
