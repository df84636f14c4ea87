"""Releasing steps: the supervisor's side of the executor's ``StepGate``, and the watchdog.

The executor's worker thread asks here before each step, and reports each step's end here; the
watchdog expires questions, times out steps, notices a silent backend and a halt the robot reports that
the supervisor did not order. Every decision is a trigger of the machine, taken under the supervisor's lock.

That halt is looked for on the watchdog's pass, not when the robot's report comes in: a backend's report
arrives on a thread of its own (a ROS status callback) that must never wait for this lock, and the pass
already reads the backend the way the heartbeat check does.
"""

from __future__ import annotations

from medrobot_llm.backends.base import CancelToken, FailureKind, Feedback, StepResult
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.audit import AuditLogError
from medrobot_llm.safety.executor import Run
from medrobot_llm.safety.machine import (LATCHED, ROBOT_HALT, ROBOT_HALT_EXPECTED, InvalidTransition, SupervisorState,
                                         Trigger)
from medrobot_llm.safety.supervisor_core import SupervisorCore

__all__ = ["StepGateMixin"]

S = SupervisorState
T = Trigger


class StepGateMixin(SupervisorCore):
    """``wait_turn``, ``release`` and the ``step_*`` reports (the executor's thread); ``tick`` (the watchdog)."""

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
                self._latch_robot_halt(f"during {where}: {result.message}")
                return
            what = "limit violation" if result.failure.is_limit_violation else "failed"
            self._fire(T.FAULT, reason=f"{where} {what}: {result.failure.value}: {result.message}")

    def tick(self) -> None:
        """One watchdog pass: expire a question, latch a halt nobody told us of, time out a step, notice a silent
        backend."""
        try:
            with self._lock:
                st, now = self.state, self.clock()
                if st is S.AWAITING_CONFIRMATION and self._pending is not None and now > self._pending.expires_at:
                    q = self._pending
                    self._fire(T.EXPIRE, reason=f"no confirmation of step {q.step_index + 1} ({q.skill}) within "
                               f"{self.confirm_timeout_s:g} s; plan dropped", cause="watchdog")
                    return
                if self._unordered_halt(st, now):
                    said = self._backend_halt_reason()
                    self._latch_robot_halt(f"while {st.value}" + (f": {said}" if said else ""))
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

    def _unordered_halt(self, st: SupervisorState, now: float) -> bool:
        """Whether the robot reports a halt that is news: not one the supervisor holds it in or is releasing it
        from, none it ordered since the last reset, and not during a step (its end says how the step ended: a
        limit the robot halted on is a FAULT). Until ``heartbeat_timeout_s`` after a reset the robot's report may
        still be one sent before its release (a status in flight), so it is looked at again after that."""
        if st in ROBOT_HALT_EXPECTED or self._halt_requested is not None or self._inflight is not None:
            return False
        return now - self._recovered_at >= self.heartbeat_timeout_s and self._backend_halted()

    def _backend_halt_reason(self) -> str:
        try:
            return str(self.backend.halt_reason)
        except Exception:  # noqa: BLE001 - the halt is what matters; its reason is a courtesy
            return ""

    def _latch_robot_halt(self, detail: str) -> None:
        """ESTOP for a halt the robot reported on its own: audited as an e-stop from the robot, so consoles say
        why, and released like any e-stop, by an operator's reset only."""
        reason = f"{ROBOT_HALT} {detail}"
        try:
            self._log(ev.EstopEvent(reason=reason, halted=True, error=None, source="robot"))
        except AuditLogError:
            return  # the log that cannot be written put the supervisor in FAULT, which holds the robot as well
        self._fire(T.ESTOP, reason=reason, cause="robot")

    def _watch(self) -> None:
        assert self.watchdog_period_s is not None
        while not self._watch_stop.wait(self.watchdog_period_s):
            self.tick()
