"""Half of a relay between two graphs that use the SAME ROS_DOMAIN_ID but cannot hear each other (two hosts, or
two network namespaces on one host: what two operating rooms that both keep the default ROS_DOMAIN_ID are).

It holds no key. One half runs on each graph; the test pipes the first's stdout into the second's stdin.

    netns_relay.py listen DOMAIN_ID
        prints every /medrobot/heartbeat it hears as one JSON line {"instance", "seq", "stamp_ms",
        "released_ms", "mac"}.
    netns_relay.py speak DOMAIN_ID
        publishes each such line read on stdin, unchanged, as a /medrobot/heartbeat; prints one JSON line per
        change of this graph's robot status: {"halted", "supervisor"}.

    netns_relay.py hear-goals DOMAIN_ID SKILL
        a second, silent server on /medrobot/execute_skill: prints each goal for SKILL the supervisor sends, with
        its capability, as one JSON line {"plan_id", "step_index", "skill", "args_json", "domain", "capability"}.
    netns_relay.py send-goals DOMAIN_ID
        sends each such line read on stdin to this graph's skill server, with the goal id its capability names;
        prints {"skill", "accepted", "success", "failure_kind", "message"} per goal.

All print {"ready": true} once their endpoints are up.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from medrobot_llm.backends.ros.common import TOPIC_HEARTBEAT, TOPIC_ROBOT_STATUS

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
FIELDS = ("instance", "seq", "stamp_ms", "released_ms", "mac")


def say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def join(domain_id: int, name: str) -> Node:
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node(name, context=ctx)
    ex = MultiThreadedExecutor(num_threads=4, context=ctx)
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    return node


def listen(domain_id: int) -> None:
    from medrobot_interfaces.msg import Heartbeat

    node = join(domain_id, "rogue_beat_ear")
    node.create_subscription(Heartbeat, TOPIC_HEARTBEAT,
                             lambda m: say({f: getattr(m, f) for f in FIELDS}), QOS)
    say({"ready": True})
    while True:
        time.sleep(1.0)


def speak(domain_id: int) -> None:
    from medrobot_interfaces.msg import Heartbeat
    from std_msgs.msg import String

    node = join(domain_id, "rogue_beat_mouth")
    pub = node.create_publisher(Heartbeat, TOPIC_HEARTBEAT, QOS)
    last: list[Any] = [None]

    def on_status(msg: Any) -> None:
        status = json.loads(msg.data)
        now = (status["halted"], status["supervisor"].get("alive"), status["supervisor"].get("instance"))
        if now != last[0]:
            last[0] = now
            say({"halted": status["halted"], "supervisor": status["supervisor"]})

    node.create_subscription(String, TOPIC_ROBOT_STATUS, on_status, QOS)
    say({"ready": True})
    for line in sys.stdin:
        obj = json.loads(line) if line.startswith("{") else {}
        if "mac" in obj:
            pub.publish(Heartbeat(**{f: obj[f] for f in FIELDS}))


GOAL_FIELDS = ("plan_id", "step_index", "skill", "args_json", "domain", "capability")


def hear_goals(domain_id: int, skill: str) -> None:
    from medrobot_interfaces.action import ExecuteSkill
    from rclpy.action import ActionServer, GoalResponse
    from rclpy.callback_groups import ReentrantCallbackGroup

    class SilentServer(ActionServer):  # type: ignore[misc]
        """Reads every goal request and answers nothing, so the supervisor goes on with the real server."""

        async def _execute_get_result_request(self, request_header_and_request: Any) -> None:
            return None

        async def _execute_cancel_request(self, request_header_and_request: Any) -> None:
            return None

    def on_goal(goal: Any) -> GoalResponse:
        if goal.skill == skill:
            say({f: getattr(goal, f) for f in GOAL_FIELDS})
        time.sleep(60.0)
        return GoalResponse.REJECT

    node = join(domain_id, "rogue_goal_ear")
    SilentServer(node, ExecuteSkill, "/medrobot/execute_skill", execute_callback=lambda _h: ExecuteSkill.Result(),
                 goal_callback=on_goal, callback_group=ReentrantCallbackGroup())
    say({"ready": True})
    while True:
        time.sleep(1.0)


def send_goals(domain_id: int) -> None:
    import uuid

    from medrobot_interfaces.action import ExecuteSkill
    from rclpy.action import ActionClient
    from unique_identifier_msgs.msg import UUID

    node = join(domain_id, "rogue_goal_mouth")
    client = ActionClient(node, ExecuteSkill, "/medrobot/execute_skill")
    if not client.wait_for_server(timeout_sec=20.0):
        say({"error": "no skill server"})
        return
    say({"ready": True})
    for line in sys.stdin:
        obj = json.loads(line) if line.startswith("{") else {}
        if "capability" not in obj:
            continue
        goal = ExecuteSkill.Goal(**{f: obj[f] for f in GOAL_FIELDS})
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
             "failure_kind": result.failure_kind if result else None, "message": result.message if result else None})


def main(argv: list[str]) -> None:
    modes = {"listen": listen, "speak": speak, "send-goals": send_goals}
    if argv[0] == "hear-goals":
        hear_goals(int(argv[1]), argv[2])
    else:
        modes[argv[0]](int(argv[1]))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
