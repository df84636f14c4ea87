"""The bringup graph's recording, without ROS: what a recorder node hears, into one MCAP file.

Each message goes in as it travelled (its CDR bytes) on its own topic with its type's definition, the way rosbag2
records: nothing is decoded and encoded again, so the file holds what the nodes said, signatures included. The
supervisor's records on the events topic are in addition decoded and go through ``McapRecorder`` as a run's
(``run --mcap``) or a log's (``log export --mcap``) do: the same ``/medrobot/log/*`` topics, the confirmation with
who answered which question, telemetry in ROS types and the pictures a step saved, so a live recording reads like
an exported one. The node (``backends/ros/recorder_node.py``) only subscribes and hands the bytes here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcap_ros2.decoder import DecoderFactory

from medrobot_llm.recording.export import ExportSummary, McapRecorder
from medrobot_llm.recording.messages import STRING, Topic

__all__ = ["GraphRecording", "NOT_RECORDS", "ros_type"]

#: kinds on the events topic that are no supervisor record: the node's answer to each operator message is kept
#: on the events topic itself, never among ``/medrobot/log/records``
NOT_RECORDS = frozenset({"reply"})


def ros_type(module: str, name: str) -> str:
    """A generated message class's ROS 2 type name: ``std_msgs.msg._string`` and ``String`` are
    ``std_msgs/msg/String``, the name a schema and a viewer use."""
    package, kind = module.split(".")[:2]
    return f"{package}/{kind}/{name}"


class GraphRecording:
    """One MCAP file of one graph; ``events`` is the topic whose ``std_msgs/String`` JSON holds the records."""

    def __init__(self, output: str | Path, *, domain: str, events: str) -> None:
        self.mcap = McapRecorder(output, domain=domain)
        self._events = events
        self._decode: Callable[[bytes], Any] | None = None

    @property
    def summary(self) -> ExportSummary:
        return self.mcap.summary

    def heard(self, topic: Topic, data: bytes, *, t_ns: int, sent_ns: int) -> None:
        """One message off the wire, heard at ``t_ns`` and sent at ``sent_ns`` (0 when DDS did not say)."""
        self.mcap.write_cdr(topic, data, t_ns, sent_ns or t_ns)
        if topic.name == self._events and topic.datatype == STRING:
            self._record(data, sent_ns or t_ns)

    def _record(self, data: bytes, t_ns: int) -> None:
        """A supervisor record, at the time the supervisor sent it (records on the wire carry no wall time)."""
        if self._decode is None:
            self._decode = DecoderFactory().decoder_for("cdr", self.mcap.schema(STRING))
        if self._decode is None:
            raise RuntimeError("mcap-ros2-support cannot decode std_msgs/msg/String")
        try:
            record = json.loads(self._decode(data).data)
        except ValueError:
            return  # not JSON: kept as it came on the events topic, and nothing more
        if isinstance(record, dict) and record.get("kind") not in NOT_RECORDS:
            self.mcap.add_record({**record, "t_wall": t_ns / 1e9})

    def flush(self) -> None:
        self.mcap.flush()

    def close(self) -> None:
        self.mcap.close()
