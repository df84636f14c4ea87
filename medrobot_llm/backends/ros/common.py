"""The graph's names and QoS (architecture.md's ROS table is the contract), and a node runner.

Importing this module imports rclpy: only the node modules and the ROS tests do.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.action.client import ActionClient
from rclpy.callback_groups import CallbackGroup
from rclpy.clock import Clock
from rclpy.clock_type import ClockType
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.parameter import Parameter
from rclpy.timer import Timer
from rclpy.task import Future, Task
from unique_identifier_msgs.msg import UUID
from rclpy.context import Context
from rclpy.executors import (ConditionReachedException, Executor, ExternalShutdownException,
                             MultiThreadedExecutor, ShutdownException, SingleThreadedExecutor, TimeoutException)
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

__all__ = [
    "ACTION_EXECUTE",
    "GoalClient",
    "NodeRunner",
    "PoolExecutor",
    "RESULT_KEPT_S",
    "SERVICE_PLAN",
    "TOPIC_COMMAND",
    "TOPIC_CONFIRM",
    "TOPIC_ESTOP",
    "TOPIC_EVENTS",
    "TOPIC_HEARTBEAT",
    "TOPIC_RESET",
    "TOPIC_ROBOT_STATUS",
    "TOPIC_STATE",
    "latched_qos",
    "refuse_parameter_sets",
    "reliable_qos",
    "spin_node",
    "start_parameters",
    "steady_timer",
]

_LOG = logging.getLogger(__name__)

# the contract (architecture.md)
TOPIC_COMMAND = "/medrobot/command"
SERVICE_PLAN = "/medrobot/plan"
ACTION_EXECUTE = "/medrobot/execute_skill"
TOPIC_ESTOP = "/medrobot/estop"
TOPIC_CONFIRM = "/medrobot/confirm"
TOPIC_STATE = "/medrobot/state"
# added by the bridge (std_msgs/String holding JSON)
#: supervisor -> consoles: every audit record, step feedback and the reply to every command
TOPIC_EVENTS = "/medrobot/events"
#: skill server -> supervisor: liveness, halt latch, world state and telemetry, several times a second
TOPIC_ROBOT_STATUS = "/medrobot/robot_status"
#: consoles -> supervisor (a signed ``medrobot_interfaces/OperatorMessage`` of kind reset, reliable, volatile):
#: the operator's reset of a latched ESTOP or FAULT. A false on /medrobot/estop releases nothing (anyone may
#: publish it); only the supervisor's reset releases the robot, by a signed heartbeat. /medrobot/command
#: (command, cancel, stop) and /medrobot/confirm (confirm, deny) carry the same signed message type.
TOPIC_RESET = "/medrobot/reset"
#: supervisor -> skill servers (``medrobot_interfaces/Heartbeat``, reliable, volatile): its signed liveness and
#: releases; without a valid beat inside the window a skill server halts and refuses every goal
TOPIC_HEARTBEAT = "/medrobot/heartbeat"
#: how long (s) the skill server keeps a finished goal's result for a late request. The supervisor asks for it at
#: acceptance, before the goal ends. Every goal kept is also in each status message of the action (several per
#: goal): with rclpy's default of 10 s, some 200 of them, and decoding those took the supervisor's executor 4 ms
#: a message
RESULT_KEPT_S = 1


def latched_qos(depth: int = 1) -> QoSProfile:
    """Reliable + transient local: a late joiner gets the last value (e-stop latch, supervisor state)."""
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def any_sender_qos(depth: int = 10) -> QoSProfile:
    """Best effort + volatile, which every publisher's QoS is compatible with: anyone may stop the robot, and a
    stop sent with the tools' defaults (volatile) or best effort is never matched by a transient-local reader,
    so the e-stop is also read with this beside ``latched_qos`` (a message both deliver is a second, idempotent
    halt)."""
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Reliable + volatile: commands and confirmations are for whoever listens now, never replayed."""
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


#: why a node of this graph refuses a parameter set: any node on the domain may call its parameter services, keyless
#: (issue 15, fourth attack: ``use_sim_time`` set to true on the skill server stopped its watchdog's timer)
PARAMETERS_AT_START_ONLY = ("medrobot nodes take their parameters at start only (--ros-args, the parameters file, "
                            "medrobot bringup --set); restart the node to change one")


def _refuse(_parameters: list[Parameter[Any]]) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=PARAMETERS_AT_START_ONLY)


def refuse_parameter_sets(node: Node) -> None:
    """From now on every set of a parameter of ``node`` is refused, from any node, ``use_sim_time`` included.

    rclpy calls the callback added last first and stops at the first refusal, so this one runs before the time
    source's, which would otherwise have switched the node's clock already. Declaring after this is refused too."""
    node.add_on_set_parameters_callback(_refuse)


def start_parameters(node: Node, defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Declare ``defaults`` (name -> default, whose type is the parameter's) from the node's start arguments, then
    ``refuse_parameter_sets``.

    A float parameter takes an integer as that float: ``--set NODE.confirm_timeout_s=10`` (what bringup's help
    shows) reaches rcl as YAML, an integer, and rclpy's static typing killed the node at start. Any other type
    mismatch ends the node with a sentence naming the parameter, not a traceback."""
    who = f"medrobot {node.get_name()}"
    out: dict[str, Any] = {}
    for name, default in defaults.items():
        value = overrides.get(name, default)
        if isinstance(default, float):
            got = node.declare_parameter(name, value, ParameterDescriptor(dynamic_typing=True)).value
            if isinstance(got, bool) or not isinstance(got, (int, float)):
                raise SystemExit(f"{who}: parameter {name} must be a number, not {got!r}")
            out[name] = float(got)
            continue
        try:
            out[name] = node.declare_parameter(name, value).value
        except InvalidParameterTypeException as exc:
            raise SystemExit(f"{who}: parameter {name} must be of type {type(default).__name__} ({exc})") from None
    refuse_parameter_sets(node)
    return out


def steady_timer(node: Node, period_s: float, callback: Callable[[], Any],
                 callback_group: CallbackGroup | None = None) -> Timer:
    """A timer on the steady clock: the node's own clock follows ROS time once ``use_sim_time`` is on, and then
    stands still without a ``/clock``, and with it every watchdog, heartbeat and state tick."""
    return node.create_timer(period_s, callback, callback_group=callback_group,
                             clock=Clock(clock_type=ClockType.STEADY_TIME))


class PoolExecutor(MultiThreadedExecutor):
    """rclpy's ``MultiThreadedExecutor`` that hands each ready task to its thread pool once.

    rclpy 9.1.2 (the Kilted wheels) yields every task that has not started yet again on each pass of its
    wait loop and submits it to the pool again. When the pool's threads are slow to start (two busy
    cores, the GIL held by a physics thread), the queue fills with copies of the same few tasks, the loop
    that fills it keeps the GIL, and nothing runs: a 20 Hz timer and its subscription were seen waiting
    1.5 s behind 2300 queued copies, long enough for the supervisor to fault on a lost heartbeat. Here a
    task waiting for a pool thread is not submitted again; once it has run (or suspended on a future)
    it may be.
    """

    def __init__(self, num_threads: int | None = None, *, context: Context | None = None) -> None:
        super().__init__(num_threads, context=context)
        self._waiting: set[Task[Any]] = set()
        self._failed: list[BaseException] = []
        self._waiting_lock = threading.Lock()

    def _spin_once_impl(self, timeout_sec: Any = None, wait_condition: Callable[[], bool] = lambda: False) -> None:
        with self._waiting_lock:
            if self._failed:
                raise self._failed.pop(0)  # as rclpy does: a callback's exception ends the spin, loudly
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        with self._waiting_lock:
            if handler in self._waiting:
                return
            self._waiting.add(handler)
        self._executor.submit(self._run, handler)

    def _run(self, handler: Task[Any]) -> None:
        with self._waiting_lock:
            self._waiting.discard(handler)
        handler()
        exc = handler.exception() if handler.done() else None
        if exc is not None:
            with self._waiting_lock:
                self._failed.append(exc)
            self.wake()


def spin_node(make: Callable[[], Any], *, threads: int | None = None, args: list[str] | None = None) -> int:
    """``main`` of a node process: init, build, spin until Ctrl-C/SIGTERM, then close the node cleanly.

    One executor thread unless ``threads`` is given: a node whose callbacks never block answers fastest on
    one thread, since a pool's threads queue for the GIL in front of every message. Only a node whose
    callbacks may block for long (the planner, waiting for an LLM) takes a pool.
    """
    rclpy.init(args=args)
    node = None
    executor: Executor = SingleThreadedExecutor() if threads is None else PoolExecutor(num_threads=threads)
    try:
        node = make()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown()
    return 0


class NodeRunner:
    """One node on its own context and executor thread, for in-process clients (consoles, tests, benchmarks)."""

    def __init__(self, name: str, *, threads: int = 3) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        refuse_parameter_sets(self.node)
        self.executor = PoolExecutor(num_threads=threads, context=self.context)
        self.executor.add_node(self.node)
        self._closing = False
        self._thread = threading.Thread(target=self._spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok() and not self._closing:
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except (ExternalShutdownException, KeyboardInterrupt):
                return
            except Exception:  # noqa: BLE001
                # an entity destroyed from another thread while the executor waited on it (rclpy raises
                # RCLError/InvalidHandle here): the next wait no longer sees it, so keep spinning
                if self._closing:
                    return
                _LOG.debug("spin of %s: an entity went away while waited on", self.node.get_name(), exc_info=True)

    def close(self) -> None:
        self._closing = True
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self._thread.join(2.0)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                rclpy.shutdown(context=self.context)


class GoalClient(ActionClient):  # type: ignore[type-arg]
    """An ``ActionClient`` whose ``send_goal_async`` may be called from any thread.

    rclpy 9.1.2 (the Kilted wheels) registers the goal's future twice, the second time outside the
    client's lock: a response that comes in between completes a future nobody holds, or the caller
    gets ``ValueError: list.remove(x): x not in list``, or waits for ever. Here the future is registered
    once, under the lock, together with the feedback callback, before the request leaves.
    """

    def send_goal_async(self, goal: Any, feedback_callback: Callable[[Any], None] | None = None,
                        goal_uuid: UUID | None = None) -> Future[Any]:
        if not isinstance(goal, self._action_type.Goal):
            raise TypeError(f"expected a {self._action_type.Goal.__name__} goal, got {type(goal).__name__}")
        request = self._action_type.Impl.SendGoalService.Request()
        request.goal_id = UUID(uuid=list(uuid.uuid4().bytes)) if goal_uuid is None else goal_uuid
        request.goal = goal
        future: Future[Any] = Future()
        with self._lock:
            if feedback_callback is not None:
                self._feedback_callbacks[bytes(request.goal_id.uuid)] = feedback_callback
            sequence_number = self._client_handle.send_goal_request(request)
            if sequence_number in self._pending_goal_requests:
                raise RuntimeError(f"sequence {sequence_number} conflicts with a pending goal request")
            self._pending_goal_requests[sequence_number] = future
            self._goal_sequence_number_to_goal_id[sequence_number] = request.goal_id
            future.add_done_callback(self._remove_pending_goal_request)
            self.add_future(future)
        return future
