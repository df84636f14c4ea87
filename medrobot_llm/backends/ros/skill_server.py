"""The sim skill server: the ExecuteSkill action server over one PyBullet scene (one per robot).

Thin by design: every decision is ``SkillServerCore``'s (``safety.gate``). The node adds the threads:
- one executor thread runs every ROS callback, and none of them sleeps or blocks: a goal is checked,
  handed to the control thread, and its coroutine awaits a future the control thread completes (a step whose
  skill ends in its first cycle runs that cycle right there: the hand-off cost more than the cycle). One
  thread, not a pool: with a pool, every callback waited for the GIL behind the pool's own threads, and
  messages sat 100-400 ms in the process on an idle machine (a separate process got them in 2 ms);
- one control thread runs the physics of the admitted goal and checks its cancel token every cycle;
- the e-stop has a thread of its own: a second node (``medrobot_skill_server_estop``) holding only the
  ``/medrobot/estop`` subscription, spun by its own executor at the highest priority the OS grants
  (``priority``). The main executor's queue (status ticks, goals, feedback) never stands in front of a
  stop: with both cores busy, a stop waited up to 120 ms there. It halts the scene at once (motion held
  within that call). The same node takes the supervisor's signed heartbeat (``/medrobot/heartbeat``): a
  ``false`` on the e-stop topic releases nothing (anyone may publish it); a valid beat whose release is
  later than the halt does (``SkillServerCore.on_heartbeat``), so releasing happens only through the
  supervisor's reset, and beats keep arriving on this thread however busy the main executor is. So does the
  supervisor's ``/medrobot/state`` (an ESTOP or FAULT there halts the robot too): on the main executor, every
  state took a pass of its own in front of the goal it came with;
- a timer publishes ``/medrobot/robot_status`` (liveness, halt latch, world state, the supervisor's
  heartbeat) and, while no valid heartbeat is in the window, cancels every running goal. Each report is signed
  (``safety.robot_status``): the supervisor believes no other node's report of this robot.

Keys: the graph secret (``graph.key`` in the ``keys_dir`` parameter, "" = ``keys.default_dir()``) verifies
the capabilities and the heartbeats, and signs the results and the reports; without a usable key the node does
not start. Every refused goal is recorded in the node's own audit log (``audit_log``, "" = memory only).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rclpy.action.server import ActionServer, CancelResponse, GoalResponse, ServerGoalHandle
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.task import Future
from std_msgs.msg import Bool, String

from medrobot_interfaces.action import ExecuteSkill
from medrobot_interfaces.msg import Heartbeat as HeartbeatMsg
from medrobot_interfaces.msg import SupervisorState

from medrobot_llm.backends.ros.env import node_graph
from medrobot_llm.backends.ros.nodes import SKILL_SERVER
from medrobot_llm.core.command_set import DOMAINS
from medrobot_llm.backends.base import FailureKind, Feedback, FeedbackFn, StepResult
from medrobot_llm.backends.ros.common import (
    ACTION_EXECUTE, RESULT_KEPT_S, TOPIC_ESTOP, TOPIC_HEARTBEAT, TOPIC_ROBOT_STATUS, TOPIC_STATE, any_sender_qos, latched_qos, reliable_qos,
    refuse_parameter_sets, spin_node, start_parameters, steady_timer,
)
from medrobot_llm.backends.ros.priority import raise_priority, reception_threads, threads_of_this_process
from medrobot_llm.backends.ros.signed import heartbeat_wire
from medrobot_llm.safety import keys
from medrobot_llm.safety.audit import AuditLog, AuditLogError
from medrobot_llm.safety.capability import CapabilityVerifier
from medrobot_llm.safety.gate import Admitted, FollowedState, GoalRequest, Refusal, SkillServerCore, to_json
from medrobot_llm.safety.heartbeat import Watchdog
from medrobot_llm.safety.results import sign_result
from medrobot_llm.safety.robot_status import StatusSigner
from medrobot_llm.safety.signing import Untrusted

__all__ = ["SkillServerNode", "main"]

NODE_NAME = SKILL_SERVER.name
#: the node of the e-stop thread: a node of its own, so that its executor waits on nothing but the stop
ESTOP_NODE_NAME = f"{NODE_NAME}_estop"


class SkillServerNode(Node):
    def __init__(self, *, context: Context | None = None, **overrides: Any) -> None:
        super().__init__(NODE_NAME, context=context)
        p = self._params(overrides)
        try:
            secret = keys.load_graph_secret(Path(p["keys_dir"]) if p["keys_dir"] else None)
        except keys.KeyFileError as exc:
            raise SystemExit(f"medrobot skill server: {exc}") from None
        self._secret = secret  # signs every result: the supervisor believes no other server's
        self.graph = node_graph("skill server", self.context.get_domain_id(), p["graph_id"])
        try:
            self.audit = AuditLog(p["audit_log"]) if p["audit_log"] else AuditLog(None, keep_records=False)
        except AuditLogError as exc:  # refusals nobody could audit later: say so, do not start
            raise SystemExit(f"medrobot skill server: {exc}") from None
        from medrobot_llm.backends.sim import make

        self.scene = make(p["domain"], gui=p["gui"])
        self.scene.reset(seed=p["seed"] if p["seed"] >= 0 else None)
        # exposures and contacts are written ahead (intended, then done) here too: the robot's own record of a dose
        self.scene.hazard_log = self.audit.append
        self.core = SkillServerCore(self.scene, verifier=CapabilityVerifier(secret, graph=self.graph),
                                    watchdog=Watchdog(secret, graph=self.graph, window_s=p["heartbeat_window_s"]), audit=self.audit,
                                    real_time_factor=p["real_time_factor"])
        self.feedback_period_s = 1.0 / p["feedback_hz"] if p["feedback_hz"] > 0 else 0.0

        self._status_pub = self.create_publisher(String, TOPIC_ROBOT_STATUS, reliable_qos(5))
        self._status_signer = StatusSigner(secret, graph=self.graph)
        # the tick and the e-stop thread both report: each report is built, numbered and sent before the next, so
        # the supervisor never gets a later number first (it would refuse the earlier one as a replay) nor an
        # older picture of the robot under a later number
        self._status_lock = threading.Lock()
        self._admitted: dict[bytes, Admitted] = {}
        self._estop_node = Node(ESTOP_NODE_NAME, context=self.context)
        refuse_parameter_sets(self._estop_node)
        self._estop_node.create_subscription(Bool, TOPIC_ESTOP, self._on_estop, latched_qos(5))
        self._estop_node.create_subscription(Bool, TOPIC_ESTOP, self._on_estop, any_sender_qos())
        self._estop_node.create_subscription(HeartbeatMsg, TOPIC_HEARTBEAT, self._on_heartbeat, reliable_qos(10))
        self._estop_node.create_subscription(SupervisorState, TOPIC_STATE, self._on_state, latched_qos(1))
        self._estop_executor = SingleThreadedExecutor(context=self.context)
        self._estop_executor.add_node(self._estop_node)
        self._estop_thread = threading.Thread(target=self._estop_loop, name="medrobot-estop", daemon=True)
        self._estop_thread.start()
        self._server = ActionServer(
            self, ExecuteSkill, ACTION_EXECUTE, execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=self._on_cancel, result_timeout=RESULT_KEPT_S)
        self._jobs: queue.Queue[tuple[Admitted, ServerGoalHandle[Any, Any, Any], Future[StepResult]] | None] = \
            queue.Queue()
        self._control = threading.Thread(target=self._control_loop, name="medrobot-control", daemon=True)
        self._control.start()
        steady_timer(self, 1.0 / p["status_hz"], self._tick)
        self.get_logger().info(f"skill server for {self.scene.scene_id} on {ACTION_EXECUTE} "
                               f"(real_time_factor {p['real_time_factor']:g}); goals need a capability and the supervisor's "
                               f"heartbeat on {TOPIC_HEARTBEAT} (window {p['heartbeat_window_s']:g} s), signed for graph "
                               f"{self.graph}; reports signed as instance {self._status_signer.instance}")

    def _params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {"domain": "", "gui": False, "seed": 0, "real_time_factor": 1.0,
                                    "feedback_hz": 50.0, "status_hz": 20.0, "heartbeat_window_s": 1.0,
                                    "keys_dir": "", "graph_id": "", "audit_log": ""}
        out = start_parameters(self, defaults, overrides)
        if not out["domain"]:
            raise SystemExit("medrobot skill server: the 'domain' parameter is required "
                             f"({', '.join(DOMAINS)})")
        if out["status_hz"] <= 0:
            raise SystemExit("medrobot skill server: status_hz must be > 0")
        if not out["heartbeat_window_s"] > 0:
            raise SystemExit("medrobot skill server: heartbeat_window_s must be > 0")
        return out

    # ---------------------------------------------------------------- e-stop and supervisor state
    def _estop_loop(self) -> None:
        """The e-stop thread: raise its own priority (say what it got), then spin the e-stop node only."""
        log = self._estop_node.get_logger()
        granted = raise_priority(threading.get_native_id())
        (log.info if granted.realtime else log.warning)(granted.sentence("the e-stop thread"))
        # a stop reaches this thread only through the DDS threads that receive it: under load they waited
        # their turn too (up to 35 ms between the publisher's stamp and the reception was seen)
        receivers = [(tid, raise_priority(tid)) for tid in reception_threads(threads_of_this_process())]
        if not receivers:
            log.warning("no DDS reception thread found to raise: a stop may wait behind the load to be received")
        for tid, g in receivers:
            # one call site per severity: rclpy refuses a call site whose severity changes, and the raised
            # error would end this thread before it spins (a robot with no stop path)
            if g.realtime:
                log.info(g.sentence(f"DDS reception thread {tid}"))
            else:
                log.warning(g.sentence(f"DDS reception thread {tid}"))
        try:
            self._estop_executor.spin()
        except (ExternalShutdownException, ShutdownException):
            pass
        except Exception as exc:  # a robot whose stop path is gone must not move: halt, latched, and say why
            self.core.halt(f"the e-stop thread failed ({type(exc).__name__}: {exc})")
            log.error(f"the e-stop thread failed; robot halted: {type(exc).__name__}: {exc}")
            raise

    def _on_estop(self, msg: Bool) -> None:
        """``true`` halts, whoever sent it, stamped on this node's clock at receipt (a source stamp is the
        sender's word); ``false`` releases nothing: only the supervisor's signed release does
        (``_on_heartbeat``). The status goes out either way, so a sender sees its message was handled."""
        if msg.data:
            self.core.halt(f"e-stop on {TOPIC_ESTOP}")
        self._publish_status()

    def _on_heartbeat(self, msg: Any) -> None:
        try:
            hb, released = self.core.on_heartbeat(heartbeat_wire(msg))
        except Untrusted as u:
            # a flood of forged beats must not flood the log
            self._estop_node.get_logger().warning(u.message, throttle_duration_sec=5.0)
            return
        if released:
            self._estop_node.get_logger().info(f"released by supervisor {hb.instance[:16]}'s reset")
            self._publish_status()

    def _on_state(self, msg: SupervisorState) -> None:
        stamp_ms = msg.stamp.sec * 1000 + msg.stamp.nanosec // 1_000_000
        effect = self.core.on_state(FollowedState(msg.state, msg.plan_id, msg.step_index, msg.session, stamp_ms,
                                                  msg.reason))
        for a in effect.cancel:
            a.token.cancel(f"the supervisor is {msg.state} at plan {msg.plan_id or '(none)'} step "
                           f"{msg.step_index + 1}, no longer executing this step")
        if effect.halted:
            self._publish_status()

    def _tick(self) -> None:
        change = self.core.watch()
        # one call site per severity: rclpy refuses a call site whose severity changes (and the spin dies)
        if change is not None and change.halted:
            self.get_logger().warning(change.message)
        elif change is not None:
            self.get_logger().info(change.message)
        self._publish_status()

    def _publish_status(self) -> None:
        with self._status_lock:
            self._status_pub.publish(String(data=self._status_signer.sign(to_json(self.core.status()))))

    # ---------------------------------------------------------------- goals
    def _on_goal(self, goal: ExecuteSkill.Goal) -> GoalResponse:
        # Accepted so that a refusal can carry its reason: _execute aborts it before anything moves.
        return GoalResponse.ACCEPT

    def _on_cancel(self, handle: ServerGoalHandle[Any, Any, Any]) -> CancelResponse:
        admitted = self._admitted.get(bytes(handle.goal_id.uuid))
        if admitted is not None:
            admitted.token.cancel("goal cancel requested")
        return CancelResponse.ACCEPT

    def _future(self) -> Future[Any]:
        """A future whose completion from any thread wakes this node's executor: rclpy resumes a waiting
        coroutine only when its executor wakes, which scheduling a done callback does."""
        f: Future[Any] = Future(executor=self.executor)
        f.add_done_callback(lambda _f: None)
        return f

    async def _execute(self, handle: ServerGoalHandle[Any, Any, Any]) -> ExecuteSkill.Result:
        g = handle.request
        goal = GoalRequest(g.plan_id, int(g.step_index), g.skill, g.args_json, g.domain,
                           bytes(handle.goal_id.uuid).hex(), g.capability)
        try:
            admitted = self.core.admit(goal, self.core.check_form(goal))
        except Refusal as r:
            self.get_logger().warning(r.message)
            handle.abort()
            # ``refused``: nothing of the goal ran (the supervisor tells a refusal caused by its own stop apart)
            return self._result(StepResult.failed(r.kind, r.message, refused=True), goal.goal_id)
        if handle.is_cancel_requested:
            admitted.token.cancel("goal cancel requested")
        result = self._run_here(admitted) if self.core.ends_in_first_cycle(admitted) else await self._hand_off(
            admitted, handle)
        if result.success:
            handle.succeed()
        elif result.failure is FailureKind.CANCELLED and handle.is_cancel_requested:
            handle.canceled()
        else:
            handle.abort()
        return self._result(result, goal.goal_id)

    def _result(self, r: StepResult, goal_id: str) -> ExecuteSkill.Result:
        try:
            world = to_json(self.scene.world_state().to_json())
        except Exception:  # noqa: BLE001 - the result still goes out; the status topic says more
            world = ""
        outcome = to_json(r.outcome)
        signature = sign_result(self._secret, goal_id=goal_id, success=r.success, failure_kind=r.failure.value,
                                message=r.message, outcome_json=outcome, world_json=world, graph=self.graph)
        return ExecuteSkill.Result(success=r.success, failure_kind=r.failure.value, message=r.message,
                                   outcome_json=outcome, world_json=world, signature=signature)

    async def _hand_off(self, admitted: Admitted, handle: ServerGoalHandle[Any, Any, Any]) -> StepResult:
        """Run the step on the control thread; this coroutine waits for it without holding the executor."""
        key = bytes(handle.goal_id.uuid)
        self._admitted[key] = admitted
        done: Future[StepResult] = self._future()
        self._jobs.put((admitted, handle, done))
        try:
            result = await done
        finally:
            self._admitted.pop(key, None)
        assert result is not None
        return result

    def _run_here(self, admitted: Admitted) -> StepResult:
        """A step that ends in its first cycle runs on this thread, still holding its arms (``admit``): the
        hand-off to the control thread and back cost more than the cycle itself. The loop checks the halt
        latch and the cancel token before the cycle; no feedback (the result follows at once)."""
        try:
            return self.core.run(admitted, paced=False)
        except Exception as exc:  # noqa: BLE001 - the goal must end, whatever happened
            return StepResult.failed(FailureKind.ERROR, f"{type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------- the control thread
    def _control_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            admitted, handle, done = job
            try:
                result = self.core.run(admitted, self._feedback_to(admitted, handle))
            except Exception as exc:  # noqa: BLE001 - the goal must end, whatever happened
                result = StepResult.failed(FailureKind.ERROR, f"{type(exc).__name__}: {exc}")
            # no status here: the result carries the world the step left, and building a status on this thread
            # held the GIL while the executor thread was sending that result (the 20 Hz tick publishes it)
            done.set_result(result)

    def _feedback_to(self, admitted: Admitted, handle: ServerGoalHandle[Any, Any, Any]) -> FeedbackFn:
        """Called every control cycle: honours a cancel request at once, publishes at ``feedback_hz``."""
        last_at = 0.0
        last_phase = ""

        def feedback(fb: Feedback) -> None:
            nonlocal last_at, last_phase
            if handle.is_cancel_requested:
                admitted.token.cancel("goal cancel requested")
            now = time.monotonic()
            if now - last_at >= self.feedback_period_s or fb.phase != last_phase or fb.progress >= 1.0:
                last_at, last_phase = now, fb.phase
                handle.publish_feedback(ExecuteSkill.Feedback(phase=fb.phase, progress=float(fb.progress),
                                                              telemetry_json=to_json(fb.telemetry)))

        return feedback

    def close(self) -> None:
        for a in self.core.active:
            a.token.cancel("skill server shutting down")
        self._estop_executor.shutdown(timeout_sec=1.0)
        self._estop_thread.join(2.0)
        self._estop_node.destroy_node()
        self._jobs.put(None)
        self._control.join(2.0)
        self.scene.close()
        self.audit.close()


def main(argv: Sequence[str] | None = None) -> int:
    return spin_node(SkillServerNode, args=list(argv) if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
