"""Half of a keyless relay of one topic between two graphs that cannot hear each other: serialized messages as hex.

    pipe.py out DOMAIN_ID TYPE TOPIC   prints each message heard on TOPIC as one line {"hex": ...}
    pipe.py in DOMAIN_ID TYPE TOPIC    publishes each such line read on stdin on TOPIC

TYPE is state (SupervisorState, reliable transient local), operator (OperatorMessage, reliable volatile) or
string (std_msgs/String, reliable volatile: /medrobot/events).
Both print {"ready": true} once up.
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
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message, serialize_message


def main(argv: list[str]) -> None:
    from medrobot_interfaces.msg import OperatorMessage, SupervisorState
    from std_msgs.msg import String

    from medrobot_llm.backends.ros.common import latched_qos, reliable_qos

    mode, domain_id, kind, topic = argv[0], int(argv[1]), argv[2], argv[3]
    msg_type: Any = {"state": SupervisorState, "operator": OperatorMessage, "string": String}[kind]
    qos = latched_qos(1) if kind == "state" else reliable_qos(200)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node(f"rogue_pipe_{mode}", context=ctx)
    if mode == "out":
        node.create_subscription(msg_type, topic, lambda m: print(json.dumps(
            {"hex": serialize_message(m).hex()}), flush=True), qos)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        threading.Thread(target=ex.spin, daemon=True).start()
        print(json.dumps({"ready": True}), flush=True)
        while True:
            time.sleep(1.0)
    pub = node.create_publisher(msg_type, topic, qos)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        obj = json.loads(line) if line.startswith("{") else {}
        if "hex" in obj:
            pub.publish(deserialize_message(bytes.fromhex(obj["hex"]), msg_type))
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
