"""What the keyless relays between two graphs share (``cross_graph.py``: two domains on one machine;
``netns_relay.py``: one domain id on two networks): joining a domain, a silent second server on the skill action,
sending a goal heard on one graph to the other's skill server, and reporting the robot's status as it changes.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import rclpy
from rclpy.action import ActionServer
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

#: heartbeats and the robot's status, as their publishers send them
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def join(domain_id: int, name: str, threads: int = 4) -> Node:
    """A node on ``domain_id``, spun on a thread of its own."""
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node(name, context=ctx)
    ex = MultiThreadedExecutor(num_threads=threads, context=ctx)
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    return node


class SilentServer(ActionServer):  # type: ignore[misc]
    """A second server on the action: it reads every goal request and never answers anything, so the supervisor
    goes on with the real skill server's answers (its results and cancels are dropped here, not refused)."""

    async def _execute_get_result_request(self, request_header_and_request: Any) -> None:
        return None

    async def _execute_cancel_request(self, request_header_and_request: Any) -> None:
        return None


def send_relayed(client: Any, goal: Any) -> dict[str, Any]:
    """Send a goal heard on the other graph, with the goal id its capability names; what became of it."""
    from unique_identifier_msgs.msg import UUID

    goal_id = json.loads(goal.capability).get("goal_id", "")
    kwargs = {"goal_uuid": UUID(uuid=list(uuid.UUID(goal_id).bytes))} if goal_id else {}
    done = threading.Event()
    sent = client.send_goal_async(goal, **kwargs)
    sent.add_done_callback(lambda _f: done.set())
    handle = sent.result() if done.wait(5.0) else None
    if handle is None or not handle.accepted:
        return {"skill": goal.skill, "accepted": False}
    done.clear()
    res = handle.get_result_async()
    res.add_done_callback(lambda _f: done.set())
    result = res.result().result if done.wait(10.0) and res.result() is not None else None
    return {"skill": goal.skill, "accepted": True, "success": bool(result and result.success),
            "failure_kind": result.failure_kind if result else None, "message": result.message if result else None,
            "world": json.loads(result.world_json) if result and result.world_json else None}


def report_status_changes(node: Node) -> None:
    """Print {"halted", "supervisor"} each time the robot's status on ``node``'s graph changes (halted, supervisor
    alive, supervisor instance)."""
    from std_msgs.msg import String

    from medrobot_llm.backends.ros.common import TOPIC_ROBOT_STATUS

    last: list[Any] = [None]

    def on_status(msg: Any) -> None:
        status = json.loads(msg.data)
        now = (status["halted"], status["supervisor"].get("alive"), status["supervisor"].get("instance"))
        if now != last[0]:
            last[0] = now
            say({"halted": status["halted"], "supervisor": status["supervisor"]})

    node.create_subscription(String, TOPIC_ROBOT_STATUS, on_status, QOS)
