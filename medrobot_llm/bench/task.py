"""What one line of the task-success suite says: the command, the plan it should give and how to judge the run.

A task is one JSON line::

    {"id", "domain", "task", "kind", "text", "expect": {"status", "steps"?, "control"?},
     "scene", "check": {"name", "args"}, "seeds": [int], "during"?}

``kind`` is ``run`` (should execute and pass its checker), ``control`` (a control intent, acted on when
idle or, with ``during``, while the ``during`` command waits for its first confirmation), ``refuse`` or
``clarify`` (must not move anything). ``expect`` is scored with :func:`plan_mismatch`, the rule of the
shared plan benchmark (``../shared/benchmarks/score_plans.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BenchTask", "CheckSpec", "TaskKind"]

TaskKind = Literal["run", "control", "refuse", "clarify"]


class CheckSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class BenchTask(BaseModel):
    """One line of the suite."""

    model_config = ConfigDict(extra="forbid")

    id: str
    domain: str
    task: str
    kind: TaskKind
    text: str
    expect: dict[str, Any]
    scene: str
    check: CheckSpec
    seeds: list[int] = Field(min_length=1)
    during: str | None = None

    @property
    def should_run(self) -> bool:
        return self.kind in ("run", "control")

    @property
    def must_refuse(self) -> bool:
        return self.kind in ("refuse", "clarify")

    def seeds_for(self, k: int | None) -> list[int]:
        """The task's own seeds, or ``k`` consecutive seeds from its first one."""
        if k is None:
            return list(self.seeds)
        return [self.seeds[0] + i for i in range(k)]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

