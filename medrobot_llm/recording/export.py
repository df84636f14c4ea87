"""One MCAP file per run: the supervisor's records, the robot's telemetry and the pictures, in ROS 2 types.

The records come in the order the audit log wrote them, and each message is logged at its record's wall time
(``t_wall``), so a viewer's timeline is the log's. Feedback samples (never in the audit log) are taken when a
live run hears them; a scene frame is logged when its file was written. ``mcap`` and ``mcap-ros2-support`` are
imported here only: the ``mcap`` extra, needed by ``run --mcap`` and ``log export --mcap`` and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from mcap.records import Schema
from mcap_ros2.writer import Writer

from medrobot_llm.core.outputs import claim_output
from medrobot_llm.core.paths import file_sha256
from medrobot_llm.recording.messages import (TOPICS, Message, Topic, frame_message, image_message, image_topic, stamp,
                                             telemetry_messages, to_json)
from medrobot_llm.recording.msgdefs import msgdef
from medrobot_llm.safety.events import StepResultEvent, parse_event
from medrobot_llm.safety.machine import SupervisorState

__all__ = ["ExportSummary", "McapRecorder", "export_records", "interleave"]

#: supervisor states in which the robot is halted (SupervisorState.halted on the graph)
_HALTED = (SupervisorState.ESTOP.value, SupervisorState.FAULT.value)


@dataclass
class ExportSummary:
    """What went into the file, for the command's report and for tests."""

    path: Path
    messages: Counter[str] = field(default_factory=Counter)
    images: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # a file whose bytes are not the ones the log names

    @property
    def complete(self) -> bool:
        """Every picture the records name is in the file, as they name it."""
        return not self.missing and not self.changed

    def to_json(self) -> dict[str, Any]:
        return {"mcap": str(self.path), "messages": sum(self.messages.values()), "topics": dict(self.messages),
                "images": self.images, "missing_images": self.missing, "changed_images": self.changed}


@dataclass
class _Context:
    """What a record means depends on the ones before it: which session, run, step and question it belongs to."""

    domain: str = ""
    session: int = 0
    run: int | None = None
    steps: int = 0
    step: int = -1
    skill: str = ""
    question: dict[str, Any] = field(default_factory=dict)
    operator: str = ""
    last_ns: int = 0
    session_ns: int = 0

    @property
    def plan_id(self) -> str:
        return "" if self.run is None else f"{self.session}:{self.run}"


class _Writer(Writer):
    """mcap-ros2-support's writer (which encodes dicts) with what recording the wire needs besides: messages
    already in CDR, as they travelled, and a flush that ends the chunk being written. Both use the writer's own
    MCAP writer and channel table (``_writer``, ``_channel_ids``, as in mcap-ros2-support 0.6), so that dicts and
    CDR bytes share one file; tests/test_mcap_live.py fails if a release renames them."""

    def write_cdr(self, topic: str, schema: Schema, data: bytes, *, log_time: int, publish_time: int,
                  sequence: int) -> None:
        channel_id = self._channel_ids.get(topic)
        if channel_id is None:
            channel_id = self._channel_ids[topic] = self._writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=schema.id)
        self._writer.add_message(channel_id=channel_id, log_time=log_time, publish_time=publish_time,
                                 sequence=sequence, data=data)

    def flush(self) -> None:
        self._writer.flush()  # type: ignore[no-untyped-call]


class McapRecorder:
    """Writes records, feedback, images and frames into one MCAP file; ``close`` finishes the file."""

    def __init__(self, output: str | Path | IO[bytes], *, domain: str = "", record_dir: Path | None = None) -> None:
        self.summary = ExportSummary(Path(output) if isinstance(output, str | Path) else Path("<stream>"))
        self._owns = isinstance(output, str | Path)
        if isinstance(output, str | Path):
            # a new or empty file, held until close: never over a log, a FIFO, a device or another writer's file
            self._stream: IO[bytes] = os.fdopen(claim_output(Path(output)), "wb")
        else:
            self._stream = output
        self._writer = _Writer(self._stream)
        self._schemas: dict[str, Schema] = {}
        self._ctx = _Context(domain=domain)
        self._record_dir = record_dir
        self._seq: Counter[str] = Counter()
        #: logged path -> SHA-256, from the log's ``recording`` records (the files a run left, named after it) and
        #: ``hazard`` records (an exposure's image, named once it is written)
        self._hashes: dict[str, str] = {}
        self._frames: set[Path] = set()
        self._named: set[str] = set()
        #: a change to AWAITING_CONFIRMATION, held until the question record that follows it (the supervisor logs
        #: the change first), so that its message says which question, for which step and skill
        self._awaiting: tuple[Mapping[str, Any], int] | None = None

    # -- writing -------------------------------------------------------------------------------------------
    def schema(self, datatype: str) -> Schema:
        """The schema record of ``datatype``, written into the file the first time it is needed."""
        schema = self._schemas.get(datatype)
        if schema is None:
            schema = self._schemas[datatype] = self._writer.register_msgdef(datatype, msgdef(datatype))
        return schema

    def write(self, topic: Topic, message: Mapping[str, Any], t_ns: int) -> None:
        self._writer.write_message(topic.name, self.schema(topic.datatype), dict(message), log_time=t_ns,
                                   publish_time=t_ns, sequence=self._seq[topic.name])
        self._counted(topic.name)

    def write_cdr(self, topic: Topic, data: bytes, t_ns: int, sent_ns: int) -> None:
        """A message as it travelled on the graph (CDR bytes), logged when heard and published when sent: what
        a bag recorder writes. Its definition goes in with it, as for every other message."""
        self._writer.write_cdr(topic.name, self.schema(topic.datatype), data, log_time=t_ns,
                               publish_time=sent_ns, sequence=self._seq[topic.name])
        self._counted(topic.name)

    def _counted(self, topic: str) -> None:
        self._seq[topic] += 1
        self.summary.messages[topic] += 1

    def flush(self) -> None:
        """End the chunk being written and hand it to the OS. MCAP keeps a chunk in memory until it is full,
        so without this a process killed (SIGKILL: no ``close``) loses the last chunk; with it, a streaming
        reader gets every message written before the flush back from the unfinished file."""
        self._writer.flush()

    def _write_all(self, messages: Iterable[Message], t_ns: int) -> None:
        for topic, message in messages:
            self.write(topic, message, t_ns)

    def _string(self, key: str, value: Any, t_ns: int) -> None:
        self.write(TOPICS[key], {"data": to_json(value)}, t_ns)

    # -- records -------------------------------------------------------------------------------------------
    def add_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        # a run's files are named with their hashes after the run, its pictures are logged during it: read ahead
        records = list(records)
        for rec in records:
            files = rec.get("files") if rec.get("kind") == "recording" else [rec] if rec.get("kind") == "hazard" else []
            for f in files if isinstance(files, list) else []:
                if isinstance(f, Mapping) and f.get("path") and f.get("sha256"):
                    self._hashes[str(f["path"])] = str(f["sha256"])
        for rec in records:
            self.add_record(rec)

    def add_record(self, rec: Mapping[str, Any]) -> None:
        """One audit record (or a feedback sample, ``kind == "feedback"``), at its wall time."""
        ctx = self._ctx
        t_ns = self._time(rec)
        kind = str(rec.get("kind", ""))
        if kind == "feedback":
            self._feedback(rec, t_ns)
            return
        if self._awaiting is not None and kind != "question":
            self._write_state(*self._awaiting, {})  # no question came: said as it was logged
        self._string("records", rec, t_ns)
        if kind == "session":
            ctx.session += 1
            ctx.session_ns = t_ns
            ctx.domain = str(rec.get("domain") or ctx.domain)
            ctx.run, ctx.step, ctx.skill = None, -1, ""
        elif kind in ("command", "plan", "validation", "hazard"):
            self._string(kind, rec, t_ns)
            if kind == "command" and rec.get("op") in ("confirm", "deny"):
                ctx.operator = str(rec.get("source") or "")
        elif kind == "run":
            ctx.run = _int(rec.get("run"))
            steps = rec.get("steps")
            ctx.steps = len(steps) if isinstance(steps, list) else 0
        elif kind == "question":
            ctx.question = dict(rec)
            self._string("question", rec, t_ns)
            if self._awaiting is not None:
                self._write_state(*self._awaiting, rec)
        elif kind == "confirmation":
            self._confirmation(rec, t_ns)
        elif kind == "state":
            self._state(rec, t_ns)
        elif kind == "step_sent":
            self._goal(rec, t_ns)
        elif kind == "step_result":
            self._result(rec, t_ns)
        elif kind == "recording":
            self._recording(rec, t_ns)

    def _time(self, rec: Mapping[str, Any]) -> int:
        """The record's wall time in ns; a record without one (or going back) keeps the last time seen."""
        t = rec.get("t_wall")
        if isinstance(t, int | float) and not isinstance(t, bool) and t > 0:
            self._ctx.last_ns = max(self._ctx.last_ns, int(t * 1e9))
        elif not self._ctx.last_ns:
            self._ctx.last_ns = time.time_ns()
        return self._ctx.last_ns

    def _confirmation(self, rec: Mapping[str, Any], t_ns: int) -> None:
        ctx = self._ctx
        asked = ctx.question if ctx.question.get("step_index") == rec.get("step") else {}
        self._string("confirmation", {
            "who": ctx.operator, "accepted": rec.get("accepted"), "run": rec.get("run"), "step": rec.get("step"),
            "skill": asked.get("skill", ""), "hazard": asked.get("hazard", ""), "question": asked.get("text", ""),
            "given": rec.get("given"), "reason": rec.get("reason"), "seq": rec.get("seq")}, t_ns)
        ctx.operator = ""

    def _state(self, rec: Mapping[str, Any], t_ns: int) -> None:
        if rec.get("to") == SupervisorState.AWAITING_CONFIRMATION.value:
            self._awaiting = (rec, t_ns)
        else:
            self._write_state(rec, t_ns, {})

    def _write_state(self, rec: Mapping[str, Any], t_ns: int, asked: Mapping[str, Any]) -> None:
        """A state change at its own time; ``asked``: the question a change to AWAITING_CONFIRMATION asks."""
        ctx = self._ctx
        self._awaiting = None
        to = str(rec.get("to", ""))
        if to == SupervisorState.IDLE.value:
            ctx.run, ctx.steps, ctx.step, ctx.skill = None, 0, -1, ""
        awaiting_step = _int(asked.get("step_index"))
        self.write(TOPICS["state"], {
            "stamp": stamp(t_ns), "seq": max(0, _int(rec.get("seq")) or 0), "session": str(ctx.session),
            "domain": ctx.domain, "state": to, "plan_id": ctx.plan_id,
            "step_index": ctx.step if awaiting_step is None else awaiting_step, "steps": ctx.steps,
            "skill": str(asked.get("skill") or ctx.skill), "question": str(asked.get("text", "")),
            "awaiting_step": -1 if awaiting_step is None else awaiting_step,
            "reason": str(rec.get("reason") or ""),
            "message": f"{rec.get('from')} -> {to} ({rec.get('trigger')})",
            "estop_latched": to == SupervisorState.ESTOP.value, "halted": to in _HALTED, "world_json": "", "telemetry_json": "",
            "status_json": to_json(rec), "nonce": ""}, t_ns)

    def _goal(self, rec: Mapping[str, Any], t_ns: int) -> None:
        ctx = self._ctx
        if ctx.run is None:
            ctx.run = _int(rec.get("run"))
        ctx.step = _int(rec.get("step")) or 0
        ctx.skill = str(rec.get("skill", ""))
        self.write(TOPICS["goal"], {
            "plan_id": ctx.plan_id, "step_index": max(0, ctx.step), "skill": ctx.skill,
            "args_json": to_json(rec.get("args") or {}), "domain": ctx.domain, "capability": ""}, t_ns)

    def _result(self, rec: Mapping[str, Any], t_ns: int) -> None:
        outcome = _mapping(rec.get("outcome"))
        self.write(TOPICS["result"], {
            "success": bool(rec.get("success")), "failure_kind": str(rec.get("failure", "")),
            "message": str(rec.get("message", "")), "outcome_json": to_json(outcome), "world_json": ""}, t_ns)
        self._write_all(telemetry_messages(self._ctx.domain, outcome, t_ns), t_ns)
        event = parse_event(rec)
        for name in event.image_paths() if isinstance(event, StepResultEvent) else []:
            self._image(name, t_ns)

    def _feedback(self, rec: Mapping[str, Any], t_ns: int) -> None:
        telemetry = _mapping(rec.get("telemetry"))
        progress = rec.get("progress")
        self.write(TOPICS["feedback"], {
            "phase": str(rec.get("phase", "")),
            "progress": float(progress) if isinstance(progress, int | float) else 0.0,
            "telemetry_json": to_json(telemetry)}, t_ns)
        self._write_all(telemetry_messages(self._ctx.domain, telemetry, t_ns), t_ns)

    # -- pictures ------------------------------------------------------------------------------------------
    def _locate(self, logged: str) -> Path | None:
        """A file the log names, where the log says or, if the recording moved, under ``record_dir`` by the
        longest tail of its logged path that is there (``run-002/frames/frame_001_x.png`` before ``frame_001_x.png``).
        A file whose bytes are not the ones the log hashed is not used: it is not the picture that was taken."""
        path = Path(logged)
        candidates = []
        if self._record_dir is not None:
            parts = path.parts[1:] if path.is_absolute() else path.parts
            candidates = [self._record_dir.joinpath(*parts[i:]) for i in range(len(parts))]
        found = next((c for c in [*candidates, path] if c.is_file()), None)
        if found is None:
            self.summary.missing.append(logged)
            return None
        expected = self._hashes.get(logged)
        if expected is not None and file_sha256(found) != expected:
            self.summary.changed.append(str(found))
            return None
        return found

    def _image(self, logged: str, t_ns: int) -> None:
        """A picture a step saved (a radiograph, a B-mode capture), at the time of the step's result."""
        path = self._locate(logged)
        if path is None:
            return
        topic = image_topic(self._ctx.domain)
        self.write(topic, image_message(path, t_ns, topic.name.strip("/").replace("/", "_")), t_ns)
        self.summary.images.append(str(path))

    def _recording(self, rec: Mapping[str, Any], t_ns: int) -> None:
        """The scene frames a ``recording`` record names, each at the time its file was written (within the
        session: a copied file's time is the copy's, then the record's time stands in)."""
        files = rec.get("files")
        for entry in files if isinstance(files, list) else []:
            logged = str(entry.get("path", "")) if isinstance(entry, Mapping) else ""
            if Path(logged).parent.name == "frames" and Path(logged).name.startswith("frame_") \
                    and logged not in self._named:
                self._named.add(logged)
                path = self._locate(logged)
                if path is not None:
                    mtime = path.stat().st_mtime_ns
                    self._frame(path, mtime if self._ctx.session_ns - 60 * 10**9 <= mtime <= t_ns else t_ns)

    def add_frames(self, paths: Iterable[Path]) -> None:
        """Scene frames a live run rendered, each at the time its file was written (no record is about one)."""
        for path in paths:
            self._frame(path, path.stat().st_mtime_ns)

    def _frame(self, path: Path, t_ns: int) -> None:
        if path.resolve() in self._frames:
            return  # named by the run and by a recording record: one message
        self._frames.add(path.resolve())
        self.write(TOPICS["frame"], frame_message(path, t_ns), t_ns)

    # -- closing -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish the file (summary, index); the file is released even when that cannot be written."""
        try:
            if self._awaiting is not None:
                self._write_state(*self._awaiting, {})
            self._writer.finish()  # type: ignore[no-untyped-call]
        finally:
            if self._owns:
                self._stream.close()

    def discard(self) -> None:
        """Release and remove the file this recorder created, for a run refused before anything was recorded."""
        if self._owns:
            with contextlib.suppress(OSError):  # a header that cannot be flushed goes with the file
                self._stream.close()
            self.summary.path.unlink(missing_ok=True)

    def __enter__(self) -> McapRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()




def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def export_records(records: Iterable[Mapping[str, Any]], output: str | Path, *, domain: str = "",
                   record_dir: Path | None = None) -> ExportSummary:
    """Write ``records`` (audit records and feedback samples, in order) to ``output``, with the frames the log's
    ``recording`` records name or, for a log without them, those in ``record_dir/frames``."""
    records = list(records)
    with McapRecorder(output, domain=domain, record_dir=record_dir) as rec:
        rec.add_records(records)
        named = any(r.get("kind") == "recording" for r in records)
        if not named and record_dir is not None and (record_dir / "frames").is_dir():
            rec.add_frames(sorted((record_dir / "frames").glob("frame_*.png")))
    return rec.summary


def interleave(records: Sequence[Mapping[str, Any]], heard: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """The audit records in their order, with each feedback sample a live run heard after the record heard before it.

    ``heard`` is what a listener got, in order: logged events (with their ``seq``) and feedback samples stamped
    when heard. Listeners are fed through a queue, in bursts, so a sample can be heard after the next record was
    written; its time is kept between the two records' times, so it stays inside its step on the timeline.
    """
    after: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    anchor = -1
    for event in heard:
        seq = event.get("seq")
        if event.get("kind") == "feedback":
            after[anchor].append(event)
        elif isinstance(seq, int):
            anchor = seq
    wall = [float(r.get("t_wall") or 0.0) for r in records]

    def placed(samples: list[Mapping[str, Any]], low: float, high: float) -> Iterator[Mapping[str, Any]]:
        for sample in samples:
            yield {**sample, "t_wall": min(max(float(sample.get("t_wall") or 0.0), low), high)}

    yield from placed(after.pop(-1, []), float("-inf"), wall[0] if wall else float("inf"))
    for i, rec in enumerate(records):
        yield rec
        seq = rec.get("seq")
        if isinstance(seq, int):
            yield from placed(after.pop(seq, []), wall[i], wall[i + 1] if i + 1 < len(wall) else float("inf"))
    # heard after a record this list does not hold (none, when it is the session's own): last, never lost
    yield from placed([s for samples in after.values() for s in samples], wall[-1] if wall else float("-inf"),
                      float("inf"))
