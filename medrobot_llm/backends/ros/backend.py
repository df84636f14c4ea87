"""``RosSkillBackend``: the supervisor's ``SkillBackend`` when the robot is on the other end of DDS.

``execute`` is an ExecuteSkill action client; the robot's world state, halt latch and liveness come from
the skill server's ``/medrobot/robot_status`` and from the goal's feedback. A skill server that stops
talking (killed, hung, unplugged) stops the heartbeat, and the supervisor's watchdog turns that into FAULT.
Only a report the skill server signed, fresh and in order (``safety.robot_status``) counts: any node can
publish on the topic, and a copied or made-up report would otherwise keep a dead skill server alive, make a
supervisor without one ready, or hand the validator a world that is not the robot's.
``halt`` publishes ``/medrobot/estop``: the fastest way to the robot, and latched for late joiners. Each goal
carries a capability minted for exactly that step and goal id (docs/trust.md): the skill server runs nothing
else. Only ``clear_halt`` (the supervisor's reset) releases the robot, with a signed heartbeat. A halt the robot
reports that the supervisor did not order (a press only the robot heard) is only reported here (``halted``,
``halt_reason``): the supervisor's watchdog reads them on its own thread and latches ESTOP, so the status callback
never waits for the supervisor.

A goal the skill server refuses after we stopped or cancelled it (it was halted, or our state said the step
was over) was refused *because* of our stop: it ends as halted (or cancelled), never as an invalid step, so
the supervisor keeps the latch it chose instead of turning it into a FAULT.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from std_msgs.msg import Bool, String
from unique_identifier_msgs.msg import UUID

from medrobot_interfaces.action import ExecuteSkill

from medrobot_llm.backends.base import (BackendNotReady, CancelToken, FailureKind, Feedback, FeedbackFn, SkillBackend,
                                        StepResult)
from medrobot_llm.core.clock import Clock
from medrobot_llm.core.plan import Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.validator import WorldState
from medrobot_llm.backends.ros.common import ACTION_EXECUTE, TOPIC_ESTOP, GoalClient, TOPIC_ROBOT_STATUS, latched_qos, reliable_qos
from medrobot_llm.safety.capability import CapabilityMinter
from medrobot_llm.safety.gate import to_json, world_from_json
from medrobot_llm.safety.results import verify_result
from medrobot_llm.safety.robot_status import StatusVerifier
from medrobot_llm.safety.signing import Untrusted

__all__ = ["RosSkillBackend", "SkillServerLost", "SkillServerNotReady"]


class SkillServerLost(RuntimeError):
    """No fresh ``/medrobot/robot_status`` from a skill server of this domain."""


class SkillServerNotReady(SkillServerLost, BackendNotReady):
    """No ``/medrobot/robot_status`` yet at all: on a graph just brought up, the skill server's first status can
    come seconds after a console's first command; that command is refused, nothing latches."""


class RosSkillBackend(SkillBackend):
    """Runs each step as one ExecuteSkill goal. ``locate`` maps the step's cancel token to its plan id and
    index; ``minter`` signs the goal's capability (the graph secret); ``before_send`` publishes the supervisor
    state naming the goal id (information for consoles), just before it goes out; ``release`` sends the
    supervisor's signed release; ``instance`` is the supervisor's heartbeat instance, which the skill server must
    report alive before it counts as connected. ``result_secret`` (the graph secret) verifies the skill server's
    results and reports; a report stamped further than ``stale_after_s`` from now is ignored too. ``clock`` stamps
    what the skill server says and when (the heartbeat the supervisor watches), so it must be the supervisor's."""

    control_period_s = 0.005
    #: how long a step's thread sleeps between looks when nothing woke it (a lost wake-up costs no more than this)
    idle_wait_s = 0.5
    #: at most one log line per this many seconds about ignored reports: a flood of forgeries must not fill the log
    ignored_log_period_s = 10.0

    def __init__(self, node: Node, domain: str, *, locate: Callable[[CancelToken], tuple[str, int] | None],
                 before_send: Callable[[str, int, str], None], minter: CapabilityMinter,
                 release: Callable[[], None], callback_group: CallbackGroup, result_secret: bytes, graph: str = "", instance: str = "",
                 status_group: CallbackGroup, server_wait_s: float = 5.0, stale_after_s: float = 1.0,
                 cancel_grace_s: float = 1.0, reset_wait_s: float = 2.0, clock: Clock = time.monotonic) -> None:
        self.domain = domain
        self.clock = clock
        self._result_secret = result_secret  # a result counts only signed by a skill server of this graph
        self._graph = graph
        self._node = node
        self._locate = locate
        self._before_send = before_send
        self._minter = minter
        self._release = release
        self.instance = instance
        self.server_wait_s = server_wait_s
        self.stale_after_s = stale_after_s
        self.cancel_grace_s = cancel_grace_s
        self.reset_wait_s = reset_wait_s
        self._client = GoalClient(node, ExecuteSkill, ACTION_EXECUTE, callback_group=callback_group)
        self._estop_pub = node.create_publisher(Bool, TOPIC_ESTOP, latched_qos(5))
        self._cond = threading.Condition()
        self._status: dict[str, Any] | None = None
        self._status_at = 0.0
        self._world: dict[str, Any] | None = None
        self._telemetry: dict[str, Any] = {}
        self._beat = self.clock()
        self._statuses = StatusVerifier(result_secret, graph=graph, window_s=stale_after_s)
        #: reports ignored, by reason (status callback group only: its callbacks never overlap)
        self.ignored_statuses: Counter[Reason] = Counter()
        self._ignored_logged_at: float | None = None
        self._local_halt = False
        self._halt_reason = ""
        self._next_goal_id: uuid.UUID | None = None
        self._draw_ahead()
        node.create_subscription(String, TOPIC_ROBOT_STATUS, self._on_status, reliable_qos(5),
                                 callback_group=status_group)

    # ---------------------------------------------------------------- what the skill server says
    def _on_status(self, msg: String) -> None:
        try:
            obj = self._statuses.offer(msg.data)
        except Untrusted as u:
            self._ignore(u)
            return
        if obj.get("domain") != self.domain:
            return
        now = self.clock()
        with self._cond:
            self._status, self._status_at = obj, now
            if not obj.get("busy") and isinstance(obj.get("world"), dict):
                # while a step runs the world is in flux; the step's result brings the world it left
                self._world = obj["world"]
            if isinstance(obj.get("telemetry"), dict):
                self._telemetry = obj["telemetry"]
            if not obj.get("busy") or float(obj.get("loop_age_s", 0.0)) < self.stale_after_s / 2:
                self._beat = now
            self._cond.notify_all()

    def _ignore(self, u: Untrusted) -> None:
        """Count a refused report; log one line now and then, with the latest reason and the counts so far."""
        self.ignored_statuses[u.code] += 1
        now = self.clock()
        if self._ignored_logged_at is not None and now - self._ignored_logged_at < self.ignored_log_period_s:
            return
        self._ignored_logged_at = now
        counts = ", ".join(f"{code.value} {n}" for code, n in sorted(self.ignored_statuses.items()))
        self._node.get_logger().warning(f"{u.message}; reports on {TOPIC_ROBOT_STATUS} ignored so far: {counts}")

    @property
    def connected(self) -> bool:
        """A skill server reports in, fresh, and (given ``instance``) it hears this supervisor's heartbeat: before
        that it refuses every goal, so a plan sent to it would fail for nothing."""
        status = self._status
        if status is None or self.clock() - self._status_at > self.stale_after_s:
            return False
        if not self.instance:
            return True
        follows = status.get("supervisor")
        return isinstance(follows, dict) and bool(follows.get("alive")) and follows.get("instance") == self.instance

    def world_json(self) -> dict[str, Any] | None:
        return self._world

    def world_state(self) -> WorldState:
        with self._cond:
            if self._status is None:
                raise SkillServerNotReady(f"no skill server for {self.domain} has reported yet: nothing received "
                                          f"on {TOPIC_ROBOT_STATUS}")
            age = self.clock() - self._status_at
            if age > self.stale_after_s:
                raise SkillServerLost(f"the skill server is silent: no {TOPIC_ROBOT_STATUS} for {age:.1f} s")
            if self._world is None:
                raise SkillServerLost(f"the skill server cannot report its world state: "
                                      f"{self._status.get('world_error') or 'unknown error'}")
            return world_from_json(self._world)

    def telemetry(self) -> dict[str, Any]:
        return dict(self._telemetry)

    @property
    def last_heartbeat(self) -> float:
        return self._beat

    # ---------------------------------------------------------------- halt latch
    @property
    def halted(self) -> bool:
        status = self._status
        return self._local_halt or bool(status is not None and status.get("halted"))

    @property
    def halt_reason(self) -> str:
        status = self._status
        if status is not None and status.get("halted"):
            return str(status.get("halt_reason") or "")
        return self._halt_reason if self._local_halt else ""

    def halt(self, reason: str = "e-stop") -> None:
        if not self._local_halt:
            self._halt_reason = reason
            self._local_halt = True
            self._estop_pub.publish(Bool(data=True))

    def clear_halt(self) -> None:
        """Release the robot (the signed release; then false on the e-stop topic, so late joiners do not see our
        own earlier press as pressed) and wait until the robot says it is clear."""
        self._local_halt = False
        asked = self.clock()
        self._release()
        self._estop_pub.publish(Bool(data=False))
        with self._cond:
            self._cond.wait_for(lambda: self._status_at > asked and not (self._status or {}).get("halted"),
                                self.reset_wait_s)

    # ---------------------------------------------------------------- one step, one goal
    def execute(self, step: Step, token: CancelToken, on_feedback: FeedbackFn | None = None) -> StepResult:
        where = self._locate(token)
        if where is None:
            return StepResult.failed(FailureKind.INVALID, "no in-flight plan step matches this request; only the "
                                     "supervisor's executor sends goals")
        plan_id, index = where
        if not self._client.server_is_ready() and not self._client.wait_for_server(timeout_sec=self.server_wait_s):
            return StepResult.failed(FailureKind.LOST, f"no skill server on {ACTION_EXECUTE} within "
                                     f"{self.server_wait_s:g} s")
        wake = threading.Event()

        def feedback(msg: Any) -> None:
            self._beat = self.clock()
            fb = msg.feedback
            try:
                telemetry = json.loads(fb.telemetry_json) if fb.telemetry_json else {}
            except ValueError:
                telemetry = {}
            if isinstance(telemetry, dict):
                self._telemetry = telemetry
            if on_feedback is not None:
                on_feedback(Feedback(phase=fb.phase or "running", progress=min(1.0, max(0.0, float(fb.progress))),
                                     telemetry=telemetry if isinstance(telemetry, dict) else {}))

        with self._cond:
            goal_id, self._next_goal_id = self._next_goal_id or uuid.uuid4(), None
        capability = self._minter.mint(plan_id=plan_id, step_index=index, skill=step.skill, args=step.args,
                                       domain=self.domain, goal_id=goal_id.hex)
        goal = ExecuteSkill.Goal(plan_id=plan_id, step_index=index, skill=step.skill, args_json=to_json(step.args),
                                 domain=self.domain, capability=capability.to_wire())
        self._before_send(plan_id, index, goal_id.hex)
        if token.cancelled or self._local_halt:
            return self._stopped_before_start(token, "the goal was not sent")
        send = self._client.send_goal_async(goal, feedback_callback=feedback,
                                            goal_uuid=UUID(uuid=list(goal_id.bytes)))
        results: list[Any] = []

        def on_goal_response(f: Any) -> None:
            # Ask for the result here, on the executor thread, the moment the goal is accepted: no wait for
            # this thread's next turn, and the response cannot come in before its future is registered. This
            # thread is woken by the result (or a refusal) only: a wake at acceptance took the GIL from the
            # executor thread while it was receiving the result.
            accepted = False
            try:
                h = f.result()
                if h is not None and h.accepted:
                    rf = h.get_result_async()
                    rf.add_done_callback(lambda _f: wake.set())
                    results.append(rf)
                    accepted = True
            finally:
                if not accepted:
                    wake.set()

        send.add_done_callback(on_goal_response)
        self._draw_ahead()
        handle: Any = None
        cancel_at: float | None = None
        cancel_sent = False
        result_future: Any = None
        stop_waking = token.wake_on_cancel(wake)
        try:
            while True:
                wake.clear()
                if handle is None and send.done():
                    handle = send.result()
                    if handle is None or not handle.accepted:
                        if token.cancelled or self._local_halt:
                            return self._stopped_before_start(token, "the skill server rejected the goal")
                        return StepResult.failed(FailureKind.INVALID, "the skill server rejected the goal")
                result_future = results[0] if results else None
                if result_future is not None and result_future.done():
                    break
                if token.cancelled:
                    now = self.clock()
                    if cancel_at is None:
                        cancel_at = now
                    if handle is not None and not cancel_sent:
                        handle.cancel_goal_async()
                        cancel_sent = True
                    if now - cancel_at > self.cancel_grace_s:
                        return StepResult.failed(FailureKind.CANCELLED, f"{token.reason}; the skill server did not "
                                                 f"confirm the end of the goal within {self.cancel_grace_s:g} s")
                # Until a cancel, only the result, a refusal or the cancel wakes this thread (a poll took the GIL
                # from the executor thread mid-goal); once cancelled, it also watches for the goal's acceptance
                # (its cancel needs the handle) and times the grace.
                wake.wait(self.control_period_s if token.cancelled else self.idle_wait_s)
        finally:
            stop_waking()
        response = result_future.result()
        result = self._to_step_result(response.result, goal_id.hex)
        if not result.success and result.outcome.get("refused") is True and (token.cancelled or self._local_halt):
            return self._stopped_before_start(token, f"the skill server refused it: {result.message}")
        return result

    def _draw_ahead(self) -> None:
        """The next goal's id and capability nonce, drawn while this goal is out: reading the OS's randomness
        gives up the GIL, and before the send that let the supervisor's other threads run first."""
        with self._cond:
            if self._next_goal_id is None:
                self._next_goal_id = uuid.uuid4()
        self._minter.draw_ahead()

    def _stopped_before_start(self, token: CancelToken, what: str) -> StepResult:
        """A step that never started because we stopped it first: halted (e-stop/fault) or cancelled."""
        if self._local_halt:
            return StepResult.failed(FailureKind.HALTED, f"halted ({self._halt_reason or 'e-stop'}) before the step "
                                     f"started ({what})")
        return StepResult.failed(FailureKind.CANCELLED, f"{token.reason or 'cancelled'} before the step started "
                                 f"({what})")

    def _to_step_result(self, r: Any, goal_id: str) -> StepResult:
        try:
            verify_result(self._result_secret, r.signature, goal_id=goal_id, success=bool(r.success),
                          failure_kind=r.failure_kind, message=r.message, outcome_json=r.outcome_json,
                          world_json=r.world_json, graph=self._graph)
        except Untrusted as u:
            # its world and outcome are not the robot's: kept out of everything the supervisor decides on
            return StepResult.failed(FailureKind.ERROR, u.message, untrusted=u.to_json())
        if r.world_json:
            try:
                world = json.loads(r.world_json)
            except ValueError:
                world = None
            if isinstance(world, dict):
                with self._cond:
                    self._world = world
        try:
            outcome = json.loads(r.outcome_json) if r.outcome_json else {}
        except ValueError:
            outcome = {"raw": r.outcome_json}
        if not isinstance(outcome, dict):
            outcome = {"value": outcome}
        if r.success:
            return StepResult(success=True, message=r.message or "done", outcome=outcome)
        try:
            kind = FailureKind(r.failure_kind)
        except ValueError:
            kind = FailureKind.ERROR
        if kind is FailureKind.NONE:
            kind = FailureKind.ERROR
        return StepResult(success=False, failure=kind, message=r.message or "the skill server reported a failure",
                          outcome=outcome)

    def close(self) -> None:
        self._client.destroy()
