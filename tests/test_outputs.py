"""The one rule for the files a recording is written to (``core.outputs``), and the audit log's rule for an
existing ``--log``: every kind of path, one case each, and the command line refusing before anything moves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medrobot_llm.cli import outputs
from medrobot_llm.core.outputs import OutputRefused, claim_output, missing_folders, same_file
from medrobot_llm.recording.export import ExportSummary, interleave
from medrobot_llm.safety.audit import AuditLog, AuditLogError
from medrobot_llm.safety.events import FeedbackEvent, StateEvent


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


def _link_to(target: str) -> Callable[[Path], None]:
    return lambda p: p.symlink_to(target)


#: a path that exists and is no place for a recording, and the word its refusal uses
REFUSED: dict[str, tuple[Callable[[Path], None], str]] = {
    "audit_log": (lambda p: p.write_bytes(b'{"seq":0,"kind":"session"}\n'), "not empty"),
    "mcap": (lambda p: p.write_bytes(b"\x89MCAP0\r\n"), "not empty"),
    "fifo": (_fifo, "FIFO"),
    "socket": (_socket, "socket"),
    "directory": (lambda p: p.mkdir(), "directory"),
    "symlink_to_dev_null": (_link_to("/dev/null"), "symlink"),
    "symlink_to_dev_full": (_link_to("/dev/full"), "symlink"),
    "symlink_to_a_new_file": (_link_to("elsewhere.mcap"), "symlink"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_path_that_is_no_new_file_is_refused_and_left_as_it_was(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "out.mcap"
    make, word = REFUSED[kind]
    make(path)
    before = path.lstat()
    with pytest.raises(OutputRefused, match=word):
        os.close(claim_output(path))
    after = path.lstat()
    assert (after.st_mode, after.st_size, after.st_ino) == (before.st_mode, before.st_size, before.st_ino)
    assert not (tmp_path / "elsewhere.mcap").exists()


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero", "/dev/full"])
def test_a_device_is_refused(device: str) -> None:
    with pytest.raises(OutputRefused, match="device"):
        os.close(claim_output(Path(device)))


@pytest.fixture
def claimed(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "a" / "b" / "out.mcap"
    fd = claim_output(path)
    try:
        yield path
    finally:
        os.close(fd)


def test_a_new_file_is_created_with_its_folders_and_held(claimed: Path) -> None:
    assert claimed.is_file() and claimed.stat().st_size == 0
    with pytest.raises(OutputRefused, match=rf"being written by this process {os.getpid()}"):
        claim_output(claimed)


def test_an_empty_file_nobody_writes_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "claimed_by_bringup.mcap"
    path.touch()
    os.close(claim_output(path))


def test_another_process_holding_the_file_is_named(claimed: Path) -> None:
    probe = ("import os, sys; from pathlib import Path; from medrobot_llm.core.outputs import claim_output, "
             "OutputRefused\ntry:\n    claim_output(Path(sys.argv[1]))\nexcept OutputRefused as e:\n"
             "    print(e.strerror); sys.exit(3)")
    proc = subprocess.run([sys.executable, "-c", probe, str(claimed)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and f"process {os.getpid()}" in proc.stdout, proc.stdout + proc.stderr


def test_same_file_by_inode_and_by_path(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    a.write_text("x")
    os.link(a, tmp_path / "hard.jsonl")
    assert same_file(a, tmp_path / "hard.jsonl")
    assert same_file(tmp_path / "new" / ".." / "n.mcap", tmp_path / "n.mcap")     # neither exists yet
    assert not same_file(a, tmp_path / "n.mcap")
    assert missing_folders(tmp_path / "x" / "y" / "f") == tmp_path / "x"
    assert missing_folders(a) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=64).filter(lambda b: not b.startswith(b"{")))
def test_log_refuses_an_existing_file_that_is_not_a_log(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "not_a_log"
    path.write_bytes(data)
    with pytest.raises(AuditLogError, match="holds something else"):
        AuditLog(path)
    assert path.read_bytes() == data


def test_log_appends_to_an_empty_file_and_to_a_log(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.touch()
    for _ in range(2):
        with AuditLog(path) as log:
            log.append("note")
    assert [line[:9] for line in path.read_bytes().splitlines()] == [b'{"seq":0,', b'{"seq":1,', b'{"seq":2,',
                                                                     b'{"seq":3,']


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medrobot_llm.cli", *argv], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, cwd=cwd)


@pytest.mark.parametrize("mcap", ["/dev/full", "/dev/null", "/dev/zero", "link_to_dev_full", "same_as_log"])
def test_run_refuses_an_mcap_path_before_anything_moves(tmp_path: Path, mcap: str) -> None:
    (tmp_path / "link_to_dev_full").symlink_to("/dev/full")
    target = "log.jsonl" if mcap == "same_as_log" else mcap
    proc = _cli("run", "--domain", "xray", "--yes", "--json", "--log", "log.jsonl", "--record", "rec", "--mcap",
                target, "lateral of the sacrum and take a shot", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "log.jsonl").exists() and not (tmp_path / "rec").exists()


def test_run_notes_the_folders_it_creates(tmp_path: Path) -> None:
    proc = _cli("run", "--domain", "xray", "--json", "--log", "new/dir/log.jsonl", "make me a sandwich", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"--log: creating the folder {tmp_path / 'new'}" in proc.stderr
    assert (tmp_path / "new" / "dir" / "log.jsonl").is_file()


class _Collected:
    """Stands for the MCAP recorder: what ``RunRecording`` hands it, in order."""

    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []
        self.flushes = 0
        self.closed = False
        self.summary = ExportSummary(Path("collected.mcap"))

    def add_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.written += [dict(r) for r in records]

    def flush(self) -> None:
        self.flushes += 1

    def add_frames(self, paths: Iterable[Path]) -> None:
        assert not list(paths)

    def close(self) -> None:
        self.closed = True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(st.sampled_from(["logged_event", "logged_only", "hear", "feedback"]), max_size=40))
def test_a_run_written_as_it_goes_is_the_run_written_at_the_end(monkeypatch: pytest.MonkeyPatch,
                                                                actions: list[str]) -> None:
    """Events are heard after their records are written (later records may be in the log already) and feedback
    between them: the file written event by event holds exactly what one write at the end would, in order."""
    monkeypatch.setattr(outputs.time, "time", lambda: 5.0)
    collected = _Collected()
    live = outputs.RunRecording(collected)  # type: ignore[arg-type]
    records: list[dict[str, Any]] = []
    unheard: list[int] = []
    heard: list[dict[str, Any]] = []
    for action in actions:
        if action.startswith("logged"):
            seq = len(records)
            records.append({"seq": seq, "kind": "state" if action == "logged_event" else "hazard",
                            "t_wall": 1.0 + seq / 10})
            unheard += [seq] if action == "logged_event" else []
        elif action == "hear" and unheard:
            seq = unheard.pop(0)
            live.heard(StateEvent(seq=seq, source="IDLE", to="PLANNING", trigger="t", reason=""), records)
            heard.append({"kind": "state", "seq": seq})
        elif action == "feedback":
            event = FeedbackEvent(run=0, step=0, phase="p", progress=0.5, telemetry={})
            live.heard(event, records)
            heard.append({**event.record(), "t_wall": 5.0})
        if records:   # a kill here leaves only what was handed over: never ahead of what the end would write
            assert collected.written == list(interleave(records, heard))[:len(collected.written)]
    summary_error = live.error
    live.finish(records, [])
    assert summary_error is None and collected.closed
    assert collected.written == list(interleave(records, heard))


def test_bringup_claims_its_mcap_by_the_same_rule(tmp_path: Path) -> None:
    from medrobot_llm.cli.bringup import claim_mcap

    assert claim_mcap(tmp_path / "new" / "graph.mcap") == ""
    assert (tmp_path / "new" / "graph.mcap").stat().st_size == 0
    os.mkfifo(tmp_path / "fifo")
    assert "FIFO" in claim_mcap(tmp_path / "fifo")
    (tmp_path / "log.jsonl").write_text('{"seq":0}\n')
    assert "not empty" in claim_mcap(tmp_path / "log.jsonl")


def test_a_picture_that_cannot_be_written_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow removes a file it could not encode, not one whose buffered bytes failed on close (a full disk)."""
    import numpy as np
    from PIL import Image

    from medrobot_llm.backends.sim.imaging import save_png

    def full_disk(self: Image.Image, fp: Path, *args: Any, **kwargs: Any) -> None:
        Path(fp).write_bytes(b"")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    path = tmp_path / "shot.png"
    with pytest.raises(OSError, match="No space"):
        save_png(np.zeros((4, 4)), path)
    assert not path.exists()
