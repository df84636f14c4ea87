"""A careful user's and an attacker's try at the records (issue 18), through the command line only.

Each test here is a problem found on main; it is marked xfail(strict) so that the suite passes until the
problem is fixed, and then the marker has to go. Each test first checks what main already gets right, so that
it fails for the reason it names and not for a broken set-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.sim

SHOT = "lateral of the sacrum and take a shot"


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medrobot_llm.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _verify(path: Path) -> dict[str, Any]:
    proc = _cli("log", "verify", "--json", str(path))
    verdict: dict[str, Any] = json.loads(proc.stdout)
    assert verdict["exit_code"] == proc.returncode
    return verdict


def _lines(path: Path) -> list[bytes]:
    """The log's records as the writer wrote them, without their newlines."""
    return path.read_bytes().splitlines()


def _kinds(lines: list[bytes]) -> list[str]:
    return [str(json.loads(line)["kind"]) for line in lines]


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def xray_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One real X-ray run with an exposure, its log closed cleanly: (log, recording folder)."""
    base = tmp_path_factory.mktemp("xray_run")
    log, record = base / "run.jsonl", base / "rec"
    proc = _cli("run", "--domain", "xray", "--yes", "--json", "--record", str(record), "--log", str(log), SHOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _verify(log)["exit_code"] == 0
    return log, record


def _copy(xray_run: tuple[Path, Path], tmp_path: Path) -> list[bytes]:
    lines = _lines(xray_run[0])
    assert "hazard" in _kinds(lines) and _kinds(lines)[-1] == "log_closed"
    return lines


def _refused_run(log: Path) -> None:
    """A later, harmless run appending to the same log: the planner refuses it, nothing moves."""
    proc = _cli("run", "--domain", "xray", "--json", "--log", str(log), "make me a sandwich")
    assert proc.returncode == 1, proc.stderr[-2000:]


@pytest.mark.parametrize("cut", ["killed_after_the_exposure_was_intended", "cut_before_the_exposure"])
def test_a_session_that_never_closed_stays_visible_after_a_later_run(xray_run: tuple[Path, Path], tmp_path: Path,
                                                                     cut: str) -> None:
    lines = _copy(xray_run, tmp_path)
    intended = _kinds(lines).index("hazard")
    assert json.loads(lines[intended])["phase"] == "intended"
    # Every record is fsynced before the next is written, so a kill -9 leaves exactly a prefix of whole records.
    keep = intended + 1 if cut.startswith("killed") else intended
    log = _write(tmp_path / "log.jsonl", lines[:keep])
    assert _verify(log)["exit_code"] == 2          # alone, main reports it as an end that is not final
    _refused_run(log)
    verdict = _verify(log)
    assert verdict["exit_code"] != 0 and verdict["verdict"] != "intact", verdict


def test_a_run_refused_at_start_leaves_no_log_that_reads_as_tampered(tmp_path: Path) -> None:
    log, not_a_folder = tmp_path / "new.jsonl", tmp_path / "a_file"
    not_a_folder.write_text("x")
    proc = _cli("run", "--domain", "xray", "--json", "--log", str(log), "--record", str(not_a_folder), SHOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not log.exists() or _verify(log)["exit_code"] != 1


def test_garbage_appended_to_a_closed_log_is_damage_not_a_crash(xray_run: tuple[Path, Path], tmp_path: Path) -> None:
    log = _write(tmp_path / "log.jsonl", _copy(xray_run, tmp_path))
    with log.open("ab") as f:
        f.write(b"this line was never a record")
    assert _verify(log)["exit_code"] == 1


def _edited_dose(xray_run: tuple[Path, Path], tmp_path: Path) -> Path:
    """The log with the exposure's dose changed in place: same sequence numbers, one broken link."""
    lines = _copy(xray_run, tmp_path)
    done = [i for i, line in enumerate(lines) if json.loads(line).get("phase") == "done"][0]
    record = json.loads(lines[done])
    record["dap_mgy_cm2"] = 1.0
    lines[done] = json.dumps(record, separators=(",", ":")).encode()
    log = _write(tmp_path / "log.jsonl", lines)
    assert _verify(log)["exit_code"] == 1          # verify does catch it
    return log


def test_show_marks_an_edited_record(xray_run: tuple[Path, Path], tmp_path: Path) -> None:
    proc = _cli("log", "show", str(_edited_dose(xray_run, tmp_path)))
    assert "1.0" in proc.stdout and "Traceback" not in proc.stderr
    assert proc.returncode != 0 or "!!" in proc.stdout + proc.stderr


def test_export_of_an_edited_log_is_not_silent(xray_run: tuple[Path, Path], tmp_path: Path) -> None:
    intact = _cli("log", "export", str(xray_run[0]), "--mcap", str(tmp_path / "intact.mcap"))
    assert intact.returncode == 0, intact.stdout + intact.stderr   # every picture found: exit 1 would be tampering's
    log = _edited_dose(xray_run, tmp_path)
    proc = _cli("log", "export", str(log), "--mcap", str(tmp_path / "out.mcap"), "--json")
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert proc.returncode != 0 or summary["problems"], summary


@pytest.mark.parametrize("how", ["export", "run"])
def test_mcap_on_a_fifo_is_refused_not_a_hang(xray_run: tuple[Path, Path], tmp_path: Path, how: str) -> None:
    fifo = tmp_path / "fifo.mcap"
    os.mkfifo(fifo)
    argv = (["log", "export", str(xray_run[0]), "--mcap", str(fifo)] if how == "export"
            else ["run", "--domain", "xray", "--json", "--mcap", str(fifo), "make me a sandwich"])
    try:
        proc = _cli(*argv, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`medrobot {argv[0]} --mcap FIFO` still ran after 30 s")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


SMALL_MCAP_DISK = """
import subprocess, sys
mnt, log, shot = sys.argv[1], sys.argv[2], sys.argv[3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt], check=True)   # no room for a radiograph
argv = [sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "xray", "--yes", "--json",
        "--log", log, "--mcap", mnt + "/run.mcap", shot]
sys.exit(subprocess.run(argv, stdin=subprocess.DEVNULL).returncode)
"""


def test_an_mcap_write_failure_is_a_sentence_and_the_outcome_is_still_printed(tmp_path: Path) -> None:
    # /dev/full, the first example, is now refused before anything moves (a device); the disk filling mid-run is not
    mnt, log = tmp_path / "small_disk", tmp_path / "log.jsonl"
    mnt.mkdir()
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-c",
                               SMALL_MCAP_DISK, str(mnt), str(log), SHOT], capture_output=True, text=True,
                              timeout=240)
    except FileNotFoundError:
        pytest.skip("needs unshare(1) to give the run a small disk of its own")
    if not log.exists():
        pytest.skip(f"no mount namespace with a tmpfs here: {proc.stderr[-300:]}")
    assert "exposure" in log.read_text()              # the exposure happened and is in the log
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    outcome = json.loads(proc.stdout)
    assert outcome["exposures"] == 1 and proc.returncode != 0
    assert "No space" in outcome["mcap"]["error"] and "No space" in proc.stderr


def test_the_session_record_names_the_scene_that_ran(xray_run: tuple[Path, Path]) -> None:
    session = json.loads(_lines(xray_run[0])[0])
    assert session["kind"] == "session"
    assert session["backend"] == "XrayScene"


def test_a_log_with_no_records_yet_is_not_tampered(tmp_path: Path) -> None:
    log = tmp_path / "skill_server_audit.jsonl"
    log.write_bytes(b"")
    assert _verify(log)["exit_code"] != 1


FULL_DISK = """
import subprocess, sys
mnt, log, shot = sys.argv[1], sys.argv[2], sys.argv[3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", mnt], check=True)
with open(mnt + "/fill", "wb") as f:
    f.write(bytes(24 * 1024))   # room for the first two frames, none for the radiograph
argv = [sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "xray", "--yes", "--json",
        "--record", mnt, "--log", log, shot]
sys.exit(subprocess.run(argv, stdin=subprocess.DEVNULL).returncode)
"""


def test_a_picture_that_could_not_be_written_is_not_named_as_recorded(tmp_path: Path) -> None:
    mnt, log = tmp_path / "small_disk", tmp_path / "log.jsonl"
    mnt.mkdir()
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-c",
                               FULL_DISK, str(mnt), str(log), SHOT], capture_output=True, text=True, timeout=240)
    except FileNotFoundError:
        pytest.skip("needs unshare(1) to give the run a small disk of its own")
    if not log.exists():
        pytest.skip(f"no mount namespace with a tmpfs here: {proc.stderr[-300:]}")
    records = [json.loads(line) for line in _lines(log)]
    done = [r for r in records if r["kind"] == "hazard" and r["phase"] == "done"]
    assert len(done) == 1 and done[0]["path"] is None and "No space" in done[0]["image_error"]   # held
    named = [f for r in records if r["kind"] == "recording" for f in r["files"]]
    assert named and all(f["bytes"] > 0 for f in named), named


def test_a_command_refused_for_its_characters_is_in_the_audit_log(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    _refused_run(log)
    before = len(_lines(log))
    proc = _cli("run", "--domain", "xray", "--json", "--log", str(log), "lateral of the sacrum \x01")
    assert proc.returncode == 1 and json.loads(proc.stdout)["plan"]["code"] == "invalid_text"   # held: refused
    assert len(_lines(log)) > before


def test_a_killed_run_leaves_the_mcap_it_had_written(tmp_path: Path) -> None:
    from mcap.exceptions import McapError
    from mcap.records import Message
    from mcap.stream_reader import StreamReader

    log, mcap = tmp_path / "log.jsonl", tmp_path / "run.mcap"
    proc = subprocess.Popen([sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "xray", "--yes", "--json",
                             "--log", str(log), "--mcap", str(mcap), SHOT], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while b'"phase":"done"' not in (log.read_bytes() if log.exists() else b""):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its exposure was done"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert mcap.exists() and mcap.stat().st_size > 0, "the killed run's MCAP is empty"
    messages = 0
    # A cut MCAP ends mid-record: what was read before the cut still counts.
    with mcap.open("rb") as f, contextlib.suppress(McapError):
        for record in StreamReader(f, skip_magic=False).records:
            messages += isinstance(record, Message)
    assert messages > 0


def test_the_llm_audit_log_of_a_finished_run_is_closed(tmp_path: Path) -> None:
    audit, log = tmp_path / "llm.jsonl", tmp_path / "log.jsonl"
    env = {**os.environ, "MEDROBOT_TEST_KEY": "not-a-key"}
    # Nothing listens on the loopback's discard port: the call fails at once, and the failure is audited.
    proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "xray", "--json",
                           "--planner", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                           "--api-key-env", "MEDROBOT_TEST_KEY", "--llm-max-retries", "0", "--llm-timeout", "2",
                           "--llm-audit", str(audit), "--log", str(log), SHOT],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert "llm_call" in _kinds(_lines(audit))
    assert _verify(log)["exit_code"] == 0          # held: the supervisor's own log is closed
    assert _verify(audit)["exit_code"] == 0


@pytest.mark.parametrize("wait", ["-1", "nan", "inf"])
def test_replay_refuses_a_wait_it_cannot_use(xray_run: tuple[Path, Path], wait: str) -> None:
    held = _cli("log", "replay", str(xray_run[0]))
    assert held.returncode == 0, held.stdout          # held: the same log replays identical with the default wait
    proc = _cli("log", "replay", "--wait", wait, str(xray_run[0]))
    assert "Traceback" not in proc.stderr and "damaged" not in proc.stdout + proc.stderr
    assert proc.returncode == 2, proc.stdout[-500:] + proc.stderr[-500:]


def test_export_finds_a_relative_recording_from_another_directory(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    run = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "xray", "--yes", "--json",
                          "--record", "rec", "--log", "run.jsonl", SHOT], capture_output=True, text=True, timeout=240,
                         stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-1500:]
    here = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "log", "export", "run.jsonl", "--mcap", "a.mcap",
                           "--json"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert here.returncode == 0 and len(json.loads(here.stdout)["images"]) == 1      # held from the run's directory
    proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "log", "export", str(tmp_path / "run.jsonl"),
                           "--mcap", "b.mcap", "--json"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path / "elsewhere")
    summary = json.loads(proc.stdout)
    assert proc.returncode == 0 and len(summary["images"]) == 1, summary


def test_show_prints_one_line_per_record_and_no_terminal_escapes(xray_run: tuple[Path, Path], tmp_path: Path) -> None:
    lines = _copy(xray_run, tmp_path)
    result = [i for i, line in enumerate(lines) if json.loads(line)["kind"] == "step_result"][-1]
    record = json.loads(lines[result])
    record["message"] = "ok \x1b[2J\x1b]0;title\x07\r\n    99  00:00:00.000  confirmation  accepted=false"
    lines[result] = json.dumps(record, separators=(",", ":")).encode()
    proc = _cli("log", "show", str(_write(tmp_path / "log.jsonl", lines)))
    assert "step_result" in proc.stdout and "Traceback" not in proc.stderr
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout
    assert not any(line.lstrip().startswith("99 ") for line in proc.stdout.splitlines())


def test_two_runs_never_share_one_mcap_silently(tmp_path: Path) -> None:
    from mcap.exceptions import McapError
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    mcap, log = tmp_path / "same.mcap", tmp_path / "first.jsonl"
    first = subprocess.Popen([sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "ultrasound", "--yes",
                              "--json", "--log", str(log), "--mcap", str(mcap), "scan the right kidney and capture"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while b"step_sent" not in (log.read_bytes() if log.exists() else b""):
        assert first.poll() is None and time.monotonic() < deadline, "the first run ended before its first step"
        time.sleep(0.02)
    second = _cli("run", "--domain", "xray", "--json", "--mcap", str(mcap), "make me a sandwich")
    _, err = first.communicate(timeout=240)
    assert first.returncode == 0, err[-1500:]
    if second.returncode == 2:                      # refused, as a second --log writer is: nothing shared
        return
    topics = set()
    with mcap.open("rb") as f, contextlib.suppress(McapError, ValueError, OSError):
        topics = {channel.topic for _, channel, _, _ in
                  make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()}
    assert "/ultrasound/bmode" in topics, f"second run exit {second.returncode}, file topics {sorted(topics)}"


@pytest.mark.parametrize("whose", ["this_run_s_own_log", "an_earlier_run_s_log", "the_log_export_reads"])
def test_mcap_never_writes_over_an_audit_log(xray_run: tuple[Path, Path], tmp_path: Path, whose: str) -> None:
    log = tmp_path / "audit.jsonl"
    if whose == "an_earlier_run_s_log":
        _write(log, _copy(xray_run, tmp_path))
        argv = ["run", "--domain", "xray", "--json", "--mcap", str(log), "make me a sandwich"]
    elif whose == "the_log_export_reads":
        _write(log, _copy(xray_run, tmp_path))
        argv = ["log", "export", str(log), "--mcap", str(log)]
    else:
        argv = ["run", "--domain", "xray", "--json", "--log", str(log), "--mcap", str(log), "make me a sandwich"]
    before = log.read_bytes() if log.exists() else b""
    proc = _cli(*argv)
    assert "Traceback" not in proc.stderr
    if proc.returncode == 2:                         # refused before anything: the file is as it was
        assert (log.read_bytes() if log.exists() else b"") == before
        return
    assert not log.read_bytes().startswith(b"\x89MCAP"), "the audit log was replaced by the MCAP"
    assert _verify(log)["exit_code"] == 0


def test_log_never_appends_to_a_file_that_is_not_a_log(xray_run: tuple[Path, Path], tmp_path: Path) -> None:
    mcap = tmp_path / "run.mcap"
    made = _cli("log", "export", str(xray_run[0]), "--mcap", str(mcap))
    assert made.returncode == 0 and mcap.read_bytes().startswith(b"\x89MCAP"), made.stderr[-1500:]
    before = mcap.read_bytes()
    proc = _cli("run", "--domain", "xray", "--json", "--log", str(mcap), "make me a sandwich")
    assert "Traceback" not in proc.stderr
    assert mcap.read_bytes() == before, f"the run (exit {proc.returncode}) appended its log to the MCAP"
    assert proc.returncode == 2
