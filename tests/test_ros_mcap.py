"""The graph's recorder (issue 18) over real DDS, in separate processes: ``medrobot bringup --mcap`` and a
``medrobot record`` beside it record an X-ray run commanded and confirmed by a signed console client. The first file,
closed by SIGTERM, is read back with the official ``mcap`` reader and every message decoded with
``mcap-ros2-support`` from the schemas in the file; the second recorder is killed with SIGKILL, and its file is read
as far as it was flushed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcap.exceptions import McapError

from medrobot_llm.backends.ros.common import TOPIC_COMMAND, TOPIC_CONFIRM
from medrobot_llm.backends.ros.nodes import RECORDER
from medrobot_llm.safety.keys import default_operator
from medrobot_llm.safety.machine import SupervisorState
from medrobot_llm.safety.operator_gate import operator_source
from tests._ros_helpers import ROOT, ros_graph
from tests.test_mcap import Image, mcap_reader, pixels, read
from tests.test_mcap_live import heard_so_far

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

COMMAND = "lateral of the sacrum then take a shot"
#: what the file of the recorder killed with -9 must hold: the confirmation on the wire and in the supervisor's
#: records, the picture it allowed, and the states
KILLED_KEEPS = {TOPIC_CONFIRM, "/medrobot/log/confirmation", "/xray/radiograph", "/medrobot/state"}


def wait_heard(path: Path, pred: Callable[[str, Any], bool], timeout: float = 20.0) -> bool:
    """Until a message ``pred`` accepts is in the part of the file flushed to disk (the recorder flushes every
    second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and any(pred(topic, m) for topic, m in heard_so_far(path)):
            return True
        time.sleep(0.2)
    return False


def topics_so_far(path: Path) -> set[str]:
    return {topic for topic, _ in heard_so_far(path)} if path.is_file() else set()


def wait_topics(path: Path, topics: set[str], timeout: float = 20.0) -> bool:
    """Until a message of every one of ``topics`` is in the part of the file flushed to disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if topics <= topics_so_far(path):
            return True
        time.sleep(0.2)
    return False


def _recorders_subscribed(node: Any, topics: tuple[str, ...], timeout: float = 20.0) -> bool:
    """Until two recorders' subscriptions to each of ``topics`` are known to ``node``: its publishers match a
    subscription when its participant discovers it, so a message sent after this reaches both recorders."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(sum(i.node_name == RECORDER.name for i in node.get_subscriptions_info_by_topic(t)) >= 2
               for t in topics):
            return True
        time.sleep(0.05)
    return False


def _run_end(topic: str, m: Any) -> bool:
    return topic == "/medrobot/log/records" and json.loads(m.data)["kind"] == "run_end"


def _heartbeat(topic: str, _m: Any) -> bool:
    return topic == "/medrobot/heartbeat"


def _state(topic: str, _m: Any) -> bool:
    return topic == "/medrobot/state"


def _gone(pid: int, timeout: float) -> bool:
    """The process ended and was reaped (by ``medrobot bringup``, its parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_bringup_records_the_commanded_and_confirmed_exposure(tmp_path: Path) -> None:
    path, killed = tmp_path / "graph.mcap", tmp_path / "killed.mcap"
    with ros_graph("xray", tmp_path, options=["--mcap", str(path)]) as graph, \
            (tmp_path / "record.out").open("wb") as out:
        remote = graph.remote
        assert graph.info["mcap"] == str(path)
        other = subprocess.Popen([sys.executable, "-m", "medrobot_llm.cli", "record", "--domain", "xray", "--json",
                                  "--ros-domain-id", str(graph.ros_domain_id), "--mcap", str(killed)],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            # both recorders hear the graph before it is commanded (DDS discovery takes a moment)
            # each topic is matched on its own: a recorder that hears the heartbeat may not hear the states yet,
            # and one fresh-clone CI run missed every state of the question that way
            assert all(wait_heard(f, pred) for f in (path, killed) for pred in (_heartbeat, _state)), \
                (tmp_path / "record.out").read_text(errors="replace")[-2000:]
            # this test's own command and confirm publishers are matched with both recorders on their own too
            assert _recorders_subscribed(remote.node, (TOPIC_COMMAND, TOPIC_CONFIRM)), \
                (tmp_path / "record.out").read_text(errors="replace")[-2000:]
            assert json.loads((tmp_path / "record.out").read_text().splitlines()[0])["pid"] == other.pid
            reply = remote.command(COMMAND)
            assert reply.accepted, reply
            assert remote.wait_for(SupervisorState.AWAITING_CONFIRMATION.value, timeout=20), remote.status()
            question = remote.status()["question"]["text"]
            reply = remote.confirm()
            assert reply.accepted, reply
            assert remote.wait_status(lambda s: s["state"] == SupervisorState.IDLE.value and "done" in s["reason"],
                                      timeout=30), remote.status()
            (shot,) = [e for e in graph.events_of("step_result") if e["skill"] == "take_shot"]
            # while they record, the files on disk are readable up to the last flush: what a kill -9 leaves
            assert wait_heard(path, _run_end) and wait_heard(killed, _run_end), "the run's end is on no disk"
            # each publisher's messages reach a recorder in their own order: the radiograph (large, sent in
            # fragments) may land after the run's end, so the kill waits for every topic asserted below
            assert wait_topics(killed, KILLED_KEEPS), f"not on disk: {KILLED_KEEPS - topics_so_far(killed)}"
            os.killpg(other.pid, signal.SIGKILL)
            assert other.wait(5.0) == -signal.SIGKILL
            recorder = graph.pid(RECORDER.name)
            os.killpg(recorder, signal.SIGTERM)  # as a service manager stops it: the file must be finished
            assert _gone(recorder, 15.0), graph.log(RECORDER.name)[-2000:]
        finally:
            if other.poll() is None:
                os.killpg(other.pid, signal.SIGKILL)
                other.wait(5.0)

    # killed: no summary, but every message up to its last flush, the confirmation and the radiograph among them
    with killed.open("rb") as f, pytest.raises(McapError):
        mcap_reader.make_reader(f).get_summary()
    assert KILLED_KEEPS <= topics_so_far(killed)

    with path.open("rb") as f:  # closed cleanly: a summary with its statistics and an index of every chunk
        summary = mcap_reader.make_reader(f).get_summary()
    assert summary is not None and summary.statistics is not None and summary.chunk_indexes
    rec = read(path)
    assert rec.profile == "ros2" and rec.encodings == {("ros2msg", "cdr")}
    assert summary.statistics.message_count == sum(len(m) for m in rec.messages.values())
    operator = default_operator()

    # on the wire: the signed command and the confirmation, who sent them and which question's nonce they answer
    (command,) = [m for _, m in rec.messages["/medrobot/command"]]
    assert (command.kind, command.operator_id, command.body) == ("command", operator, COMMAND)
    (confirm,) = [m for _, m in rec.messages["/medrobot/confirm"]]
    assert (confirm.kind, confirm.operator_id) == ("confirm", operator) and confirm.mac
    states = [m for _, m in rec.messages["/medrobot/state"]]
    assert rec.schemas["/medrobot/state"] == "medrobot_interfaces/msg/SupervisorState"
    asked = [s for s in states if s.nonce == confirm.answers]
    assert asked and {(s.state, s.question, s.skill) for s in asked} == {
        (SupervisorState.AWAITING_CONFIRMATION.value, question, "take_shot")}
    seen = [s.state for s in states]
    for state in (SupervisorState.EXECUTING, SupervisorState.AWAITING_CONFIRMATION):
        assert state.value in seen, seen
    assert seen[-1] == SupervisorState.IDLE.value and "done" in states[-1].reason, seen

    # read from the supervisor's records: who confirmed which question, the state changes with their reasons
    (confirmation,) = rec.json("/medrobot/log/confirmation")
    assert confirmation["who"] == operator_source(operator) and confirmation["accepted"] is True
    assert (confirmation["question"], confirmation["skill"]) == (question, "take_shot")
    changes = [m for _, m in rec.messages["/medrobot/log/supervisor_state"]]
    assert [m.state for m in changes] == [e["to"] for e in graph.events_of("state")]
    awaiting = [m for m in changes if m.state == SupervisorState.AWAITING_CONFIRMATION.value]
    assert [(m.question, m.skill) for m in awaiting] == [(question, "take_shot")]
    records = rec.json("/medrobot/log/records")
    assert "reply" not in {r["kind"] for r in records}
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)

    # the steps, their goal statuses, the telemetry and the radiograph, pixel for pixel as the skill server saved it
    goals = [m for _, m in rec.messages["/medrobot/log/step_goal"]]
    results = [m for _, m in rec.messages["/medrobot/log/step_result"]]
    assert [g.skill for g in goals] == ["move_to_view", "take_shot"] and [r.success for r in results] == [True, True]
    assert json.loads(results[-1].outcome_json) == shot["outcome"]
    statuses = [s.status for _, m in rec.messages["/medrobot/execute_skill/_action/status"] for s in m.status_list]
    assert 4 in statuses  # action_msgs/GoalStatus STATUS_SUCCEEDED
    assert rec.count("/xray/gantry/joint_states") > 0 and rec.count("/medrobot/log/step_feedback") > 0
    assert rec.count("/medrobot/heartbeat") > 0 and rec.count("/medrobot/robot_status") > 0
    (radiograph,) = [m for _, m in rec.messages["/xray/radiograph"]]
    with Image.open(shot["outcome"]["path"]) as png:
        assert np.array_equal(pixels(radiograph), np.asarray(png))
