"""The executor: one worker thread that releases a plan's steps to the backend, one at a time.

It owns no policy. Before each step it asks the supervisor (the ``StepGate``) whether it may go on, and
the supervisor answers from its state machine: wait (paused, awaiting a confirmation), stop (cancelled,
e-stop, fault) or go. What it does own is the mechanics the supervisor must not get wrong: a step is
re-validated against the world the backend reports *now*, sent only with a fresh cancel token, and its
end, whatever it is (a result, a failure, an exception), is always reported back.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from medrobot_llm.backends.base import CancelToken, FailureKind, Feedback, SkillBackend, StepResult
from medrobot_llm.core.plan import Plan, Step
from medrobot_llm.core.validator import PlanValidationError, check_steps

__all__ = ["Executor", "Run", "StepGate"]


@dataclass(eq=False)
class Run:
    """One accepted plan on its way through the robot; the supervisor's lock guards every field."""

    id: int
    plan: Plan
    confirm: frozenset[int]
    validated: bool = False
    index: int = 0
    confirmed: int | None = None
    token: CancelToken | None = None
    in_flight: int | None = None
    sent_at: float = 0.0
    dropped: bool = False
    results: list[tuple[int, StepResult]] = field(default_factory=list)

    @property
    def domain(self) -> str:
        return self.plan.domain

    @property
    def steps(self) -> list[Step]:
        return self.plan.steps


class StepGate(Protocol):
    """What the executor asks of the supervisor."""

    def wait_turn(self, run: Run) -> int | None:
        """Block until the run's next step may be prepared; its index, or None when the run is over."""
        ...

    def release(self, run: Run, index: int) -> CancelToken | None:
        """Atomically check the step may be sent now and record that it is; None if not (ask again)."""
        ...

    def step_rejected(self, run: Run, index: int, reason: str, fault: bool) -> None:
        """The step failed its re-validation (``fault=False``) or the backend could not be asked (``True``)."""
        ...

    def step_feedback(self, run: Run, index: int, feedback: Feedback) -> None: ...

    def step_done(self, run: Run, index: int, result: StepResult) -> None: ...


class Executor:
    """Runs one plan at a time on a single worker thread; a new run starts only after the last step ended.

    One thread for all runs means a cancelled step that is still winding down is never overlapped by
    the first step of the next plan: the backend sees strictly one step at a time.
    """

    def __init__(self, backend: SkillBackend, gate: StepGate, *, name: str = "medrobot-executor") -> None:
        self.backend = backend
        self.gate = gate
        self.name = name
        self._cv = threading.Condition()
        self._queue: deque[Run] = deque()
        self._active: Run | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, run: Run) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("the executor is closed")
            self._queue.append(run)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cv.notify_all()

    @property
    def idle(self) -> bool:
        """No run queued and none being driven: nothing can reach the backend from here."""
        with self._cv:
            return not self._queue and self._active is None

    @property
    def active(self) -> Run | None:
        return self._active

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: not self._queue and self._active is None, timeout)

    def close(self, timeout: float = 2.0) -> bool:
        """Stop taking runs; True if the worker ended within ``timeout`` (a hung backend can keep it)."""
        with self._cv:
            self._closed = True
            self._queue.clear()
            self._cv.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                run = self._queue.popleft()
                self._active = run
            try:
                self._drive(run)
            except Exception as exc:  # noqa: BLE001 - an executor bug must still end halted and reported
                self.gate.step_rejected(run, run.index, f"executor error {type(exc).__name__}: {exc}", True)
            finally:
                with self._cv:
                    self._active = None
                    self._cv.notify_all()

    def _drive(self, run: Run) -> None:
        while True:
            index = self.gate.wait_turn(run)
            if index is None:
                return
            step = run.steps[index]
            try:
                world = self.backend.world_state()
            except Exception as exc:  # noqa: BLE001 - a backend that cannot report its world is faulty
                self.gate.step_rejected(run, index, f"the backend could not report its world state "
                                        f"({type(exc).__name__}: {exc})", True)
                continue
            try:
                check_steps(run.domain, [step], world)
            except PlanValidationError as exc:
                self.gate.step_rejected(run, index, f"step {index + 1} ({step.skill}) no longer holds against the "
                                        f"robot's world state: {exc.sentence()}", False)
                continue
            token = self.gate.release(run, index)
            if token is None:
                continue

            def feedback(fb: Feedback, _i: int = index) -> None:
                self.gate.step_feedback(run, _i, fb)

            try:
                result = self.backend.execute(step, token, feedback)
            except Exception as exc:  # noqa: BLE001 - a driver that raises is a failed step, never a crash
                result = StepResult.failed(FailureKind.ERROR, f"the backend raised {type(exc).__name__}: {exc}")
            if not isinstance(result, StepResult):
                result = StepResult.failed(FailureKind.ERROR, f"the backend returned {type(result).__name__}, "
                                           "not a StepResult")
            self.gate.step_done(run, index, result)
