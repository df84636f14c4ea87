"""A bare skill server over real DDS, driven by a test client that holds the graph key and acts as the supervisor:
it signs heartbeats and mints capabilities. What the ROS node adds to ``safety.gate`` is checked here: the goal's
capability and id reach the gate, every refusal reaches the node's audit log file, and the heartbeat's loss
refuses goals. (The gate's rules themselves, without ROS: tests/test_ros_gate.py.)"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._ros_helpers import require_ros

pytestmark = [pytest.mark.ros, pytest.mark.sim]

MOVE = {"organ": "liver", "side": "right"}


def _until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.005)
    return pred()


@dataclass
class Bench:
    server: Any
    client: Any
    minter: Any
    audit_path: Path
    ExecuteSkill: Any

    def send(self, *, step: int = 0, skill: str = "move_to_window", args: dict[str, Any] | None = None,
             capability: str | Callable[[str], str] = "") -> Any:
        """The result of one goal; ``capability`` may be made from the goal's id (hex), known before sending."""
        from unique_identifier_msgs.msg import UUID

        goal_id = uuid.uuid4()
        goal = self.ExecuteSkill.Goal(plan_id="s:1", step_index=step, skill=skill,
                                      args_json=json.dumps(MOVE if args is None else args), domain="ultrasound",
                                      capability=capability(goal_id.hex) if callable(capability) else capability)
        done = threading.Event()
        fut = self.client.send_goal_async(goal, goal_uuid=UUID(uuid=list(goal_id.bytes)))
        fut.add_done_callback(lambda _f: done.set())
        assert done.wait(10), "no answer to the goal request"
        handle = fut.result()
        assert handle.accepted
        done.clear()
        res = handle.get_result_async()
        res.add_done_callback(lambda _f: done.set())
        assert done.wait(10), "no result for the goal"
        return res.result().result

    def minted(self, *, step: int = 0, skill: str = "move_to_window") -> Callable[[str], str]:
        def mint(goal_id: str) -> str:
            cap = self.minter.mint(plan_id="s:1", step_index=step, skill=skill, args=MOVE, domain="ultrasound",
                                   goal_id=goal_id)
            return str(cap.to_wire())

        return mint

    def audited(self) -> list[dict[str, Any]]:
        from medrobot_llm.safety.audit import read_log

        return [r for r in read_log(self.audit_path).records if r["kind"] == "goal_refused"]


@pytest.fixture()
def bench(tmp_path: Path) -> Iterator[Bench]:
    require_ros()
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from medrobot_interfaces.action import ExecuteSkill
    from medrobot_interfaces.msg import Heartbeat as HeartbeatMsg

    from medrobot_llm.backends.ros.common import ACTION_EXECUTE, TOPIC_HEARTBEAT, GoalClient, reliable_qos
    from medrobot_llm.backends.ros.env import unique_domain_id
    from medrobot_llm.backends.ros.signed import heartbeat_msg
    from medrobot_llm.backends.ros.skill_server import SkillServerNode
    from medrobot_llm.safety import keys
    from medrobot_llm.safety.capability import CapabilityMinter
    from medrobot_llm.safety.heartbeat import HeartbeatSigner

    keys.init_keys(tmp_path / "keys")
    secret = keys.load_graph_secret(tmp_path / "keys")
    audit_path = tmp_path / "skill_server.jsonl"
    claim = unique_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        context = Context()
        rclpy.init(context=context)
        server = SkillServerNode(context=context, domain="ultrasound", real_time_factor=0.0,
                                 keys_dir=str(tmp_path / "keys"), audit_log=str(audit_path))
        signer = HeartbeatSigner(secret, graph=server.graph)  # the supervisor of the server's own graph
        supervisor = Node("medrobot_test_supervisor", context=context)
        beats = supervisor.create_publisher(HeartbeatMsg, TOPIC_HEARTBEAT, reliable_qos(10))
        supervisor.create_timer(0.1, lambda: beats.publish(heartbeat_msg(signer.beat())))
        client = GoalClient(supervisor, ExecuteSkill, ACTION_EXECUTE)
        executors = [SingleThreadedExecutor(context=context) for _ in range(2)]
        executors[0].add_node(server)
        executors[1].add_node(supervisor)
        threads = [threading.Thread(target=e.spin, daemon=True) for e in executors]
        for t in threads:
            t.start()
        try:
            assert client.wait_for_server(timeout_sec=10.0), "no skill server"
            assert _until(lambda: not server.core.watchdog.check().halted), "the heartbeat never arrived"
            yield Bench(server, client, CapabilityMinter(secret, graph=server.graph), audit_path, ExecuteSkill)
        finally:
            for e in executors:
                e.shutdown(timeout_sec=1.0)
            for t in threads:
                t.join(2.0)
            client.destroy()
            supervisor.destroy_node()
            server.close()
            server.destroy_node()
            rclpy.try_shutdown(context=context)
            claim.release()


def test_only_a_goal_with_its_own_capability_runs_and_every_refusal_is_in_the_audit_file(bench: Bench) -> None:
    result = bench.send()
    assert not result.success and result.failure_kind == "invalid"
    assert result.message.startswith("refused") and "carries no capability" in result.message, result.message
    spent: list[str] = []

    def keep(goal_id: str) -> str:
        spent.append(bench.minted()(goal_id))
        return spent[-1]

    result = bench.send(capability=keep)
    assert result.success, result.message
    result = bench.send(capability=spent[0])  # the same capability on another goal: bound to the first's id
    assert not result.success and "minted for another goal_id" in result.message, result.message
    result = bench.send(step=1, capability=bench.minted(step=0))
    assert not result.success and "minted for another step_index" in result.message, result.message
    assert [r["code"] for r in bench.audited()] == ["no_capability", "capability_mismatch", "capability_mismatch"]
    assert bench.server.core.status()["refusals"] == 3


def test_without_the_supervisors_heartbeat_even_a_genuine_goal_is_refused(bench: Bench) -> None:
    watchdog = bench.server.core.watchdog
    window = watchdog.window_s
    watchdog.clock = lambda: time.time() + window + 0.5  # the last beat is now older than the window
    result = bench.send(capability=bench.minted())
    assert not result.success and result.failure_kind == "halted", result.message
    assert "no_heartbeat" not in result.message and "heartbeat" in result.message, result.message
    assert [r["code"] for r in bench.audited()] == ["no_heartbeat"]
    assert _until(lambda: bench.server.core.status()["supervisor"]["alive"] is False)
