"""The safety supervisor: the one state machine between plans and robots.

Everything that may move a robot passes through here. The rules that keep people safe are data, the
table of ``medrobot_llm.safety.machine`` that the machine, the docs diagram and the tests all read; this
class is what the rows act on: it builds the machine without auto transitions, so a trigger the table
does not allow from the current state raises instead of quietly doing something, and commands, the
e-stop, the watchdog and the executor's worker can all call in from their own threads.

Three rules shape the code:
- ``stop`` halts the backend *before* it takes any lock, so an e-stop never waits behind anything;
- a contact or radiation step is released only with a confirmation of that very step, used once;
- whatever goes wrong inside the machine (a callback raising, a step failing, a silent backend) ends
  in FAULT with the backend halted, latched until an operator resets.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Self, assert_never

from transitions import EventData, MachineError

from medrobot_llm.safety import events as ev
from medrobot_llm.safety.audit import AuditLog, AuditLogError
from medrobot_llm.backends.base import CancelToken, FailureKind, Feedback, SkillBackend, StepResult
from medrobot_llm.safety.executor import Executor, Run
from medrobot_llm.core.plan import Control, Plan, PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.planning.base import Planner
from medrobot_llm.core.command_set import Hazard, load_command_set
from medrobot_llm.core.validator import WorldState, validate_plan
from medrobot_llm.safety.machine import (GUARD_HELP, LATCHED, STATE_HELP, TRANSITIONS, TRIGGER_HELP, Effect,
                                         InvalidTransition, StateChange, SupervisorError, SupervisorState, Trigger,
                                         allowed_sources, bind_guards, build_machine, mermaid_diagram,
                                         supervisor_doc)
from medrobot_llm.safety.replies import Question, Reply

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

_LOG = logging.getLogger(__name__)
S = SupervisorState
T = Trigger
_WITH_PLAN = (S.EXECUTING, S.AWAITING_CONFIRMATION, S.PAUSED)


class _Model:
    """What the machine drives. Kept apart from ``Supervisor`` so trigger names (``pause``, ``confirm``)
    never collide with the public methods; the machine adds the triggers and ``state`` to it."""

    state: SupervisorState


class Supervisor:
    """Validates plans against the robot's world, asks for confirmations, releases steps, latches stops.

    ``clock`` drives confirmation expiry, step timeouts and the heartbeat check; the backend's
    ``last_heartbeat`` must be on the same clock (``time.monotonic`` for both by default). Tests pass a
    fake clock and ``watchdog_period_s=None`` and call ``tick`` themselves.
    """

    def __init__(self, backend: SkillBackend, planner: Planner | None = None, *, domain: str | None = None,
                 audit: AuditLog | None = None, clock: Callable[[], float] = time.monotonic,
                 confirm_timeout_s: float = 30.0, step_timeout_s: float = 60.0,
                 heartbeat_timeout_s: float = 1.0, watchdog_period_s: float | None = 0.05,
                 reset_wait_s: float = 2.0) -> None:
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

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._model = _Model()
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
        self._resets = 0  # operator resets so far: a reset finishing late must not complete a newer one
        self._refusal: str | None = None
        self._refusal_expired = False
        self._audit_error: Exception | None = None
        self._in_fault_handler = False
        self._progress: dict[str, Any] = {}
        self.reason = ""
        self.history: list[StateChange] = []

        self._listeners: list[ev.EventListener] = []
        self._events: queue.Queue[ev.SupervisorEvent | None] = queue.Queue()
        self._dispatcher: threading.Thread | None = None
        self._closed = False

        self._log(ev.SessionEvent(
            domain=self.domain, backend=type(backend).__name__,
            planner=getattr(planner, "name", type(planner).__name__) if planner is not None else None,
            state=self.state.value, world=self._world_json(),
            config={"confirm_timeout_s": confirm_timeout_s, "step_timeout_s": step_timeout_s,
                    "heartbeat_timeout_s": heartbeat_timeout_s}))
        self._watch_stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        if watchdog_period_s is not None:
            self._watchdog = threading.Thread(target=self._watch, name="medrobot-watchdog", daemon=True)
            self._watchdog.start()

    # ================================================================ public API: commands
    @property
    def state(self) -> SupervisorState:
        return self._model.state

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

    def describe(self) -> str:
        """One sentence on where the supervisor is, for the `status` intent and status lines."""
        st, run = self.state, self._run
        if st is S.AWAITING_CONFIRMATION and self._pending is not None:
            return self._pending.text
        if st in (S.EXECUTING, S.PAUSED) and run is not None:
            i = min(run.index, len(run.steps) - 1)
            verb = "executing" if st is S.EXECUTING else "paused at"
            return f"{verb} step {i + 1} of {len(run.steps)}: {run.steps[i].describe()}"
        if st in LATCHED:
            return f"{st.value}: {self.reason}; say 'reset' when it is safe"
        if st is S.PLANNING:
            return "planning"
        return "idle, ready" + (f" (last: {self.reason})" if self.reason else "")

    # ================================================================ public API: threads, waiting, listeners
    def tick(self) -> None:
        """One watchdog pass: expire a question, time out a step, notice a silent backend."""
        try:
            with self._lock:
                st, now = self.state, self.clock()
                if st is S.AWAITING_CONFIRMATION and self._pending is not None and now > self._pending.expires_at:
                    q = self._pending
                    self._fire(T.EXPIRE, reason=f"no confirmation of step {q.step_index + 1} ({q.skill}) within "
                               f"{self.confirm_timeout_s:g} s; plan dropped", cause="watchdog")
                    return
                inflight = self._inflight
                if inflight is None or st in LATCHED:
                    return
                run, i, sent_at = inflight
                skill = run.steps[i].skill
                if now - sent_at > self.step_timeout_s:
                    self._fire(T.FAULT, reason=f"step {i + 1} ({skill}) did not finish within "
                               f"{self.step_timeout_s:g} s", cause="watchdog")
                    return
                since = max(float(self.backend.last_heartbeat), sent_at)
                if now - since > self.heartbeat_timeout_s:
                    self._fire(T.FAULT, reason=f"backend heartbeat lost: no sign of life for {now - since:.2f} s "
                               f"during step {i + 1} ({skill})", cause="watchdog")
        except InvalidTransition:
            return
        except Exception as exc:  # noqa: BLE001 - the watchdog itself failing must not go unnoticed
            self._enter_fault(f"watchdog error {type(exc).__name__}: {exc}")

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
            if self.state in (S.PLANNING, *_WITH_PLAN):
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

    # ================================================================ commands, inside
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

    def _stop(self, reason: str, source: str | None) -> Reply:
        self._halt_requested = reason
        halt_error: Exception | None = None
        try:
            self.backend.halt(reason)
        except Exception as exc:  # noqa: BLE001 - reported below, as a fault: the robot may still move
            halt_error = exc
        run = self._run
        token = run.token if run is not None else None
        if token is not None:
            token.cancel("e-stop")
        with self._lock:
            try:
                if source is not None:
                    self._input("stop", source, reason=reason)
                self._log(ev.EstopEvent(reason=reason, halted=halt_error is None,
                                        error=f"{type(halt_error).__name__}: {halt_error}" if halt_error else None))
            except AuditLogError:
                pass  # the halt already happened; the log failure itself put the supervisor in FAULT
            if halt_error is not None:
                self._fire(T.FAULT, reason=f"e-stop could not halt the backend ({type(halt_error).__name__}: "
                           f"{halt_error})")
            else:
                self._fire(T.ESTOP, reason=reason)
            return Reply(True, self.state, f"stopped: {reason}. Say 'reset' when it is safe.")

    def _reset(self) -> Reply:
        if self.state not in LATCHED:
            raise InvalidTransition(T.RESET, self.state)
        if not self._executor.idle:
            # a halted step returns within a control step; give it that, not forever
            self._executor.wait_idle(self.reset_wait_s)
        with self._lock:
            if not self._fire(T.RESET, reason="operator reset"):
                return Reply(False, self.state, self._refusal or "reset refused")
            self._resets += 1
            mine = self._resets
        # Not under the lock: a backend may wait here for the robot to report itself clear, and that report
        # (like a stop) can come in on a thread that needs this lock; holding it would stall both.
        try:
            self.backend.clear_halt()
        except Exception as exc:  # noqa: BLE001 - a backend that cannot be released stays halted, in FAULT
            with self._lock:
                if self.state is S.RECOVERING and self._resets == mine:
                    self._fire(T.FAULT, reason=f"recovery failed: could not release the backend "
                               f"({type(exc).__name__}: {exc})")
            return Reply(False, self.state, f"recovery failed: {type(exc).__name__}: {exc}")
        with self._lock:
            if self.state is not S.RECOVERING or self._resets != mine:
                # a stop, fault or another reset came in while the robot was being released: whatever it
                # latched holds, so the halt the release may have undone is asked for again
                if self.state in LATCHED:
                    self._halt_backend(self.reason or "latched during a reset")
                return Reply(False, self.state, f"reset interrupted: the supervisor is {self.state.value} "
                             f"({self.reason}); say 'reset' again when it is safe")
            if not self._fire(T.RECOVERED, reason="backend un-halted and reporting"):
                why = self._refusal or self.reason or "the backend is not ready"
                if self.state is S.RECOVERING:
                    self._fire(T.FAULT, reason=f"recovery failed: {why}")
                return Reply(False, self.state, f"recovery failed: {why}")
            return Reply(True, self.state, "reset: ready")

    def _busy_message(self) -> str:
        st = self.state
        if st in LATCHED:
            return f"{st.value} is latched ({self.reason}); say 'reset' first"
        if st is S.PLANNING:
            return "still planning the last command; say 'cancel' to drop it"
        return f"a plan is running ({self.describe()}); say 'cancel' or 'stop' first"

    def _call_planner(self, text: str) -> Plan:
        assert self.planner is not None
        world: WorldState | None
        try:
            world = self.backend.world_state()
        except Exception:  # noqa: BLE001 - plan without a state; validation below needs the state anyway
            world = None
        t0 = time.perf_counter()
        try:
            plan = self.planner.plan(self.domain, text, world)
            if not isinstance(plan, Plan):
                raise TypeError(f"the planner returned {type(plan).__name__}, not a Plan")
        except Exception as exc:  # noqa: BLE001 - a broken planner refuses; it must not move anything
            plan = Plan.refused(self.domain, f"the planner failed ({type(exc).__name__}: {exc})",
                                Reason.PLANNER_ERROR)
        self._log(ev.PlanEvent(text=text, plan=plan.to_json(), planner=getattr(self.planner, "name", None),
                               latency_ms=round((time.perf_counter() - t0) * 1000, 3)))
        return plan

    def _accept(self, plan: Plan, gen: int) -> Reply:
        with self._lock:
            if self.state is not S.PLANNING or gen != self._gen:
                self._log(ev.PlanDiscardedEvent(plan=plan.to_json(), state=self.state.value))
                return Reply(False, self.state, f"the plan came too late: the supervisor is {self.state.value} now",
                             plan)
            if plan.status is not PlanStatus.OK:
                why = plan.reason or plan.question or plan.status.value
                self._fire(T.REJECT, reason=f"{plan.status.value}: {why}")
                return Reply(False, self.state, why, plan)
            if plan.domain != self.domain:
                why = f"the plan is for {plan.domain}, this robot is {self.domain}"
                self._log(ev.ValidationEvent(ok=False, reason=why, plan=plan.to_json()))
                self._fire(T.REJECT, reason=why)
                return Reply(False, self.state, why, plan)
            try:
                world = self.backend.world_state()
            except Exception as exc:  # noqa: BLE001
                self._fire(T.FAULT, reason=f"the backend could not report its world state "
                           f"({type(exc).__name__}: {exc})")
                return Reply(False, self.state, self.reason, plan)
            checked = validate_plan(plan, world)
            ok = checked.status is PlanStatus.OK
            self._log(ev.ValidationEvent(ok=ok, plan=checked.to_json(), world=world.to_json(),
                                         reason=None if ok else (checked.reason or checked.question)))
            if not ok:
                why = checked.reason or checked.question or "invalid plan"
                self._fire(T.REJECT, reason=f"validation: {why}")
                return Reply(False, self.state, why, checked)
            confirm = set(checked.needs_confirmation)
            confirm |= {i for i, s in enumerate(checked.steps) if self._hazard(s).needs_confirmation}
            run = Run(next(self._run_ids), checked, frozenset(confirm), validated=True)
            self._fire(T.ACCEPT, run=run, reason=f"plan validated: {len(checked.steps)} step(s)")
            return Reply(self.state in (S.EXECUTING, S.AWAITING_CONFIRMATION), self.state,
                         "running: " + ", ".join(s.describe() for s in checked.steps), checked,
                         question=self._pending)

    # ================================================================ StepGate (the executor's worker thread)
    def wait_turn(self, run: Run) -> int | None:
        with self._cond:
            while True:
                if run is not self._run or run.dropped:
                    return None
                st = self.state
                if st is S.EXECUTING:
                    i = run.index
                    if i >= len(run.steps):
                        self._fire(T.FINISH, reason=f"all {len(run.steps)} step(s) done")
                        continue
                    if i in run.confirm and run.confirmed != i:
                        self._fire(T.ASK, question=self._question(run, i), reason=f"step {i + 1} needs confirmation")
                        continue
                    return i
                if st in (S.AWAITING_CONFIRMATION, S.PAUSED):
                    self._waiting_run = run
                    try:
                        self._cond.wait(0.5)
                    finally:
                        self._waiting_run = None
                    continue
                return None

    def release(self, run: Run, index: int) -> CancelToken | None:
        with self._lock:
            if run is not self._run or run.dropped or self.state is not S.EXECUTING or run.index != index:
                return None
            confirmed = index in run.confirm
            if confirmed:
                if run.confirmed != index:
                    return None
                run.confirmed = None  # one confirmation, one sending
            token = CancelToken()
            run.token, run.in_flight, run.sent_at = token, index, self.clock()
            self._inflight = (run, index, run.sent_at)
            self._progress = {"run": run.id, "step": index, "progress": 0.0, "phase": "sent"}
            step = run.steps[index]
            self._log(ev.StepSentEvent(run=run.id, step=index, skill=step.skill, args=step.args,
                                       hazard=self._hazard(step).value, confirmed=confirmed, state=self.state.value))
            return token

    def step_feedback(self, run: Run, index: int, feedback: Feedback) -> None:
        self._progress = {"run": run.id, "step": index, "progress": feedback.progress, "phase": feedback.phase}
        if self._listeners:
            self._events.put(ev.FeedbackEvent(run=run.id, step=index, phase=feedback.phase,
                                              progress=feedback.progress, telemetry=feedback.telemetry))

    def step_rejected(self, run: Run, index: int, reason: str, fault: bool) -> None:
        with self._lock:
            self._log(ev.StepRejectedEvent(run=run.id, step=index, reason=reason, fault=fault))
            self._end_deferred(run)
            if fault:
                self._fire(T.FAULT, reason=reason)
            elif run is self._run and not run.dropped and self.state is S.EXECUTING:
                self._fire(T.ABORT, reason=reason)

    def step_done(self, run: Run, index: int, result: StepResult) -> None:
        with self._lock:
            token = run.token
            run.token, run.in_flight = None, None
            if self._inflight is not None and self._inflight[0] is run:
                self._inflight = None
            run.results.append((index, result))
            step = run.steps[index]
            self._log(ev.StepResultEvent(run=run.id, step=index, skill=step.skill, success=result.success,
                                         failure=result.failure.value, message=result.message,
                                         outcome=result.outcome))
            if result.success and run.index == index:
                run.index = index + 1
            self._end_deferred(run)
            if result.success:
                self._progress = {"run": run.id, "step": index, "progress": 1.0, "phase": "done"}
                self._cond.notify_all()
                return
            ours = token is not None and token.cancelled
            if result.failure is FailureKind.CANCELLED and ours:
                return  # pause, cancel or stop: the position is kept (pause) or the run is gone
            if result.failure is FailureKind.HALTED and (ours or self._halt_requested or self.state in LATCHED):
                return
            where = f"step {index + 1} ({step.skill})"
            if result.failure is FailureKind.HALTED:
                self._fire(T.ESTOP, reason=f"the backend halted on its own during {where}: {result.message}")
                return
            what = "limit violation" if result.failure.is_limit_violation else "failed"
            self._fire(T.FAULT, reason=f"{where} {what}: {result.failure.value}: {result.message}")

    # ================================================================ machine callbacks
    def _fire(self, trigger: Trigger | str, **kwargs: Any) -> bool:
        """Fire one trigger; raises InvalidTransition if the table does not allow it from here (a name
        that is no ``Trigger`` at all included)."""
        event = self._machine.events.get(trigger.value if isinstance(trigger, Trigger) else trigger)
        if event is None:
            raise InvalidTransition(trigger, self.state)
        self._refusal, self._refusal_expired = None, False
        return bool(event.trigger(self._model, **kwargs))

    def _on_exception(self, event: EventData) -> None:
        err = event.error
        if isinstance(err, MachineError):
            raise InvalidTransition(event.event.name, self.state) from err
        if isinstance(err, SupervisorError):
            raise err
        self._enter_fault(f"{type(err).__name__} in the {event.event.name!r} transition: {err}")

    def _enter_fault(self, reason: str) -> None:
        """The last resort: halt and force FAULT without running any more callbacks that could fail."""
        with self._lock:
            if self._in_fault_handler:
                return
            self._in_fault_handler = True
            try:
                self._halt_backend(reason)
                source = self.state
                self._machine.set_state(S.FAULT, model=self._model)
                try:
                    self._drop_run(reason)
                except Exception:  # noqa: BLE001 - the state is set; losing a record must not undo it
                    _LOG.exception("while entering FAULT")
                try:
                    self._record_change(source, S.FAULT, T.FAULT, reason, cause="exception")
                except Exception:  # noqa: BLE001
                    _LOG.exception("while entering FAULT")
            finally:
                self._in_fault_handler = False

    def _on_enter(self, event: EventData) -> None:
        assert event.transition is not None
        source = SupervisorState(event.transition.source)
        reason = str(event.kwargs.get("reason", ""))
        self._record_change(source, self.state, Trigger(event.event.name), reason, cause=event.kwargs.get("cause"))

    def _record_change(self, source: SupervisorState, dest: SupervisorState, trigger: Trigger, reason: str,
                       cause: Any = None) -> None:
        self.history.append(StateChange(source, dest, trigger, reason, self.clock()))
        if source is dest and dest in LATCHED and self.reason and reason != self.reason:
            # the first cause of a latched state is the one the operator must see
            self.reason = f"{self.reason}; then: {reason}"
        else:
            self.reason = reason
        self._cond.notify_all()
        changed = ev.StateEvent(source=source.value, to=dest.value, trigger=trigger.value, reason=reason)
        self._log(changed.model_copy(update={"cause": cause}) if cause else changed)

    # the machine's context (read by its guards) --------------------------------------------------
    @property
    def current_run(self) -> Run | None:
        return self._run

    def refuse(self, why: str, *, expired: bool = False) -> None:
        self._refusal, self._refusal_expired = why, expired

    # effects -----------------------------------------------------------------------------------
    def _effects(self) -> dict[Effect, Callable[[EventData], None]]:
        return {effect: functools.partial(self._effect, effect) for effect in Effect}

    def _effect(self, effect: Effect, event: EventData) -> None:
        """Run ``effect``; looked up on each call, so what runs is always this object's current method."""
        match effect:
            case Effect.PLAN:
                self._effect_plan(event)
            case Effect.ACCEPT:
                self._effect_accept(event)
            case Effect.ASK:
                self._effect_ask(event)
            case Effect.CONFIRM:
                self._effect_confirm(event)
            case Effect.PAUSE:
                self._effect_pause(event)
            case Effect.DROP_PLAN:
                self._effect_drop_plan(event)
            case Effect.ESTOP:
                self._effect_estop(event)
            case Effect.FAULT:
                self._effect_fault(event)
            case Effect.RESET:
                self._effect_reset(event)
            case _:
                assert_never(effect)

    def _effect_plan(self, event: EventData) -> None:
        self._gen += 1

    def _effect_accept(self, event: EventData) -> None:
        run: Run = event.kwargs["run"]
        self._run = run
        self._log(ev.RunEvent(run=run.id, steps=[s.model_dump(mode="json") for s in run.steps],
                              needs_confirmation=sorted(run.confirm)))
        self._executor.submit(run)

    def _effect_ask(self, event: EventData) -> None:
        q: Question = event.kwargs["question"]
        self._pending = q
        self._log(ev.QuestionEvent(**q.to_json()))

    def _effect_confirm(self, event: EventData) -> None:
        q, run = self._pending, self._run
        assert q is not None and run is not None
        run.confirmed = q.step_index
        self._pending = None
        self._log(ev.ConfirmationEvent(run=run.id, step=q.step_index, accepted=True,
                                       given=event.kwargs.get("step_index"), reason=None))

    def _effect_pause(self, event: EventData) -> None:
        self._pending = None
        run = self._run
        if run is not None and run.token is not None:
            run.token.cancel("pause")

    def _effect_drop_plan(self, event: EventData) -> None:
        self._drop_run(str(event.kwargs.get("reason", event.event.name)), outcome=event.event.name)

    def _effect_estop(self, event: EventData) -> None:
        reason = str(event.kwargs.get("reason", "e-stop"))
        self._drop_run(reason, outcome="estop")
        if not self._backend_halted():
            # a reset racing this stop may have cleared the halt we asked for: latch it again
            self._halt_backend(reason)

    def _effect_fault(self, event: EventData) -> None:
        reason = str(event.kwargs.get("reason", "fault"))
        self._halt_backend(reason)
        self._drop_run(reason, outcome="fault")

    def _effect_reset(self, event: EventData) -> None:
        self._halt_requested = None  # the backend itself is released by ``_reset``, outside the lock

    # ================================================================ helpers
    def _drop_run(self, reason: str, outcome: str = "dropped") -> None:
        self._pending = None
        run = self._run
        if run is None:
            return
        run.dropped = True
        if run.token is not None:
            run.token.cancel(outcome)
        self._run = None
        if run.in_flight is not None:
            # the step still running ends first (halted, cancelled, or done): its record must come before
            # the run's end, so the run's end waits for it (``step_done``)
            self._ending[run.id] = (run, outcome, reason)
            return
        self._log_run_end(run, outcome, reason)

    def _log_run_end(self, run: Run, outcome: str, reason: str) -> None:
        self._log(ev.RunEndEvent(run=run.id, outcome=outcome, reason=reason, steps_done=run.index,
                                 steps=len(run.steps)))

    def _end_deferred(self, run: Run) -> None:
        """Log the end of a run dropped while one of its steps was running, now that the step has ended."""
        ending = self._ending.pop(run.id, None)
        if ending is not None:
            self._log_run_end(run, ending[1], ending[2])

    def _halt_backend(self, reason: str) -> None:
        try:
            self.backend.halt(reason)
        except Exception as exc:  # noqa: BLE001 - nothing more can be done from here than say so
            _LOG.error("backend.halt failed: %s", exc)
            try:
                self._log(ev.HaltFailedEvent(reason=reason, error=f"{type(exc).__name__}: {exc}"))
            except AuditLogError:
                pass

    def _backend_halted(self) -> bool:
        try:
            return bool(self.backend.halted)
        except Exception:  # noqa: BLE001
            return False

    def _hazard(self, step: Step) -> Hazard:
        spec = self.command_set.skill(step.skill)
        return spec.hazard if spec is not None else Hazard.MOTION

    def _question(self, run: Run, i: int) -> Question:
        step = run.steps[i]
        hazard = self._hazard(step)
        if hazard is Hazard.RADIATION:
            shots = [k for k, s in enumerate(run.steps) if self._hazard(s) is Hazard.RADIATION]
            head = f"Confirm exposure {shots.index(i) + 1} of {len(shots)}"
        else:
            head = f"Confirm contact step {i + 1} of {len(run.steps)}"
        now = self.clock()
        return Question(run.id, i, step.skill, hazard, f"{head}: {step.describe()} — say 'confirm'",
                        now, now + self.confirm_timeout_s)

    def _world_json(self) -> dict[str, Any] | None:
        try:
            return self.backend.world_state().to_json()
        except Exception:  # noqa: BLE001
            return None

    def _input(self, op: str, source: str | None, **fields: Any) -> None:
        """Log a command before acting on it; if it cannot be logged it is not carried out."""
        with self._lock:
            try:
                self._log(ev.CommandEvent(op=op, source=source, state=self.state.value, n_states=len(self.history),
                                          **fields))
            except AuditLogError:
                if op == "stop":
                    return  # the halt already happened; the fault below records what can be recorded
                raise

    def _log(self, event: ev.SupervisorEvent) -> int | None:
        """Write ``event`` (stamped with the clock) to the audit log, then hand it, numbered, to the listeners."""
        event = event.model_copy(update={"clock": self.clock()})
        try:
            seq = self.audit.append(event.kind, **event.fields())
        except Exception as exc:
            if self._audit_error is None:
                self._audit_error = exc
                _LOG.error("audit log failed: %s", exc)
                if not self._in_fault_handler:
                    self._enter_fault(f"the audit log cannot be written ({type(exc).__name__}: {exc})")
            raise AuditLogError(str(exc)) from exc
        if self._listeners:
            self._events.put(event.model_copy(update={"seq": seq}))
        return seq

    def _watch(self) -> None:
        assert self.watchdog_period_s is not None
        while not self._watch_stop.wait(self.watchdog_period_s):
            self.tick()

    def _dispatch(self) -> None:
        while True:
            rec = self._events.get()
            if rec is None:
                return
            for listener in list(self._listeners):
                try:
                    listener(rec)
                except Exception:  # noqa: BLE001 - a broken console must not take the supervisor down
                    _LOG.exception("supervisor listener failed")
