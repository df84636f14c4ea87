"""The one interface every skill backend implements: sim scene, ROS action client, future hardware.

The framework owns the lifecycle of a running skill (like py_trees' ``tick``): a skill only says how to
start, how to advance one control step without blocking, and how to clean up. Cancel, halt, timeouts
and exceptions are handled here, once, so no skill can forget to honour an e-stop.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medrobot_llm.core.clock import Clock
from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.core.plan import Step
from medrobot_llm.core.validator import WorldState

__all__ = [
    "BackendNotReady",
    "BehaviourStatus",
    "CancelToken",
    "FailureKind",
    "Feedback",
    "FeedbackFn",
    "LoopBackend",
    "SkillBackend",
    "SkillBehaviour",
    "StepResult",
]


class FailureKind(str, Enum):
    NONE = "none"
    FORCE_LIMIT = "force_limit"
    WORKSPACE_LIMIT = "workspace_limit"
    JOINT_LIMIT = "joint_limit"
    SPEED_LIMIT = "speed_limit"
    COLLISION = "collision"
    TIMEOUT = "timeout"
    PRECONDITION = "precondition"
    INVALID = "invalid"
    CANCELLED = "cancelled"
    HALTED = "halted"
    LOST = "lost"
    ERROR = "error"

    @property
    def is_limit_violation(self) -> bool:
        return self in (FailureKind.FORCE_LIMIT, FailureKind.WORKSPACE_LIMIT, FailureKind.JOINT_LIMIT,
                        FailureKind.SPEED_LIMIT, FailureKind.COLLISION)


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: str
    progress: float = Field(ge=0.0, le=1.0)
    telemetry: dict[str, Any] = Field(default_factory=dict)


class StepResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    success: bool
    failure: FailureKind = FailureKind.NONE
    message: str = ""
    outcome: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def ok(cls, message: str = "done", **outcome: Any) -> StepResult:
        return cls(success=True, message=message, outcome=outcome)

    @classmethod
    def failed(cls, failure: FailureKind, message: str, **outcome: Any) -> StepResult:
        return cls(success=False, failure=failure, message=message, outcome=outcome)


FeedbackFn = Callable[[Feedback], None]


class CancelToken:
    """Set from any thread; a running skill sees it within one control step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self._wakes: list[threading.Event] = []
        self._lock = threading.Lock()

    def cancel(self, reason: str = "cancelled") -> None:
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
            self._event.set()
            wakes = list(self._wakes)
        for wake in wakes:
            wake.set()

    def wake_on_cancel(self, wake: threading.Event) -> Callable[[], None]:
        """Set ``wake`` when this token is cancelled (at once if it is already), until the returned function is
        called: a thread waiting for something else as well sleeps until either happens, without polling."""
        with self._lock:
            self._wakes.append(wake)
            cancelled = self._event.is_set()
        if cancelled:
            wake.set()

        def stop() -> None:
            with self._lock:
                if wake in self._wakes:
                    self._wakes.remove(wake)

        return stop

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class BackendNotReady(RuntimeError):
    """Raised by ``world_state`` while the robot has never reported (a skill server still starting up): nothing
    was lost, so the supervisor refuses the command and stays ready instead of latching a fault that needs a
    reset. A robot that reported once and then went quiet is a fault, not this."""


class SkillBackend(ABC):
    """Execute validated steps on a robot.

    ``execute`` blocks its caller (the executor's worker thread) until the step ends, streams feedback,
    and returns a typed result. ``halt`` may be called from any thread at any time: motion stops within
    one control step and stays stopped (latched) until ``clear_halt``.
    """

    domain: str
    control_period_s: float = 0.01

    @property
    def backend_name(self) -> str:
        """What the session record names as the robot: a wrapper (a frame recorder) names what it wraps."""
        return type(self).__name__

    @abstractmethod
    def world_state(self) -> WorldState:
        """The facts of the skill files as the robot sees them now (``known=True``)."""

    @abstractmethod
    def execute(self, step: Step, token: CancelToken, on_feedback: FeedbackFn | None = None) -> StepResult:
        """Run one validated step to its end, a failure, a cancel or a halt."""

    @abstractmethod
    def halt(self, reason: str = "e-stop") -> None:
        """Stop all motion now and latch until ``clear_halt``."""

    @abstractmethod
    def clear_halt(self) -> None:
        """Clear a latched halt (operator reset); does not move anything.

        May wait for the robot to confirm it is clear: the supervisor calls it without holding its lock, and
        halts again if a stop came in meanwhile.
        """

    @property
    @abstractmethod
    def halted(self) -> bool:
        """Whether a halt is latched."""

    @property
    def halt_reason(self) -> str:
        """Why the robot says it is halted, "" when it is not or does not say: the supervisor quotes it when it
        latches on a halt it did not order."""
        return ""

    @property
    def last_heartbeat(self) -> float:
        """``time.monotonic()`` of the backend's last sign of life; the supervisor watches it."""
        return time.monotonic()

    def telemetry(self) -> dict[str, Any]:
        """A small snapshot for status lines (force, pose, ...)."""
        return {}

    def cycles_at_most(self, step: Step) -> int | None:
        """The most control cycles ``step`` may take, as its skill declares it; None when the backend cannot say
        before running it (a robot on the other end of a link, a scripted one)."""
        return None

    def implemented_skills(self) -> frozenset[str]:
        """The skills this backend can run; a conforming one runs exactly its domain's (``check_scene``).

        By default every skill of the command set: a backend that forwards steps (ROS) or scripts them
        (memory) runs whatever the domain defines.
        """
        return frozenset(load_command_set(self.domain).skills)

    def close(self) -> None:  # noqa: B027 - optional hook: a backend with nothing to release keeps it
        """Release resources (physics client, connections)."""


class BehaviourStatus(str, Enum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    PREEMPTED = "preempted"


class SkillBehaviour(ABC):
    """One running skill, written the one way every backend runs skills: three hooks, like py_trees'.

    A skill implements ``update`` (advance one control step, never block) and optionally ``start``
    (plan; it may fail the skill before anything moves) and ``terminate`` (clean up). The framework
    owns the lifecycle: ``initialise`` calls ``start`` once, ``tick`` calls ``update`` only while the
    skill has not failed, and ``stop`` calls ``terminate`` exactly once however the skill ended
    (success, failure, cancel, halt, timeout, an exception), so no skill can forget to stop motion or
    run past a cancel.
    """

    #: the most control steps this skill may take before it times out; a class that declares 1 ends in its first
    #: cycle whatever happens (it times out otherwise), which lets a skill server run it without its control thread
    max_steps: int = 100_000
    #: False for a skill that fails before moving (a refusal): its backend leaves held actuators held
    moves: bool = True

    def __init__(self, step: Step) -> None:
        self.step = step
        self.failure = FailureKind.NONE
        self.message = ""
        self.outcome: dict[str, Any] = {}
        self.progress = 0.0
        self.phase = "starting"
        #: None until started, RUNNING while it runs, then how it ended
        self.status: BehaviourStatus | None = None

    # -- the hooks a skill implements --------------------------------------------------------------
    def start(self) -> None:  # noqa: B027 - optional hook, like py_trees' initialise
        """Called once before the first update; may call ``fail``."""

    @abstractmethod
    def update(self) -> BehaviourStatus:
        """Advance one control step without blocking; to fail, return ``self.fail(kind, message)``."""

    def terminate(self, status: BehaviourStatus) -> None:  # noqa: B027 - optional hook
        """Called once at the end, also on cancel, halt and error: stop motion here."""

    def telemetry(self) -> dict[str, Any]:
        return {}

    # -- owned by the framework --------------------------------------------------------------------
    def fail(self, kind: FailureKind, message: str) -> BehaviourStatus:
        """Record why the skill failed; the next ``tick`` (or this ``update``'s return) ends it."""
        self.failure = kind
        self.message = message
        return BehaviourStatus.FAILURE

    def initialise(self) -> None:
        """Start the skill (once)."""
        if self.status is None:
            self.status = BehaviourStatus.RUNNING
            self.start()

    def tick(self) -> BehaviourStatus:
        """One control step: a skill that has failed (in ``start``, or from outside) is not updated again."""
        self.initialise()
        if self.failure is not FailureKind.NONE:
            return BehaviourStatus.FAILURE
        return self.update()

    def stop(self, status: BehaviourStatus) -> None:
        """End the skill with ``status``: ``terminate`` runs exactly once, whoever stops it."""
        if self.status is None or self.status is BehaviourStatus.RUNNING:
            self.status = status
            self.terminate(status)


class LoopBackend(SkillBackend):
    """A backend that runs behaviours in a control loop it owns: sim scenes and in-memory test robots.

    Subclasses provide ``make_behaviour`` (a step → its behaviour), ``advance`` (one control step of the
    world, e.g. physics) and ``stop_motion`` (hold still now). The loop checks cancel and halt every cycle.
    ``clock`` stamps the heartbeat, so it must be the clock of whoever watches it (supervisor, gate).
    """

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._halt = threading.Event()
        self._halt_reason = ""
        self._heartbeat = clock()
        self._busy = threading.Lock()

    @abstractmethod
    def make_behaviour(self, step: Step) -> SkillBehaviour:
        """Build the behaviour for a validated step; raise ValueError if the step cannot run here."""

    @abstractmethod
    def advance(self) -> None:
        """Advance the world by one control step."""

    @abstractmethod
    def stop_motion(self) -> None:
        """Command every actuator to hold still, now."""

    def halt(self, reason: str = "e-stop") -> None:
        self._halt_reason = reason
        self._halt.set()
        self.stop_motion()

    def clear_halt(self) -> None:
        self._halt.clear()
        self._halt_reason = ""

    @property
    def halted(self) -> bool:
        return self._halt.is_set()

    @property
    def halt_reason(self) -> str:
        return self._halt_reason if self.halted else ""

    @property
    def last_heartbeat(self) -> float:
        return self._heartbeat

    def pace(self) -> None:
        """Wait between control steps; real time for hardware, nothing for a sim running fast."""

    def execute(self, step: Step, token: CancelToken, on_feedback: FeedbackFn | None = None) -> StepResult:
        if not self._busy.acquire(blocking=False):
            return StepResult.failed(FailureKind.INVALID, "the backend is already executing a step")
        try:
            return self._run(step, token, on_feedback)
        finally:
            self._busy.release()

    def prepare(self, behaviour: SkillBehaviour) -> None:  # noqa: B027 - optional hook
        """Called as a skill starts, before its ``start``: e.g. held actuators take up their measured pose."""

    def fault(self) -> tuple[FailureKind, str] | None:
        """A limit the backend's own monitor tripped: the running skill fails with it and the backend halts."""
        return None

    def _run(self, step: Step, token: CancelToken, on_feedback: FeedbackFn | None) -> StepResult:
        if self.halted:
            return StepResult.failed(FailureKind.HALTED, f"halted ({self._halt_reason}); reset before moving")
        try:
            behaviour = self.make_behaviour(step)
        except ValueError as exc:
            return StepResult.failed(FailureKind.INVALID, str(exc))
        status = BehaviourStatus.RUNNING
        try:
            if behaviour.moves:
                self.prepare(behaviour)
            behaviour.initialise()
            for _ in range(behaviour.max_steps):
                if self.halted or token.cancelled:
                    halted = self.halted
                    self.stop_motion()
                    behaviour.stop(BehaviourStatus.PREEMPTED)
                    if halted:
                        return StepResult.failed(FailureKind.HALTED, f"halted: {self._halt_reason}",
                                                 **behaviour.outcome)
                    return StepResult.failed(FailureKind.CANCELLED, f"cancelled: {token.reason}",
                                             **behaviour.outcome)
                fault = self.fault()
                if fault is not None:
                    status = behaviour.fail(*fault)
                    self.halt(fault[1])
                else:
                    status = behaviour.tick()
                self.advance()
                self._heartbeat = self.clock()
                if on_feedback is not None:
                    on_feedback(Feedback(phase=behaviour.phase, progress=min(1.0, max(0.0, behaviour.progress)),
                                         telemetry=behaviour.telemetry()))
                if status is not BehaviourStatus.RUNNING:
                    break
                self.pace()
            else:
                status = behaviour.fail(FailureKind.TIMEOUT,
                                        f"{step.skill} did not finish within {behaviour.max_steps} control steps")
                self.stop_motion()
            behaviour.stop(status)
        except Exception as exc:  # noqa: BLE001 - any skill bug must end halted, reported, never propagate
            self.stop_motion()
            try:
                behaviour.stop(BehaviourStatus.FAILURE)
            except Exception:  # noqa: BLE001, S110 - the first error is the one worth reporting
                pass
            return StepResult.failed(FailureKind.ERROR, f"{step.skill} raised {type(exc).__name__}: {exc}")
        if status is BehaviourStatus.SUCCESS and self.halted:
            # latched during the cycle (the loop checks before it): whatever the skill made is evidence, not success
            return StepResult.failed(FailureKind.HALTED, f"halted during {step.skill}: {self._halt_reason}; what it "
                                     "made is kept but it did not succeed", **behaviour.outcome, halted_during=True)
        if status is BehaviourStatus.SUCCESS:
            return StepResult(success=True, message=behaviour.message or "done", outcome=behaviour.outcome)
        if behaviour.failure.is_limit_violation:
            self.stop_motion()
        return StepResult.failed(behaviour.failure if behaviour.failure is not FailureKind.NONE
                                 else FailureKind.ERROR, behaviour.message or f"{step.skill} failed",
                                 **behaviour.outcome)
