"""Half of a relay between two graphs that use the SAME ROS_DOMAIN_ID but cannot hear each other (two hosts, or
two network namespaces on one host: what two operating rooms that both keep the default ROS_DOMAIN_ID are).

It holds no key. One half runs on each graph; the test pipes the first's stdout into the second's stdin.

    netns_relay.py listen DOMAIN_ID
        prints every /medrobot/heartbeat it hears as one JSON line {"instance", "seq", "stamp_ms",
        "released_ms", "mac"}.
    netns_relay.py speak DOMAIN_ID
        publishes each such line read on stdin, unchanged, as a /medrobot/heartbeat; prints one JSON line per
        change of this graph's robot status: {"halted", "supervisor"}.

Both print {"ready": true} once their endpoints are up.
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


def main(argv: list[str]) -> None:
    (listen if argv[0] == "listen" else speak)(int(argv[1]))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
