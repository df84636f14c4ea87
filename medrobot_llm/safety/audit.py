"""The audit log: one JSON line per event, durable before anyone is told the event happened.

A record is written, flushed and ``fsync``-ed inside ``append``; when ``append`` returns, the record
survives a crash of this process (and of the machine, as far as the disk keeps its promises). Sequence
numbers are gap-free, so a reader can tell a missing record from one that never existed. The log is
generic on purpose: the supervisor, the planners and the consoles all write to the same file.

Each record ends with ``prev``, the SHA-256 of the line before it, and the first record of a log with a
random start (``chain_start``), so an edit, a deletion, an insertion or a reordering breaks the chain
(``safety.audit_verify`` checks it). A clean close writes ``log_closed``: a log that ends without it was
killed, or cut. One process writes a file at a time (an exclusive ``flock``): two writers reading the
sequence once each would duplicate numbers and fork the chain.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from medrobot_llm.core.jsonable import jsonable
from medrobot_llm.core.outputs import file_kind, lock_holder

__all__ = ["CHAIN_FIELDS", "CLOSED_KIND", "LINE_START", "REOPENED_KIND", "AuditLog", "AuditLogError", "AuditRead",
           "TornLine", "as_record", "format_record", "line_hash", "lock_holder", "printable", "read_bytes", "read_log",
           "seal_holds"]

#: fields every record carries, in this order, ahead of the caller's
RESERVED = ("seq", "kind", "t_wall", "t_mono")
#: fields the log appends after the caller's: the hash chain, and on a chain's first record its fsync promise
CHAIN_FIELDS = ("prev", "chain_start", "fsync", "seal")
#: the record a writer leaves when it closes cleanly; a log that ends without one was killed or cut
CLOSED_KIND = "log_closed"
#: the record a writer leaves when it reopens a log whose last session ended without its close record
REOPENED_KIND = "log_reopened"
#: how every line the writer writes begins (``seq`` first): a cut line is a prefix of a record, never other bytes
LINE_START = b'{"' + RESERVED[0].encode("ascii") + b'":'
#: a log larger than this is not read into memory by a writer reopening it (nor by ``read_log``)
MAX_LOG_BYTES = 1 << 30


def line_hash(line: bytes) -> str:
    """The chain's link: SHA-256 of one line's exact bytes, without its newline."""
    return hashlib.sha256(line).hexdigest()


_SEAL = re.compile(rb',"seal":"([0-9a-f]{64})"\}$')


def _sealed(body: bytes) -> bytes:
    """The close record carries its own hash: no later record links to it, yet an edit of it must show."""
    return body[:-1] + b',"seal":"' + line_hash(body).encode("ascii") + b'"}'


def seal_holds(line: bytes) -> bool:
    """Whether a sealed line (the close record) is byte for byte what its writer sealed."""
    match = _SEAL.search(line)
    return match is not None and match.group(1).decode("ascii") == line_hash(line[:match.start()] + b"}")


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
        self._closing = False
        self.records: list[dict[str, Any]] = []
        self._keep = keep_records if keep_records is not None else path is None
        self._next_seq = 0
        self._prev: str | None = None   # hash of the last line; None: the next record starts a chain
        self._written = 0
        self._empty_at_open = False   # a file with no bytes: closed with a record even if nothing else came
        if self.path is not None:
            self._open(self.path)

    def _open(self, path: Path) -> None:
        created = not path.exists()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_NONBLOCK: a FIFO with no reader fails at once instead of hanging; fstat then refuses any non-file
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise AuditLogError(f"cannot open the audit log {path}: {_why(exc)}") from exc
        try:
            _require_regular(fd, path)
            _require_writable(fd, path)
            _lock(fd, path)
            os.set_blocking(fd, True)
            data = _read_all(fd, path)
            _require_log(data, path)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if created and self.fsync:
            _fsync_dir(path.parent)
        if not data:
            self._empty_at_open = True
            return
        existing = parse_lines(data.split(b"\n"))
        if existing.records:
            last = existing.records[-1]
            seq = last.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                self.close_quietly()
                raise AuditLogError(f"the audit log {path} is damaged: its last record has seq {seq!r}, so the "
                                    "next number is unknown; check it with `medrobot log verify` and start a new log")
            self._next_seq = seq + 1
            if "prev" in last:
                self._prev = line_hash(_last_record_line(data))
        if not data.endswith(b"\n"):
            # never rewrite evidence: end the cut-off line so the next record starts on its own line
            self._write(b"\n")
        torn_end = bool(existing.torn and existing.torn[-1].last)
        # a log from before close records (no chain) never had one to leave
        unclosed = bool(existing.records) and "prev" in existing.records[-1] \
            and existing.records[-1].get("kind") != CLOSED_KIND
        if torn_end or unclosed:
            # the session before ended without its close record (a kill, a crash, or a cut): said here, at
            # the seam, so that a later session's clean close never hides it from ``log verify``
            last_seq = existing.records[-1].get("seq") if existing.records else None
            self.append(REOPENED_KIND, torn_lines=[t.lineno for t in existing.torn] if torn_end else [],
                        unclosed_after=last_seq if unclosed else None)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def append(self, kind: str, **fields: Any) -> int:
        """Write one record and return its sequence number once it is on disk."""
        if not kind or not isinstance(kind, str):
            raise ValueError("a record needs a kind")
        clash = [k for k in fields if k in RESERVED or k in CHAIN_FIELDS]
        if clash:
            raise ValueError(f"{', '.join(clash)} are set by the log itself")
        with self._lock:
            if self._closed:
                raise AuditLogError("the audit log is closed")
            seq = self._next_seq
            record: dict[str, Any] = {"seq": seq, "kind": kind, "t_wall": time.time(), "t_mono": self._mono()}
            record.update(fields)
            if self._prev is None:
                record.update(prev=secrets.token_hex(32), chain_start=True, fsync=self.fsync)
            else:
                record["prev"] = self._prev
            body = json.dumps(record, default=jsonable, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            if kind == CLOSED_KIND:
                body = _sealed(body)
            if self._fd is not None:
                self._write(body + b"\n")
            # only now is the record acknowledged: the sequence and the chain advance with what is durable
            self._next_seq = seq + 1
            self._prev = line_hash(body)
            self._written += 1
            if self._keep:
                self.records.append(json.loads(body))
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
        """Write the close record (a file log that wrote anything, or was empty) and release the file and its lock.

        An empty file is closed too: a writer stopped before its first record would otherwise leave a file
        that says nothing about how it ended.
        A close record that cannot be written is given up: the log then reads as killed, which it was."""
        with self._lock:
            mark = self._fd is not None and (self._written > 0 or self._empty_at_open) and not self._closing
            self._closing = True
        if mark:
            try:
                self.append(CLOSED_KIND, records=self._written + 1)
            except AuditLogError:
                pass
        self.close_quietly()

    def close_quietly(self) -> None:
        """Release the file without a close record: for a log that must not be written to (damaged, failing)."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)   # closing the descriptor releases its flock
                self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENXIO:
        return "it is a FIFO with no reader; give a regular file"
    if exc.errno == errno.EISDIR:
        return "it is a directory; give a file"
    return exc.strerror or str(exc)


def _require_regular(fd: int, path: Path) -> None:
    """A log is a regular file: a directory, FIFO, socket or device (``/dev/zero``) would hang or never end."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        raise AuditLogError(f"cannot use {path} as an audit log: it is {file_kind(mode)}; give a regular file")


def _require_log(data: bytes, path: Path) -> None:
    """Records are appended only to an audit log (every line a JSON object) or an empty file: appended to
    anything else (an MCAP recording, a picture) they would destroy it and read as a tampered log."""
    if data and not data.startswith(b"{"):
        raise AuditLogError(f"cannot use {path} as an audit log: it holds something else (it starts with "
                            f"{data[:8]!r}); give a new file or an existing audit log")


def _require_writable(fd: int, path: Path) -> None:
    """Refuse at open what would fail at the first record: a read-only mount, a kernel file (``/proc/...``)
    that opens for writing but takes no bytes. An empty write is a no-op on a real file."""
    try:
        if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
            raise AuditLogError(f"cannot use {path} as an audit log: its file system is read-only")
        os.write(fd, b"")
    except OSError as exc:
        raise AuditLogError(f"cannot use {path} as an audit log: it takes no writes ({_why(exc)})") from exc


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise AuditLogError(f"the audit log {path} is being written by {lock_holder(fd)}; one process writes a "
                            "log at a time: give this run its own --log file") from None
    except OSError as exc:
        raise AuditLogError(f"cannot lock the audit log {path}: {_why(exc)}") from exc


def _read_all(fd: int, path: Path) -> bytes:
    size = os.fstat(fd).st_size
    if size > MAX_LOG_BYTES:
        raise AuditLogError(f"the audit log {path} is {size} bytes, more than this reader takes; start a new log")
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def as_record(line: bytes | str) -> dict[str, Any] | None:
    """The record a line holds, or None for a line that is none (torn, damaged, blank)."""
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):   # RecursionError: a crafted line nested deeper than the parser goes
        return None
    if not isinstance(rec, Mapping) or "seq" not in rec or "kind" not in rec:
        return None
    return dict(rec)


def _last_record_line(data: bytes) -> bytes:
    """The bytes of the last line that parses as a record (the chain continues from it, not from a torn tail)."""
    for line in reversed(data.split(b"\n")):
        if line.strip() and as_record(line) is not None:
            return line
    return b""


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
            before = prev.get("seq")
            if not isinstance(before, int) or isinstance(before, bool):
                out.append((-1, before))   # a damaged number: the one after it cannot be checked
                continue
            expected = before + 1
            if cur.get("seq") != expected:
                out.append((expected, cur.get("seq")))
        return out

    @property
    def ok(self) -> bool:
        return not self.torn and not self.gaps

    def problems(self) -> list[str]:
        out = [f"line {t.lineno}: {'torn last line' if t.last else 'unreadable line'} ({t.text[:60]!r})"
               for t in self.torn]
        out += [f"sequence gap: expected {e}, found {f}" if e >= 0 else f"sequence number {f!r} is not a number"
                for e, f in self.gaps]
        return out


def read_log(path: str | os.PathLike[str]) -> AuditRead:
    """Read every complete record; a torn or unreadable line is reported, never fatal.

    Raises ``OSError`` when the file cannot be read and ``AuditLogError`` when it is no regular file."""
    return parse_lines(read_bytes(path).split(b"\n"))


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A log's bytes, refusing what would hang (a FIFO) or never end (``/dev/zero``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _require_regular(fd, Path(path))
        return _read_all(fd, Path(path))
    finally:
        os.close(fd)


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
        rec = as_record(text)
        if rec is None:
            out.torn.append(TornLine(n, text, last=n == len(raw)))
            continue
        out.records.append(rec)
    return out


_SKIP_IN_SUMMARY = set(RESERVED) | {"clock"}


def format_record(rec: Mapping[str, Any]) -> str:
    """One line for people: sequence, wall time, kind, then what matters for that kind."""
    seq = str(rec.get("seq", "?"))
    try:
        stamp = datetime.fromtimestamp(float(rec.get("t_wall", 0.0))).strftime("%H:%M:%S.%f")[:-3]
    except (TypeError, ValueError, OverflowError, OSError):
        stamp = "??:??:??.???"
    kind = str(rec.get("kind", "?"))
    try:
        body = _summary(kind, rec)
    except (AttributeError, TypeError, ValueError, KeyError):
        # a damaged record (a plan whose steps are no steps): shown as it is, never a traceback
        body = "(damaged) " + _kv({k: v for k, v in rec.items() if k not in _SKIP_IN_SUMMARY})
    return printable(f"{seq:>6}  {stamp}  {kind:<13} {body}".rstrip())


#: what a terminal acts on instead of showing: C0 and C1 controls, DEL, and the Unicode line separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with every control character escaped: a logged message must neither drive the reader's
    terminal (escape sequences) nor start a line that looks like another record (newlines)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


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
