"""An in-memory robot for tests, consoles and benchmarks: no physics, but the timing and failures are scripted.

It runs skills through the same ``LoopBackend`` control loop as the PyBullet scenes, so cancel, halt,
timeouts and exceptions take exactly the path they take in the simulator. What a step does is decided
by an ``Outcome`` queued with ``script``: finish after N control steps, report a limit violation at
step k, raise, hang, freeze (stop heartbeating) or wait to be released. Its world state follows the
skill files' effects through the validator's own machinery, so no fact is written down twice.

For lockstep tests, ``manual=True`` makes every control step wait for a ``permit``; ``parked`` then says
that the control loop is blocked and nothing can change until the test acts.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from medrobot_llm.backends.base import (
    BehaviourStatus,
    CancelToken,
    FailureKind,
    FeedbackFn,
    LoopBackend,
    SkillBehaviour,
    StepResult,
)
from medrobot_llm.core.clock import Clock, ManualClock
from medrobot_llm.core.plan import Step
from medrobot_llm.core.command_set import CommandSet, FactSpec, Hazard, load_command_set
from medrobot_llm.core.validator import WorldState, apply_step

__all__ = [
    "HaltRecord",
    "ManualClock",
    "MemoryBackend",
    "Motion",
    "Outcome",
    "SentStep",
    "StepFault",
    "apply_effects",
    "initial_facts",
]

#: how often a blocked control step looks at its cancel token (a bare event nobody notifies us about)
_POLL_S = 0.002


class StepFault(str, Enum):
    """What goes wrong with a scripted step."""

    FAIL = "fail"  #: reports ``failure`` (force, workspace, collision, ...) at control step ``at``
    ERROR = "error"  #: the skill's own code raises at control step ``at``; the loop reports ERROR
    RAISE = "raise"  #: ``execute`` itself raises before anything moves, like a broken driver
    HANG = "hang"  #: keeps running with a live heartbeat and never finishes, until halt or cancel
    STALL = "stall"  #: the control loop freezes at step ``at``: no progress, no heartbeat
    HOLD = "hold"  #: runs with a live heartbeat until ``release`` gives it a result


@dataclass(frozen=True)
class Outcome:
    """How one step ends. ``skill`` restricts it to the next step of that skill."""

    fault: StepFault | None = None
    at: int = 1
    failure: FailureKind = FailureKind.FORCE_LIMIT
    message: str = ""
    steps: int | None = None
    skill: str | None = None

    @classmethod
    def ok(cls, steps: int | None = None, skill: str | None = None) -> Outcome:
        return cls(steps=steps, skill=skill)

    @classmethod
    def limit(cls, failure: FailureKind = FailureKind.FORCE_LIMIT, at: int = 1, message: str = "",
              skill: str | None = None) -> Outcome:
        return cls(StepFault.FAIL, at=at, failure=failure, message=message, skill=skill)

    @classmethod
    def error(cls, at: int = 1, message: str = "scripted skill error", skill: str | None = None) -> Outcome:
        return cls(StepFault.ERROR, at=at, message=message, skill=skill)

    @classmethod
    def raises(cls, message: str = "scripted driver failure", skill: str | None = None) -> Outcome:
        return cls(StepFault.RAISE, message=message, skill=skill)

    @classmethod
    def hang(cls, skill: str | None = None) -> Outcome:
        return cls(StepFault.HANG, skill=skill)

    @classmethod
    def stall(cls, at: int = 1, skill: str | None = None) -> Outcome:
        return cls(StepFault.STALL, at=at, skill=skill)

    @classmethod
    def hold(cls, skill: str | None = None) -> Outcome:
        return cls(StepFault.HOLD, skill=skill)


@dataclass(frozen=True)
class SentStep:
    """A step as the backend received it, with the supervisor's state at that moment (if observed)."""

    n: int
    step: Step
    state: Any
    at: float
    outcome: Outcome


@dataclass(frozen=True)
class Motion:
    """One control step in which a skill ran (moved, for any hazard but ``none``)."""

    n: int
    skill: str
    hazard: Hazard
    control_step: int
    state: Any


@dataclass(frozen=True)
class HaltRecord:
    """When ``halt`` was entered (``perf_counter_ns``, for latency measurements), why, and in what state."""

    t_ns: int
    reason: str
    state: Any


def _default_value(spec: FactSpec | None) -> Any:
    """Booleans start false (nothing located, no image); others at their first listed value (none, away)."""
    if spec is None or not spec.values:
        return None
    if all(isinstance(v, bool) for v in spec.values):
        return False
    return spec.values[0]


def initial_facts(domain: str) -> dict[str, Any]:
    """Every fact the skill files can ask about, at its resting value: what a freshly started robot reports.

    The keys come from expanding each pre/post template over its arguments' allowed values, so a known
    world state built from them never lacks a fact a precondition needs.
    """
    cs = load_command_set(domain)
    specs_by_name = {name.split("[", 1)[0]: spec for name, spec in cs.facts.items()}
    facts: dict[str, Any] = {}
    for skill in cs.skills.values():
        for rule in (*skill.preconditions, *skill.effects):
            names = rule.fact_arguments
            specs = [skill.args.get(n) for n in names]
            if any(s is None or s.type != "enum" for s in specs):
                continue
            choices = [cs.allowed_values(s) for s in specs if s is not None]
            for combo in itertools.product(*choices):
                for binding in cs.bindings(skill, names, dict(zip(names, combo, strict=True))):
                    key = rule.fact.format(**binding) if binding else rule.fact
                    facts.setdefault(key, _default_value(specs_by_name.get(key.split("[", 1)[0])))
    facts.update(cs.always_known)
    return facts


def apply_effects(domain: str, step: Step, world: WorldState) -> WorldState:
    """The world after ``step`` succeeded, by the validator's own effect rules (``all`` expands as it does)."""
    cs = load_command_set(domain)
    skill = cs.skill(step.skill)
    out = world.copy()
    if skill is None:
        return out
    apply_step(cs, skill, step.args, out)
    out.excluded.clear()
    out.origin.clear()
    return out


class _Behaviour(SkillBehaviour):
    def __init__(self, backend: MemoryBackend, step: Step, script: Outcome, hazard: Hazard) -> None:
        super().__init__(step)
        self.backend = backend
        self.script = script
        self.hazard = hazard
        self.n_steps = max(1, script.steps if script.steps is not None else backend.steps_per_skill)
        self.count = 0
        if script.fault in (StepFault.HANG, StepFault.HOLD, StepFault.STALL):
            self.max_steps = 10**9
        else:
            self.max_steps = max(self.n_steps, script.at) + backend.spare_steps

    def start(self) -> None:
        self.phase = "running"
        self.backend._gate()

    def update(self) -> BehaviourStatus:
        b, s = self.backend, self.script
        self.count += 1
        if s.fault is StepFault.STALL and self.count >= s.at:
            b._stall()
            return BehaviourStatus.RUNNING
        if s.fault is StepFault.ERROR and self.count >= s.at:
            raise RuntimeError(s.message or "scripted skill error")
        if s.fault is StepFault.HOLD:
            if self.count == 1:
                b._record_motion(self)
            released = b._hold()
            return BehaviourStatus.RUNNING if released is None else self._finish(released)
        b._record_motion(self)
        if s.fault is StepFault.FAIL and self.count >= s.at:
            self.failure = s.failure
            self.message = s.message or f"{s.failure.value.replace('_', ' ')} at control step {self.count}"
            self.outcome["violation"] = s.failure.value
            return BehaviourStatus.FAILURE
        if s.fault is StepFault.HANG:
            b._hang_pause()
            return BehaviourStatus.RUNNING
        self.progress = min(1.0, self.count / self.n_steps)
        if self.count >= self.n_steps:
            b._succeeded(self.step)
            self.message = "done"
            return BehaviourStatus.SUCCESS
        return BehaviourStatus.RUNNING

    def _finish(self, result: StepResult) -> BehaviourStatus:
        self.message = result.message
        self.outcome.update(result.outcome)
        if result.success:
            self.backend._succeeded(self.step)
            self.progress = 1.0
            return BehaviourStatus.SUCCESS
        self.failure = result.failure if result.failure is not FailureKind.NONE else FailureKind.ERROR
        return BehaviourStatus.FAILURE

    def telemetry(self) -> dict[str, Any]:
        return {"control_step": self.count}

    def terminate(self, status: BehaviourStatus) -> None:
        self.phase = status.value


class MemoryBackend(LoopBackend):
    """An in-memory robot for one domain whose steps do what the test scripted.

    ``observer`` is called (from the executor's thread) when a step arrives and at every control step;
    whatever it returns (typically the supervisor's state) is kept in ``sent`` and ``motion``, so a test
    can check what state the supervisor was in whenever anything moved. ``clock`` stamps heartbeats
    and must be the supervisor's clock when the supervisor watches the heartbeat.
    """

    def __init__(self, domain: str, facts: Mapping[str, Any] | None = None, *, steps_per_skill: int = 3,
                 control_period_s: float = 0.0, manual: bool = False, default: Outcome | None = None,
                 observer: Callable[[], Any] | None = None, clock: Clock = time.monotonic,
                 spare_steps: int = 5) -> None:
        super().__init__(clock=clock)
        self.domain = domain
        self.command_set: CommandSet = load_command_set(domain)
        self.control_period_s = control_period_s
        self.steps_per_skill = steps_per_skill
        self.spare_steps = spare_steps
        self.manual = manual
        self.default = default or Outcome()
        self.observer = observer
        self._cv = threading.Condition()
        self._facts: dict[str, Any] = initial_facts(domain)
        if facts:
            self._facts.update(facts)
        self._script: list[Outcome] = []
        self._permits = 0
        self._token: CancelToken | None = None
        self._parked: str | None = None
        self._executing = False
        self._unstall = False
        self._released: StepResult | None = None
        self._current = self.default
        self._hb = clock()
        self._heartbeat_stopped = False
        self.sent: list[SentStep] = []
        self.motion: list[Motion] = []
        self.halts: list[HaltRecord] = []
        self.results: list[StepResult] = []
        self.stop_motion_calls = 0
        self.clear_halt_calls = 0

    # -- scripting ---------------------------------------------------------------------------------
    def script(self, *outcomes: Outcome) -> None:
        """Queue outcomes; each is used once, by the next step it applies to (in queue order)."""
        with self._cv:
            self._script.extend(outcomes)

    def set_fact(self, key: str, value: Any) -> None:
        """Change the world behind the supervisor's back (a dropped needle, a probe knocked off)."""
        with self._cv:
            self._facts[key] = value

    def permit(self, n: int = 1) -> None:
        """Manual mode: let ``n`` more control steps run (a negative ``n`` takes unused ones back)."""
        with self._cv:
            self._permits = max(0, self._permits + n)
            self._cv.notify_all()

    def release(self, result: StepResult | None = None) -> None:
        """End the step that is holding (``StepFault.HOLD``) with ``result`` (success by default)."""
        with self._cv:
            self._released = result or StepResult.ok()
            self._cv.notify_all()

    def unstall(self) -> None:
        with self._cv:
            self._unstall = True
            self._cv.notify_all()

    def stop_heartbeat(self) -> None:
        """From now on the heartbeat stays where it is, whatever the loop does (a dead link)."""
        self._heartbeat_stopped = True

    # -- observation --------------------------------------------------------------------------------
    @property
    def executing(self) -> bool:
        return self._executing

    @property
    def parked(self) -> str | None:
        """Why the control loop is blocked (``gate``, ``stall``, ``hold``), or None if it is not."""
        with self._cv:
            return self._parked if self._blocked_still() else None

    @property
    def permits(self) -> int:
        return self._permits

    def wait_parked(self, timeout: float = 5.0) -> bool:
        """Until the loop is blocked or no step is running."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._executing or (self._parked is not None and
                                                                      self._blocked_still()), timeout)

    def wait_holding(self, timeout: float = 5.0) -> bool:
        """Until a step is holding for ``release`` (and has not been released yet)."""
        with self._cv:
            return self._cv.wait_for(lambda: self._parked == "hold" and self._blocked_still(), timeout)

    def wait_sent(self, count: int, timeout: float = 5.0) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: len(self.sent) >= count, timeout)

    # -- SkillBackend ---------------------------------------------------------------------------------
    def world_state(self) -> WorldState:
        with self._cv:
            return WorldState(dict(self._facts), known=True)

    @property
    def last_heartbeat(self) -> float:
        return self._hb

    def telemetry(self) -> dict[str, Any]:
        return {"sent": len(self.sent), "halted": self.halted}

    def execute(self, step: Step, token: CancelToken, on_feedback: FeedbackFn | None = None) -> StepResult:
        observed = self._observe()
        with self._cv:
            outcome = self._next_outcome(step)
            self.sent.append(SentStep(len(self.sent), step, observed, self.clock(), outcome))
            self._token = token
            self._current = outcome
            self._executing = True
            self._unstall = False
            self._released = None
            self._cv.notify_all()
        try:
            if outcome.fault is StepFault.RAISE:
                raise RuntimeError(outcome.message or "scripted driver failure")
            result = super().execute(step, token, on_feedback)
            with self._cv:
                self.results.append(result)
            return result
        finally:
            with self._cv:
                self._executing = False
                self._token = None
                self._parked = None
                self._cv.notify_all()

    def make_behaviour(self, step: Step) -> SkillBehaviour:
        spec = self.command_set.skill(step.skill)
        if spec is None:
            raise ValueError(f"{step.skill!r} is not a {self.domain} skill")
        return _Behaviour(self, step, self._current, spec.hazard)

    def advance(self) -> None:
        if not self._heartbeat_stopped:
            self._hb = self.clock()

    def stop_motion(self) -> None:
        self.stop_motion_calls += 1

    def pace(self) -> None:
        if self.manual:
            self._gate()
        elif self.control_period_s > 0:
            self._halt.wait(self.control_period_s)

    def halt(self, reason: str = "e-stop") -> None:
        t = time.perf_counter_ns()
        super().halt(reason)
        observed = self._observe()
        with self._cv:
            self.halts.append(HaltRecord(t, reason, observed))
            self._cv.notify_all()

    def clear_halt(self) -> None:
        super().clear_halt()
        with self._cv:
            self.clear_halt_calls += 1
            self._cv.notify_all()

    # -- internals, called from the control loop ------------------------------------------------------------
    def _observe(self) -> Any:
        return self.observer() if self.observer is not None else None

    def _next_outcome(self, step: Step) -> Outcome:
        for i, o in enumerate(self._script):
            if o.skill is None or o.skill == step.skill:
                return self._script.pop(i)
        return self.default

    def _interrupted(self) -> bool:
        token = self._token
        return self.halted or (token is not None and token.cancelled)

    def _blocked_still(self) -> bool:
        if self._interrupted():
            return False
        if self._parked == "gate":
            return self._permits == 0
        if self._parked == "stall":
            return not self._unstall
        if self._parked == "hold":
            return self._released is None
        return False

    def _block(self, why: str, done: Callable[[], bool]) -> None:
        with self._cv:
            self._parked = why
            self._cv.notify_all()
            while not done() and not self._interrupted():
                self._cv.wait(_POLL_S)
            self._parked = None
            self._cv.notify_all()

    def _gate(self) -> None:
        if not self.manual:
            return
        self._block("gate", lambda: self._permits > 0)
        with self._cv:
            if self._permits > 0 and not self._interrupted():
                self._permits -= 1

    def _stall(self) -> None:
        saved = self._heartbeat_stopped
        self._heartbeat_stopped = True
        try:
            self._block("stall", lambda: self._unstall)
        finally:
            self._heartbeat_stopped = saved

    def _hold(self) -> StepResult | None:
        with self._cv:
            if self._released is not None:
                result, self._released = self._released, None
                return result
        self._block("hold", lambda: self._released is not None)
        with self._cv:
            if self._released is not None:
                result, self._released = self._released, None
                return result
        return None

    def _hang_pause(self) -> None:
        if not self.manual and self.control_period_s <= 0:
            self._halt.wait(_POLL_S / 2)

    def _record_motion(self, b: _Behaviour) -> None:
        state = self._observe()
        with self._cv:
            self.motion.append(Motion(len(self.sent) - 1, b.step.skill, b.hazard, b.count, state))

    def _succeeded(self, step: Step) -> None:
        with self._cv:
            world = apply_effects(self.domain, step, WorldState(dict(self._facts), known=True))
            self._facts = world.facts
