"""The task-success suite as a run reads it: the committed file, checked line by line, and the selection
of tasks to run (a domain, or a round-robin sample of every task family).

What a line says is :mod:`medrobot_llm.bench.task`; how the lines are made is
:mod:`medrobot_llm.bench.templates` (``scripts/gen_suite.py`` writes them to ``benchmarks/suite/tasks.jsonl``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medrobot_llm.bench.checks import plan_mismatch
from medrobot_llm.bench.task import BenchTask, CheckSpec
from medrobot_llm.bench.templates import generate
from medrobot_llm.core.paths import SOURCE_ROOT

__all__ = ["BenchTask", "CheckSpec", "default_suite_path", "dumps", "generate", "load_suite", "plan_mismatch",
           "select"]


def default_suite_path() -> Path:
    """``benchmarks/suite/tasks.jsonl`` of the source tree (a wheel has none: the suite is generated)."""
    return SOURCE_ROOT / "benchmarks" / "suite" / "tasks.jsonl"


def load_suite(path: Path | None = None) -> list[BenchTask]:
    """Read a suite file; without one, the committed suite, or the generated one where there is none."""
    if path is None:
        path = default_suite_path()
        if not path.is_file():
            return [BenchTask.model_validate(t) for t in generate()]
    tasks = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                tasks.append(BenchTask.model_validate(json.loads(line)))
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not a suite task: {exc}") from exc
    ids = Counter(t.id for t in tasks)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        raise ValueError(f"{path}: duplicate task ids {dup[:5]}")
    return tasks


def select(tasks: list[BenchTask], *, domain: str | None = None, limit: int | None = None) -> list[BenchTask]:
    """Filter by domain; ``limit`` takes tasks round-robin over the task families, so a small run still
    touches every kind of task."""
    if domain is not None:
        tasks = [t for t in tasks if t.domain == domain]
    if limit is None or limit >= len(tasks):
        return tasks
    families: dict[tuple[str, str], list[BenchTask]] = {}
    for t in tasks:
        families.setdefault((t.domain, t.task), []).append(t)
    queues = [iter(v) for v in families.values()]
    picked: list[BenchTask] = []
    while len(picked) < limit and queues:
        alive = []
        for q in queues:
            task = next(q, None)
            if task is None:
                continue
            alive.append(q)
            picked.append(task)
            if len(picked) == limit:
                break
        queues = alive
    order = {t.id: i for i, t in enumerate(tasks)}
    return sorted(picked, key=lambda t: order[t.id])


def dumps(tasks: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks)

