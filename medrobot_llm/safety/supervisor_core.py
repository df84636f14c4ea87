"""What every part of the supervisor shares: its state, the machine's callbacks, its record of events.

``Supervisor`` (the facade, in ``supervisor.py``) is assembled from this and three mixins, one concern
each: plan admission (``admission.py``), releasing steps to the executor and the watchdog
(``stepping.py``), and the e-stop latch and its reset (``latching.py``). All of them act on the fields
declared here, under the one lock; the facade's constructor sets them.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, assert_never

from transitions import EventData, MachineError
from transitions.extensions.locking import LockedMachine

from medrobot_llm.backends.base import SkillBackend
from medrobot_llm.core.command_set import CommandSet, Hazard
from medrobot_llm.core.plan import Step
from medrobot_llm.planning.base import Planner
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.audit import AuditLog, AuditLogError
from medrobot_llm.safety.executor import Executor, Run
from medrobot_llm.safety.machine import (LATCHED, Effect, InvalidTransition, StateChange, SupervisorError,
                                         SupervisorState, Trigger)
from medrobot_llm.safety.replies import Question

__all__ = ["MachineModel", "SupervisorCore"]

#: one logger for the whole supervisor, whichever of its modules reports
_LOG = logging.getLogger("medrobot_llm.safety.supervisor")
S = SupervisorState
T = Trigger


class MachineModel:
    """What the machine drives. Kept apart from ``Supervisor`` so trigger names (``pause``, ``confirm``)
    never collide with the public methods; the machine adds the triggers and ``state`` to it."""

    state: SupervisorState


class SupervisorCore:
    """The supervisor's fields and the machinery under every command; the lock guards all of it."""

    backend: SkillBackend
    planner: Planner | None
    domain: str
    command_set: CommandSet
    audit: AuditLog
    clock: Callable[[], float]
    confirm_timeout_s: float
    confirm_hazards: frozenset[Hazard]
    step_timeout_s: float
    heartbeat_timeout_s: float
    watchdog_period_s: float | None
    reset_wait_s: float
    reason: str
    history: list[StateChange]

    _lock: threading.RLock
    _cond: threading.Condition
    _model: MachineModel
    _machine: LockedMachine
    _executor: Executor
    _run_ids: itertools.count[int]
    _gen: int
    _run: Run | None
    _pending: Question | None
    _inflight: tuple[Run, int, float] | None
    _waiting_run: Run | None
    _ending: dict[int, tuple[Run, str, str]]  # run id -> run, outcome, reason: see _drop_run
    _halt_requested: str | None  # the supervisor's own halt (a stop, a fault) since the last reset, and why
    _recovered_at: float  # when the last reset brought the robot back (clock): see ``ROBOT_HALT_HELP``
    _resets: int  # operator resets so far: a reset finishing late must not complete a newer one
    _refusal: str | None
    _refusal_expired: bool
    _audit_error: Exception | None
    _last_seq: int  # the number of the last record this supervisor logged
    _in_fault_handler: bool
    _progress: dict[str, Any]
    _listeners: list[ev.EventListener]
    _events: queue.Queue[ev.SupervisorEvent | None]
    _dispatcher: threading.Thread | None
    _closed: bool
    _watch_stop: threading.Event
    _watchdog: threading.Thread | None

    @property
    def state(self) -> SupervisorState:
        return self._model.state

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

    @property
    def current_run(self) -> Run | None:
        return self._run

    def refuse(self, why: str, *, expired: bool = False) -> None:
        self._refusal, self._refusal_expired = why, expired

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
        self._halt_requested = reason  # ordered: the halt the robot will report is no stop nobody told us of
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

    def _asks(self, step: Step) -> bool:
        """Whether a step waits for a confirmation of its own: the skill file says so, or the operator asked."""
        hazard = self._hazard(step)
        return hazard.needs_confirmation or hazard in self.confirm_hazards

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
            head = f"Confirm {hazard.value} step {i + 1} of {len(run.steps)}"
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
        self._last_seq = seq
        if self._listeners:
            self._events.put(event.model_copy(update={"seq": seq}))
        return seq

    @property
    def last_seq(self) -> int:
        """The number of the last record this supervisor logged and handed to its listeners (-1: none yet). A
        listener waiting for a run's records waits for this one, not for the log's last: others write to the same
        log (the scene its hazard records, the session the recording it made), and those never reach listeners."""
        return self._last_seq

    @property
    def records_pending(self) -> bool:
        """Whether records wait for the listeners: a listener may leave what reflects them all to the last of a
        burst (a step's result and the next step's send come together)."""
        return not self._events.empty()

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
