"""The recorder node: the graph's topics into one MCAP file (``medrobot bringup --mcap FILE``).

Thin on purpose: it subscribes to the graph's topics raw (the CDR bytes as they travelled, with DDS's send and
receive times) and hands them to ``recording.live.GraphRecording``, which writes them with their definitions and
reads the supervisor's records into the topics ``run --mcap`` writes. What it hears: the supervisor's states, the
signed operator messages (command, confirm, reset: who, and the question's nonce they answer), the e-stop, the
supervisor's heartbeat, every record and reply on the events topic, the robot's status (telemetry) and the
action's goal statuses. Goals and results travel on services, which no subscriber hears: they are in the records.
The action's feedback topic is left out: mcap-ros2-support (0.6) cannot parse a type named ``*_FeedbackMessage``,
and the same feedback reaches the events topic.

Every ``flush_s`` it ends the MCAP chunk and hands it to the OS, so a SIGKILL loses at most that much (the file
then has no summary: a streaming reader reads it); SIGINT and SIGTERM close the file with its summary and index.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from action_msgs.msg import GoalStatusArray
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.subscription import MessageInfo
from std_msgs.msg import Bool, String

from medrobot_interfaces.msg import Heartbeat, OperatorMessage, SupervisorState

from medrobot_llm.backends.ros.common import (ACTION_EXECUTE, TOPIC_COMMAND, TOPIC_CONFIRM, TOPIC_ESTOP, TOPIC_EVENTS,
                                              TOPIC_HEARTBEAT, TOPIC_RESET, TOPIC_ROBOT_STATUS, TOPIC_STATE,
                                              latched_qos, reliable_qos, spin_node, start_parameters,
                                              steady_timer)
from medrobot_llm.backends.ros.nodes import RECORDER
from medrobot_llm.recording.live import GraphRecording, ros_type
from medrobot_llm.recording.messages import Topic

__all__ = ["RecorderNode", "TOPIC_ACTION_STATUS", "main"]

#: the action's goal statuses (accepted, executing, succeeded, aborted ...), an ordinary topic of every action
TOPIC_ACTION_STATUS = f"{ACTION_EXECUTE}/_action/status"


def _subscriptions() -> list[tuple[str, Any, QoSProfile]]:
    """(topic, message class, QoS): the QoS each topic's publisher uses, so the recorder hears what others hear
    (a latched topic's last message included)."""
    return [(TOPIC_STATE, SupervisorState, latched_qos(1)),
            (TOPIC_COMMAND, OperatorMessage, reliable_qos(10)),
            (TOPIC_CONFIRM, OperatorMessage, reliable_qos(10)),
            (TOPIC_RESET, OperatorMessage, reliable_qos(10)),
            (TOPIC_ESTOP, Bool, latched_qos(5)),
            (TOPIC_HEARTBEAT, Heartbeat, reliable_qos(10)),
            (TOPIC_EVENTS, String, reliable_qos(200)),
            (TOPIC_ROBOT_STATUS, String, reliable_qos(5)),
            (TOPIC_ACTION_STATUS, GoalStatusArray, latched_qos(1))]


class RecorderNode(Node):
    def __init__(self, *, context: Context | None = None, **overrides: Any) -> None:
        super().__init__(RECORDER.name, context=context)
        defaults: dict[str, Any] = {"domain": "", "mcap": "", "flush_s": 1.0}
        p = start_parameters(self, defaults, overrides)
        if not p["mcap"]:
            raise SystemExit("medrobot recorder: the 'mcap' parameter (the file to write) is required")
        if not float(p["flush_s"]) > 0:
            raise SystemExit("medrobot recorder: flush_s must be > 0")
        try:
            self.recording = GraphRecording(Path(p["mcap"]), domain=str(p["domain"]), events=TOPIC_EVENTS)
        except OSError as exc:
            raise SystemExit(f"medrobot recorder: cannot write {p['mcap']}: {exc.strerror or exc}") from None
        for name, cls, qos in _subscriptions():
            topic = Topic(name, ros_type(cls.__module__, cls.__name__))
            self.create_subscription(cls, name, functools.partial(self._heard, topic), qos, raw=True)
        steady_timer(self, float(p["flush_s"]), self.recording.flush)
        self.recording.flush()  # the file's header on disk: `medrobot bringup` starts the graph once it is there
        self.get_logger().info(f"recording {len(_subscriptions())} topics of the {p['domain'] or 'graph'} to "
                               f"{p['mcap']}")

    def _heard(self, topic: Topic, data: bytes, info: MessageInfo) -> None:
        received = int(info.get("received_timestamp") or 0) or time.time_ns()
        self.recording.heard(topic, data, t_ns=received, sent_ns=int(info.get("source_timestamp") or 0))

    def close(self) -> None:
        self.recording.close()
        summary = self.recording.summary
        missing = f"; pictures named but not found here: {', '.join(summary.missing)}" if summary.missing else ""
        # not the node's logger: after a SIGINT its context is shut down and rosout refuses the line
        print(f"medrobot recorder: closed {summary.path}: {sum(summary.messages.values())} message(s) on "
              f"{len(summary.messages)} topic(s){missing}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    return spin_node(RecorderNode, args=list(argv) if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
