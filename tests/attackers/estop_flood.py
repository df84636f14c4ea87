"""Keyless nodes on /medrobot/estop: one that floods ``false`` (which releases nothing, the docs say) and one that
presses once, the way a stop-only client does.

    estop_flood.py flood DOMAIN_ID SECONDS   publishes false as fast as it can (reliable, transient local, depth 1)
                                             for SECONDS; prints {"ready": true} first, then {"published": N}
    estop_flood.py press DOMAIN_ID HOLD_S    one true (reliable, transient local, depth 1) once every e-stop
                                             subscription matched it, then stays HOLD_S seconds so that a reliable
                                             resend can still happen; prints {"pressed": true, "mono": T}
"""

from __future__ import annotations

import os
import sys
import time

import rclpy
from rclpy.context import Context
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

from medrobot_llm.backends.ros.common import TOPIC_ESTOP
from tests.attackers.relay import say

QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: the supervisor's and the skill server's two e-stop subscriptions each (README, ROS 2 section)
SUBSCRIPTIONS = 4


def _publisher(domain_id: int, name: str) -> tuple[object, object]:
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node(name, context=ctx)
    pub = node.create_publisher(Bool, TOPIC_ESTOP, QOS)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and pub.get_subscription_count() < SUBSCRIPTIONS:
        time.sleep(0.05)
    return node, pub


def flood(domain_id: int, seconds: float) -> None:
    _node, pub = _publisher(domain_id, "rogue_false_flood")
    time.sleep(1.0)
    say({"ready": True})
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        pub.publish(Bool(data=False))  # type: ignore[attr-defined]
        n += 1
    say({"published": n})
    os._exit(0)


def press(domain_id: int, hold_s: float) -> None:
    _node, pub = _publisher(domain_id, "stop_only_client")
    time.sleep(1.0)
    pub.publish(Bool(data=True))  # type: ignore[attr-defined]
    say({"pressed": True, "mono": time.monotonic(), "subscriptions": pub.get_subscription_count()})  # type: ignore[attr-defined]
    time.sleep(hold_s)
    os._exit(0)


if __name__ == "__main__":
    {"flood": flood, "press": press}[sys.argv[1]](int(sys.argv[2]), float(sys.argv[3]))
