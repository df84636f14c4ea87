"""The graph id file: one running bringup per keys folder and ROS domain id, its id told to consoles out of band.

Two graphs on one domain id that cannot hear each other, with one keys folder or a copy of it, must not share a
graph key (issue 15, third attack); a console must learn its graph's id from the keys folder, never from the graph.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from medrobot_llm.safety.graph_id import (
    GRAPH_ID, GraphBusy, GraphStale, claim_graph, graph_file, new_graph_id, read_graph_id,
)
from medrobot_llm.safety.keys import KeyTooOpen, KeyUnreadable


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    return keys


def test_a_bringup_writes_its_id_only_the_user_can_read_and_removes_it_on_a_clean_stop(folder: Path) -> None:
    claim = claim_graph(folder, 7)
    path = graph_file(folder, 7)
    assert path.name == "graph-7.json" and stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert GRAPH_ID.fullmatch(raw["graph_id"]) and raw["pid"] == os.getpid() and raw["started"]
    assert read_graph_id(folder, 7) == claim.graph
    claim.release()
    assert not path.exists() and read_graph_id(folder, 7) is None
    claim.release()  # twice is harmless


def test_each_start_draws_another_id() -> None:
    assert len({new_graph_id() for _ in range(50)}) == 50


def test_a_second_claim_on_the_same_folder_and_domain_id_is_refused_naming_the_first(folder: Path) -> None:
    first = claim_graph(folder, 7)
    try:
        with pytest.raises(GraphBusy) as exc:
            claim_graph(folder, 7)
        assert exc.value.holder == first.graph
        message = str(exc.value)
        assert f"pid {os.getpid()}" in message and "ROS_DOMAIN_ID 7" in message
        assert "--ros-domain-id" in message and "--keys" in message
        assert read_graph_id(folder, 7) == first.graph  # the running one's id is untouched
        other = claim_graph(folder, 8)  # another domain id is another graph
        other.release()
    finally:
        first.release()


def test_a_file_nobody_holds_is_stale_and_replaced(folder: Path) -> None:
    path = graph_file(folder, 7)
    path.write_text(json.dumps({"graph_id": "0123456789abcdef", "pid": 1, "started": "then"}), encoding="utf-8")
    claim = claim_graph(folder, 7)
    try:
        assert claim.graph.graph_id != "0123456789abcdef" and read_graph_id(folder, 7) == claim.graph
        assert path.read_text(encoding="utf-8").count("{") == 1  # rewritten whole, nothing of the old one left
    finally:
        claim.release()


def test_a_release_leaves_a_file_another_bringup_wrote_since(folder: Path) -> None:
    claim = claim_graph(folder, 7)
    graph_file(folder, 7).unlink()
    later = claim_graph(folder, 7)
    try:
        claim.release()
        assert read_graph_id(folder, 7) == later.graph
    finally:
        later.release()


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"graph_id": "XYZ", "pid": 1, "started": "t"}',
                                  '{"graph_id": "0123456789abcdef", "pid": "1", "started": "t"}'])
def test_a_console_takes_no_id_from_a_file_that_does_not_hold_one(folder: Path, text: str) -> None:
    graph_file(folder, 7).write_text(text, encoding="utf-8")
    with _held(graph_file(folder, 7)):
        assert read_graph_id(folder, 7) is None


@contextmanager
def _held(path: Path) -> Iterator[None]:
    """The file locked as a running bringup holds it."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


GOOD_FILE = json.dumps({"graph_id": "0123456789abcdef", "pid": 1, "started": "then"})


def test_a_file_no_running_bringup_holds_gives_no_id_and_says_to_use_graph_id(folder: Path) -> None:
    """A copy of the keys folder made while a bringup ran holds its id: a console elsewhere must not sign for it."""
    path = graph_file(folder, 7)
    path.write_text(GOOD_FILE, encoding="utf-8")
    with pytest.raises(GraphStale, match="no running medrobot bringup holds.*--graph-id"):
        read_graph_id(folder, 7)
    with _held(path):
        found = read_graph_id(folder, 7)
    assert found is not None and found.graph_id == "0123456789abcdef"
    claim_graph(folder, 7).release()  # the console's look left no lock behind


def test_a_console_looking_at_the_file_does_not_keep_a_bringup_from_starting(folder: Path) -> None:
    """The console's shared lock lasts a moment; a bringup starting then waits that moment out."""
    path = graph_file(folder, 7)
    path.write_text(GOOD_FILE, encoding="utf-8")
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.1, os.close, (fd,)).start()
    start = time.monotonic()
    claim = claim_graph(folder, 7)
    claim.release()
    assert time.monotonic() - start >= 0.05


@pytest.mark.parametrize("how", ["world-writable", "group-writable", "symlink", "folder-writable"])
def test_a_graph_id_file_another_user_could_have_written_is_refused(folder: Path, tmp_path: Path, how: str) -> None:
    path = graph_file(folder, 7)
    if how == "symlink":
        target = tmp_path / "elsewhere.json"
        target.write_text(GOOD_FILE, encoding="utf-8")
        path.symlink_to(target)
    else:
        path.write_text(GOOD_FILE, encoding="utf-8")
        path.chmod({"world-writable": 0o666, "group-writable": 0o620}.get(how, 0o600))
        if how == "folder-writable":
            folder.chmod(0o777)
    with pytest.raises(KeyTooOpen if how != "symlink" else KeyUnreadable,
                       match="chmod 700" if how == "folder-writable" else "chmod 600" if how != "symlink" else "link"):
        read_graph_id(folder, 7)


def test_an_id_that_is_not_one_is_never_written(folder: Path) -> None:
    with pytest.raises(ValueError, match="16 lowercase hex"):
        claim_graph(folder, 7, "../../etc")
    assert not graph_file(folder, 7).exists()
