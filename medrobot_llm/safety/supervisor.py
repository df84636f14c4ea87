"""The safety supervisor: the one state machine between plans and robots.

Everything that may move a robot passes through here. The rules that keep people safe are data, the
table of ``medrobot_llm.safety.machine`` that the machine, the docs diagram and the tests all read; this
class is what the rows act on: it builds the machine without auto transitions, so a trigger the table
does not allow from the current state raises instead of quietly doing something, and commands, the
e-stop, the watchdog and the executor's worker can all call in from their own threads.

Three rules shape the code:
- ``stop`` halts the backend *before* it takes any lock, so an e-stop never waits behind anything;
- a contact or radiation step (and a step of any hazard class in ``confirm_hazards``) is released only with a
  confirmation of that very step, used once;
- whatever goes wrong inside the machine (a callback raising, a step failing, a silent backend) ends
  in FAULT with the backend halted, latched until an operator resets.

This module is the facade: the public commands and the constructor. What they share is in
``supervisor_core``; plan admission, step release (with the watchdog) and the e-stop latch are one
mixin module each.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Self

from medrobot_llm.backends.base import SkillBackend
from medrobot_llm.core.command_set import hazards_named, load_command_set
from medrobot_llm.core.plan import Control, Plan, PlanStatus
from medrobot_llm.planning.base import Planner
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.admission import AdmissionMixin
from medrobot_llm.safety.audit import AuditLog, AuditLogError
from medrobot_llm.safety.executor import Executor, Run
from medrobot_llm.safety.latching import LatchMixin
from medrobot_llm.safety.machine import (GUARD_HELP, LATCHED, STATE_HELP, TRANSITIONS, TRIGGER_HELP, WITH_PLAN,
                                         InvalidTransition, StateChange, SupervisorError, SupervisorState, Trigger,
                                         allowed_sources, bind_guards, build_machine, mermaid_diagram, supervisor_doc)
from medrobot_llm.safety.replies import Question, Reply
from medrobot_llm.safety.stepping import StepGateMixin
from medrobot_llm.safety.supervisor_core import MachineModel

__all__ = [
    "GUARD_HELP",
    "LATCHED",
    "STATE_HELP",
    "TRANSITIONS",
    "TRIGGER_HELP",
    "InvalidTransition",
    "Question",
    "Reply",
    "StateChange",
    "Supervisor",
    "SupervisorError",
    "SupervisorState",
    "Trigger",
    "allowed_sources",
    "build_machine",
    "mermaid_diagram",
    "supervisor_doc",
]

S = SupervisorState
T = Trigger


class Supervisor(AdmissionMixin, StepGateMixin, LatchMixin):
    """Validates plans against the robot's world, asks for confirmations, releases steps, latches stops.

    ``clock`` drives confirmation expiry, step timeouts and the heartbeat check; the backend's
    ``last_heartbeat`` must be on the same clock (``time.monotonic`` for both by default). Tests pass a
    fake clock and ``watchdog_period_s=None`` and call ``tick`` themselves.

    ``confirm_hazards`` names hazard classes whose steps are asked about too, on top of contact and radiation:
    ``("motion",)`` asks before the gantry moves to a view, as "Take a shot!" does. None by default, so a
    console or benchmark that does not ask for it keeps the questions the skill files alone make.
    """

    def __init__(self, backend: SkillBackend, planner: Planner | None = None, *, domain: str | None = None,
                 audit: AuditLog | None = None, clock: Callable[[], float] = time.monotonic,
                 confirm_timeout_s: float = 30.0, step_timeout_s: float = 60.0,
                 heartbeat_timeout_s: float = 1.0, watchdog_period_s: float | None = 0.05,
                 reset_wait_s: float = 2.0, confirm_hazards: Iterable[str] = ()) -> None:
        self.backend = backend
        self.planner = planner
        self.domain: str = str(domain or getattr(backend, "domain", ""))
        self.command_set = load_command_set(self.domain)
        self.audit = audit if audit is not None else AuditLog(None)
        self.clock = clock
        self.confirm_timeout_s = confirm_timeout_s
        self.step_timeout_s = step_timeout_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.watchdog_period_s = watchdog_period_s
        self.reset_wait_s = reset_wait_s
        self.confirm_hazards = hazards_named(confirm_hazards)

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._model = MachineModel()
        self._machine = build_machine(self._model, guards=bind_guards(self), effects=self._effects(),
                                      lock=self._lock, on_exception=self._on_exception, on_enter=self._on_enter)
        self._executor = Executor(backend, self)
        self._run_ids = itertools.count(1)
        self._gen = 0
        self._run: Run | None = None
        self._pending: Question | None = None
        self._inflight: tuple[Run, int, float] | None = None
        self._waiting_run: Run | None = None
        self._ending: dict[int, tuple[Run, str, str]] = {}  # run id -> run, outcome, reason: see _drop_run
        self._halt_requested: str | None = None
        self._recovered_at = float("-inf")
        self._resets = 0  # operator resets so far: a reset finishing late must not complete a newer one
        self._refusal: str | None = None
        self._refusal_expired = False
        self._audit_error: Exception | None = None
        self._last_seq = -1
        self._in_fault_handler = False
        self._progress: dict[str, Any] = {}
        self.reason = ""
        self.history: list[StateChange] = []

        self._listeners: list[ev.EventListener] = []
        self._events: queue.Queue[ev.SupervisorEvent | None] = queue.Queue()
        self._dispatcher: threading.Thread | None = None
        self._closed = False

        self._log(ev.SessionEvent(
            domain=self.domain, backend=backend.backend_name,
            planner=getattr(planner, "name", type(planner).__name__) if planner is not None else None,
            state=self.state.value, world=self._world_json(),
            config={"confirm_timeout_s": confirm_timeout_s, "step_timeout_s": step_timeout_s,
                    "heartbeat_timeout_s": heartbeat_timeout_s,
                    "confirm_hazards": sorted(h.value for h in self.confirm_hazards)}))
        self._watch_stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        if watchdog_period_s is not None:
            self._watchdog = threading.Thread(target=self._watch, name="medrobot-watchdog", daemon=True)
            self._watchdog.start()

    @property
    def pending(self) -> Question | None:
        """The open confirmation question, if the supervisor is waiting for one."""
        return self._pending

    @property
    def plan(self) -> Plan | None:
        run = self._run
        return run.plan if run else None

    @property
    def step_index(self) -> int | None:
        run = self._run
        return run.index if run else None

    def command(self, text: str, *, source: str = "api") -> Reply:
        """Plan ``text`` and run it; a control intent ("stop", "pause", "yes") acts at once, in any state."""
        if self.planner is None:
            raise SupervisorError("this supervisor has no planner; use submit_plan")
        self._input("text", source, text=text)
        entered, gen = False, -1
        with self._lock:
            if self.state is S.IDLE:
                entered, gen = self._fire(T.PLAN, reason="command received", text=text), self._gen
        plan = self._call_planner(text)
        if plan.status is PlanStatus.CONTROL and plan.control is not None:
            if entered:
                with self._lock:
                    if self.state is S.PLANNING and gen == self._gen:
                        self._fire(T.REJECT, reason=f"control intent: {plan.control.value}")
            return self._control(plan.control, None)
        if not entered:
            return Reply(False, self.state, self._busy_message(), plan)
        return self._accept(plan, gen)

    def submit_plan(self, plan: Plan, *, source: str = "api") -> Reply:
        """Run a plan that was made elsewhere; it is validated against the world state here all the same."""
        self._input("plan", source, plan=plan.to_json())
        if plan.status is PlanStatus.CONTROL and plan.control is not None:
            return self._control(plan.control, None)
        with self._lock:
            self._fire(T.PLAN, reason="plan submitted")
            gen = self._gen
        return self._accept(plan, gen)

    def control(self, intent: Control | str, *, step_index: int | None = None, source: str = "api") -> Reply:
        """A control intent as a console sends it; never raises for the state, answers with a refusal."""
        c = Control(intent)
        fields = {"step_index": step_index} if step_index is not None else {}
        self._input(c.value, source, **fields)
        return self._control(c, step_index)

    def confirm(self, step_index: int | None = None, *, source: str = "api") -> Reply:
        """Confirm the step asked about; a different ``step_index`` or a late answer is refused."""
        fields = {"step_index": step_index} if step_index is not None else {}
        self._input("confirm", source, **fields)
        return self._confirm(step_index)

    def deny(self, *, source: str = "api") -> Reply:
        self._input("deny", source)
        return self._simple(T.DENY, "the operator said no", "plan dropped")

    def pause(self, *, source: str = "api") -> Reply:
        self._input("pause", source)
        return self._simple(T.PAUSE, "pause requested", "paused; say 'resume' to go on")

    def resume(self, *, source: str = "api") -> Reply:
        self._input("resume", source)
        return self._simple(T.RESUME, "resume requested", "resuming")

    def cancel(self, *, source: str = "api") -> Reply:
        self._input("cancel", source)
        return self._simple(T.CANCEL, "cancel requested", "plan cancelled")

    def stop(self, reason: str = "operator stop", *, source: str = "api") -> Reply:
        """E-stop: halt the backend first, from this thread, then latch ESTOP. Valid in every state."""
        return self._stop(reason, source)

    def reset(self, *, source: str = "api") -> Reply:
        """Operator reset after ESTOP or FAULT: clear the halt, check the backend, back to IDLE."""
        self._input("reset", source)
        return self._reset()

    def record_untrusted(self, event: ev.UntrustedEvent) -> int | None:
        """Audit a message refused before it reached the machine (a forged confirmation, a replayed reset): the
        log must show who tried, even though nothing happened. Changes no state."""
        return self._log(event)

    def record_discarded(self, plan: Plan) -> int | None:
        """Audit a plan that came back for a command the operator had already withdrawn: it never reached the
        machine, and the log says so. Changes no state."""
        return self._log(ev.PlanDiscardedEvent(plan=plan.to_json(), state=self.state.value))

    def propose(self, text: str) -> Plan:
        """Plan ``text`` without admitting it, audited as any planning is: a console reads the plan back and
        submits exactly that plan once a person confirmed it. Changes no state."""
        if self.planner is None:
            raise ValueError("this supervisor has no planner")
        return self._call_planner(text)

    def status(self) -> dict[str, Any]:
        with self._lock:
            run = self._run
            return {
                "state": self.state.value,
                "reason": self.reason,
                "message": self.describe(),
                "run": run.id if run else None,
                "plan": run.plan.to_json() if run else None,
                "step_index": run.index if run else None,
                "steps": len(run.steps) if run else 0,
                "question": self._pending.to_json() if self._pending else None,
                "progress": dict(self._progress),
                "halted": self._backend_halted(),
            }

    def wait_for(self, *states: SupervisorState, timeout: float | None = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.state in states, timeout)

    def wait_idle(self, timeout: float | None = 5.0) -> bool:
        """Until the supervisor is IDLE, ESTOP or FAULT and no step is running."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self.state in (S.IDLE, S.ESTOP, S.FAULT), timeout)
        return ok and self._executor.wait_idle(timeout)

    @property
    def worker_parked(self) -> bool:
        """The executor cannot do anything until someone acts: no run, or waiting for a confirm/resume."""
        with self._lock:
            if self._executor.idle:
                return True
            run = self._waiting_run
            return run is not None and run is self._run and not run.dropped and \
                self.state in (S.AWAITING_CONFIRMATION, S.PAUSED)

    @property
    def executor(self) -> Executor:
        return self._executor

    def subscribe(self, listener: ev.EventListener) -> Callable[[], None]:
        """Receive every record (as logged) and step feedback, in order, on a dispatcher thread.

        Listeners may call back into the supervisor (e.g. a console answering a question)."""
        with self._lock:
            self._listeners.append(listener)
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(target=self._dispatch, name="medrobot-events", daemon=True)
                self._dispatcher.start()

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def close(self, timeout: float = 2.0) -> None:
        """Stop the threads; a plan still running is cancelled first, so nothing keeps moving."""
        if self._closed:
            return
        with self._lock:
            if self.state in (S.PLANNING, *WITH_PLAN):
                try:
                    self._fire(T.CANCEL, reason="supervisor closed")
                except SupervisorError:
                    pass
            self._closed = True
        self._watch_stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout)
        if not self._executor.close(timeout):
            self._halt_backend("supervisor closed while a step was still running")
        with self._lock:
            for run, outcome, reason in list(self._ending.values()):
                self._ending.pop(run.id, None)
                try:
                    self._log_run_end(run, outcome, f"{reason}; its last step never returned")
                except AuditLogError:
                    pass  # already reported: the failing audit log put the supervisor in FAULT
        self._events.put(None)
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _control(self, c: Control, step_index: int | None) -> Reply:
        try:
            if c is Control.STOP:
                return self._stop("stop requested", None)
            if c is Control.STATUS:
                return Reply(True, self.state, self.describe(), question=self._pending)
            if c is Control.CONFIRM:
                return self._confirm(step_index)
            texts = {
                Control.PAUSE: (T.PAUSE, "pause requested", "paused; say 'resume' to go on"),
                Control.RESUME: (T.RESUME, "resume requested", "resuming"),
                Control.CANCEL: (T.CANCEL, "cancel requested", "plan cancelled"),
                Control.DENY: (T.DENY, "the operator said no", "plan dropped"),
            }
            return self._simple(*texts[c])
        except InvalidTransition as exc:
            return Reply(False, self.state, self._explain_invalid(exc), question=self._pending)

    def _explain_invalid(self, exc: InvalidTransition) -> str:
        if exc.trigger in ("confirm", "deny") and exc.state is not S.AWAITING_CONFIRMATION:
            return f"there is nothing to {exc.trigger} ({self.describe()})"
        if exc.state in LATCHED:
            return f"{exc.state.value} is latched ({self.reason}); say 'reset' first"
        return str(exc)

    def _simple(self, trigger: Trigger, reason: str, done: str) -> Reply:
        with self._lock:
            ok = self._fire(trigger, reason=reason)
            return Reply(ok, self.state, done if ok else (self._refusal or f"{trigger.value} refused"),
                         question=self._pending)

    def _confirm(self, step_index: int | None) -> Reply:
        with self._lock:
            asked = self._pending
            reason = f"step {asked.step_index + 1} confirmed" if asked else "confirmed"
            if self._fire(T.CONFIRM, step_index=step_index, reason=reason):
                assert asked is not None
                return Reply(True, self.state, f"confirmed step {asked.step_index + 1} ({asked.skill})")
            refusal = self._refusal or "confirmation refused"
            self._log(ev.ConfirmationEvent(run=asked.run if asked else None, step=asked.step_index if asked else None,
                                           accepted=False, given=step_index, reason=refusal))
            if self._refusal_expired and self.state is S.AWAITING_CONFIRMATION:
                self._fire(T.EXPIRE, reason=refusal + "; plan dropped")
                refusal += "; plan dropped"
            return Reply(False, self.state, refusal, question=self._pending)
