"""An e-stop that lands between a step's release and the skill server looking at its goal, over real DDS.

The supervisor node and the sim skill server run in this process (one rclpy context, real Fast DDS on a
ROS_DOMAIN_ID of their own) so the test can put the stop exactly in that window, which a separate-process
graph hits only by chance: the stop is published on /medrobot/estop as the goal goes out, and the goal
leaves only once the skill server follows the supervisor's ESTOP. The skill server then refuses the goal
(its capability is genuine, but "the robot is halted"); that refusal is our own stop's doing, so the step
must end as halted and the supervisor stay ESTOP, never turn the latch it chose into a FAULT. Both nodes
hold the graph key of a keys folder of the test's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medrobot_llm.safety.events import SupervisorEvent
from tests._ros_helpers import require_ros

pytestmark = [pytest.mark.ros, pytest.mark.sim]


class InProcessGraph:
    def __init__(self, keys_dir: Path) -> None:
        import rclpy
        from rclpy.context import Context
        from medrobot_llm.backends.ros.common import PoolExecutor

        from medrobot_llm.backends.ros.skill_server import SkillServerNode
        from medrobot_llm.backends.ros.supervisor_node import SupervisorNode

        self.context = Context()
        rclpy.init(context=self.context)
        self.skill = SkillServerNode(context=self.context, domain="ultrasound", real_time_factor=0.0,
                                     keys_dir=str(keys_dir))
        # the test is about how the refusal is read, not how fast it comes: a loaded machine gets time
        self.sup_node = SupervisorNode(context=self.context, domain="ultrasound", cancel_grace_s=5.0,
                                       keys_dir=str(keys_dir))
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.sup_node.sup.subscribe(self._on_record)
        self.executor = PoolExecutor(num_threads=10, context=self.context)
        self.executor.add_node(self.skill)
        self.executor.add_node(self.sup_node)
        self.spin_error: BaseException | None = None
        self._thread = threading.Thread(target=self._spin, name="test-graph-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost with the thread
            self.spin_error = exc

    def _on_record(self, event: SupervisorEvent) -> None:
        with self.lock:
            self.records.append(event.record())

    def kinds(self, *kinds: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.records if r.get("kind") in kinds]

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(3.0)
        self.sup_node.close()
        self.skill.close()
        for node in self.executor.get_nodes():
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture()
def graph(tmp_path: Path) -> Iterator[InProcessGraph]:
    require_ros()
    from medrobot_llm.backends.ros.env import unique_domain_id
    from medrobot_llm.safety import keys

    keys.init_keys(tmp_path / "keys", ["tester"])  # the supervisor's keyring needs an operator

    claim = unique_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        g = InProcessGraph(tmp_path / "keys")
        try:
            yield g
        finally:
            g.close()
            claim.release()


def _until(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return bool(pred())


def test_a_goal_refused_because_of_our_own_estop_ends_halted_and_the_latch_stays_estop(
        graph: InProcessGraph) -> None:
    from std_msgs.msg import Bool

    from medrobot_llm.backends.ros.common import TOPIC_ESTOP, latched_qos
    from medrobot_llm.planning.rule.planner import RulePlanner

    sup, backend, core = graph.sup_node.sup, graph.sup_node.backend, graph.skill.core
    assert _until(lambda: backend.connected, 20.0), "the supervisor never heard the skill server"
    from rclpy.node import Node

    console = Node("medrobot_test_console", context=graph.context)
    graph.executor.add_node(console)
    estop = console.create_publisher(Bool, TOPIC_ESTOP, latched_qos(5))
    assert _until(lambda: estop.get_subscription_count() >= 2, 10.0)

    send = backend._client.send_goal_async
    waited: list[bool] = []

    def stop_as_the_goal_goes_out(goal: Any, **kw: Any) -> Any:
        estop.publish(Bool(data=True))
        waited.append(_until(lambda: sup.state.value == "ESTOP" and core.followed is not None
                             and core.followed.state == "ESTOP", 5.0))
        return send(goal, **kw)

    backend._client.send_goal_async = stop_as_the_goal_goes_out  # type: ignore[method-assign,assignment]
    plan = RulePlanner().plan("ultrasound", "scan the left kidney", None)
    # straight to the supervisor: how a plan arrives is not what this test is about
    assert sup.submit_plan(plan, source="test").accepted, sup.status()

    assert _until(lambda: graph.kinds("step_result") and graph.kinds("run_end"), 10.0), graph.records
    assert graph.spin_error is None, f"the graph's executor died: {graph.spin_error!r}"
    assert graph.spin_error is None, f"the graph's executor died: {graph.spin_error!r}"
    assert waited == [True], f"the skill server never followed the supervisor into ESTOP: {sup.state}, {core.followed}"
    [result] = graph.kinds("step_result")
    assert not result["success"] and result["failure"] == "halted", result
    assert "e-stop" in result["message"] and "the robot is halted" in result["message"], result
    time.sleep(0.5)  # a late fault would show up here
    assert sup.state.value == "ESTOP", sup.status()
    changes = [(r["from"], r["to"]) for r in graph.kinds("state")]
    assert ("ESTOP", "FAULT") not in changes and changes[-1] == ("EXECUTING", "ESTOP"), changes
    order = [r["kind"] for r in graph.kinds("step_result", "run_end")]
    assert order == ["step_result", "run_end"], order
    [end] = graph.kinds("run_end")
    assert end["outcome"] == "estop" and end["steps_done"] == 0, end
    assert core.refusals == 1 and not core.active


@pytest.mark.parametrize("history, latched", [((True, False), False), ((True,), True), ((False, True), True)])
def test_estop_history_from_before_the_supervisor_latches_only_if_still_pressed(
        history: tuple[bool, ...], latched: bool, tmp_path: Path) -> None:
    """A supervisor that joins late gets the topic's history: a press its sender already released is over."""
    require_ros()
    import rclpy
    from rclpy.context import Context
    from medrobot_llm.backends.ros.common import PoolExecutor
    from rclpy.node import Node
    from std_msgs.msg import Bool

    from medrobot_llm.backends.ros.common import TOPIC_ESTOP, latched_qos
    from medrobot_llm.backends.ros.env import unique_domain_id
    from medrobot_llm.backends.ros.supervisor_node import SupervisorNode
    from medrobot_llm.safety import keys

    claim = unique_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        context = Context()
        rclpy.init(context=context)
        executor = PoolExecutor(num_threads=6, context=context)
        thread = threading.Thread(target=executor.spin, daemon=True)
        node: SupervisorNode | None = None
        try:
            console = Node("medrobot_test_console", context=context)
            pub = console.create_publisher(Bool, TOPIC_ESTOP, latched_qos(5))
            for pressed in history:
                pub.publish(Bool(data=pressed))
            time.sleep(0.05)
            keys.init_keys(tmp_path / "keys", ["tester"])
            node = SupervisorNode(context=context, domain="ultrasound", keys_dir=str(tmp_path / "keys"))
            executor.add_node(console)
            executor.add_node(node)
            thread.start()
            assert _until(lambda: node.sup.state.value == "ESTOP", 1.5) is latched, node.sup.status()
            assert node.sup.state.value == ("ESTOP" if latched else "IDLE")
            if latched:
                assert "before the supervisor started" in node.sup.reason, node.sup.reason
        finally:
            if node is not None:
                node.close()
            executor.shutdown(timeout_sec=2.0)
            thread.join(3.0)
            for n in executor.get_nodes():
                n.destroy_node()
            rclpy.try_shutdown(context=context)
            claim.release()
