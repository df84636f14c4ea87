"""The verdict of a scene's success checker, shared by every domain so benchmarks can tabulate them alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckResult"]


@dataclass(frozen=True)
class CheckResult:
    """``success`` with the first ``reason`` it failed (or what held), and the measured figures behind it."""

    success: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.success

    def to_json(self) -> dict[str, Any]:
        return {"success": self.success, "reason": self.reason, "metrics": dict(self.metrics)}
