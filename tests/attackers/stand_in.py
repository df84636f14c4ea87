"""What a keyless relay adds on a network with no graph of its own, so that a console there takes the relayed graph
for its own: ``RemoteSupervisor.wait_ready`` counts subscribers on the operator topics (the relay's own) and at least
two on /medrobot/estop, which these two nodes are.

    stand_in.py DOMAIN_ID   prints {"ready": true} once up, then runs until killed.
"""

from __future__ import annotations

import sys
import time

from tests.attackers.relay import join, say


def main(domain_id: int) -> None:
    from std_msgs.msg import Bool

    from medrobot_llm.backends.ros.common import TOPIC_ESTOP, reliable_qos

    for name in ("medrobot_skill_server_estop", "medrobot_supervisor"):
        join(domain_id, name).create_subscription(Bool, TOPIC_ESTOP, lambda _m: None, reliable_qos(10))
    say({"ready": True})
    while True:
        time.sleep(1.0)


if __name__ == "__main__":
    main(int(sys.argv[1]))
