"""What a skill server decides about a goal, without ROS: defence in depth against a rogue client.

The supervisor already validated the plan and released this one step, but the skill server does not
trust the wire. Every goal is checked again, here, in this order:

1. well-formed: the domain is this robot's, ``args_json`` is one JSON object, the skill exists;
2. authorised: the supervisor this server follows (``/medrobot/state``) is EXECUTING exactly this plan
   id at exactly this step, announced this very goal (its id) as the one it sends, the state is fresh,
   and only one supervisor publishes it;
3. free: no other goal holds the arms this step moves; a step that already succeeded never runs twice;
4. valid now: the step passes the validator against the world state the robot reports at this moment.

Any failure is a ``Refusal`` whose message names the reason and whose code is its kind (a ``Reason``);
nothing refused reaches the robot.
``SkillServerCore`` runs the admitted steps on any ``SkillBackend`` (a PyBullet scene here) and is what
the ROS node wraps.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from medrobot_llm.backends.base import CancelToken, FailureKind, Feedback, FeedbackFn, SkillBackend, StepResult
from medrobot_llm.core.clock import Clock
from medrobot_llm.core.jsonable import jsonable
from medrobot_llm.core.plan import Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.command_set import ARM_ENTITY, DOMAINS, CommandSet, load_command_set, unknown_domain
from medrobot_llm.safety.supervisor import LATCHED, SupervisorState
from medrobot_llm.core.validator import PlanValidationError, WorldState, check_steps

__all__ = [
    "MAX_ARGS_BYTES",
    "Admitted",
    "EstopAction",
    "FollowedState",
    "GoalRequest",
    "LATCHED_STATES",
    "Refusal",
    "SkillServerCore",
    "arms_of",
    "estop_action",
    "halts_on_state",
    "parse_goal",
    "plan_id_of",
    "to_json",
]

#: the supervisor states, as ``/medrobot/state`` spells them, that hold until an operator resets
LATCHED_STATES: frozenset[str] = frozenset(s.value for s in LATCHED)

#: a goal's args are a handful of numbers and names; anything bigger is not a step of the command set
MAX_ARGS_BYTES = 16 * 1024


def plan_id_of(session: str, run: int | None) -> str:
    return f"{session}:{run}" if run is not None else ""


def to_json(value: Any) -> str:
    return json.dumps(value, default=jsonable, allow_nan=False, separators=(",", ":"))


class Refusal(Exception):
    """A goal that must not run; ``kind`` becomes the result's failure_kind, the message its reason. ``code``
    says which check refused it, finer than the kind the action result has room for."""

    def __init__(self, kind: FailureKind, message: str, code: Reason) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code


@dataclass(frozen=True)
class GoalRequest:
    """The fields of an ExecuteSkill goal, as they came over the wire."""

    plan_id: str
    step_index: int
    skill: str
    args_json: str
    domain: str
    goal_id: str = ""  # the action goal's UUID, hex

    def describe(self) -> str:
        return f"plan {self.plan_id or '(none)'} step {self.step_index + 1} ({self.skill or '?'})"


@dataclass(frozen=True)
class FollowedState:
    """The part of the supervisor's ``/medrobot/state`` a skill server acts on."""

    state: str
    plan_id: str
    step_index: int
    session: str = ""
    received_at: float = 0.0
    goal_id: str = ""  # the goal the supervisor announced for this step (hex UUID), "" before it sends one


def parse_goal(goal: GoalRequest, domain: str) -> Step:
    """Check 1: the goal is well-formed for this robot; the step it carries (not yet validated)."""
    if goal.domain != domain:
        raise Refusal(FailureKind.INVALID, f"refused: the goal is for the {goal.domain or '(empty)'!r} domain, this "
                      f"skill server runs {domain!r}", Reason.WRONG_DOMAIN)
    if len(goal.args_json.encode("utf-8", "surrogateescape")) > MAX_ARGS_BYTES:
        raise Refusal(FailureKind.INVALID, f"refused: args_json is longer than {MAX_ARGS_BYTES} bytes",
                      Reason.TOO_LONG)
    text = goal.args_json.strip() or "{}"
    try:
        args = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # nesting deep enough to exhaust the parser is refused like any other
        raise Refusal(FailureKind.INVALID, f"refused: args_json is not valid JSON ({exc}): "
                      f"{goal.args_json[:80]!r}", Reason.MALFORMED) from None
    if not isinstance(args, dict):
        raise Refusal(FailureKind.INVALID, f"refused: args_json must be a JSON object, got {type(args).__name__}",
                      Reason.MALFORMED)
    if not goal.skill:
        raise Refusal(FailureKind.INVALID, "refused: the goal names no skill", Reason.MALFORMED)
    return Step(skill=goal.skill, args=args)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a robot accepts")


def authorise(goal: GoalRequest, followed: FollowedState | None, now: float, *, max_age_s: float,
              state_publishers: int) -> None:
    """Check 2: the supervisor this server follows is EXECUTING exactly this plan and step right now."""
    if state_publishers > 1:
        raise Refusal(FailureKind.INVALID, f"refused: {state_publishers} nodes publish /medrobot/state; a skill "
                      "server follows exactly one supervisor, so nothing runs until the extra one is gone",
                      Reason.SEVERAL_SUPERVISORS)
    if followed is None:
        raise Refusal(FailureKind.INVALID, f"refused {goal.describe()}: no supervisor state received on "
                      "/medrobot/state; goals are accepted only from the supervisor", Reason.NO_SUPERVISOR)
    age = now - followed.received_at
    if age > max_age_s:
        raise Refusal(FailureKind.INVALID, f"refused {goal.describe()}: the supervisor's last state is {age:.1f} s "
                      f"old (limit {max_age_s:g} s)", Reason.STALE_STATE)
    if followed.state != SupervisorState.EXECUTING:
        raise Refusal(FailureKind.INVALID, f"refused {goal.describe()}: the supervisor is {followed.state}, "
                      "not EXECUTING", Reason.NOT_EXECUTING)
    if goal.plan_id != followed.plan_id or goal.step_index != followed.step_index:
        now_doing = (f"plan {followed.plan_id} step {followed.step_index + 1}" if followed.plan_id
                     else "no plan")
        raise Refusal(FailureKind.INVALID, f"refused {goal.describe()}: the supervisor is executing {now_doing}",
                      Reason.NOT_CURRENT_STEP)
    if not followed.goal_id or goal.goal_id != followed.goal_id:
        # same plan and step, but another sender: a copy of the supervisor's goal is still not its goal
        raise Refusal(FailureKind.INVALID, f"refused {goal.describe()}: goal {goal.goal_id[:8] or '(no id)'} is "
                      "not the goal the supervisor announced for this step; only the supervisor sends goals",
                      Reason.NOT_ANNOUNCED)


def halts_on_state(previous: FollowedState | None, state: str, session: str, stamp_ns: int,
                   released_ns: int) -> bool:
    """Whether a supervisor state halts the robot: when the supervisor *enters* ESTOP or FAULT.

    Not on every such message, and not on one stamped before the supervisor's own release (its reset's
    false on the e-stop topic) reached the robot: the state and the e-stop are two topics that DDS does not
    order between them, and an ESTOP state sent before a reset can arrive after the release it preceded.
    """
    if state not in LATCHED_STATES:
        return False
    entered = previous is None or previous.state != state or previous.session != session
    return entered and stamp_ns > released_ns


class EstopAction(Enum):
    """What a message on ``/medrobot/estop`` does to the robot's halt latch."""

    HALT = "halt"
    KEEP = "keep"  # a release from anyone but the supervisor: still halted until the supervisor resets
    RELEASE = "release"  # the supervisor's own release, sent by its reset
    NOTHING = "nothing"  # a release with nothing halted


def estop_action(pressed: bool, halted: bool, from_supervisor: Callable[[], bool]) -> EstopAction:
    """``true`` halts, always; ``false`` releases only when the supervisor sent it (its reset): releasing the
    robot happens only through the supervisor's reset (architecture.md's trust model).

    Whether the supervisor is latched yet cannot decide it: a press and a release a few milliseconds apart
    reach the robot before the supervisor's ESTOP state does, and a release judged "outside a latch" then
    freed a robot whose supervisor latched a moment later. ``from_supervisor`` is asked only for a halted
    robot (it looks the sender up in the ROS graph)."""
    if pressed:
        return EstopAction.HALT
    if not halted:
        return EstopAction.NOTHING
    return EstopAction.RELEASE if from_supervisor() else EstopAction.KEEP


def arms_of(cs: CommandSet, step: Step) -> frozenset[str]:
    """The arms a step moves: those its arguments name, else every arm; a robot without named arms has one,
    called after the entity."""
    skill = cs.skill(step.skill)
    named = cs.arms_named(skill, step.args) if skill is not None else frozenset()
    return named or frozenset(cs.arms) or frozenset({ARM_ENTITY})


@dataclass
class Admitted:
    """A goal that passed every check: the validated step, its cancel token, and the arms it holds."""

    goal: GoalRequest
    step: Step
    arms: frozenset[str]
    token: CancelToken = field(default_factory=CancelToken)
    started_at: float = field(default_factory=time.monotonic)


class SkillServerCore:
    """A skill server's state and rules over one backend; thread-safe, ROS-free.

    The node calls ``on_state`` for every ``/medrobot/state`` message, ``admit`` for every goal, ``run`` on
    its control thread, ``halt``/``clear_halt`` from the e-stop subscriber, and ``watch`` from a timer.

    ``clock`` stamps admissions and halts and judges the followed state's age and the loop's; the states
    given to ``on_state`` and the backend's ``last_heartbeat`` must be on it (``time.monotonic`` for all
    by default), so a test drives all of them with one ``ManualClock``. Pacing at ``real_time_factor``
    keeps real time: it paces real motion.
    """

    def __init__(self, backend: SkillBackend, *, max_state_age_s: float = 1.0, real_time_factor: float = 0.0,
                 clock: Clock = time.monotonic) -> None:
        if backend.domain not in DOMAINS:
            raise ValueError(unknown_domain(backend.domain))
        self.backend = backend
        self.domain = backend.domain
        self.max_state_age_s = max_state_age_s
        if not math.isfinite(real_time_factor) or real_time_factor < 0:
            raise ValueError(f"real_time_factor must be >= 0 (0 = as fast as the physics computes), got "
                             f"{real_time_factor}")
        self.real_time_factor = real_time_factor
        self.clock = clock
        self._lock = threading.Lock()
        self._followed: FollowedState | None = None
        self._active: dict[str, Admitted] = {}
        self._done: set[tuple[str, int]] = set()
        self.halt_reason = ""
        self.halted_at: float | None = None
        self.refusals = 0

    # ---------------------------------------------------------------- the followed supervisor
    @property
    def followed(self) -> FollowedState | None:
        return self._followed

    def on_state(self, state: FollowedState) -> list[Admitted]:
        """Record the supervisor's state; returns running goals it no longer authorises (cancel them)."""
        with self._lock:
            self._followed = state
            return [a for a in self._active.values() if not self._still_authorised(a, state)]

    @staticmethod
    def _still_authorised(a: Admitted, state: FollowedState) -> bool:
        return state.state == SupervisorState.EXECUTING and state.plan_id == a.goal.plan_id and state.step_index == a.goal.step_index

    def watch(self) -> list[tuple[Admitted, str]]:
        """Goals to cancel because the supervisor went silent: a robot never moves unsupervised."""
        now = self.clock()
        with self._lock:
            f = self._followed
            if f is None or now - f.received_at <= self.max_state_age_s:
                return []
            why = f"supervisor lost: no /medrobot/state for {now - f.received_at:.1f} s"
            return [(a, why) for a in self._active.values()]

    # ---------------------------------------------------------------- goals
    def check_form(self, goal: GoalRequest) -> Step:
        try:
            return parse_goal(goal, self.domain)
        except Refusal:
            self.refusals += 1
            raise

    def never_authorised(self, goal: GoalRequest) -> bool:
        """Whether no later state can authorise ``goal``: the supervisor latched (ESTOP/FAULT) during its plan.

        A goal may overtake the state that authorises it, so the node waits a little for that state; a
        latched supervisor never resumes the plan it stopped, so waiting then only delays the refusal that
        tells the supervisor its own stop was obeyed."""
        f = self._followed
        return f is not None and f.state in LATCHED_STATES and f.plan_id == goal.plan_id

    def authorised(self, goal: GoalRequest, state_publishers: int) -> Refusal | None:
        """None if the followed supervisor authorises ``goal`` now; else the refusal (not counted yet)."""
        try:
            authorise(goal, self._followed, self.clock(), max_age_s=self.max_state_age_s,
                      state_publishers=state_publishers)
        except Refusal as r:
            return r
        return None

    def admit(self, goal: GoalRequest, step: Step, state_publishers: int) -> Admitted:
        """Checks 2-4 and, if they pass, reserve the arms; raises ``Refusal``."""
        try:
            return self._admit(goal, step, state_publishers)
        except Refusal:
            self.refusals += 1
            raise

    def _admit(self, goal: GoalRequest, step: Step, state_publishers: int) -> Admitted:
        refusal = self.authorised(goal, state_publishers)
        if refusal is not None:
            raise refusal
        if self.backend.halted:
            raise Refusal(FailureKind.HALTED, f"refused {goal.describe()}: the robot is halted "
                          f"({self.halt_reason or 'e-stop'}); reset first", Reason.HALTED)
        try:
            world = self.backend.world_state()
        except Exception as exc:  # noqa: BLE001 - a robot that cannot say where it is must not move
            raise Refusal(FailureKind.ERROR, f"refused {goal.describe()}: the robot cannot report its world state "
                          f"({type(exc).__name__}: {exc})", Reason.NO_WORLD_STATE) from None
        try:
            steps, _ = check_steps(self.domain, [step], world)
        except PlanValidationError as exc:
            kind = FailureKind.PRECONDITION if any(i.code is Reason.PRECONDITION for i in exc.issues) \
                else FailureKind.INVALID
            raise Refusal(kind, f"refused {goal.describe()}: {exc.sentence()}", exc.code) from None
        checked = steps[0]
        key = (goal.plan_id, goal.step_index)
        arms = arms_of(load_command_set(self.domain), checked)
        with self._lock:
            if key in self._done:
                raise Refusal(FailureKind.INVALID, f"refused {goal.describe()}: that step already ran to success; "
                              "a step runs once", Reason.ALREADY_DONE)
            busy = sorted(arm for arm in arms if arm in self._active)
            if busy:
                other = self._active[busy[0]]
                raise Refusal(FailureKind.INVALID, f"refused {goal.describe()}: {', '.join(busy)} busy with "
                              f"{other.goal.describe()} (one goal per arm)", Reason.ARM_BUSY)
            if self._active:
                # one control loop drives this backend: steps on different arms still run one at a time
                other = next(iter(self._active.values()))
                raise Refusal(FailureKind.INVALID, f"refused {goal.describe()}: the robot is running "
                              f"{other.goal.describe()}", Reason.ROBOT_BUSY)
            admitted = Admitted(goal, checked, arms, started_at=self.clock())
            for arm in arms:
                self._active[arm] = admitted
            return admitted

    def run(self, admitted: Admitted, on_feedback: FeedbackFn | None = None) -> StepResult:
        """Execute an admitted step to its end on the calling (control) thread; always releases its arms."""
        try:
            feedback = self._paced(on_feedback)
            result = self.backend.execute(admitted.step, admitted.token, feedback)
        except Exception as exc:  # noqa: BLE001 - a backend bug is a failed step, reported, never a crash
            self.backend.halt(f"backend error: {exc}")
            result = StepResult.failed(FailureKind.ERROR, f"the backend raised {type(exc).__name__}: {exc}")
        with self._lock:
            for arm in admitted.arms:
                if self._active.get(arm) is admitted:
                    del self._active[arm]
            if result.success:
                self._done.add((admitted.goal.plan_id, admitted.goal.step_index))
        return result

    def _paced(self, on_feedback: FeedbackFn | None) -> FeedbackFn | None:
        """Feedback that, with ``real_time_factor`` > 0, also keeps the loop at that multiple of real time."""
        if self.real_time_factor <= 0:
            return on_feedback
        period = self.backend.control_period_s / self.real_time_factor
        next_at = [time.monotonic() + period]

        def paced(fb: Feedback) -> None:
            if on_feedback is not None:
                on_feedback(fb)
            delay = next_at[0] - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the control thread's own pacing; never a ROS callback
            next_at[0] = max(next_at[0] + period, time.monotonic())

        return paced

    @property
    def active(self) -> list[Admitted]:
        with self._lock:
            return list({id(a): a for a in self._active.values()}.values())

    # ---------------------------------------------------------------- e-stop
    def halt(self, reason: str) -> None:
        """Halt now (motion held within this call), latched; running goals end as halted.

        A halt while already latched holds motion again but keeps when and why the latch engaged: the
        supervisor echoes every stop on the e-stop topic, and that echo must not move ``halted_at`` to its
        own, later arrival (the status would say the robot stopped later than it did)."""
        latched = self.backend.halted and self.halted_at is not None
        self.backend.halt(reason)
        if not latched:
            self.halt_reason = reason
            self.halted_at = self.clock()
        for a in self.active:
            a.token.cancel(reason)

    def clear_halt(self) -> None:
        self.backend.clear_halt()
        self.halt_reason = ""
        self.halted_at = None

    # ---------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """What the supervisor's backend proxy needs: liveness, halt latch, world and telemetry."""
        try:
            world: dict[str, Any] | None = self.backend.world_state().to_json()
        except Exception as exc:  # noqa: BLE001
            world = None
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = ""
        try:
            telemetry = self.backend.telemetry()
        except Exception:  # noqa: BLE001
            telemetry = {}
        active = self.active
        now = self.clock()
        return {
            "domain": self.domain,
            "halted": self.backend.halted,
            "halt_reason": self.halt_reason,
            "halted_at": self.halted_at,
            "busy": bool(active),
            "active": [a.goal.describe() for a in active],
            # the loop's age counts from the admission of the running goal at the latest: until its first
            # control cycle the robot's last cycle may be from long ago, yet the goal is being started
            "loop_age_s": (now - max([self.backend.last_heartbeat, *(a.started_at for a in active)])
                           if active else 0.0),
            "world": world,
            "world_error": error,
            "telemetry": telemetry,
            "refusals": self.refusals,
            "mono": now,
        }


def world_from_json(obj: Any) -> WorldState:
    """A world state from its JSON form (``{"known": bool, "facts": {...}}``)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("facts", {}), dict):
        raise ValueError("a world state is an object with 'facts'")
    return WorldState(facts=dict(obj.get("facts") or {}), known=bool(obj.get("known", False)))
