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

A console trusts the file only while a running bringup holds that lock (``read_graph_id`` tries a shared
non-blocking lock: if it gets one, nobody holds the file and it is stale): a copy of the keys folder made while a
bringup ran holds that bringup's id, which a console elsewhere must not sign for. A console on another host is
given the id by hand (``--graph-id``, which bringup prints). The file also gets the key files' checks (this
user's, not writable by others, in a folder nobody else may write, no symbolic link): whoever writes it chooses
the graph the console's operator speaks to.
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

from medrobot_llm.safety.keys import KeyFileError, KeyInfo, KeyMissing, open_own_file

__all__ = ["CLAIM_RETRY_S", "GRAPH_ID", "GraphBusy", "GraphClaim", "GraphId", "GraphStale", "claim_graph",
           "graph_file", "list_graph_files", "new_graph_id", "read_graph_id"]

#: 8 random bytes as hex: two bringups never draw the same by chance
GRAPH_ID = re.compile(r"[0-9a-f]{16}")
#: how long a bringup retries its lock: a console's shared lock, taken to see whether the file is held, is let go
#: of at once, and must not pass for a running bringup
CLAIM_RETRY_S = 0.5


def new_graph_id() -> str:
    return secrets.token_hex(8)


def graph_file(folder: Path, ros_domain_id: int) -> Path:
    return folder / f"graph-{int(ros_domain_id)}.json"


_FILE_NAME = re.compile(r"graph-(\d{1,3})\.json")


def list_graph_files(folder: Path) -> list[KeyInfo]:
    """Each graph id file in the folder as ``keys list`` shows it: the id a running bringup holds there, that none
    holds it (a console ignores it), or why a console refuses it (the problem, with the chmod to run)."""
    out = []
    for path in sorted(folder.glob("graph-*.json")):
        named = _FILE_NAME.fullmatch(path.name)
        if named is None:
            continue
        domain = int(named.group(1))
        name = f"ROS_DOMAIN_ID {domain}"
        try:
            found = read_graph_id(folder, domain)
        except GraphStale:
            out.append(KeyInfo("graph_id", name, str(path), state="no running bringup holds it: consoles ignore it"))
        except KeyFileError as exc:
            out.append(KeyInfo("graph_id", name, str(path), problem=str(exc)))
        else:
            state = f"graph id {found.graph_id}, held by bringup pid {found.pid} since {found.started}" if found \
                else "held by a bringup that has not written its id yet"
            out.append(KeyInfo("graph_id", name, str(path), state=state))
    return out


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


class GraphStale(KeyFileError):
    """The file is there, but no running bringup holds it: a bringup that did not stop cleanly left it, or the keys
    folder is a copy. A console takes no id from it."""


def read_graph_id(folder: Path, ros_domain_id: int) -> GraphId | None:
    """The id a running bringup wrote for this domain id in this keys folder; None if there is no such file, or it
    does not hold one yet (a console then keeps the domain-only identity and says so). ``GraphStale`` if no running
    bringup holds it; a ``KeyFileError`` if the file or its folder is one another user could have written."""
    path = graph_file(folder, ros_domain_id)
    try:
        fd = open_own_file(path, 0o022, "graph id file")
    except KeyMissing as exc:
        if exc.path == path:
            return None  # no bringup has started here (the folder itself passed its checks)
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))  # held: a bringup runs
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    raise GraphStale(path, "no running medrobot bringup holds this graph id file (one that did not stop cleanly left "
                     "it, or the keys folder is a copy)",
                     "start `medrobot bringup` with this keys folder, or, for a bringup on another host, give the "
                     "console the id it printed with --graph-id ID")


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
        deadline = time.monotonic() + CLAIM_RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise GraphBusy(path, _read(path), ros_domain_id) from None
                time.sleep(0.02)
        os.fchmod(fd, 0o600)
        graph = GraphId(gid, os.getpid(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(graph.__dict__) + "\n").encode("ascii"), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return GraphClaim(path, fd, graph)
