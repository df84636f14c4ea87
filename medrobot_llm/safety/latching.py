"""The latch: ``stop`` halts first and latches ESTOP; only an operator ``reset`` releases the robot again.

A stop halts the backend before it takes any lock, so it never waits behind anything. A reset releases
the backend outside the lock (the robot may take a while to report itself clear, on a thread that needs
the lock) and completes only if nothing latched again meanwhile.
"""

from __future__ import annotations

from medrobot_llm.safety import events as ev
from medrobot_llm.safety.audit import AuditLogError
from medrobot_llm.safety.machine import LATCHED, InvalidTransition, SupervisorState, Trigger
from medrobot_llm.safety.replies import Reply
from medrobot_llm.safety.supervisor_core import SupervisorCore

__all__ = ["LatchMixin"]

S = SupervisorState
T = Trigger


class LatchMixin(SupervisorCore):
    """``_stop`` and ``_reset``, behind the facade's ``stop``, ``reset`` and the ``stop`` intent."""

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
            self._recovered_at = self.clock()
            return Reply(True, self.state, "reset: ready")
