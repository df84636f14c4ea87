"""What the supervisor answers with: the ``Reply`` to every command and the ``Question`` it may be waiting on.

Kept apart from the supervisor so the machine's guards, the consoles and the ROS remote can all use the
same types without importing the supervisor itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medrobot_llm.core.command_set import Hazard
from medrobot_llm.core.plan import Plan

if TYPE_CHECKING:
    from medrobot_llm.safety.machine import SupervisorState

__all__ = ["Question", "Reply"]


@dataclass(frozen=True)
class Question:
    """The confirmation the supervisor is waiting for: about one step of one run, until ``expires_at``."""

    run: int
    step_index: int
    skill: str
    hazard: Hazard
    text: str
    asked_at: float
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "step_index": self.step_index, "skill": self.skill, "hazard": self.hazard.value,
                "text": self.text, "asked_at": self.asked_at, "expires_at": self.expires_at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Question:
        return cls(int(data["run"]), int(data["step_index"]), str(data["skill"]), Hazard(data["hazard"]),
                   str(data["text"]), data["asked_at"], data["expires_at"])


@dataclass(frozen=True)
class Reply:
    """The answer to every command: accepted or not, the state after it, and a sentence for people."""

    accepted: bool
    state: SupervisorState
    message: str
    plan: Plan | None = None
    question: Question | None = None

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "state": self.state.value, "message": self.message,
                "plan": self.plan.to_json() if self.plan else None,
                "question": self.question.to_json() if self.question else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reply:
        """The ``Reply`` whose ``to_json`` gave ``data`` (as the ROS supervisor node sends it)."""
        from medrobot_llm.safety.machine import SupervisorState

        plan, question = data.get("plan"), data.get("question")
        return cls(bool(data["accepted"]), SupervisorState(data["state"]), str(data["message"]),
                   Plan.model_validate(plan) if isinstance(plan, Mapping) else None,
                   Question.from_json(question) if isinstance(question, Mapping) else None)
