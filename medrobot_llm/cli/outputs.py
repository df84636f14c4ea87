"""The files ``run`` and ``log export`` write: checked together before anything moves, and ``run --mcap`` written
as the run goes.

Missing folders above an output (``--log``, ``--mcap``, ``--record``) are created, with a note on stderr naming
them, so a typo in a path is seen. Two outputs (or an output and the log being read) that are one file are
refused by inode, before either is opened. The MCAP file's own rule (new or empty, one writer) is
``core.outputs.claim_output``; the audit log's is ``safety.audit``'s (an existing file must be an audit log).

``run --mcap`` writes and flushes the records heard so far at each supervisor event, so a run killed with SIGKILL
leaves a file a streaming reader opens up to the last event. A write that fails mid-run (a full disk) stops the
recording, not the run: the audit log keeps what happened, and the failure is reported with the outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrobot_llm.core.outputs import missing_folders, same_file
from medrobot_llm.safety.events import FeedbackEvent, SupervisorEvent

if TYPE_CHECKING:
    from medrobot_llm.recording.export import McapRecorder

__all__ = ["RunRecording", "check_outputs"]


def check_outputs(command: str, outputs: Mapping[str, Path | None], *, reads: Mapping[str, Path] | None = None
                  ) -> tuple[str, list[str]]:
    """The refusal ("" when the outputs are distinct files, none a file the command reads), and a note for each
    missing folder an output will create, for stderr once every output is accepted."""
    given = [(flag, path) for flag, path in outputs.items() if path is not None]
    named = [*given, *(reads or {}).items()]
    for i, (flag, path) in enumerate(given):
        for other, path2 in named[i + 1:]:
            if same_file(path, path2):
                return (f"medrobot {command}: {flag} and {other} name the same file {path}; give each its own "
                        "file"), []
    notes = []
    for flag, path in given:
        folder = missing_folders(path / "run" if flag == "--record" else path)
        if folder is not None:
            notes.append(f"medrobot {command}: {flag}: creating the folder {folder}")
    return "", notes


class RunRecording:
    """One run's MCAP file, written as the supervisor's events are heard; thread-safe (events come from the
    supervisor's listener thread, the end from the caller's)."""

    def __init__(self, recorder: McapRecorder) -> None:
        self.recorder = recorder
        self.error: str | None = None
        self._lock = threading.Lock()
        self._heard: list[dict[str, Any]] = []
        self._written = 0   # how much of the interleaved stream is in the file
        self._anchor: int | None = None   # the sequence number of the last event heard

    def heard(self, event: SupervisorEvent, records: Sequence[Mapping[str, Any]]) -> None:
        """A supervisor event: feedback is kept (it is never in the audit log, so the recording places it by the
        records heard around it); any other event writes and flushes what ``records`` now settle."""
        with self._lock:
            if isinstance(event, FeedbackEvent):
                self._heard.append({**event.record(), "t_wall": time.time()})
                return
            self._heard.append({"kind": event.kind, "seq": event.seq})
            self._anchor = event.seq
            self._write(records, final=False)

    def _write(self, records: Sequence[Mapping[str, Any]], *, final: bool) -> None:
        """The interleaved stream up to the record of the last event heard, not beyond: events are heard after
        their records are written, so later records may be there already, and a sample heard now belongs after
        that event's record, before them (its time held below the next record's)."""
        from medrobot_llm.recording.export import interleave

        stream = list(interleave(list(records), self._heard))
        end = len(stream) if final else next(
            (i + 1 for i, m in enumerate(stream) if m.get("kind") != "feedback" and m.get("seq") == self._anchor),
            self._written)
        new, self._written = stream[self._written:end], max(self._written, end)
        if self.error is None and new:
            try:
                self.recorder.add_records(new)
                self.recorder.flush()
            except OSError as exc:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if self.error is None:
            self.error = (f"cannot write the MCAP file {self.recorder.summary.path}: {exc.strerror or exc}; the "
                          "recording stopped there, the audit log holds the whole run")

    def finish(self, records: Sequence[Mapping[str, Any]], frames: Iterable[str]) -> dict[str, Any]:
        """Write what is left, the scene frames, and close the file; the summary, with ``error`` if it failed."""
        with self._lock:
            self._write(records, final=True)
            try:
                if self.error is None:
                    self.recorder.add_frames(Path(frame) for frame in frames)
                self.recorder.close()
            except OSError as exc:
                self._failed(exc)
        summary = self.recorder.summary.to_json()
        return summary | ({"error": self.error} if self.error is not None else {})
