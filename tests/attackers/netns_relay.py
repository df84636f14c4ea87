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
        prints {"skill", "accepted", "success", "failure_kind", "message", "world"} per goal.

All print {"ready": true} once their endpoints are up.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from medrobot_llm.backends.ros.common import ACTION_EXECUTE, TOPIC_HEARTBEAT
from tests.attackers.relay import QOS, SilentServer, join, report_status_changes, say, send_relayed

FIELDS = ("instance", "seq", "stamp_ms", "released_ms", "mac")


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

    node = join(domain_id, "rogue_beat_mouth")
    pub = node.create_publisher(Heartbeat, TOPIC_HEARTBEAT, QOS)
    report_status_changes(node)
    say({"ready": True})
    for line in sys.stdin:
        obj = json.loads(line) if line.startswith("{") else {}
        if "mac" in obj:
            pub.publish(Heartbeat(**{f: obj[f] for f in FIELDS}))


GOAL_FIELDS = ("plan_id", "step_index", "skill", "args_json", "domain", "capability")


def hear_goals(domain_id: int, skill: str) -> None:
    from medrobot_interfaces.action import ExecuteSkill
    from rclpy.action import GoalResponse
    from rclpy.callback_groups import ReentrantCallbackGroup

    def on_goal(goal: Any) -> GoalResponse:
        if goal.skill == skill:
            say({f: getattr(goal, f) for f in GOAL_FIELDS})
        time.sleep(60.0)
        return GoalResponse.REJECT

    node = join(domain_id, "rogue_goal_ear")
    SilentServer(node, ExecuteSkill, ACTION_EXECUTE, execute_callback=lambda _h: ExecuteSkill.Result(),
                 goal_callback=on_goal, callback_group=ReentrantCallbackGroup())
    say({"ready": True})
    while True:
        time.sleep(1.0)


def send_goals(domain_id: int) -> None:
    from medrobot_interfaces.action import ExecuteSkill
    from rclpy.action import ActionClient

    node = join(domain_id, "rogue_goal_mouth")
    client = ActionClient(node, ExecuteSkill, ACTION_EXECUTE)
    if not client.wait_for_server(timeout_sec=20.0):
        say({"error": "no skill server"})
        return
    say({"ready": True})
    for line in sys.stdin:
        obj = json.loads(line) if line.startswith("{") else {}
        if "capability" in obj:
            say(send_relayed(client, ExecuteSkill.Goal(**{f: obj[f] for f in GOAL_FIELDS})))


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
