"""The web console's logic, apart from any server: supervisor records in, typed view messages out; the page's
requests in, one supervisor call each out, answered with the HTTP status the server sends.

Like the text console it decides nothing about safety; it decides what only a page with buttons knows:

- a Confirm is bound to the question it was shown for: each open question gets an id of its own, and an answer
  naming any other id (a double click, a tab left open, a question that timed out) is refused with 409 and
  reaches nothing;
- an exposure is not confirmed by the keyboard shortcut alone (``via: key``): 409, the button is needed;
- an exposure's Confirm is refused for ``ARMING_S`` after its question is shown (the page keeps the button
  disabled as long), so a click meant for the question before cannot land on the next;
- ``yes`` / ``no`` typed in the command box are refused, so every answer goes through the bound buttons;
- a stop goes to ``client.stop`` from whatever thread calls ``stop``, before and without any other work (it takes
  no lock that a command being planned holds);
- a spoken command is planned once and read back as a question; it moves only after that read-back is
  confirmed, and the plan that runs is the plan that was read back (``speech``).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medrobot_llm.consoles.core import line_intent
from medrobot_llm.consoles.output import format_telemetry
from medrobot_llm.consoles.render import render_plan
from medrobot_llm.consoles.web.messages import (
    AuditMessage,
    ImageKind,
    ImageMessage,
    LogMessage,
    PlanMessage,
    PlanStepView,
    QuestionMessage,
    ReplyMessage,
    StateMessage,
    TelemetryMessage,
    ViewMessage,
)
from medrobot_llm.core.command_set import Hazard, load_command_set
from medrobot_llm.core.plan import Plan, PlanStatus
from medrobot_llm.planning.admission import clean_with_reason
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.machine import SupervisorState as S
from medrobot_llm.safety.protocol import SupervisorClient
from medrobot_llm.safety.replies import Reply
from medrobot_llm.session import Session

__all__ = ["ARMING_S", "Answer", "IMAGE_KINDS", "Image", "OpenQuestion", "WebHub"]

#: what a step's saved picture is, by domain; every other picture is a scene frame
_CAPTURE_KIND: dict[str, ImageKind] = {"xray": "radiograph", "ultrasound": "bmode"}
IMAGE_KINDS: tuple[ImageKind, ...] = ("frame", "bmode", "radiograph")
_SOURCE = "web"
#: feedback arrives at the control rate; the page needs a few updates a second
_FEEDBACK_INTERVAL_S = 0.1
#: an exposure's Confirm is refused (and the page's button disabled) this long after its question appears: with
#: two exposures in a plan the second question shows a fraction of a second after the first is confirmed, and the
#: second click of a slow double click (or a click aimed at the first) must not fire the second
ARMING_S = 0.6
#: images kept by hash for the URLs already sent (a few runs' worth of frames and captures)
_RECENT_IMAGES = 32
#: an absolute path in a step's message (a temporary record folder is long and says nothing): its last part stays
_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/]+/)+([^\s/,;:()]+)")


def _log(message: str, level: Literal["info", "warning", "alarm"] = "info") -> LogMessage:
    """A line for the page's messages, with file names for paths and the whole text as its tooltip."""
    short = _PATH.sub(r"\1", message)
    return LogMessage(level=level, message=short, title=message if short != message else "")


def _help_text(domain: str) -> str:
    cs = load_command_set(domain)
    skills = "; ".join(f"{name} ({spec.hazard.value})" for name, spec in cs.skills.items())
    return (f"{cs.title}: type a command in plain words. Skills: {skills}. Stop (or Space) latches the e-stop, "
            "Reset recovers; pause, resume and cancel work too.")


def _image_message(image: Image) -> ImageMessage:
    return ImageMessage(kind=image.kind, url=f"/api/image/{image.kind}?sha256={image.sha256}",
                        sha256=image.sha256, name=image.name)


@dataclass(frozen=True)
class Answer:
    """The hub's answer to one request: the HTTP status and the JSON body (``error`` when refused)."""

    status: int
    body: dict[str, Any]

    @classmethod
    def refused(cls, status: int, why: str, **extra: Any) -> Answer:
        return cls(status, {"error": why, **extra})

    @classmethod
    def of(cls, reply: Reply, refused_status: int = 409) -> Answer:
        body = {"ok": reply.accepted, "state": reply.state.value, "message": reply.message}
        return cls(200, body) if reply.accepted else cls(refused_status, {"error": reply.message, **body})


@dataclass(frozen=True)
class Image:
    kind: ImageKind
    data: bytes
    sha256: str
    name: str


@dataclass(frozen=True)
class OpenQuestion:
    """A question the page shows with Confirm / Deny: a supervisor's step question or a spoken plan's read-back."""

    id: str
    kind: str
    text: str
    hazard: str | None = None
    step: int | None = None
    skill: str | None = None
    plan: Plan | None = None
    #: the hub's clock when the question was shown (sent to the page)
    shown: float = 0.0
    #: how long after ``shown`` a Confirm is taken (an exposure's arming delay; 0 for other questions)
    arming_s: float = 0.0

    def message(self) -> QuestionMessage:
        return QuestionMessage(id=self.id, kind="readback" if self.kind == "readback" else "step", step=self.step,
                               skill=self.skill, text=self.text, hazard=self.hazard,
                               arm_ms=round(self.arming_s * 1000))


@dataclass
class WebHub:
    """One page's view of one client. ``add_listener`` gets every view message, in order, from the client's
    event thread and from request threads; ``snapshot`` is what a page that just connected needs."""

    client: SupervisorClient
    domain: str
    #: the in-process session, when there is one: spoken commands are planned once, by it, and read back
    session: Session | None = None
    #: where the session saves a frame after each step (``Session.record_dir / frames``)
    frames_dir: Path | None = None
    audit_tail: int = 50
    clock: Callable[[], float] = time.monotonic
    #: an exposure question's arming delay (``ARMING_S``)
    arming_s: float = ARMING_S
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _emit_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list, init=False, repr=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), init=False, repr=False)
    _unsubscribe: Callable[[], None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.state = S.IDLE.value
        self.reason = ""
        self.steps: list[dict[str, Any]] = []
        self.step: int | None = None
        self.progress = 0.0
        self.telemetry: dict[str, Any] = {}
        self.question: OpenQuestion | None = None
        self.plan: PlanMessage | None = None
        self.images: dict[str, Image] = {}
        self._recent: dict[str, Image] = {}
        self.audit: deque[dict[str, Any]] = deque(maxlen=self.audit_tail)
        self.working: str | None = None
        self._turn = 0   # which command ``working`` is: a Stop abandons it, and its late end must not clear the next
        self._frames_seen: set[str] = set()
        self._last_feedback = -1e9
        self._hazards = {name: spec.hazard.value for name, spec in load_command_set(self.domain).skills.items()}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Follow the client's records, from its present state."""
        self._seen_frames()
        self._unsubscribe = self.client.subscribe(self.on_event)
        status = self.client.status()
        with self._lock:
            self.state = str(status.get("state", self.state))
            self.reason = str(status.get("reason") or "")
            question = status.get("question")
            if isinstance(question, dict) and "step_index" in question:
                self._open_step_question(int(question["step_index"]), str(question.get("skill") or ""),
                                         str(question.get("hazard") or ""), str(question.get("text") or ""))

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self._emit_lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._emit_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def snapshot(self) -> list[dict[str, Any]]:
        """The messages that bring a page that just connected up to date, oldest first."""
        with self._lock:
            out: list[ViewMessage] = [AuditMessage(record=r) for r in self.audit]
            if self.plan is not None:
                out.append(self.plan)
            out.append(self._state_message())
            out.append(self.question.message() if self.question else QuestionMessage(id=None))
            if self.telemetry:
                out.append(TelemetryMessage(telemetry=self.telemetry, text=format_telemetry(self.telemetry)))
            out += [_image_message(img) for img in self.images.values()]
        return [m.model_dump(mode="json") for m in out]

    def status(self) -> dict[str, Any]:
        """The page's view, with the state as the client has it now (the records that tell the view may lag)."""
        try:
            now = self.client.status()
        except Exception:  # noqa: BLE001 - no answer: the view's own state is all there is
            now = {}
        with self._lock:
            view = self._state_message().model_dump(mode="json", exclude={"type"})
            if "state" in now:
                view.update(state=str(now["state"]), reason=str(now.get("reason") or ""))
            return {**view, "domain": self.domain,
                    "telemetry": dict(self.telemetry), "working": self.working,
                    "open_question": self.question.message().model_dump(mode="json") if self.question else None,
                    "images": {k: {"sha256": i.sha256, "name": i.name} for k, i in self.images.items()},
                    "speech": self.session is not None}

    def image(self, kind: str, sha256: str | None = None) -> Image | None:
        """The latest image of ``kind``, or the recent one with that ``sha256`` (the page's URL names it, so an
        ``img`` shows the bytes its ``data-sha256`` says even when a newer one came in meanwhile)."""
        with self._lock:
            if sha256 is None:
                return self.images.get(kind)
            found = self._recent.get(sha256)
            return found if found is not None and found.kind == kind else None

    def asking(self) -> bool:
        """Whether a supervisor step question is open (a spoken plan's read-back is not one)."""
        with self._lock:
            return self.question is not None and self.question.kind == "step"

    # ------------------------------------------------------------------ requests
    def stop(self, reason: str = "Stop pressed on the web console") -> Answer:
        """The e-stop, at once: no lock of the hub's is taken before the client's ``stop``."""
        try:
            reply = self.client.stop(reason, source=_SOURCE)
        except Exception as exc:  # noqa: BLE001 - say it loudly; the person must use the hardware stop
            why = f"THE STOP DID NOT GO THROUGH ({type(exc).__name__}: {exc}). USE THE HARDWARE E-STOP."
            self.emit(LogMessage(level="alarm", message=why))
            return Answer.refused(503, why)
        with self._lock:   # a command still being planned is abandoned: its plan comes too late to move anything
            self.working, self._turn = None, self._turn + 1
        self._drop_readback("stopped")
        self._reply(reply, "stop")
        return Answer.of(reply)

    def reset(self) -> Answer:
        """A reset the supervisor refuses (nothing is latched) is a 409 with its reason, like every refusal."""
        try:
            reply = self.client.reset(source=_SOURCE)
        except Exception as exc:  # noqa: BLE001 - a refused reset is an answer for the person, not a crash
            return self._refuse(409, f"reset refused: {exc}", "reset")
        self._reply(reply, "reset")
        return Answer.of(reply)

    def command(self, text: str) -> Answer:
        """One line from the command box; the same control phrases as the text console."""
        intent = line_intent(text, self.domain)
        if intent == "stop":
            return self.stop(f"operator typed {text.strip()!r} on the web console")
        # while the supervisor asks, a line for its planner could only be read as the answer (by an LLM planner,
        # in words no list foresees): the question is answered with its buttons, and only controls are typed
        if intent in ("confirm", "deny") or (intent == "command" and self.asking()):
            return self._refuse(409, "answer the question with its Confirm or Deny button: a typed answer is not "
                                "bound to the question it answers", text)
        if intent == "quit":
            return self._refuse(400, "nothing to quit here: close the page (a running plan keeps running; press "
                                "Stop to halt it)", text)
        if intent == "reset":
            return self.reset()
        if intent == "help":
            return self._help(text)
        if intent == "status":
            now = self.client.status()
            message = f"{now.get('state')}: {now.get('message') or now.get('reason') or ''}".rstrip(": ")
            self.emit(ReplyMessage(ok=True, message=message, input=text))
            return Answer(200, {"ok": True, "state": str(now.get("state")), "message": message})
        clean, why = clean_with_reason(text)
        if clean is None:
            return self._refuse(400, why or "the text was refused", text)
        with self._lock:
            working = self.working
            if working is None:
                self.working, self._turn = clean, self._turn + 1
            turn = self._turn
        if working is not None:
            return self._refuse(409, f"still working on {working!r}; press Stop to halt everything now", text)
        try:
            self._drop_readback("a new command was typed")
            reply = self.client.command(clean, source=_SOURCE)
        except Exception as exc:  # noqa: BLE001 - a refused call is an answer for the person, not a crash
            return self._refuse(409, str(exc), text)
        finally:
            with self._lock:
                if self._turn == turn:
                    self.working = None
        if reply.plan is not None and reply.plan.status in (PlanStatus.REFUSED, PlanStatus.CLARIFY):
            self.emit(self._plan_message(reply.plan))
        self._reply(reply, clean)
        # refused by a ready supervisor: the text's fault (422); by a busy or latched one: the state's (409)
        return Answer.of(reply, refused_status=422 if reply.state is S.IDLE else 409)

    def confirm(self, question_id: str, accept: bool, via: str) -> Answer:
        """Answer the open question ``question_id``; any other id is stale and changes nothing."""
        with self._lock:
            q = self.question
            if q is None or q.id != question_id:
                return self._refuse(409, f"question {question_id} is not the open question"
                                    + (f" ({q.id} is)" if q else " (none is open)") + ": nothing done",
                                    "confirm" if accept else "deny")
            if accept and via == "key" and q.hazard == Hazard.RADIATION.value:
                return self._refuse(409, "an exposure is confirmed with the Confirm button, not the keyboard "
                                    "shortcut alone", "confirm")
            armed = q.arming_s if via == "button" else max(q.arming_s, self.arming_s)  # a held key: every question
            if accept and self.clock() - q.shown < armed:
                return self._refuse(409, f"too soon: this Confirm is taken {round(armed * 1000)} ms after its question "
                                    "shows (a click or a held key meant for the one before must not land on it)", "confirm")
            if q.kind == "readback":
                self.question = None
        if q.kind == "readback":
            return self._answer_readback(q, accept)
        assert q.step is not None
        reply = self.client.confirm(q.step, source=_SOURCE) if accept else self.client.deny(source=_SOURCE)
        self._reply(reply, "confirm" if accept else "deny")
        return Answer.of(reply)

    def open_readback(self, plan: Plan) -> QuestionMessage:
        """Show a spoken command's plan and ask whether to run exactly that."""
        self._drop_readback("a new spoken command")
        with self._lock:
            q = OpenQuestion(id=self._new_id(), kind="readback", plan=plan,
                             text=f"Run exactly this? {render_plan(plan)}")
            self.question = q
            message = q.message()
        self.emit(self._plan_message(plan, readback=True))
        self.emit(message)
        self._emit_state()
        return message

    def show_plan(self, plan: Plan) -> None:
        """A plan that will not run (refused, a question back), shown with its reason."""
        self.emit(self._plan_message(plan))

    def _answer_readback(self, q: OpenQuestion, accept: bool) -> Answer:
        assert q.plan is not None and self.session is not None
        self.emit(QuestionMessage(id=None))
        if not accept:
            self.session.discard(q.plan)
            self.emit(LogMessage(message="read-back denied: plan dropped, nothing moved"))
            return Answer(200, {"ok": True, "state": self.state, "message": "plan dropped"})
        try:
            reply = self.session.supervisor.submit_plan(q.plan, source=_SOURCE)
        except Exception as exc:  # noqa: BLE001 - the supervisor is busy: the read-back plan does not run
            self.session.discard(q.plan)
            return self._refuse(409, f"the plan was not started: {exc}", "confirm")
        self._reply(reply, "confirm")
        return Answer.of(reply)

    def _drop_readback(self, why: str) -> None:
        with self._lock:
            q = self.question
            if q is None or q.kind != "readback":
                return
            self.question = None
        if self.session is not None and q.plan is not None:
            self.session.discard(q.plan)
        self.emit(QuestionMessage(id=None))
        self.emit(LogMessage(message=f"read-back dropped ({why}): nothing moved"))

    def _help(self, text: str) -> Answer:
        message = _help_text(self.domain)
        self.emit(ReplyMessage(ok=True, message=message, input=text))
        return Answer(200, {"ok": True, "state": self.state, "message": message})

    def _refuse(self, status: int, why: str, text: str) -> Answer:
        self.emit(ReplyMessage(ok=False, message=why, input=text))
        return Answer.refused(status, why, ok=False)

    def _reply(self, reply: Reply, text: str) -> None:
        self.emit(ReplyMessage(ok=reply.accepted, message=reply.message, input=text))

    # ------------------------------------------------------------------ supervisor records
    def on_event(self, event: ev.SupervisorEvent) -> None:
        """One record from the client's thread: audit it, follow the state, show what the page shows."""
        out: list[ViewMessage] = []
        with self._lock:
            if not isinstance(event, ev.FeedbackEvent):
                record = event.record()
                self.audit.append(record)
                out.append(AuditMessage(record=record))
            out += self._track(event)
        for message in out:
            self.emit(message)
        if isinstance(event, ev.StepResultEvent):
            self._step_images(event)

    def _track(self, event: ev.SupervisorEvent) -> list[ViewMessage]:
        """The messages one record makes; called with the lock held."""
        match event:
            case ev.FeedbackEvent():
                self.progress, self.step = float(event.progress or 0.0), event.step
                if event.telemetry:
                    self.telemetry = dict(event.telemetry)
                now = self.clock()
                if now - self._last_feedback < _FEEDBACK_INTERVAL_S:
                    return []
                self._last_feedback = now
                tele = [TelemetryMessage(telemetry=self.telemetry, text=format_telemetry(self.telemetry))]
                return [self._state_message(), *tele] if self.telemetry else [self._state_message()]
            case ev.ValidationEvent(ok=True):
                self.plan = self._plan_message(Plan.model_validate(event.plan))
                return [self.plan]
            case ev.StateEvent():
                self.state, self.reason = event.to, event.reason or ""
                closed = self._close_step_question() if self.state != S.AWAITING_CONFIRMATION else []
                alarm: list[ViewMessage] = []
                if self.state == S.FAULT:
                    alarm = [LogMessage(level="alarm", message=f"FAULT: {self.reason}. Halted; Reset when safe.")]
                return [*closed, *alarm, self._state_message()]
            case ev.RunEvent():
                self.steps, self.step, self.progress = list(event.steps), 0, 0.0
                return [self._state_message()]
            case ev.StepSentEvent():
                self.step, self.progress = event.step, 0.0
                return [self._state_message()]
            case ev.QuestionEvent():
                return self._open_step_question(event.step_index, event.skill, event.hazard, event.text)
            case ev.RunEndEvent():
                # the state message clears the page's current step and plan highlight: the run is over
                return [*self._close_step_question(), *self._log_for(event), self._state_message()]
            case ev.ConfirmationEvent() | ev.EstopEvent():
                return [*self._close_step_question(), *self._log_for(event)]
            case ev.StepResultEvent() | ev.StepRejectedEvent() | ev.HaltFailedEvent():
                return self._log_for(event)
            case _:
                return []

    def _log_for(self, event: ev.SupervisorEvent) -> list[ViewMessage]:
        match event:
            case ev.StepResultEvent():
                label = f"step {event.step + 1}/{len(self.steps) or '?'} {event.skill}"
                if event.success:
                    return [_log(f"ok {label}: {event.message}")]
                return [_log(f"{event.failure.upper()} {label}: {event.message}", "warning")]
            case ev.RunEndEvent():
                self.step = None
                if event.outcome == "finish":
                    return [LogMessage(message=f"done: all {event.steps} step(s) finished")]
                return [LogMessage(level="warning", message=f"not done ({event.outcome}): {event.reason} - "
                                   f"{event.steps_done}/{event.steps} step(s) done")]
            case _:
                return _warning_for(event)

    def _open_step_question(self, step: int, skill: str, hazard: str, text: str) -> list[ViewMessage]:
        arming = self.arming_s if hazard == Hazard.RADIATION.value else 0.0
        q = OpenQuestion(id=self._new_id(), kind="step", text=text, hazard=hazard, step=step, skill=skill,
                         shown=self.clock(), arming_s=arming)
        with self._lock:
            dropped = self.question
            self.question = q
            # the step asked about is the current one: the one before it is done, this one waits for the answer
            self.step, self.progress = step, 0.0
        if dropped is not None and dropped.kind == "readback" and dropped.plan is not None and self.session:
            self.session.discard(dropped.plan)
        return [q.message(), self._state_message()]

    def _close_step_question(self) -> list[ViewMessage]:
        if self.question is None or self.question.kind != "step":
            return []
        self.question = None
        return [QuestionMessage(id=None)]

    def _new_id(self) -> str:
        return f"q{next(self._ids)}"

    # ------------------------------------------------------------------ images
    def _step_images(self, event: ev.StepResultEvent) -> None:
        kind = _CAPTURE_KIND.get(self.domain, "frame")
        for path in event.image_paths():
            self._add_image(kind, Path(path))
        for frame in self._seen_frames():
            self._add_image("frame", frame)

    def _seen_frames(self) -> list[Path]:
        """Frames written since the last look, oldest first."""
        if self.frames_dir is None or not self.frames_dir.is_dir():
            return []
        new = sorted(p for p in self.frames_dir.glob("*.png") if p.name not in self._frames_seen)
        self._frames_seen.update(p.name for p in new)
        return new

    def _add_image(self, kind: ImageKind, path: Path) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.emit(LogMessage(level="warning", message=f"image {path.name} could not be read: {exc}"))
            return
        image = Image(kind, data, hashlib.sha256(data).hexdigest(), path.name)
        with self._lock:
            self.images[kind] = image
            self._recent[image.sha256] = image
            while len(self._recent) > _RECENT_IMAGES:
                del self._recent[next(iter(self._recent))]
        self.emit(_image_message(image))

    # ------------------------------------------------------------------ messages
    def _plan_message(self, plan: Plan, *, readback: bool = False) -> PlanMessage:
        words = list(plan.words)
        steps = [PlanStepView(index=i, skill=s.skill, args=dict(s.args), hazard=self._hazards.get(s.skill, "none"),
                              words=dict(words[i]) if i < len(words) else {})
                 for i, s in enumerate(plan.steps)]
        return PlanMessage(status=plan.status.value, text=render_plan(plan), steps=steps, reason=plan.reason,
                           readback=readback)

    def _state_message(self) -> StateMessage:
        skill = None
        if self.step is not None and self.step < len(self.steps):
            skill = str(self.steps[self.step].get("skill"))
        return StateMessage(state=self.state, reason=self.reason, step=self.step, steps=len(self.steps),
                            skill=skill, progress=self.progress,
                            question=self.question.id if self.question else None)

    def _emit_state(self) -> None:
        with self._lock:
            message = self._state_message()
        self.emit(message)

    def emit(self, message: ViewMessage) -> None:
        data = message.model_dump(mode="json")
        with self._emit_lock:
            for listener in list(self._listeners):
                try:
                    listener(data)
                except Exception:  # noqa: BLE001, S112 - one closed page must not stop the others' updates
                    continue


def _warning_for(event: ev.SupervisorEvent) -> list[ViewMessage]:
    """The lines of records that need nothing of the hub's: a step not sent, the e-stop, a failed halt, a denial."""
    match event:
        case ev.StepRejectedEvent():
            return [LogMessage(level="warning", message=f"step {event.step + 1} not sent: {event.reason}")]
        case ev.EstopEvent():
            halted = "" if event.halted else f" (the halt FAILED: {event.error})"
            return [LogMessage(level="alarm", message=f"E-STOP LATCHED: {event.reason}{halted}. Nothing moves "
                               "until Reset.")]
        case ev.HaltFailedEvent():
            return [LogMessage(level="alarm", message=f"THE BACKEND DID NOT CONFIRM THE HALT: {event.error}")]
        case ev.ConfirmationEvent(accepted=False):
            return [LogMessage(level="warning", message=f"not confirmed: {event.reason}")]
        case _:
            return []
