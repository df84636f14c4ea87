"""A keyless node that presses the e-stop with a QoS of its choosing: true on /medrobot/estop.

    estop_qos.py DOMAIN_ID RELIABILITY DURABILITY

RELIABILITY is reliable or best_effort, DURABILITY volatile or transient_local. Prints {"pressed": true}.
"""

from __future__ import annotations

import json
import os
import sys
import time

import rclpy
from rclpy.context import Context
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool


def main(argv: list[str]) -> None:
    domain_id = int(argv[0])
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE if argv[1] == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL if argv[2] == "transient_local"
                     else DurabilityPolicy.VOLATILE)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node("rogue_press", context=ctx)
    pub = node.create_publisher(Bool, "/medrobot/estop", qos)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and pub.get_subscription_count() < 2:
        time.sleep(0.1)
    time.sleep(1.0)  # when nothing matches, wait on: a late match still gets the press
    for _ in range(5):
        pub.publish(Bool(data=True))
        time.sleep(0.05)
    print(json.dumps({"pressed": True, "subscribers": pub.get_subscription_count()}), flush=True)
    time.sleep(0.5)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
