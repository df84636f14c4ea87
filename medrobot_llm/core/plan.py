"""The plan: what a planner hands to the validator and the supervisor, and what ``--json`` prints.

The JSON form is a contract with the benchmarks (architecture.md): fields may be added, never renamed.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medrobot_llm.core.reasons import Reason

__all__ = ["Control", "Plan", "PlanStatus", "Step"]


class PlanStatus(str, Enum):
    OK = "ok"
    REFUSED = "refused"
    CLARIFY = "clarify"
    CONTROL = "control"


class Control(str, Enum):
    """Intents the supervisor acts on at once, whatever it is doing; never plan steps."""

    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    CONFIRM = "confirm"
    DENY = "deny"
    STATUS = "status"


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skill: str
    args: dict[str, Any] = Field(default_factory=dict)

    def describe(self) -> str:
        if not self.args:
            return self.skill
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.args.items())
        return f"{self.skill}({inner})"


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


class Plan(BaseModel):
    """A planner's answer to one command."""

    model_config = ConfigDict(extra="forbid")

    status: PlanStatus
    domain: str
    steps: list[Step] = Field(default_factory=list)
    control: Control | None = None
    reason: str | None = None
    question: str | None = None
    needs_confirmation: list[int] = Field(default_factory=list)
    #: the kind of refusal or question, for scripts; added after the others
    code: Reason | None = None
    #: per step, argument -> the words of the command that said its value (an argument no word said, a
    #: default, is left out), so a console can show what each value was read from; empty when the planner
    #: does not say (the LLM planner)
    words: list[dict[str, str]] = Field(default_factory=list)

    @classmethod
    def refused(cls, domain: str, reason: str, code: Reason) -> Plan:
        return cls(status=PlanStatus.REFUSED, domain=domain, reason=reason, code=code)

    @classmethod
    def clarify(cls, domain: str, question: str, code: Reason) -> Plan:
        return cls(status=PlanStatus.CLARIFY, domain=domain, question=question, code=code)

    @classmethod
    def of_control(cls, domain: str, control: Control) -> Plan:
        return cls(status=PlanStatus.CONTROL, domain=domain, control=control)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
