"""What the web console says and hears, as typed models: the messages pushed to the page over the WebSocket and
the request bodies it accepts. Every body is validated here before the hub sees it, with the size limits of the
contract (text 2 KB, audio 10 MB), so a malformed or oversized request is a 4xx with its reason and never a
half-read command.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

__all__ = ["AUDIO_LIMIT", "JSON_LIMIT", "TEXT_LIMIT", "AuditMessage", "CommandBody", "ConfirmBody", "ImageMessage",
           "ImageKind", "LogMessage", "PlanMessage", "PlanStepView", "QuestionMessage", "ReplyMessage",
           "StateMessage", "TelemetryMessage", "TranscriptMessage", "ViewMessage", "WsIn"]

#: a typed command, in bytes of UTF-8
TEXT_LIMIT = 2048
#: a whole JSON request body (a command with its escapes, a confirmation)
JSON_LIMIT = 4 * TEXT_LIMIT
#: one push-to-talk recording (WAV): 10 MB is over five minutes of 16 kHz mono
AUDIO_LIMIT = 10 * 1024 * 1024

ImageKind = Literal["frame", "bmode", "radiograph"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandBody(_Body):
    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _fits(cls, value: str) -> str:
        if len(value.encode("utf-8")) > TEXT_LIMIT:
            raise ValueError(f"a command is at most {TEXT_LIMIT} bytes")
        return value


class ConfirmBody(_Body):
    """Strict: the page always sends a JSON boolean and says how it was pressed, so ``"true"``, ``1`` or a body
    without ``via`` (which once counted as the button) is a request the page never makes, refused with 422."""

    question: StrictStr = Field(min_length=1, max_length=64)
    accept: StrictBool
    via: Literal["button", "key"]


class WsIn(_Body):
    """What the page may send on the WebSocket: only the stop, the fastest path there is."""

    type: Literal["stop"]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True)


class StateMessage(_Message):
    type: Literal["state"] = "state"
    state: str
    reason: str = ""
    step: int | None = None
    steps: int = 0
    skill: str | None = None
    progress: float = 0.0
    question: str | None = None


class PlanStepView(_Message):
    index: int
    skill: str
    args: dict[str, Any]
    hazard: str
    #: argument -> the words of the command that said its value (empty when the planner does not say)
    words: dict[str, str]


class PlanMessage(_Message):
    type: Literal["plan"] = "plan"
    status: str
    text: str
    steps: list[PlanStepView]
    reason: str | None = None
    #: a spoken command's plan, waiting for its read-back to be confirmed
    readback: bool = False


class QuestionMessage(_Message):
    """The open question (``id`` None: no question is open any more)."""

    type: Literal["question"] = "question"
    id: str | None
    kind: Literal["step", "readback"] | None = None
    step: int | None = None
    skill: str | None = None
    text: str = ""
    hazard: str | None = None
    #: Confirm is taken only this long after the question appears (an exposure's arming delay); the page keeps the
    #: button disabled until then
    arm_ms: int = 0


class ReplyMessage(_Message):
    type: Literal["reply"] = "reply"
    ok: bool
    message: str
    input: str = ""


class LogMessage(_Message):
    """A record worth a line in the page's messages (a step's result, the e-stop, the end of a run)."""

    type: Literal["log"] = "log"
    level: Literal["info", "warning", "alarm"] = "info"
    message: str
    #: the whole text when ``message`` shows a file's name for its path (the page's tooltip)
    title: str = ""


class TelemetryMessage(_Message):
    type: Literal["telemetry"] = "telemetry"
    telemetry: dict[str, Any]
    text: str


class ImageMessage(_Message):
    type: Literal["image"] = "image"
    kind: ImageKind
    url: str
    sha256: str
    name: str


class AuditMessage(_Message):
    type: Literal["audit"] = "audit"
    record: dict[str, Any]


class TranscriptMessage(_Message):
    type: Literal["transcript"] = "transcript"
    text: str
    confidence: float
    action: str
    message: str = ""


ViewMessage = (StateMessage | PlanMessage | QuestionMessage | ReplyMessage | LogMessage | TelemetryMessage
               | ImageMessage | AuditMessage | TranscriptMessage)
