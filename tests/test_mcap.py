"""MCAP recordings (issue 18): real sim runs written with ``run --mcap`` and ``log export --mcap``, read back with
the official ``mcap`` reader and every message decoded with ``mcap-ros2-support``, from the schemas in the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medrobot_llm.cli import main
from medrobot_llm.safety.machine import SupervisorState

mcap_reader = pytest.importorskip("mcap.reader")
mcap_decoder = pytest.importorskip("mcap_ros2.decoder")
Image = pytest.importorskip("PIL.Image")

XRAY = "lateral of the sacrum and take a shot"
SCAN = "scan the left kidney and capture"


@dataclass
class Recording:
    """An MCAP file as a viewer sees it: every message decoded, by topic, with its log time."""

    profile: str
    schemas: dict[str, str] = field(default_factory=dict)  # topic -> schema name
    encodings: set[tuple[str, str]] = field(default_factory=set)  # (schema encoding, message encoding)
    messages: dict[str, list[tuple[int, Any]]] = field(default_factory=lambda: defaultdict(list))

    def count(self, topic: str) -> int:
        return len(self.messages.get(topic, []))

    def times(self, topic: str) -> list[int]:
        return [t for t, _ in self.messages.get(topic, [])]

    def json(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.data) for _, m in self.messages.get(topic, [])]


def read(path: Path) -> Recording:
    with path.open("rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[mcap_decoder.DecoderFactory()])
        header = reader.get_header()
        out = Recording(profile=header.profile)
        # decoding every message in file order: one that its schema cannot decode raises here
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            out.schemas[channel.topic] = schema.name
            out.encodings.add((schema.encoding, channel.message_encoding))
            out.messages[channel.topic].append((message.log_time, decoded))
    return out


def log_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ns(t_wall: float) -> int:
    return int(t_wall * 1e9)


def pixels(msg: Any) -> np.ndarray:
    channels = {"mono8": 1, "rgb8": 3}[msg.encoding]
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    assert msg.step == msg.width * channels and len(data) == msg.step * msg.height
    return data.reshape(msg.height, msg.width, channels).squeeze()


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medrobot_llm.cli", *argv], capture_output=True, text=True,
                          timeout=240)


@pytest.fixture(scope="module")
def xray_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("xray")
    proc = run_cli("run", "--json", "--domain", "xray", "--yes", "--record", str(folder / "rec"), "--log",
                   str(folder / "audit.jsonl"), "--mcap", str(folder / "run.mcap"), XRAY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mcap"]["mcap"] == str(folder / "run.mcap") and out["mcap"]["missing_images"] == []
    return folder


@pytest.fixture(scope="module")
def scan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ultrasound")
    proc = run_cli("run", "--domain", "ultrasound", "--yes", "--record", str(folder / "rec"), "--log",
                   str(folder / "audit.jsonl"), "--mcap", str(folder / "run.mcap"), SCAN)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"in {folder / 'run.mcap'}" in proc.stdout
    return folder


def check_decisions(rec: Recording, records: list[dict[str, Any]], steps: list[str]) -> None:
    """The supervisor's records are all there, each at its own wall time, on the topics README names."""
    assert rec.profile == "ros2" and rec.encodings == {("ros2msg", "cdr")}
    assert rec.times("/medrobot/log/records") == [ns(r["t_wall"]) for r in records]
    assert [r["seq"] for r in rec.json("/medrobot/log/records")] == [r["seq"] for r in records]
    by_kind = Counter(r["kind"] for r in records)
    for kind in ("command", "plan", "validation", "question", "confirmation"):
        assert rec.count(f"/medrobot/log/{kind}") == by_kind[kind], kind
        assert rec.schemas[f"/medrobot/log/{kind}"] == "std_msgs/msg/String"
    states = [r for r in records if r["kind"] == "state"]
    assert rec.schemas["/medrobot/log/supervisor_state"] == "medrobot_interfaces/msg/SupervisorState"
    got = [m for _, m in rec.messages["/medrobot/log/supervisor_state"]]
    assert [m.state for m in got] == [r["to"] for r in states]
    assert rec.times("/medrobot/log/supervisor_state") == [ns(r["t_wall"]) for r in states]
    assert all(m.stamp.sec * 10**9 + m.stamp.nanosec == t for (t, m) in rec.messages["/medrobot/log/supervisor_state"])
    goals = [m for _, m in rec.messages["/medrobot/log/step_goal"]]
    assert [g.skill for g in goals] == steps and [g.step_index for g in goals] == list(range(len(steps)))
    assert len({g.plan_id for g in goals}) == 1 and all(g.domain == records[0]["domain"] for g in goals)
    results = [m for _, m in rec.messages["/medrobot/log/step_result"]]
    assert [r.success for r in results] == [True] * len(steps) and {r.failure_kind for r in results} == {"none"}
    sent = [r for r in records if r["kind"] == "step_sent"]
    assert rec.times("/medrobot/log/step_goal") == [ns(r["t_wall"]) for r in sent]
    (confirmation,) = rec.json("/medrobot/log/confirmation")
    assert confirmation["who"] == "session" and confirmation["accepted"] is True
    question = next(r for r in records if r["kind"] == "question")
    assert (confirmation["skill"], confirmation["hazard"]) == (question["skill"], question["hazard"])
    assert confirmation["question"] == question["text"]
    # the change to AWAITING_CONFIRMATION says what it waits for (the question is logged just after it)
    awaiting = [m for m in got if m.state == SupervisorState.AWAITING_CONFIRMATION.value]
    assert [(m.question, m.skill, m.awaiting_step) for m in awaiting] == [
        (question["text"], question["skill"], question["step_index"])]


def check_feedback_inside_steps(rec: Recording, telemetry_topic: str) -> None:
    """Live samples lie between their step's goal and its result, and every moving step has some."""
    goals, results = rec.times("/medrobot/log/step_goal"), rec.times("/medrobot/log/step_result")
    samples = rec.times(telemetry_topic)
    assert samples == sorted(samples) and rec.count("/medrobot/log/step_feedback") > 0
    inside = [sum(g <= t <= r for t in rec.times("/medrobot/log/step_feedback")) for g, r in zip(goals, results)]
    assert sum(inside) == rec.count("/medrobot/log/step_feedback") and inside[0] > 10


@pytest.mark.sim
def test_xray_run_records_decisions_gantry_and_the_radiograph(xray_run: Path) -> None:
    rec = read(xray_run / "run.mcap")
    records = log_records(xray_run / "audit.jsonl")
    check_decisions(rec, records, ["move_to_view", "take_shot"])
    assert rec.schemas["/xray/gantry/joint_states"] == "sensor_msgs/msg/JointState"
    check_feedback_inside_steps(rec, "/xray/gantry/joint_states")
    # the gantry's last recorded pose is the one the step reported, in ROS units (m, rad)
    view = next(r for r in records if r["kind"] == "step_result" and r["skill"] == "move_to_view")
    last = rec.messages["/xray/gantry/joint_states"][-1][1]
    joints = dict(zip(last.name, last.position))
    assert joints["orbit"] == pytest.approx(np.radians(view["outcome"]["axes"]["orbit"]), abs=1e-3)
    assert joints["cranial_caudal"] == pytest.approx(view["outcome"]["axes"]["cranial_caudal"] / 1000, abs=1e-3)
    # the radiograph, pixel for pixel, at the time of the step that took it
    (png,) = (xray_run / "rec").rglob("xray_*.png")
    ((t, shot),) = rec.messages["/xray/radiograph"]
    assert rec.schemas["/xray/radiograph"] == "sensor_msgs/msg/Image" and shot.encoding == "mono8"
    assert np.array_equal(pixels(shot), np.asarray(Image.open(png)))
    taken = next(r for r in records if r["kind"] == "step_result" and r["skill"] == "take_shot")
    assert t == ns(taken["t_wall"]) and taken["outcome"]["path"] == str(png)
    frames = sorted((xray_run / "rec").rglob("frames/frame_*.png"))
    assert [bytes(m.data) for _, m in rec.messages["/scene/frame/compressed"]] == [f.read_bytes() for f in frames]


@pytest.mark.sim
def test_ultrasound_run_records_probe_pose_force_and_the_capture(scan_run: Path) -> None:
    rec = read(scan_run / "run.mcap")
    records = log_records(scan_run / "audit.jsonl")
    check_decisions(rec, records, ["move_to_window", "make_contact", "sweep", "capture"])
    assert rec.schemas["/ultrasound/probe/pose"] == "geometry_msgs/msg/PoseStamped"
    assert rec.schemas["/ultrasound/probe/wrench"] == "geometry_msgs/msg/WrenchStamped"
    check_feedback_inside_steps(rec, "/ultrasound/probe/wrench")
    capture = next(r for r in records if r["kind"] == "step_result" and r["skill"] == "capture")
    force = [m.wrench.force.z for t, m in rec.messages["/ultrasound/probe/wrench"] if t <= ns(capture["t_wall"])]
    assert max(force) == pytest.approx(8.0, abs=0.5)  # the scan's contact force, as the sweep held it
    window = next(r for r in records if r["kind"] == "step_result" and r["skill"] == "move_to_window")
    at_window = [m.pose.position for t, m in rec.messages["/ultrasound/probe/pose"] if t == ns(window["t_wall"])]
    assert [(p.x, p.y, p.z) for p in at_window] == [tuple(window["outcome"]["tip"])]
    (png,) = (scan_run / "rec").rglob("us_*.png")
    ((_, bmode),) = rec.messages["/ultrasound/bmode"]
    assert np.array_equal(pixels(bmode), np.asarray(Image.open(png)))


@pytest.mark.sim
def test_log_export_writes_the_same_decisions_and_pictures_as_the_live_run(xray_run: Path, tmp_path: Path) -> None:
    """The log alone has no feedback: the export's telemetry is what the steps reported, the rest is the run's."""
    out = tmp_path / "export.mcap"
    assert main(["log", "export", str(xray_run / "audit.jsonl"), "--mcap", str(out), "--record",
                 str(xray_run / "rec")]) == 0
    exported, live = read(out), read(xray_run / "run.mcap")
    records = log_records(xray_run / "audit.jsonl")
    check_decisions(exported, records, ["move_to_view", "take_shot"])
    assert exported.count("/medrobot/log/step_feedback") == 0 and exported.count("/xray/gantry/joint_states") == 1
    for topic in ("/medrobot/log/records", "/medrobot/log/supervisor_state", "/xray/radiograph",
                  "/scene/frame/compressed"):
        assert exported.times(topic) == live.times(topic), topic
    assert np.array_equal(pixels(exported.messages["/xray/radiograph"][0][1]),
                          pixels(live.messages["/xray/radiograph"][0][1]))


@pytest.mark.sim
def test_log_export_finds_moved_pictures_in_the_record_folder_and_names_lost_ones(
        xray_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logged = str(next((xray_run / "rec").rglob("xray_*.png")))
    moved = tmp_path / "moved"
    shutil.copytree(Path(logged).parent, moved)
    log = tmp_path / "audit.jsonl"
    log.write_text((xray_run / "audit.jsonl").read_text().replace(logged, "/nowhere/" + Path(logged).name))
    # the edit breaks the chain, which the export names (exit 1); the picture is found all the same
    assert main(["log", "export", str(log), "--mcap", str(tmp_path / "a.mcap"), "--record", str(moved), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"][0].startswith("the log is not intact") and not report["missing_images"]
    assert read(tmp_path / "a.mcap").count("/xray/radiograph") == 1
    capsys.readouterr()
    assert main(["log", "export", str(log), "--mcap", str(tmp_path / "b.mcap"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["missing_images"] == ["/nowhere/" + Path(logged).name] and report["images"] == []
    assert read(tmp_path / "b.mcap").count("/xray/radiograph") == 0


def test_export_reads_records_tolerantly(tmp_path: Path) -> None:
    """Fields another version adds (a hash chain), kinds it adds, and fields missing: all exported, none fatal."""
    records = [
        {"seq": 0, "kind": "session", "t_wall": 100.0, "domain": "xray", "prev": "ab" * 32, "hash": "cd" * 32},
        {"seq": 1, "kind": "log_verified", "t_wall": 100.5, "chain": "ok"},
        {"seq": 2, "kind": "state", "t_wall": 101.0, "to": "PLANNING", "hash": "ef" * 32},
        {"seq": 3, "kind": "step_sent", "t_wall": 102.0},
        {"seq": 4, "kind": "step_result", "t_wall": 103.0, "outcome": "not a mapping", "success": True},
        {"seq": 5, "kind": "confirmation"},
        {"seq": 6, "kind": "hazard", "t_wall": 104.0, "phase": "intended", "hazard": "radiation", "hash": "01"},
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["log", "export", str(log), "--mcap", str(tmp_path / "t.mcap")]) == 1   # no chain: not intact
    rec = read(tmp_path / "t.mcap")
    assert [r["kind"] for r in rec.json("/medrobot/log/records")] == [r["kind"] for r in records]
    assert rec.json("/medrobot/log/records")[0]["hash"] == "cd" * 32
    # a record without a time keeps the last one: the timeline never runs backwards
    assert rec.times("/medrobot/log/records") == [ns(t) for t in (100.0, 100.5, 101.0, 102.0, 103.0, 103.0, 104.0)]
    assert [h["phase"] for h in rec.json("/medrobot/log/hazard")] == ["intended"]
    (state,) = [m for _, m in rec.messages["/medrobot/log/supervisor_state"]]
    assert (state.state, state.domain, state.awaiting_step) == ("PLANNING", "xray", -1)


@pytest.mark.parametrize("target", ["dir", "file-as-parent"])
def test_an_mcap_path_that_cannot_be_written_is_one_sentence_and_exit_2(
        tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"seq": 0, "kind": "session", "t_wall": 1.0, "domain": "xray"}) + "\n")
    blocker = tmp_path / "plain"
    blocker.write_text("x")
    out = tmp_path if target == "dir" else blocker / "x.mcap"
    assert main(["log", "export", str(log), "--mcap", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medrobot log export: cannot write the MCAP file") and "Traceback" not in err


def test_without_the_mcap_extra_the_answer_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"seq": 0, "kind": "session", "t_wall": 1.0, "domain": "xray"}) + "\n")
    monkeypatch.delitem(sys.modules, "medrobot_llm.recording.export", raising=False)
    monkeypatch.setitem(sys.modules, "mcap_ros2.writer", None)
    assert main(["log", "export", str(log), "--mcap", str(tmp_path / "x.mcap")]) == 2
    assert "pip install 'medrobot_llm[mcap]'" in capsys.readouterr().err


def test_message_definitions_need_no_ros_install() -> None:
    """Without AMENT_PREFIX_PATH the shipped and the project's own definitions describe every type written."""
    code = """
import sys
from mcap_ros2._dynamic import serialize_dynamic
from medrobot_llm.recording.messages import TOPICS, COMPRESSED, IMAGE, JOINTS, POSE, WRENCH
from medrobot_llm.recording.msgdefs import msgdef
for datatype in {t.datatype for t in TOPICS.values()} | {COMPRESSED, IMAGE, JOINTS, POSE, WRENCH}:
    assert datatype in serialize_dynamic(datatype, msgdef(datatype)), datatype
"""
    env = {k: v for k, v in os.environ.items() if k != "AMENT_PREFIX_PATH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_telemetry_becomes_poses_wrenches_and_joint_states_in_ros_units() -> None:
    from medrobot_llm.recording.messages import telemetry_messages

    surgery = telemetry_messages("surgery", {"force_n": 1.5, "psm1_mm": [10.0, -20.0, 70.0],
                                             "psm2_mm": [1.0, 2.0, 3.0], "holding[psm1]": "needle"}, 7)
    by_topic = {topic.name: (topic.datatype, msg) for topic, msg in surgery}
    assert set(by_topic) == {"/surgery/psm1/pose", "/surgery/psm2/pose", "/surgery/tool/wrench"}
    assert by_topic["/surgery/psm1/pose"][1]["pose"]["position"] == pytest.approx({"x": 0.01, "y": -0.02, "z": 0.07})
    assert by_topic["/surgery/tool/wrench"][1]["wrench"]["force"]["z"] == 1.5
    moved = telemetry_messages("surgery", {"arm": "psm2", "tcp_mm": [5.0, 5.0, 5.0], "goal_mm": [0, 0, 0],
                                           "pos_mm": [9.0, 9.0, 9.0]}, 7)
    assert [t.name for t, _ in moved] == ["/surgery/psm2/pose"]
    (joints,) = telemetry_messages("xray", {"orbit": 90.0, "cranial_caudal": 250.0, "clearance_mm": 30.0}, 7)
    assert joints[0].datatype == "sensor_msgs/msg/JointState"
    assert dict(zip(joints[1]["name"], joints[1]["position"])) == pytest.approx(
        {"cranial_caudal": 0.25, "orbit": np.pi / 2})
    assert telemetry_messages("ultrasound", {"tip": [0.1, float("nan"), 0.2], "force_n": True}, 7) == []


def test_feedback_heard_in_a_burst_stays_between_the_records_around_it() -> None:
    """Listeners get events through a queue: a sample heard after the step's result was written (or before its
    goal, by a clock step) is still placed inside the step, after the record heard before it."""
    from medrobot_llm.recording.export import interleave

    records = [{"seq": 0, "kind": "step_sent", "t_wall": 10.0}, {"seq": 1, "kind": "step_result", "t_wall": 11.0},
               {"seq": 2, "kind": "state", "t_wall": 12.0}]
    heard = [{"kind": "step_sent", "seq": 0}, {"kind": "feedback", "t_wall": 9.0, "phase": "a"},
             {"kind": "feedback", "t_wall": 10.5, "phase": "b"}, {"kind": "feedback", "t_wall": 11.7, "phase": "c"},
             {"kind": "step_result", "seq": 1}, {"kind": "state", "seq": 2},
             {"kind": "feedback", "t_wall": 13.0, "phase": "d"}]
    out = list(interleave(records, heard))
    assert [(r.get("seq"), r.get("phase"), r["t_wall"]) for r in out] == [
        (0, None, 10.0), (None, "a", 10.0), (None, "b", 10.5), (None, "c", 11.0), (1, None, 11.0), (2, None, 12.0),
        (None, "d", 13.0)]
    assert list(interleave(records[:1], heard[:2] + [{"kind": "x", "seq": 7}, heard[2]]))[-1]["phase"] == "b"


@pytest.mark.sim
def test_an_interrupted_run_keeps_its_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the run waits for a confirmation: the file is finished with everything up to the question."""
    import medrobot_llm.cli.run as run_module

    def interrupt(question: Any) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_ask", interrupt)
    assert main(["run", "--domain", "xray", "--mcap", str(tmp_path / "cut.mcap"), XRAY]) == 130
    rec = read(tmp_path / "cut.mcap")
    assert [m.skill for _, m in rec.messages["/medrobot/log/step_goal"]] == ["move_to_view"]
    assert rec.count("/medrobot/log/step_result") == 1 and rec.count("/medrobot/log/question") == 1
    assert rec.count("/xray/gantry/joint_states") > 10 and rec.count("/xray/radiograph") == 0
    states = [m.state for _, m in rec.messages["/medrobot/log/supervisor_state"]]
    assert "AWAITING_CONFIRMATION" in states and rec.times("/medrobot/log/records") == sorted(
        rec.times("/medrobot/log/records"))


@pytest.mark.sim
def test_files_a_recording_record_names_are_found_by_path_and_checked_by_hash(
        xray_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log that names its run's files with their SHA-256 (a ``recording`` record) gives the export its frames, in
    whatever folder the run was moved to, and a picture whose bytes changed is left out and reported (exit 1)."""
    import hashlib

    files = sorted(p for p in (xray_run / "rec").rglob("*.png"))
    recording = {"seq": 999, "kind": "recording", "t_wall": log_records(xray_run / "audit.jsonl")[-1]["t_wall"],
                 "dir": str(xray_run / "rec"), "files": [{"path": str(p), "sha256": hashlib.sha256(p.read_bytes())
                                                          .hexdigest(), "bytes": p.stat().st_size} for p in files]}
    log = tmp_path / "audit.jsonl"
    log.write_text((xray_run / "audit.jsonl").read_text() + json.dumps(recording) + "\n")
    moved = tmp_path / "archive" / "run-001"
    shutil.copytree(xray_run / "rec", moved)
    # a record appended by hand is outside the chain: named (exit 1), and its files are used all the same
    assert main(["log", "export", str(log), "--mcap", str(tmp_path / "a.mcap"), "--record", str(moved)]) == 1
    rec = read(tmp_path / "a.mcap")
    frames = sorted(p for p in files if p.parent.name == "frames")
    assert [bytes(m.data) for _, m in rec.messages["/scene/frame/compressed"]] == [f.read_bytes() for f in frames]
    assert rec.count("/xray/radiograph") == 1
    # the same names in the moved folder, with other bytes: not the pictures the run took
    shot = next(moved.rglob("xray_*.png"))
    Image.fromarray(255 - np.asarray(Image.open(shot))).save(shot)
    bad_frame = next(moved.rglob(f"frames/{frames[0].name}"))
    bad_frame.write_bytes(b"not a frame")
    capsys.readouterr()
    code = main(["log", "export", str(log), "--mcap", str(tmp_path / "b.mcap"), "--record", str(moved), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and sorted(report["changed_images"]) == sorted([str(shot), str(bad_frame)])
    tampered = read(tmp_path / "b.mcap")
    assert tampered.count("/xray/radiograph") == 0 and tampered.count("/scene/frame/compressed") == len(frames) - 1
