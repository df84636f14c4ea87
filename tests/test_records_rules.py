"""The rules behind issue 18's findings on the audit log and ``medrobot log``, over more cases than the
examples in ``test_records_attacks.py``: every cut-and-reopen, every appended tail, every wait, every message."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medrobot_llm import cli
from medrobot_llm.core.reasons import Reason
from medrobot_llm.planning.admission import REFUSED_EXCERPT_CHARS, refusal_fields
from medrobot_llm.safety.audit import CLOSED_KIND, LINE_START, AuditLog, format_record, read_log
from medrobot_llm.safety.audit_verify import Verdict, verify_bytes, verify_file

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _closed_log(path: Path, n: int) -> list[bytes]:
    with AuditLog(path, fsync=False) as log:
        for i in range(n):
            log.append("step_sent" if i % 2 else "command", step=i)
    return path.read_bytes().splitlines()


@FAST
@given(n=st.integers(1, 8), data=st.data())
def test_every_session_cut_short_is_reported_after_any_later_session(tmp_path_factory: pytest.TempPathFactory,
                                                                     n: int, data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("cut") / "log.jsonl"
    lines = _closed_log(path, n)
    keep = data.draw(st.integers(1, len(lines) - 1), label="records kept (the close record never)")
    path.write_bytes(b"".join(line + b"\n" for line in lines[:keep]))
    for _ in range(data.draw(st.integers(1, 3), label="later sessions")):
        with AuditLog(path, fsync=False) as later:
            later.append("command", op="text")
    report = verify_file(path)
    assert report.verdict is Verdict.INCOMPLETE and report.verdict.code == 2 and not report.problems
    # named at the seam: the line the later writer reopened at, and the last record of the cut session
    assert report.incomplete[0].startswith(f"line {keep + 1}: the session before ended at line {keep} (seq {keep - 1})")


@FAST
@given(tail=st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b))
def test_a_tail_after_a_closed_log_is_a_crash_only_if_a_writer_could_have_written_it(
        tmp_path_factory: pytest.TempPathFactory, tail: bytes) -> None:
    path = tmp_path_factory.mktemp("tail") / "log.jsonl"
    data = b"".join(line + b"\n" for line in _closed_log(path, 2)) + tail
    writers = tail.startswith(LINE_START) or LINE_START.startswith(tail)
    expected = Verdict.INCOMPLETE if writers else Verdict.TAMPERED
    assert verify_bytes(data).verdict is expected
    # and a later writer acknowledging the tail does not make damage a crash
    path.write_bytes(data)
    with AuditLog(path, fsync=False) as later:
        later.append("command")
    assert verify_file(path).verdict is (Verdict.INCOMPLETE if writers else Verdict.TAMPERED)


def test_an_empty_file_is_its_own_verdict_and_a_writer_never_leaves_one(tmp_path: Path) -> None:
    report = verify_bytes(b"")
    assert report.verdict is Verdict.EMPTY and report.verdict.code not in (0, 1, 2, 3, 4)
    path = tmp_path / "skill_server_audit.jsonl"
    AuditLog(path).close()                          # a server stopped cleanly before its first record
    assert [r["kind"] for r in read_log(path).records] == [CLOSED_KIND]
    assert verify_file(path).verdict is Verdict.INTACT
    path.write_bytes(b"")                           # an empty file someone made, reopened and closed
    AuditLog(path).close()
    assert verify_file(path).verdict is Verdict.INTACT


def test_reopening_a_closed_log_and_writing_nothing_adds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    before = b"".join(line + b"\n" for line in _closed_log(path, 2))
    AuditLog(path).close()
    assert path.read_bytes() == before


@FAST
@given(message=st.text(max_size=60))
def test_show_prints_any_message_on_one_line_without_control_characters(message: str) -> None:
    rec = {"seq": 3, "kind": "step_result", "t_wall": 0.0, "run": 1, "step": 0, "skill": "take_shot",
           "success": True, "message": message, "note": message}
    line = format_record(rec)
    assert len(line.splitlines()) == 1
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in line), repr(line)


@FAST
@given(text=st.text(max_size=3 * REFUSED_EXCERPT_CHARS))
def test_any_refused_text_is_logged_escaped_bounded_and_hashed(tmp_path_factory: pytest.TempPathFactory,
                                                               text: str) -> None:
    fields = refusal_fields(text, Reason.INVALID_TEXT, "the command contains control characters; type plain text")
    path = tmp_path_factory.mktemp("refused") / "log.jsonl"
    with AuditLog(path, fsync=False) as log:
        log.append("command_refused", **fields)   # never a UnicodeEncodeError: surrogates are escaped too
    (rec, _) = read_log(path).records
    assert rec["text_bytes"] == len(text.encode("utf-8", "surrogatepass"))
    assert not any(ord(c) < 32 or ord(c) == 127 for c in rec["excerpt"])
    assert len(rec["excerpt"]) <= 10 * REFUSED_EXCERPT_CHARS


@pytest.mark.parametrize("wait", ["-1", "-0.001", "nan", "inf", "-inf", "1e309", "3601", "soon", ""])
def test_replay_refuses_every_wait_no_timer_can_use(tmp_path: Path, wait: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["log", "replay", "--wait", wait, str(tmp_path / "log.jsonl")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--wait" in err and "Traceback" not in err


@pytest.mark.parametrize("wait", ["0", "0.5", "3600"])
def test_replay_takes_a_wait_it_can_use(tmp_path: Path, wait: str) -> None:
    # the file is missing: the wait was accepted, and the answer is the reader's (exit 2), not argparse's
    assert cli.main(["log", "replay", "--wait", wait, str(tmp_path / "missing.jsonl")]) == 2


@pytest.mark.parametrize("ending", ["closed", "killed", "edited"])
def test_export_exits_0_only_for_an_intact_log_and_names_the_rest(tmp_path: Path, ending: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mcap_ros2")
    path = tmp_path / "log.jsonl"
    log = AuditLog(path)
    log.append("session", domain="xray")
    log.append("state", to="PLANNING")
    if ending == "killed":
        log.close_quietly()
    else:
        log.close()
    if ending == "edited":
        path.write_bytes(path.read_bytes().replace(b'"PLANNING"', b'"IDLE"'))
    code = cli.main(["log", "export", str(path), "--mcap", str(tmp_path / "out.mcap"), "--json"])
    problems = json.loads(capsys.readouterr().out)["problems"]
    if ending == "closed":
        assert code == 0 and problems == []
    else:
        assert code == 1 and problems[0].startswith("the log is not intact")
        assert any(p.startswith("end: " if ending == "killed" else "chain: ") for p in problems), problems


@pytest.mark.sim
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_run_stopped_by_sigterm_or_sighup_stops_the_robot_and_closes_its_log(tmp_path: Path,
                                                                                signum: int) -> None:
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "ultrasound", "--yes",
                             "--json", "--log", str(log), "scan the right kidney and capture"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while b"step_sent" not in (log.read_bytes() if log.exists() else b""):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first step"
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum and "Traceback" not in err, err[-1500:]
    assert signal.Signals(signum).name in err
    records = read_log(log).records
    assert records[-1]["kind"] == CLOSED_KIND and verify_file(log).verdict is Verdict.INTACT
    # the run did not just stop being watched: the supervisor ended it, as it does on Ctrl-C
    states = [r for r in records if r["kind"] == "state"]
    assert (states[-1]["to"], states[-1]["trigger"], states[-1]["reason"]) == ("IDLE", "cancel", "supervisor closed")
    assert [r["outcome"] for r in records if r["kind"] == "run_end"] == ["cancel"]
