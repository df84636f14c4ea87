"""Which bringup a graph is: a random id per ``medrobot bringup`` start, told to its consoles out of band.

Issue 15, third attack: two graphs on the same ROS domain id that cannot hear each other (two rooms, two
networks) and share one keys folder, or a copy of it, derived the same graph key, so a relay between the
networks carried heartbeats, a capability, or a question and its operator's "yes" from one graph to the other.
So each bringup draws an id of its own, passes it to its nodes (it is part of ``env.graph_identity``, hence of
every key and seal that grants authority), and writes it to ``graph-<ROS domain id>.json`` in the keys folder
for its consoles. A console must never learn the id from the first message it hears: a relay could be first.

Bringup holds an exclusive ``flock`` on that file while it runs, so a second bringup on the same keys folder and
domain id is refused (it would replace the first one's id under its consoles); a file nobody holds is left by a
bringup that did not stop cleanly, and is replaced. A copy of the keys folder elsewhere has a bringup, and an
id, of its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GRAPH_ID", "GraphBusy", "GraphClaim", "GraphId", "claim_graph", "graph_file", "new_graph_id",
           "read_graph_id"]

#: 8 random bytes as hex: two bringups never draw the same by chance
GRAPH_ID = re.compile(r"[0-9a-f]{16}")


def new_graph_id() -> str:
    return secrets.token_hex(8)


def graph_file(folder: Path, ros_domain_id: int) -> Path:
    return folder / f"graph-{int(ros_domain_id)}.json"


@dataclass(frozen=True)
class GraphId:
    """What the file says: the id, and which bringup wrote it when (for the refusal and the logs)."""

    graph_id: str
    pid: int
    started: str


class GraphBusy(Exception):
    """Another bringup holds this keys folder's graph file for this ROS domain id."""

    def __init__(self, path: Path, holder: GraphId | None, ros_domain_id: int) -> None:
        who = f"pid {holder.pid}, started {holder.started}" if holder else "a process that has not written it yet"
        if holder is not None and not _alive(holder.pid):
            # its nodes inherited the lock (``GraphClaim.fd``): they hold it as long as one of them lives
            what = (f"the nodes of a medrobot graph whose bringup ({who}) is gone still run on ROS_DOMAIN_ID "
                    f"{ros_domain_id} with this keys folder ({path} is locked by them); stop those nodes first")
        else:
            what = (f"another medrobot bringup ({who}) runs on ROS_DOMAIN_ID {ros_domain_id} with this keys folder "
                    f"({path} is locked); stop it first")
        super().__init__(f"{what}, or give this graph another domain id (--ros-domain-id); a keys folder of its "
                         "own (--keys) keeps apart only graphs on different networks")
        self.holder = holder


def _alive(pid: int) -> bool:
    """Whether the bringup that wrote the file still runs (another user's counts as running): if not, what holds
    the lock is its nodes."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse(text: str) -> GraphId | None:
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    gid, pid, started = raw.get("graph_id"), raw.get("pid"), raw.get("started")
    if not isinstance(gid, str) or not GRAPH_ID.fullmatch(gid) or not isinstance(pid, int) \
            or not isinstance(started, str):
        return None
    return GraphId(gid, pid, started)


def read_graph_id(folder: Path, ros_domain_id: int) -> GraphId | None:
    """The id bringup wrote for this domain id in this keys folder; None if there is no such file, or it does not
    hold one (a console then keeps the domain-only identity and says so)."""
    return _read(graph_file(folder, ros_domain_id))


def _read(path: Path) -> GraphId | None:
    try:
        return _parse(path.read_text(encoding="utf-8"))
    except OSError:
        return None


class GraphClaim:
    """A running bringup's hold on its graph file: the lock goes with the process, ``release`` removes the file."""

    def __init__(self, path: Path, fd: int, graph: GraphId) -> None:
        self.path = path
        self.graph = graph
        self._fd: int | None = fd

    @property
    def fd(self) -> int:
        """The locked descriptor, for the graph's nodes to inherit: the lock lasts while any of them lives."""
        if self._fd is None:
            raise ValueError(f"the claim on {self.path} was released")
        return self._fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if _read(self.path) == self.graph:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def claim_graph(folder: Path, ros_domain_id: int, graph_id: str | None = None) -> GraphClaim:
    """Lock and write ``graph-<domain>.json`` (0600) for this process, or ``GraphBusy`` if a bringup holds it.

    The file is written in place under the lock (never renamed over): a rename would leave the lock on the old
    file, and a second bringup would then find the new one free."""
    gid = graph_id or new_graph_id()
    if not GRAPH_ID.fullmatch(gid):
        raise ValueError(f"a graph id is 16 lowercase hex digits, not {gid!r}")
    path = graph_file(folder, ros_domain_id)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GraphBusy(path, read_graph_id(folder, ros_domain_id), ros_domain_id) from None
        os.fchmod(fd, 0o600)
        graph = GraphId(gid, os.getpid(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(graph.__dict__) + "\n").encode("ascii"), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return GraphClaim(path, fd, graph)
