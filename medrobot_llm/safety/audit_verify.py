"""Checking an audit log's hash chain: was anything edited, deleted, inserted or reordered?

``safety.audit`` links each record to the one before by the SHA-256 of its exact bytes, from a random start
in the log's first record, and ends a cleanly closed log with ``log_closed``. This module walks a file's
bytes (never a re-serialisation: the hashes are of what is on disk) and sorts what it finds into four
verdicts, each with its own exit code for ``medrobot log verify``. The chain is keyless: it shows damage and
careless edits; someone who rewrites every hash after an edit is caught only by comparing ``head`` (the last
link) with a copy kept elsewhere.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from medrobot_llm.safety.audit import (CLOSED_KIND, LINE_START, REOPENED_KIND, as_record, line_hash, lock_holder,
                                       read_bytes, seal_holds)

__all__ = ["Verdict", "VerifyReport", "verify_bytes", "verify_file"]


class Verdict(Enum):
    """What a log is, worst first; ``code`` is the exit code of ``medrobot log verify``."""

    TAMPERED = ("tampered", 1)
    UNCHAINED = ("unchained", 3)
    INCOMPLETE = ("incomplete", 2)
    EMPTY = ("empty", 5)
    INTACT = ("intact", 0)

    def __init__(self, label: str, code: int) -> None:
        self.label = label
        self.code = code


#: what ``log verify`` exits with when it cannot read the file at all
UNREADABLE_CODE = 4


@dataclass
class VerifyReport:
    records: int = 0
    chained: int = 0
    head: str | None = None
    problems: list[str] = field(default_factory=list)   # tampering or damage
    unchained: list[str] = field(default_factory=list)  # records written before the chain existed
    incomplete: list[str] = field(default_factory=list)  # what a crash leaves: torn last line, no close record
    notes: list[str] = field(default_factory=list)
    empty: bool = False   # no bytes at all: nothing to check, and nothing that says how its writer ended
    broken_lines: set[int] = field(default_factory=set)   # the lines ``problems`` names, for ``log show``

    @property
    def verdict(self) -> Verdict:
        if self.empty:
            return Verdict.EMPTY
        if self.problems:
            return Verdict.TAMPERED
        if self.unchained:
            return Verdict.UNCHAINED
        if self.incomplete:
            return Verdict.INCOMPLETE
        return Verdict.INTACT

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict.label, "exit_code": self.verdict.code, "records": self.records,
                "chained": self.chained, "head": self.head, "problems": self.problems,
                "unchained": self.unchained, "incomplete": self.incomplete, "notes": self.notes,
                "broken_lines": sorted(self.broken_lines)}

    def render(self) -> str:
        verdict = self.verdict
        summary = {
            Verdict.INTACT: f"intact: {self.records} record(s), each linked to the one before; closed cleanly",
            Verdict.INCOMPLETE: f"incomplete: {self.records} record(s) linked, but the end is not final "
                                "(a crash, a kill, a writer still running, or a cut end)",
            Verdict.UNCHAINED: f"no hash chain (written before the audit log chained its records): "
                               f"{len(self.unchained)} of {self.records} record(s); only their sequence is checked",
            Verdict.EMPTY: "empty: no records (a writer stopped before its first record, or one that has not "
                           "written yet); nothing to check",
            Verdict.TAMPERED: f"TAMPERED or damaged: {len(self.problems)} problem(s) in {self.records} record(s)",
        }[verdict]
        lines = [summary]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  no chain: {u}" for u in self.unchained]
        lines += [f"  end: {i}" for i in self.incomplete]
        lines += [f"  note: {n}" for n in self.notes]
        if self.head and verdict is not Verdict.TAMPERED:
            lines.append(f"  head: {self.head} (keep it elsewhere to catch a rewrite of the whole chain)")
        return "\n".join(lines)


def verify_bytes(data: bytes) -> VerifyReport:
    """Check the chain, the sequence and the ending of a log's bytes."""
    report = VerifyReport(empty=not data)
    raw = data.split(b"\n")
    ends_cleanly = data.endswith(b"\n") or not data
    if ends_cleanly:
        raw.pop()  # the empty piece after the final newline

    def bad(n: int, problem: str) -> None:
        report.problems.append(problem)
        report.broken_lines.add(n)

    prev_line: bytes | None = None   # the last record's bytes
    prev_n = 0
    prev_seq: int | None = None
    chain_started = False
    torn_inside: list[int] = []
    acknowledged: set[int] = set()
    last_kind: str | None = None
    for n, line in enumerate(raw, start=1):
        is_last = n == len(raw)
        rec = as_record(line)
        if rec is None:
            if is_last and not ends_cleanly and _writers(line):
                report.incomplete.append(f"line {n} is torn ({_show(line)}): the writer died mid-record")
            elif is_last and not ends_cleanly:
                bad(n, f"line {n} ({_show(line)}) is no record and not the start of one: bytes the writer never "
                    "writes (damage, or appended by hand)")
            elif not line.strip():
                bad(n, f"line {n} is empty: the log never writes an empty line")
            else:
                torn_inside.append(n)
            continue
        report.records += 1
        seq = rec.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            bad(n, f"line {n}: seq is {seq!r}, not a whole number")
        elif prev_seq is None and seq != 0:
            bad(n, f"line {n}: the first record has seq {seq}; records 0..{seq - 1} are missing")
        elif prev_seq is not None and seq != prev_seq + 1:
            bad(n, f"line {n}: seq {seq} follows seq {prev_seq} (expected {prev_seq + 1})")
        prev_seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        link = rec.get("prev")
        if link is None:
            if chain_started:
                bad(n, f"line {n} (seq {seq!r}): no hash link inside the chain")
            else:
                report.unchained.append(f"line {n} (seq {seq!r}, {rec.get('kind')})")
        elif rec.get("chain_start") is True:
            if chain_started:
                bad(n, f"line {n} (seq {seq!r}): a second chain start; the log was spliced")
            chain_started = True
            if rec.get("fsync") is False:
                report.notes.append(f"line {n}: written without fsync; a crash may have lost its last records")
        elif not chain_started:
            bad(n, f"line {n} (seq {seq!r}): linked to a record, but no chain start comes before it")
            chain_started = True
        elif prev_line is None or link != line_hash(prev_line):
            bad(n, f"line {n} (seq {seq!r}): its link does not match the record before it "
                "(edited, deleted, inserted or moved)")
        if ("seal" in rec or rec.get("kind") == CLOSED_KIND) and link is not None and not seal_holds(line):
            bad(n, f"line {n} (seq {seq!r}): the close record is not what its writer sealed")
        if link is not None:
            report.chained += 1
        if rec.get("kind") == REOPENED_KIND:
            acknowledged.update(t for t in rec.get("torn_lines") or [] if isinstance(t, int))
            before = as_record(prev_line) if prev_line is not None else None
            if before is not None and before.get("kind") == CLOSED_KIND:
                report.incomplete.append(f"line {n}: a writer died in its first record after the close at line "
                                         f"{prev_n} (a crash); a later writer reopened the log here")
            else:
                ended = f"line {prev_n} (seq {before.get('seq')!r})" if before is not None else "its start"
                report.incomplete.append(f"line {n}: the session before ended at {ended} without its close record "
                                         "(a crash, a kill, or records removed); a later writer reopened the log here")
        prev_line = line
        prev_n = n
        last_kind = str(rec.get("kind"))
    for n in torn_inside:
        if n in acknowledged and _writers(raw[n - 1]):
            report.notes.append(f"line {n} was torn by a crash and reported by the writer that reopened the log")
        else:
            bad(n, f"line {n} is not a record ({_show(raw[n - 1])}) and no reopening reports it as a torn record")
    if report.empty:
        report.notes.append("the file has no bytes: no record was ever written to it")
    elif report.records == 0 and not report.incomplete:
        report.problems.append("the log has no records")
    elif last_kind != CLOSED_KIND and chain_started:
        report.incomplete.append(f"the last record is {last_kind!r}, not {CLOSED_KIND!r}: the writer was killed, "
                                 "is still running, or the end was cut off")
    if prev_line is not None and chain_started:
        report.head = line_hash(prev_line)
    return report


def _writers(line: bytes) -> bool:
    """Whether ``line`` could be a record the writer was cut off in: it starts as every record starts."""
    return line.startswith(LINE_START) or LINE_START.startswith(line)


def _show(line: bytes) -> str:
    return repr(line[:60].decode("utf-8", "replace"))


def verify_file(path: str | os.PathLike[str]) -> VerifyReport:
    """``verify_bytes`` of a file, noting a writer that still holds it (its end is not final yet).

    Raises ``OSError`` or ``AuditLogError`` when the file cannot be read as a log."""
    report = verify_bytes(read_bytes(path))
    holder = _writer(Path(path))
    if holder is not None:
        report.notes.append(f"{holder} is writing this log now")
    return report


def _writer(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return lock_holder(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None
