"""Planners for the console tests that stand for a real model's timing, not its answers."""

from __future__ import annotations

import threading
from typing import Any

from medrobot_llm.planning.rule.planner import RulePlanner

__all__ = ["ThinkingPlanner"]


class ThinkingPlanner:
    """The rule planner behind a slow model: it answers only when the test lets it (no sleep, no clock)."""

    name = "thinking"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.answer = threading.Event()
        self._rule = RulePlanner()

    def plan(self, domain: str, text: str, world: Any = None) -> Any:
        self.started.set()
        assert self.answer.wait(30), "the test never let the planner answer"
        return self._rule.plan(domain, text, world)
