"""What a skill server decides about a goal, without ROS: defence in depth against a rogue client.

The supervisor already validated the plan and released this one step, but the skill server does not
trust the wire (``docs/trust.md``). Every goal is checked again, here, in this order:

1. well-formed: the domain is this robot's, ``args_json`` is one JSON object, the skill exists;
2. supervised: a valid supervisor heartbeat arrived within the window (``Watchdog.require_alive``);
3. authorised: the goal carries a capability the supervisor minted for exactly this plan, step, skill,
   args, domain and goal id, unexpired and never spent (``CapabilityVerifier.admit``: spent here);
4. not halted: the e-stop latch is clear;
5. valid now: the step passes the validator against the world state the robot reports at this moment;
6. free: no other goal holds the arms this step moves; a step that already succeeded never runs twice.

Any failure is a ``Refusal`` whose message names the reason and whose code is its kind (a ``Reason``,
the ``Untrusted`` code for checks 2 and 3); nothing refused reaches the robot, and every refusal is in the
skill server's own audit log (the supervisor may be the one that is gone). ``/medrobot/state`` is
information: it may halt the robot (a supervisor entering ESTOP/FAULT) or cancel a running step it no
longer executes, never start one. Releasing a halt takes a signed heartbeat whose release is later than
the halt.
``SkillServerCore`` runs the admitted steps on any ``SkillBackend`` (a PyBullet scene here) and is what
the ROS node wraps.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from medrobot_llm.backends.base import CancelToken, FailureKind, Feedback, FeedbackFn, SkillBackend, StepResult
from medrobot_llm.core.clock import Clock
from medrobot_llm.core.jsonable import jsonable
from medrobot_llm.core.plan import Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.command_set import ARM_ENTITY, DOMAINS, CommandSet, load_command_set, unknown_domain
from medrobot_llm.safety.audit import AuditLog
from medrobot_llm.safety.capability import CapabilityVerifier
from medrobot_llm.safety.events import GoalRefusedEvent
from medrobot_llm.safety.heartbeat import Heartbeat, Watch, Watchdog
from medrobot_llm.safety.signing import Untrusted, millis
from medrobot_llm.safety.supervisor import LATCHED, SupervisorState
from medrobot_llm.core.validator import PlanValidationError, WorldState, check_steps

__all__ = [
    "MAX_ARGS_BYTES",
    "Admitted",
    "FollowedState",
    "GoalRequest",
    "LATCHED_STATES",
    "Refusal",
    "SkillServerCore",
    "StateEffect",
    "arms_of",
    "halts_on_state",
    "parse_goal",
    "plan_id_of",
    "to_json",
]

_LOG = logging.getLogger(__name__)

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

    @classmethod
    def untrusted(cls, kind: FailureKind, u: Untrusted, goal: GoalRequest) -> Refusal:
        """A heartbeat or capability check's refusal, with its code and sentence, as a goal's refusal: its message
        starts with "refused" as ExecuteSkill.action says every refusal's does (the watchdog's verdict reads
        "halted: ...", which a client looking for a refusal did not recognise)."""
        message = u.message if u.message.startswith("refused") else f"refused {goal.describe()}: {u.message}"
        return cls(kind, message, u.code)


@dataclass(frozen=True)
class GoalRequest:
    """The fields of an ExecuteSkill goal, as they came over the wire."""

    plan_id: str
    step_index: int
    skill: str
    args_json: str
    domain: str
    goal_id: str = ""  # the action goal's UUID, hex
    capability: str = ""  # ``Capability.to_wire()`` as the supervisor minted it for this goal

    def describe(self) -> str:
        return f"plan {self.plan_id or '(none)'} step {self.step_index + 1} ({self.skill or '?'})"


@dataclass(frozen=True)
class FollowedState:
    """The part of the supervisor's ``/medrobot/state`` a skill server acts on (information, not authority)."""

    state: str
    plan_id: str
    step_index: int
    session: str = ""
    stamp_ms: int = 0  # the state message's stamp, ms on the shared (wall) clock
    reason: str = ""


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


def halts_on_state(previous: FollowedState | None, state: str, session: str, stamp_ms: int,
                   released_ms: int) -> bool:
    """Whether a supervisor state halts the robot: when the supervisor *enters* ESTOP or FAULT.

    Not on every such message, and not on one stamped before the supervisor's last release (a signed
    heartbeat's ``released_ms``) reached the robot: the state and the heartbeat are two topics that DDS
    does not order between them, and an ESTOP state sent before a reset can arrive after the release it
    preceded.
    """
    if state not in LATCHED_STATES:
        return False
    entered = previous is None or previous.state != state or previous.session != session
    return entered and stamp_ms > released_ms


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
    issued_ms: int = 0  # its capability's mint time: a state stamped before it knew nothing of this goal


@dataclass(frozen=True)
class StateEffect:
    """What one ``/medrobot/state`` message did: running goals it cancels, and whether it halted the robot."""

    cancel: list[Admitted]
    halted: bool


class SkillServerCore:
    """A skill server's state and rules over one backend; thread-safe, ROS-free.

    The node calls ``admit`` for every goal, ``run`` on its control thread, ``halt`` and ``on_heartbeat``
    from the e-stop thread, ``on_state`` for every ``/medrobot/state`` message, and ``watch`` from a timer.

    Two clocks: ``clock`` stamps admissions and local halt times for the status and judges the loop's age
    (``time.monotonic`` by default, like the backend's ``last_heartbeat``); the ``watchdog``'s clock is the
    shared wall clock the supervisor's beats, releases, states and capabilities are stamped on, so halts
    are stamped on it too, to be ordered against releases. A test drives all of them with one
    ``ManualClock``. Pacing at ``real_time_factor`` keeps real time: it paces real motion.
    """

    def __init__(self, backend: SkillBackend, *, verifier: CapabilityVerifier, watchdog: Watchdog,
                 audit: AuditLog | None = None, real_time_factor: float = 0.0,
                 clock: Clock = time.monotonic) -> None:
        if backend.domain not in DOMAINS:
            raise ValueError(unknown_domain(backend.domain))
        self.backend = backend
        self.domain = backend.domain
        self.verifier = verifier
        self.watchdog = watchdog
        self.audit = audit if audit is not None else AuditLog(None, keep_records=False)
        if not math.isfinite(real_time_factor) or real_time_factor < 0:
            raise ValueError(f"real_time_factor must be >= 0 (0 = as fast as the physics computes), got "
                             f"{real_time_factor}")
        self.real_time_factor = real_time_factor
        self.clock = clock
        self._lock = threading.Lock()
        self._latch = threading.Lock()  # halts and releases are decided one at a time (never under _lock)
        self._followed: FollowedState | None = None
        self._active: dict[str, Admitted] = {}
        self._done: set[tuple[str, int]] = set()
        self.halt_reason = ""
        self.halted_at: float | None = None
        self.halt_ms: int | None = None  # the latest halt's stamp (shared clock, ms): a release must be later
        self.released_ms = 0  # the supervisor's last release, from its signed heartbeats
        self.refusals = 0

    # ---------------------------------------------------------------- the supervisor
    @property
    def followed(self) -> FollowedState | None:
        return self._followed

    def on_state(self, state: FollowedState) -> StateEffect:
        """Record the supervisor's state: it halts the robot when the supervisor enters ESTOP/FAULT after its
        last release, and cancels running goals it says the supervisor no longer executes, if it is not
        older than the goal's capability (a state overtaken by the goal says nothing about it)."""
        with self._lock:
            previous, self._followed = self._followed, state
            cancel = [a for a in self._active.values()
                      if state.stamp_ms >= a.issued_ms and not self._still_executing(a, state)]
        with self._latch:
            halt = (halts_on_state(previous, state.state, state.session, state.stamp_ms, self.released_ms)
                    and not self.backend.halted)
            if halt:  # stamped at receipt: a state's own stamp is the sender's word (one a day ahead held the latch)
                self._halt(f"the supervisor is {state.state}: {state.reason}", millis(self.watchdog.clock()))
        return StateEffect(list({id(a): a for a in cancel}.values()), halt)

    @staticmethod
    def _still_executing(a: Admitted, state: FollowedState) -> bool:
        return (state.state == SupervisorState.EXECUTING and state.plan_id == a.goal.plan_id
                and state.step_index == a.goal.step_index)

    def on_heartbeat(self, wire: str) -> tuple[Heartbeat, bool]:
        """Take a supervisor beat (``Untrusted`` if it is not genuine, fresh and in order: nothing changes);
        returns it and whether it released the robot: halted, and its release is later than the halt."""
        hb = self.watchdog.offer(wire)
        with self._latch:
            self.released_ms = max(self.released_ms, hb.released_ms)
            release = self.backend.halted and hb.released_ms > self._halt_stamp()
            if release:
                self.backend.clear_halt()
                self.halt_reason = ""
                self.halted_at = None
                self.halt_ms = None
        return hb, release

    def _halt_stamp(self) -> int:
        """The halt a release must follow; a backend that halted on its own is stamped when first noticed."""
        if self.halt_ms is None:
            self.halt_ms = millis(self.watchdog.clock())
        return self.halt_ms

    def watch(self) -> Watch | None:
        """For the node's timer: while no valid heartbeat is in the window, cancel every running goal (the
        robot never moves unsupervised; the e-stop latch is not engaged, a valid beat is enough to go on).
        Returns the watchdog's verdict when it changed, for the log."""
        change = self.watchdog.transition()
        verdict = change or self.watchdog.check()
        if verdict.halted:
            for a in self.active:
                a.token.cancel(f"supervisor lost: {verdict.message}")
        return change

    # ---------------------------------------------------------------- goals
    def check_form(self, goal: GoalRequest) -> Step:
        try:
            return parse_goal(goal, self.domain)
        except Refusal as r:
            self._refused(goal, r)
            raise

    def admit(self, goal: GoalRequest, step: Step) -> Admitted:
        """Checks 2-6 and, if they pass, reserve the arms; raises ``Refusal`` (audited)."""
        try:
            return self._admit(goal, step)
        except Refusal as r:
            self._refused(goal, r)
            raise

    def _refused(self, goal: GoalRequest, r: Refusal) -> None:
        self.refusals += 1
        event = GoalRefusedEvent(goal=goal.describe(), goal_id=goal.goal_id, skill=goal.skill, code=r.code.value,
                                 reason=r.message)
        try:
            self.audit.append(event.kind, **event.fields())
        except Exception as exc:  # noqa: BLE001 - the goal is refused all the same; the log says the record is lost
            _LOG.error("audit log failed, refusal of %s not recorded: %s", goal.describe(), exc)

    def _admit(self, goal: GoalRequest, step: Step) -> Admitted:
        try:
            self.watchdog.require_alive()
        except Untrusted as u:
            raise Refusal.untrusted(FailureKind.HALTED, u, goal) from None
        try:
            cap = self.verifier.admit(goal.capability, plan_id=goal.plan_id, step_index=goal.step_index,
                                      skill=goal.skill, args=step.args, domain=goal.domain, goal_id=goal.goal_id)
        except Untrusted as u:
            raise Refusal.untrusted(FailureKind.INVALID, u, goal) from None
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
            admitted = Admitted(goal, checked, arms, started_at=self.clock(), issued_ms=cap.issued_ms)
            for arm in arms:
                self._active[arm] = admitted
            return admitted

    def ends_in_first_cycle(self, admitted: Admitted) -> bool:
        """Whether the step's skill declares that it ends in its first control cycle (``max_steps`` 1): nothing to
        pace, report on or cancel midway, so a skill server may run it where the goal arrived."""
        return self.backend.cycles_at_most(admitted.step) == 1

    def run(self, admitted: Admitted, on_feedback: FeedbackFn | None = None, *, paced: bool = True) -> StepResult:
        """Execute an admitted step to its end on the calling thread (``paced``: at ``real_time_factor``);
        always releases its arms."""
        try:
            feedback = self._paced(on_feedback) if paced else on_feedback
            result = self.backend.execute(admitted.step, admitted.token, feedback)
        except Exception as exc:  # noqa: BLE001 - a backend bug is a failed step, reported, never a crash
            self.halt(f"backend error: {exc}")
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

        The halt is stamped on the shared clock at receipt, never with a time the sender gave: anyone may stop
        the robot, but only a release the supervisor signed after this receipt frees it, so a press that
        arrives after the supervisor's reset is never undone by the beats carrying that reset, and a stop
        dated ahead (a forged state a day ahead, issue 15's second blind attack) holds the latch no longer
        than any other stop.

        A halt while already latched holds motion again but keeps when and why the latch engaged: the
        supervisor echoes every stop on the e-stop topic, and that echo must not move ``halted_at`` to its
        own, later arrival (the status would say the robot stopped later than it did)."""
        with self._latch:
            self._halt(reason, millis(self.watchdog.clock()))

    def _halt(self, reason: str, stamp_ms: int) -> None:
        latched = self.backend.halted and self.halted_at is not None
        self.backend.halt(reason)
        if not latched:
            self.halt_reason = reason
            self.halted_at = self.clock()
        self.halt_ms = stamp_ms if self.halt_ms is None else max(self.halt_ms, stamp_ms)
        for a in self.active:
            a.token.cancel(reason)

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
        watch = self.watchdog.check()
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
            "supervisor": {"alive": not watch.halted, "instance": watch.instance, "message": watch.message},
            "mono": now,
        }


def world_from_json(obj: Any) -> WorldState:
    """A world state from its JSON form (``{"known": bool, "facts": {...}}``)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("facts", {}), dict):
        raise ValueError("a world state is an object with 'facts'")
    return WorldState(facts=dict(obj.get("facts") or {}), known=bool(obj.get("known", False)))
