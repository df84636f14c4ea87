"""Records nothing can lose (issue 18): one writer per log, bad paths refused with a sentence, hazards written
ahead, recordings that never overwrite and that the log names with their SHA-256."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medrobot_llm.core.paths import file_sha256
from medrobot_llm.safety.audit import AuditLog, AuditLogError, read_log
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.safety.audit_verify import Verdict, verify_file
from medrobot_llm.session import Session, always

HOLDER = textwrap.dedent(
    """
    import sys
    from medrobot_llm.safety.audit import AuditLog

    log = AuditLog(sys.argv[1])
    log.append("held")
    print("ready", flush=True)
    sys.stdin.readline()   # hold the log until the test lets go
    log.close()
    """
)


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medrobot_llm.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_a_second_writer_process_is_refused_and_told_who_holds_the_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(AuditLogError, match=f"being written by process {holder.pid}"):
            AuditLog(path)
        # the same from the command line, in a third process: a sentence, exit 2, and the log untouched
        proc = _cli("run", "--domain", "xray", "--yes", "--log", str(path), "AP of the pelvis")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"process {holder.pid}" in proc.stderr, proc.stderr
        assert [r["kind"] for r in read_log(path).records] == ["held"]
    finally:
        holder.communicate("go\n", timeout=30)
    assert holder.returncode == 0
    with AuditLog(path) as log:   # the holder is gone: the lock went with it, and the chain goes on
        log.append("after")
    assert verify_file(path).verdict is Verdict.INTACT


def test_one_process_cannot_open_a_log_twice(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.jsonl"), pytest.raises(AuditLogError, match="this process"):
        AuditLog(tmp_path / "a.jsonl")


def _bad_logs(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    null_seq = tmp_path / "null_seq.jsonl"
    null_seq.write_text('{"seq":0,"kind":"a"}\n{"seq":null,"kind":"b"}\n', encoding="utf-8")
    return {"directory": tmp_path, "fifo": fifo, "device": Path("/dev/zero"), "kernel file": Path("/proc/version"),
            "unwritable": Path("/sys/kernel/notes"), "null seq": null_seq}


@pytest.mark.parametrize("what", ["directory", "fifo", "device", "kernel file", "unwritable", "null seq"])
def test_a_bad_log_path_is_refused_at_open(tmp_path: Path, what: str) -> None:
    with pytest.raises(AuditLogError):
        AuditLog(_bad_logs(tmp_path)[what])


@pytest.mark.parametrize("what, words", [("directory", "a directory"), ("fifo", "a FIFO"), ("device", "a device"),
                                         ("kernel file", "takes no writes"), ("null seq", "seq None")])
def test_run_with_a_bad_log_is_a_sentence_and_exit_2_never_a_hang(tmp_path: Path, what: str, words: str) -> None:
    proc = _cli("run", "--domain", "xray", "--yes", "--log", str(_bad_logs(tmp_path)[what]), "AP of the pelvis",
                timeout=60)
    assert proc.returncode == 2, proc.stderr[-1000:]
    assert "Traceback" not in proc.stderr and words in proc.stderr, proc.stderr[-1000:]
    assert "argv[0]" not in proc.stderr, "the log is refused before a scene starts"


def test_run_with_record_on_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = _cli("run", "--domain", "xray", "--yes", "--record", str(blocker), "AP of the pelvis")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "not a folder" in proc.stderr
    assert blocker.read_text() == "x"


# ------------------------------------------------------------------------------------------------ real scenes
def _xray(*, record_dir: Path | None = None, audit_path: Path | None = None) -> Session:
    return Session("xray", RulePlanner(), record_dir=record_dir, audit_path=audit_path)


@pytest.mark.sim
def test_two_runs_into_one_record_folder_keep_both_and_the_log_names_every_file(tmp_path: Path) -> None:
    record, log = tmp_path / "rec", tmp_path / "audit.jsonl"
    images = []
    for _ in range(2):
        with _xray(record_dir=record, audit_path=log) as session:
            outcome = session.run("lateral of the sacrum and take a shot", confirm=always, timeout_s=120)
        assert outcome.success and outcome.exposures == 1
        images += outcome.images
    assert [Path(i).parent.name for i in images] == ["run-001", "run-002"]
    assert Path(images[0]).is_file() and Path(images[1]).is_file()
    named = {f["path"]: f["sha256"] for r in read_log(log).records if r["kind"] == "recording" for f in r["files"]}
    on_disk = {str(p.absolute()) for p in record.rglob("*") if p.is_file()}
    assert set(named) == on_disk and len(on_disk) == 8   # per run: one radiograph and three frames
    assert all(file_sha256(Path(p)) == digest for p, digest in named.items())
    done = [r for r in read_log(log).records if r["kind"] == "hazard" and r["phase"] == "done"]
    assert [named[str(Path(r["path"]).absolute())] for r in done] == [r["sha256"] for r in done]
    assert verify_file(log).verdict is Verdict.INTACT


@pytest.mark.sim
def test_an_exposure_whose_image_cannot_be_written_stays_in_the_record(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    session = _xray(audit_path=log)
    assert session.scene is not None
    session.scene.record_dir = blocker / "images"   # every image write now fails
    with session:
        outcome = session.run("lateral of the sacrum and take a shot", confirm=always, timeout_s=120)
    assert outcome.exposures == 1 and not outcome.success
    assert outcome.steps[1]["result"] == "error" and "image is lost" in outcome.steps[1]["reason"]
    records = read_log(log).records
    hazards = [(r["phase"], r["hazard"]) for r in records if r["kind"] == "hazard"]
    assert hazards == [("intended", "exposure"), ("done", "exposure")]
    sent = next(r["seq"] for r in records if r["kind"] == "step_sent" and r["skill"] == "take_shot")
    intended, done = (r for r in records if r["kind"] == "hazard")
    assert sent < intended["seq"] < done["seq"]
    assert intended["dap_mgy_cm2"] == done["dap_mgy_cm2"] > 0 and done["path"] is None
    assert "cannot write" in done["image_error"]
    assert verify_file(log).verdict is Verdict.INTACT


@pytest.mark.sim
def test_a_probe_contact_is_written_ahead_and_done(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with Session("ultrasound", RulePlanner(), audit_path=log) as session:
        outcome = session.run("scan the left kidney and capture", confirm=always, timeout_s=120)
    assert outcome.success
    records = read_log(log).records
    contact = [r for r in records if r["kind"] == "hazard"]
    assert [(r["phase"], r["hazard"]) for r in contact] == [("intended", "contact"), ("done", "contact")]
    assert contact[1]["force_n"] > 0
    assert json.loads(json.dumps(contact[0]))["target_force_n"] == 8.0


@pytest.mark.sim
def test_a_retraction_is_written_ahead_and_a_cancelled_one_is_closed_as_not_done() -> None:
    from medrobot_llm.backends.base import CancelToken, Feedback
    from medrobot_llm.backends.sim import make
    from medrobot_llm.core.plan import Step

    log = AuditLog(None)
    scene = make("surgery")
    try:
        scene.hazard_log = log.append
        scene.reset(seed=4)
        for skill, args in (("locate", {"object": "vessel"}), ("move_to", {"arm": "psm2", "target": "vessel"}),
                            ("grasp", {"arm": "psm2", "object": "vessel"})):
            assert scene.execute(Step(skill=skill, args=args), CancelToken()).success, skill
        retract = Step(skill="retract", args={"arm": "psm2", "direction": "backward", "distance_mm": 8})
        assert scene.execute(retract, CancelToken()).success
        token = CancelToken()
        seen: list[Feedback] = []

        def cancel_midway(fb: Feedback) -> None:
            seen.append(fb)
            if len(seen) == 20:   # a few control steps into the pull
                token.cancel("operator")

        result = scene.execute(retract, token, cancel_midway)
    finally:
        scene.close()
    assert not result.success
    hazards = [(r["phase"], r["hazard"], r["skill"]) for r in log.records if r["kind"] == "hazard"]
    assert hazards == [("intended", "contact", "retract"), ("done", "contact", "retract"),
                       ("intended", "contact", "retract"), ("not_done", "contact", "retract")]
    assert log.records[-1]["status"] == "preempted" and result.failure.value == "cancelled"
