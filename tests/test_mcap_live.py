"""The bringup graph's recording without ROS (``recording.live``): messages as they travel, the supervisor's records
read from the events topic, and what a recorder killed with SIGKILL leaves behind."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader

from medrobot_llm.recording.live import GraphRecording, ros_type
from medrobot_llm.recording.messages import STRING, Topic
from medrobot_llm.safety.machine import SupervisorState
from tests.test_mcap import mcap_decoder, mcap_reader, read

EVENTS = Topic("/medrobot/events", STRING)
T0 = 1_800_000_000_000_000_000
QUESTION = "Confirm exposure 1 of 1: take_shot"


def cdr_string(text: str) -> bytes:
    """A ``std_msgs/String`` as it travels: the CDR header (little endian), the length with its NUL, the bytes."""
    data = text.encode("utf-8") + b"\0"
    return b"\x00\x01\x00\x00" + struct.pack("<I", len(data)) + data


def heard_so_far(path: Path) -> list[tuple[str, Any]]:
    """(topic, message) of an MCAP file still being written, or left by a killed writer: a streaming read, to the
    end of the last chunk the writer flushed (the file has no summary yet, so a seeking reader cannot open it)."""
    out: list[tuple[str, Any]] = []
    with path.open("rb") as f:
        reader = NonSeekingReader(f, decoder_factories=[mcap_decoder.DecoderFactory()])
        try:
            for _, channel, _, decoded in reader.iter_decoded_messages(log_time_order=False):
                out.append((channel.topic, decoded))
        except McapError:
            pass  # the end of what was flushed: a chunk half written, or no footer
    return out


def _state(seq: int, to: SupervisorState, reason: str) -> dict[str, Any]:
    return {"seq": seq, "kind": "state", "from": "x", "to": to.value, "trigger": "t", "reason": reason}


RECORDS: list[dict[str, Any]] = [
    _state(2, SupervisorState.EXECUTING, "plan validated"),
    {"seq": 3, "kind": "step_sent", "run": 1, "step": 0, "skill": "move_to_view", "args": {}},
    _state(4, SupervisorState.AWAITING_CONFIRMATION, "step 2 needs confirmation"),
    {"kind": "feedback", "run": 1, "step": 0, "phase": "p", "progress": 0.5, "telemetry": {}},
    {"seq": 5, "kind": "question", "step_index": 1, "skill": "take_shot", "hazard": "radiation", "text": QUESTION},
    {"kind": "reply", "op": "command", "accepted": True, "state": "EXECUTING", "message": "ok", "plan": None,
     "question": None},
    {"seq": 6, "kind": "command", "op": "confirm", "source": "operator:alice", "state": "AWAITING_CONFIRMATION",
     "n_states": 3},
    {"seq": 7, "kind": "confirmation", "run": 1, "step": 1, "accepted": True, "given": True},
    _state(8, SupervisorState.EXECUTING, "step 2 confirmed"),
]


def test_the_events_topic_is_kept_as_it_travelled_and_read_into_the_run_topics(tmp_path: Path) -> None:
    path = tmp_path / "graph.mcap"
    recording = GraphRecording(path, domain="xray", events=EVENTS.name)
    for i, record in enumerate(RECORDS):
        recording.heard(EVENTS, cdr_string(json.dumps(record)), t_ns=T0 + i * 10**6 + 500, sent_ns=T0 + i * 10**6)
    recording.heard(EVENTS, cdr_string("not json"), t_ns=T0 + 10**9, sent_ns=0)
    recording.close()

    rec = read(path)
    assert [json.loads(m.data) for _, m in rec.messages[EVENTS.name][:-1]] == RECORDS
    assert rec.times(EVENTS.name)[0] == T0 + 500  # logged when heard
    logged = [r for r in RECORDS if "seq" in r]
    assert rec.json("/medrobot/log/records") == [{**r, "t_wall": pytest.approx((T0 + RECORDS.index(r) * 10**6) / 1e9)}
                                                 for r in logged]
    # when sent, to the microsecond (a record's time is a float of seconds, as the audit log's t_wall)
    assert rec.times("/medrobot/log/records") == pytest.approx([T0 + RECORDS.index(r) * 10**6 for r in logged],
                                                               abs=1000, rel=0)
    (confirmation,) = rec.json("/medrobot/log/confirmation")
    assert (confirmation["who"], confirmation["question"], confirmation["skill"]) == ("operator:alice", QUESTION,
                                                                                     "take_shot")
    states = [m for _, m in rec.messages["/medrobot/log/supervisor_state"]]
    assert [(m.state, m.question, m.skill, m.awaiting_step) for m in states] == [
        ("EXECUTING", "", "", -1), ("AWAITING_CONFIRMATION", QUESTION, "take_shot", 1),
        ("EXECUTING", "", "move_to_view", -1)]
    assert rec.times("/medrobot/log/supervisor_state")[1] == pytest.approx(T0 + 2 * 10**6, abs=1000, rel=0)
    assert rec.count("/medrobot/log/step_feedback") == 1


def test_a_message_type_is_named_as_ros_names_it() -> None:
    assert ros_type("std_msgs.msg._string", "String") == "std_msgs/msg/String"
    assert ros_type("action_msgs.msg._goal_status_array", "GoalStatusArray") == "action_msgs/msg/GoalStatusArray"


def test_a_recorder_killed_with_sigkill_leaves_every_message_it_flushed(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    script = textwrap.dedent(f"""
        import json, os, signal
        from medrobot_llm.recording.live import GraphRecording
        from medrobot_llm.recording.messages import STRING, Topic
        from tests.test_mcap_live import cdr_string
        recording = GraphRecording({str(path)!r}, domain="xray", events="/medrobot/events")
        for i in range(60):
            recording.heard(Topic("/medrobot/robot_status", STRING), cdr_string(json.dumps({{"i": i}})),
                            t_ns={T0} + i, sent_ns={T0} + i)
            if i == 49:
                recording.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with path.open("rb") as f, pytest.raises(McapError):
        mcap_reader.make_reader(f).get_summary()  # no summary, no index: a seeking reader cannot open it
    heard = heard_so_far(path)
    assert [json.loads(m.data)["i"] for _, m in heard] == list(range(50))  # up to the flush, none torn
