"""The audit log: one JSON line per event, durable before anyone is told the event happened.

A record is written, flushed and ``fsync``-ed inside ``append``; when ``append`` returns, the record
survives a crash of this process (and of the machine, as far as the disk keeps its promises). Sequence
numbers are gap-free, so a reader can tell a missing record from one that never existed. The log is
generic on purpose: the supervisor, the planners and the consoles all write to the same file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from medrobot_llm.core.jsonable import jsonable

__all__ = ["AuditLog", "AuditLogError", "AuditRead", "TornLine", "format_record", "read_log"]

#: fields every record carries, in this order, ahead of the caller's
RESERVED = ("seq", "kind", "t_wall", "t_mono")


class AuditLogError(RuntimeError):
    """The log cannot be opened or written; the supervisor treats this as a fault."""


class AuditLog:
    """Append-only JSON-lines log, safe to share between threads.

    ``path=None`` keeps the records in memory only (tests, dry runs); ``records`` then holds them.
    Reopening an existing file continues its sequence, so one file can span several sessions.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, fsync: bool = True,
                 keep_records: bool | None = None, mono: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path) if path is not None else None
        self.fsync = fsync
        self._mono = mono
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._closed = False
        self.records: list[dict[str, Any]] = []
        self._keep = keep_records if keep_records is not None else path is None
        self._next_seq = 0
        if self.path is not None:
            self._open(self.path)

    def _open(self, path: Path) -> None:
        existing = read_log(path) if path.exists() else None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            created = not path.exists()
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if created and self.fsync:
                _fsync_dir(path.parent)
        except OSError as exc:
            raise AuditLogError(f"cannot open the audit log {path}: {exc.strerror}") from exc
        if existing is not None:
            if existing.records:
                self._next_seq = int(existing.records[-1].get("seq", -1)) + 1
            if existing.torn:
                # never rewrite evidence: end the torn line so the next record starts on its own line
                self._write(b"\n")
                self.append("log_reopened", torn_lines=[t.lineno for t in existing.torn])

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def append(self, kind: str, **fields: Any) -> int:
        """Write one record and return its sequence number once it is on disk."""
        if not kind or not isinstance(kind, str):
            raise ValueError("a record needs a kind")
        clash = [k for k in fields if k in RESERVED]
        if clash:
            raise ValueError(f"{', '.join(clash)} are set by the log itself")
        with self._lock:
            if self._closed:
                raise AuditLogError("the audit log is closed")
            seq = self._next_seq
            record: dict[str, Any] = {"seq": seq, "kind": kind, "t_wall": time.time(), "t_mono": self._mono()}
            record.update(fields)
            line = json.dumps(record, default=jsonable, ensure_ascii=False, separators=(",", ":")) + "\n"
            if self._fd is not None:
                self._write(line.encode("utf-8"))
            # only now is the record acknowledged: the sequence advances with what is durable
            self._next_seq = seq + 1
            if self._keep:
                self.records.append(json.loads(line))
            return seq

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise AuditLogError(f"cannot write the audit log {self.path}: {exc.strerror}") from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_dir(path: Path) -> None:
    """Make a new file's directory entry durable too (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class TornLine:
    """A line that is not a complete record: the tail of a crash mid-write, or damage."""

    lineno: int
    text: str
    last: bool


@dataclass
class AuditRead:
    records: list[dict[str, Any]] = field(default_factory=list)
    torn: list[TornLine] = field(default_factory=list)

    @property
    def gaps(self) -> list[tuple[int, Any]]:
        """(expected, found) wherever the sequence skips or repeats a number."""
        out: list[tuple[int, Any]] = []
        for prev, cur in zip(self.records, self.records[1:], strict=False):
            expected = int(prev.get("seq", -2)) + 1
            if cur.get("seq") != expected:
                out.append((expected, cur.get("seq")))
        return out

    @property
    def ok(self) -> bool:
        return not self.torn and not self.gaps

    def problems(self) -> list[str]:
        out = [f"line {t.lineno}: {'torn last line' if t.last else 'unreadable line'} ({t.text[:60]!r})"
               for t in self.torn]
        out += [f"sequence gap: expected {e}, found {f}" for e, f in self.gaps]
        return out


def read_log(path: str | os.PathLike[str]) -> AuditRead:
    """Read every complete record; a torn or unreadable line is reported, never fatal."""
    data = Path(path).read_bytes()
    return parse_lines(data.split(b"\n"))


def parse_lines(lines: Iterable[bytes | str]) -> AuditRead:
    out = AuditRead()
    raw = list(lines)
    # a file ending in "\n" splits into a final empty piece; it is not a line
    while raw and not raw[-1].strip():
        raw.pop()
    for n, line in enumerate(raw, start=1):
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        if not text.strip():
            continue
        try:
            rec = json.loads(text)
            if not isinstance(rec, Mapping) or "seq" not in rec or "kind" not in rec:
                raise ValueError("not a record")
        except ValueError:
            out.torn.append(TornLine(n, text, last=n == len(raw)))
            continue
        out.records.append(dict(rec))
    return out


_SKIP_IN_SUMMARY = set(RESERVED) | {"clock"}


def format_record(rec: Mapping[str, Any]) -> str:
    """One line for people: sequence, wall time, kind, then what matters for that kind."""
    seq = rec.get("seq", "?")
    try:
        stamp = datetime.fromtimestamp(float(rec.get("t_wall", 0.0))).strftime("%H:%M:%S.%f")[:-3]
    except (TypeError, ValueError, OverflowError, OSError):
        stamp = "??:??:??.???"
    kind = str(rec.get("kind", "?"))
    body = _summary(kind, rec)
    return f"{seq:>6}  {stamp}  {kind:<13} {body}".rstrip()


def _summary(kind: str, rec: Mapping[str, Any]) -> str:
    if kind == "state":
        reason = f"  {rec['reason']}" if rec.get("reason") else ""
        return f"{rec.get('from')} -> {rec.get('to')}  ({rec.get('trigger')}){reason}"
    if kind == "command":
        op, source = rec.get("op"), rec.get("source")
        tail = f"  [{source}]" if source else ""
        if op == "text":
            return f"{rec.get('text')!r}{tail}"
        extra = {k: v for k, v in rec.items()
                 if k not in _SKIP_IN_SUMMARY and k not in ("op", "source", "state", "n_states", "plan")}
        plan = rec.get("plan")
        if isinstance(plan, Mapping):
            extra["steps"] = "[" + ", ".join(str(s.get("skill")) for s in plan.get("steps", [])) + "]"
        return f"{op} {_kv(extra)}".rstrip() + tail
    if kind in ("step_sent", "step_result"):
        head = f"run {rec.get('run')} step {int(rec.get('step', -1)) + 1}: {rec.get('skill')}"
        if kind == "step_sent":
            return f"{head} {_kv(rec.get('args') or {})}".rstrip()
        verdict = "ok" if rec.get("success") else f"FAILED {rec.get('failure')}"
        return f"{head} -> {verdict}: {rec.get('message', '')}"
    if kind in ("plan", "validation"):
        plan = rec.get("plan") or {}
        steps = ", ".join(s.get("skill", "?") for s in plan.get("steps", [])) if isinstance(plan, Mapping) else ""
        status = plan.get("status") if isinstance(plan, Mapping) else None
        why = plan.get("reason") or plan.get("question") if isinstance(plan, Mapping) else None
        tail = f" — {why}" if why else ""
        return f"{status}: [{steps}]{tail}" + (f"  ({rec['text']!r})" if rec.get("text") else "")
    if kind == "question":
        return str(rec.get("text", ""))
    rest = {k: v for k, v in rec.items() if k not in _SKIP_IN_SUMMARY}
    return _kv(rest)


def _kv(fields: Mapping[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        text = v if isinstance(v, str) else json.dumps(v, default=jsonable, ensure_ascii=False)
        if isinstance(v, str) and (" " in v or not v):
            text = json.dumps(v, ensure_ascii=False)
        parts.append(f"{k}={text}")
    return " ".join(parts)
