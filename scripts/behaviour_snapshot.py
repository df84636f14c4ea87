#!/usr/bin/env python3
"""Show that a refactor kept behaviour: the same inputs give byte-identical outputs at two commits.

A restructuring of the package is only safe if nothing a user or a benchmark sees has moved. This
script records what they see - ``medrobot plan --jsonl`` over every suite in the repository and in
``../shared/benchmarks/``, ``medrobot skills --json`` for every domain, and every command's ``--help``
- and compares two trees. ``--against REF`` checks the work tree against a git commit (checked out
in a temporary worktree); ``--write DIR`` and ``--compare DIR`` keep a snapshot on disk instead.
``--bench`` adds ``medrobot bench --json`` (minus the wall-clock figure), which takes minutes.

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
        figures.pop("wall_s", None)
        shot["bench --json (without wall_s)"] = f"{code}\n{json.dumps(figures, sort_keys=True)}\n"
    return shot


def compare(before: dict[str, str], after: dict[str, str]) -> int:
    differ = 0
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
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
    args = parser.parse_args(argv)

    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        (args.write / "snapshot.json").write_text(json.dumps(snapshot(ROOT, args.bench), indent=1, sort_keys=True))
        print(f"snapshot written to {args.write / 'snapshot.json'}")
        return 0
    if args.compare:
        before = json.loads((args.compare / "snapshot.json").read_text(encoding="utf-8"))
        return compare(before, snapshot(ROOT, args.bench))
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), args.against],
                       check=True, capture_output=True)
        try:
            before = snapshot(other, args.bench)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    return compare(before, snapshot(ROOT, args.bench))


if __name__ == "__main__":
    sys.exit(main())
