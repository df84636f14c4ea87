"""What every planner (rule, openai, hybrid) promises: text in, a validated ``Plan`` out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from medrobot_llm.core.plan import Plan
from medrobot_llm.core.validator import WorldState

__all__ = ["Planner"]


@runtime_checkable
class Planner(Protocol):
    name: str

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        """Plan one command. Never raises on bad text: refusals and questions are plans too."""
        ...
