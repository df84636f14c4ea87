"""The audit log: gap-free sequence, durable appends, torn tails reported, never fatal."""

from __future__ import annotations

import json
import os
import threading
from enum import Enum
from pathlib import Path

import pytest

from medrobot_llm.safety.audit import AuditLog, AuditLogError, format_record, read_log
from medrobot_llm.core.plan import Plan
from medrobot_llm.core.reasons import Reason


def test_append_returns_gap_free_sequence_and_writes_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        seqs = [log.append("llm_call", tokens=12, latency_ms=3.5), log.append("command", op="text", text="hi")]
    assert seqs == [0, 1]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["llm_call", "command", "log_closed"]
    first = json.loads(lines[0])
    assert first["seq"] == 0 and first["kind"] == "llm_call" and first["tokens"] == 12
    assert isinstance(first["t_wall"], float) and isinstance(first["t_mono"], float)


def test_every_append_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    with AuditLog(tmp_path / "a.jsonl") as log:
        before = len(synced)
        for k in range(5):
            log.append("x", k=k)
        assert len(synced) - before == 5


def test_reserved_fields_and_empty_kind_are_rejected() -> None:
    log = AuditLog(None)
    with pytest.raises(ValueError):
        log.append("x", seq=3)
    with pytest.raises(ValueError):
        log.append("")
    assert log.next_seq == 0


def test_values_that_json_cannot_hold_are_still_logged() -> None:
    class Colour(Enum):
        RED = "red"

    log = AuditLog(None)
    log.append("x", colour=Colour.RED, plan=Plan.refused("xray", "no", Reason.NOT_UNDERSTOOD), where=Path("/tmp/x"), ids={1})
    rec = log.records[0]
    assert rec["colour"] == "red" and rec["plan"]["status"] == "refused" and rec["where"] == "/tmp/x"
    assert rec["ids"] == [1]


def test_threads_appending_at_once_get_unique_gap_free_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, fsync=False)
    got: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for k in range(100):
            seq = log.append("w", writer=n, k=k)
            with lock:
                got.append(seq)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert sorted(got) == list(range(800))
    read = read_log(path)
    assert read.ok and [r["seq"] for r in read.records] == list(range(801))


def test_a_torn_last_line_is_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.append("a")
    log.append("b")
    log.close()
    with path.open("ab") as f:
        f.write(b'{"seq": 2, "kind": "c", "t_wa')
    read = read_log(path)
    assert [r["kind"] for r in read.records] == ["a", "b", "log_closed"]
    assert len(read.torn) == 1 and read.torn[0].last and read.torn[0].lineno == 4
    assert not read.ok and "torn last line" in read.problems()[0]


def test_reopening_continues_the_sequence_and_closes_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.append("a")
    log.close()
    with path.open("ab") as f:
        f.write(b'{"seq": 1, "ki')
    again = AuditLog(path)
    seq = again.append("b")
    again.close()
    read = read_log(path)
    kinds = [r["kind"] for r in read.records]
    assert kinds == ["a", "log_closed", "log_reopened", "b", "log_closed"]
    assert seq == 3 and read.records[2]["torn_lines"] == [3]
    assert len(read.torn) == 1 and not read.torn[0].last


def test_a_gap_in_the_sequence_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"seq":0,"kind":"a"}\n{"seq":2,"kind":"b"}\n', encoding="utf-8")
    read = read_log(path)
    assert read.gaps == [(1, 2)] and not read.ok


def test_a_closed_log_refuses_records() -> None:
    log = AuditLog(None)
    log.close()
    with pytest.raises(AuditLogError):
        log.append("a")


def test_an_unwritable_path_raises_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AuditLogError, match="cannot open"):
        AuditLog(blocker / "sub" / "a.jsonl")


def test_format_record_is_one_readable_line() -> None:
    log = AuditLog(None)
    log.append("state", **{"from": "IDLE", "to": "PLANNING", "trigger": "plan", "reason": "command received"})
    log.append("command", op="text", text="scan the liver", source="console")
    log.append("step_result", run=1, step=0, skill="sweep", success=False, failure="force_limit", message="12 N")
    lines = [format_record(r) for r in log.records]
    assert "IDLE -> PLANNING" in lines[0] and "(plan)" in lines[0]
    assert "'scan the liver'" in lines[1] and "[console]" in lines[1]
    assert "step 1: sweep" in lines[2] and "FAILED force_limit" in lines[2]
    assert all("\n" not in line for line in lines)
