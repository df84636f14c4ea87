"""The supervisor's records as types: one pydantic model per ``kind``, one discriminated union of them all.

The supervisor builds these and its listeners match on them; the audit log, ``--json`` output and the ROS
``/medrobot/events`` topic carry ``record()``, which is exactly the dict that was written before these
types existed (same keys, same order, same values), so no file or wire format changed with them.

A record's fields are declared in the order they are written. Fields a producer may leave out (a
command's argument, a state change's ``cause``) are left out of the record when not given, never
written as ``null``. ``seq`` is the audit log's number for the record, known once it is written (absent
on feedback, which is not logged); ``clock`` is the supervisor's clock when it was made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from medrobot_llm.safety.replies import Reply

__all__ = [
    "CommandEvent",
    "ConfirmationEvent",
    "EstopEvent",
    "EventListener",
    "FeedbackEvent",
    "GoalRefusedEvent",
    "HaltFailedEvent",
    "PlanDiscardedEvent",
    "PlanEvent",
    "QuestionEvent",
    "ReplyEvent",
    "RunEndEvent",
    "RunEvent",
    "SessionEvent",
    "StateEvent",
    "StepRejectedEvent",
    "StepResultEvent",
    "StepSentEvent",
    "UntrustedEvent",
    "SupervisorEvent",
    "ValidationEvent",
    "parse_event",
]

#: a number as it was given: ``float`` alone would write a clock of 3 as 3.0
Number = int | float
Json = dict[str, Any]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    #: record keys written ahead of the fields (``seq`` and ``kind`` by the audit log)
    _HEAD: ClassVar[frozenset[str]] = frozenset({"seq", "kind", "clock"})

    kind: str
    seq: int | None = None
    clock: Number | None = None

    def fields(self) -> dict[str, Any]:
        """The record's own fields, as the audit log's ``append`` takes them (``clock`` last)."""
        out = self.model_dump(by_alias=True, exclude_unset=True, exclude=set(self._HEAD))
        if "clock" in self.model_fields_set:
            out["clock"] = self.clock
        return out

    def record(self) -> dict[str, Any]:
        """The record as listeners, ``--json`` and ``/medrobot/events`` have always seen it."""
        head: dict[str, Any] = {"seq": self.seq} if "seq" in self.model_fields_set else {}
        return {**head, "kind": self.kind, **self.fields()}


class SessionEvent(_Event):
    kind: Literal["session"] = "session"
    domain: str
    backend: str
    planner: str | None
    state: str
    world: Json | None
    config: Json


class CommandEvent(_Event):
    """A command as it came in, logged before it is acted on; at most one of the optional arguments."""

    kind: Literal["command"] = "command"
    op: str
    source: str | None
    state: str
    n_states: int
    text: str | None = None
    plan: Json | None = None
    step_index: int | None = None
    reason: str | None = None


class PlanEvent(_Event):
    kind: Literal["plan"] = "plan"
    text: str
    plan: Json
    planner: str | None
    latency_ms: Number


class PlanDiscardedEvent(_Event):
    kind: Literal["plan_discarded"] = "plan_discarded"
    plan: Json
    state: str


class ValidationEvent(_Event):
    """The plan checked against the world; without ``world`` when it was refused before (wrong domain, a robot
    that has not reported yet)."""

    kind: Literal["validation"] = "validation"
    ok: bool
    plan: Json
    world: Json | None = None
    reason: str | None

    def fields(self) -> dict[str, Any]:
        out = super().fields()
        if "world" not in self.model_fields_set:
            # the refusal before any world was read has always been written reason first
            out = {"ok": out.pop("ok"), "reason": out.pop("reason"), **out}
        return out


class RunEvent(_Event):
    kind: Literal["run"] = "run"
    run: int
    steps: list[Json]
    needs_confirmation: list[int]


class QuestionEvent(_Event):
    kind: Literal["question"] = "question"
    run: int
    step_index: int
    skill: str
    hazard: str
    text: str
    asked_at: Number
    expires_at: Number


class ConfirmationEvent(_Event):
    kind: Literal["confirmation"] = "confirmation"
    run: int | None
    step: int | None
    accepted: bool
    given: int | None
    reason: str | None


class StepSentEvent(_Event):
    kind: Literal["step_sent"] = "step_sent"
    run: int
    step: int
    skill: str
    args: Json
    hazard: str
    confirmed: bool
    state: str


class FeedbackEvent(_Event):
    """Step progress: delivered to listeners only, never logged (so no ``seq`` and no ``clock``)."""

    kind: Literal["feedback"] = "feedback"
    run: int
    step: int
    phase: str
    progress: Number
    telemetry: Json


class StepRejectedEvent(_Event):
    kind: Literal["step_rejected"] = "step_rejected"
    run: int
    step: int
    reason: str
    fault: bool


class StepResultEvent(_Event):
    kind: Literal["step_result"] = "step_result"
    run: int
    step: int
    skill: str
    success: bool
    failure: str
    message: str
    outcome: Json

    def image_paths(self) -> list[str]:
        """The PNG files the step saved, as its outcome names them."""
        found: list[str] = []
        for key in ("path", "image", "images", "paths"):
            value = self.outcome.get(key)
            values = value if isinstance(value, list) else [value]
            found += [str(v) for v in values if isinstance(v, str) and v.endswith(".png")]
        return found


class RunEndEvent(_Event):
    kind: Literal["run_end"] = "run_end"
    run: int
    outcome: str
    reason: str
    steps_done: int
    steps: int


class StateEvent(_Event):
    kind: Literal["state"] = "state"
    source: str = Field(validation_alias="from", serialization_alias="from")
    to: str
    trigger: str
    reason: str
    cause: str | None = None


class EstopEvent(_Event):
    """A latched e-stop; ``source`` is left out for a stop someone asked for, ``robot`` for a halt the robot
    reported that the supervisor had not ordered (a press it did not hear)."""

    kind: Literal["estop"] = "estop"
    reason: str
    halted: bool
    error: str | None
    source: str | None = None


class HaltFailedEvent(_Event):
    kind: Literal["halt_failed"] = "halt_failed"
    reason: str
    error: str


class UntrustedEvent(_Event):
    """A message the supervisor refused on who sent it or what it answers (``safety.operator``, the planner's
    signature): logged with the identity the sender claimed, which the refusal does not prove."""

    kind: Literal["untrusted"] = "untrusted"
    topic: str
    op: str  # the operator message's kind as claimed ("command", "confirm", ...), or "plan"
    claimed: str  # the operator the message claims to be from ("" if none)
    code: str  # the core.reasons.Reason of the check that refused it
    reason: str


class GoalRefusedEvent(_Event):
    """A goal a skill server refused before anything moved (its own audit log: the supervisor may be gone)."""

    kind: Literal["goal_refused"] = "goal_refused"
    goal: str  # "plan P step N (skill)"
    goal_id: str
    skill: str
    code: str
    reason: str


class ReplyEvent(_Event):
    """The ROS supervisor node's answer to one command (``Reply``'s JSON form), on ``/medrobot/events``."""

    kind: Literal["reply"] = "reply"
    op: str
    accepted: bool
    state: str
    message: str
    plan: Json | None
    question: Json | None
    text: str | None = None
    state_seq: int | None = None

    @classmethod
    def answering(cls, op: str, reply: Reply, *, text: str | None, state_seq: int) -> ReplyEvent:
        """The reply to ``op`` (``text``: the command it answers, if any) and the state published after it."""
        said: dict[str, Any] = {"text": text} if text is not None else {}
        return cls(op=op, **reply.to_json(), **said, state_seq=state_seq)


SupervisorEvent = Annotated[
    SessionEvent | CommandEvent | PlanEvent | PlanDiscardedEvent | ValidationEvent | RunEvent | QuestionEvent
    | ConfirmationEvent | StepSentEvent | FeedbackEvent | StepRejectedEvent | StepResultEvent | RunEndEvent
    | StateEvent | EstopEvent | HaltFailedEvent | ReplyEvent | UntrustedEvent | GoalRefusedEvent,
    Field(discriminator="kind"),
]

#: what ``subscribe`` takes, on the in-process supervisor and on the ROS remote alike
EventListener = Callable[[SupervisorEvent], object]

_ADAPTER: TypeAdapter[SupervisorEvent] = TypeAdapter(SupervisorEvent)


def parse_event(record: Mapping[str, Any]) -> SupervisorEvent | None:
    """The event a record (from the audit log or the wire) holds; None for other kinds or a malformed one."""
    try:
        return _ADAPTER.validate_python(record)
    except ValidationError:
        return None
