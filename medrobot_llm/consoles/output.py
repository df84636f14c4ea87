"""What the console prints: the supervisor's records, the answers to its own calls, and the telemetry on the
status line, as text for a person or, with ``--json``, as one JSON object per line for a script.

Kept apart from ``core`` (which decides what a typed line means and follows the supervisor's state) so that
the wording of every record sits in one place; the console shows the supervisor's own records and adds
nothing of its own to them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from medrobot_llm.consoles.render import render_plan
from medrobot_llm.core.jsonable import jsonable
from medrobot_llm.core.plan import Plan, Step
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.machine import SupervisorState as S
from medrobot_llm.safety.machine import Trigger
from medrobot_llm.safety.replies import Reply

__all__ = [
    "ConsoleOutput",
    "format_telemetry",
]


def _unit(key: str) -> tuple[str, str]:
    for suffix, unit in (("_n", " N"), ("_mm", " mm"), ("_deg", " deg"), ("_pct", " %"), ("_mm_s", " mm/s")):
        if key.endswith(suffix):
            return key[: -len(suffix)], unit
    return key, ""


def format_telemetry(telemetry: Mapping[str, Any]) -> str:
    """Feedback telemetry for one status line: numbers rounded, units read from the key's suffix."""
    parts: list[str] = []
    for key, value in telemetry.items():
        name, unit = _unit(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            parts.append(f"{name} {value:.1f}{unit}")
        elif isinstance(value, list | tuple) and all(isinstance(v, int | float) for v in value):
            parts.append(f"{name} [{', '.join(f'{v:.0f}' for v in value)}]{unit}")
        elif isinstance(value, str):
            parts.append(f"{name} {value}")
    return "  ".join(parts)


class ConsoleOutput:
    """The printing half of ``ConsoleCore``: every line goes out through ``_out`` (text) or ``_json``, under one
    lock, because records arrive on the client's event thread while the person types on another."""

    json_mode: bool
    steps: list[dict[str, Any]]
    clock: Callable[[], float]
    feedback_interval_s: float
    _last_feedback_out: float
    _emit_raw: Callable[[str], None]
    _emit_lock: threading.Lock

    def _feedback_due(self) -> bool:
        now = self.clock()
        if now - self._last_feedback_out >= self.feedback_interval_s:
            self._last_feedback_out = now
            return True
        return False

    def _step_label(self, step: int, skill: str) -> str:
        return f"step {step + 1}/{len(self.steps) or '?'} {skill}"

    def _show(self, event: ev.SupervisorEvent) -> None:
        match event:
            case ev.ValidationEvent(ok=True):
                self._out(render_plan(Plan.model_validate(event.plan)))
            case ev.RunEvent():
                asks = [i + 1 for i in event.needs_confirmation]
                if asks:
                    which = ", ".join(str(i) for i in asks)
                    self._out(f"running; step{'s' if len(asks) > 1 else ''} {which} will ask for your confirmation "
                              "(type 'stop' or press Ctrl-C to halt)")
                else:
                    self._out("running (type 'stop' or press Ctrl-C to halt)")
            case ev.StepSentEvent():
                described = Step(skill=event.skill, args=dict(event.args)).describe()
                self._out(f"  -> step {event.step + 1}/{len(self.steps) or '?'}: {described} ...")
            case ev.StepResultEvent():
                self._show_step_result(event)
            case ev.StepRejectedEvent():
                # a rejection record names no skill, and the console has always shown that as "None"
                self._out(f"  NOT SENT {self._step_label(event.step, 'None')}: {event.reason}")
            case ev.QuestionEvent():
                self._out(f"CONFIRM? {event.text}\n  type y to confirm step {event.step_index + 1} "
                          f"({event.skill}), n to drop the plan")
            case ev.ConfirmationEvent():
                if event.accepted:
                    self._out(f"  confirmed step {(event.step or 0) + 1}")
                else:
                    self._out(f"  NOT CONFIRMED: {event.reason}")
            case ev.EstopEvent():
                halted = "" if event.halted else f" (the halt FAILED: {event.error})"
                self._out(f"*** E-STOP LATCHED: {event.reason}{halted}. Nothing moves until you type 'reset'. ***")
            case ev.StateEvent():
                if event.to == S.FAULT:
                    self._out(f"*** FAULT: {event.reason}. Halted; type 'reset' when it is safe. ***")
                elif event.trigger == Trigger.RECOVERED:
                    self._out("reset: the robot is ready")
            case ev.RunEndEvent():
                if event.outcome == "finish":
                    self._out(f"DONE: all {event.steps} step(s) finished")
                else:
                    self._out(f"NOT DONE ({event.outcome}): {event.reason} - {event.steps_done}/{event.steps} "
                              "step(s) done")
            case ev.PlanDiscardedEvent():
                self._out(f"  plan discarded: the supervisor is {event.state} now")
            case ev.HaltFailedEvent():
                self._out(f"*** THE BACKEND DID NOT CONFIRM THE HALT: {event.error} ***")
            case _:
                pass

    def _show_step_result(self, event: ev.StepResultEvent) -> None:
        label = self._step_label(event.step, event.skill)
        if event.success:
            message = event.message
            self._out(f"  ok {label}" + (f": {message}" if message and message != "done" else ""))
        else:
            verb = {"halted": "HALTED", "cancelled": "CANCELLED"}.get(event.failure, f"FAILED ({event.failure})")
            self._out(f"  {verb} {label}: {event.message}")
        for path in event.image_paths():
            self._out(f"  image saved: {path}")

    def _call(self, text: str, fn: Callable[[], Reply], *, quiet_ok: bool = False) -> Reply | None:
        """Make one call and show a refusal; an accepted answer is shown only where no record will tell it
        (a plan is shown from its validation record, before any step is sent; confirmations, resets and
        e-stops from theirs)."""
        try:
            reply = fn()
        except Exception as exc:  # noqa: BLE001 - a refused call is an answer for the person, not a crash
            self._out(f"REFUSED: {exc}", kind="reply", input=text, accepted=False, message=str(exc))
            return None
        if self.json_mode:
            self._json({"kind": "reply", "input": text, **reply.to_json()})
            return reply
        plan = reply.plan
        status = plan.status.value if plan is not None else None
        if reply.accepted:
            if status != "ok" and not quiet_ok:
                self._out(f"-> {reply.message}")
            return reply
        if plan is not None and status in ("refused", "clarify"):
            self._out(render_plan(plan))
        else:
            self._out(f"REFUSED: {reply.message}")
        return reply

    def _out(self, text: str, /, *, kind: str = "console", **fields: Any) -> None:
        """``text`` is positional-only: a question's own fields, passed on as ``fields``, have a ``text`` too."""
        if self.json_mode:
            if kind != "console":
                self._json({"kind": kind, **fields} if fields else {"kind": kind, "message": text})
            return
        with self._emit_lock:
            self._emit_raw(text)

    def _json(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, default=jsonable)
        with self._emit_lock:
            self._emit_raw(line)
