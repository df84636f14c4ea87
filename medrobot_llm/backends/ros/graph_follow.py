"""``FollowedGraph``: which graph a ROS console signs for and checks seals with, followed as its bringup comes and goes.

The id comes from the keys folder's ``graph-<ROS domain id>.json`` (``safety.graph_id``), and counts only while a
running bringup holds that file: a copy of the keys folder made while a bringup ran holds that bringup's id, and
a console elsewhere that signed for it would speak to that graph through any relay. Read once at start, it left a
console started before its bringup, or kept across a restart of it, signing for a graph that is not there, its
commands refused and the refusals, sealed for the real graph, unreadable to it. So the file is read again while
the console waits for its supervisor and whenever it changed (one ``stat`` before each signature and seal check).
A console on another host has no such file: it is given the id (``--graph-id``, printed by bringup) and keeps it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from medrobot_llm.backends.ros.env import graph_identity
from medrobot_llm.safety.graph_id import GraphStale, graph_file, read_graph_id
from medrobot_llm.safety.keys import KeyFileError

__all__ = ["FollowedGraph"]

_LOG = logging.getLogger(__name__)


class FollowedGraph:
    """The graph identity (``env.graph_identity``) of ``domain_id`` with the id a running bringup holds in
    ``keys_dir``, or ``given`` (validated; the file is then never read). A graph id file another user could have
    written raises ``KeyFileError`` here; found later, it is not followed (domain-only, and the log says why)."""

    def __init__(self, keys_dir: Path, domain_id: int, given: str | None = None) -> None:
        self.keys_dir = keys_dir
        self.domain_id = domain_id
        self.given = given
        self.path = graph_file(keys_dir, domain_id)
        self._lock = threading.Lock()
        self._said = ""  # what the log last said, so a re-read that changes nothing is quiet
        self._seen = self._stat()
        if given is not None:
            self._graph = graph_identity(domain_id, given)
            _LOG.info("on graph %s (given by --graph-id)", self._graph)
        else:
            self._graph = self._read(at_start=True)

    def _stat(self) -> tuple[int, ...] | None:
        """What tells a rewritten, replaced, removed or chmod-ed file from the one last read, for one ``stat``."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return None
        return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def _read(self, *, at_start: bool = False) -> str:
        domain_only = graph_identity(self.domain_id)
        try:
            found = read_graph_id(self.keys_dir, self.domain_id)
        except GraphStale as exc:
            graph, said = domain_only, (f"ignored {self.path}: {exc.problem}; signing for {domain_only} until a "
                                        "bringup holds it (a console on another host takes the id its bringup "
                                        "printed: --graph-id ID)")
        except KeyFileError as exc:
            if at_start:
                raise
            graph, said = domain_only, f"not following the graph id file: {exc}; signing for {domain_only}"
        else:
            if found is None:
                graph, said = domain_only, (f"no graph id in {self.path}: signing for {domain_only}, which only a "
                                            "graph whose nodes were started without `medrobot bringup` accepts, "
                                            "until a bringup writes it (a console on another host: --graph-id ID)")
            else:
                graph = graph_identity(self.domain_id, found.graph_id)
                said = f"on graph {graph} (from {self.path}, held by bringup pid {found.pid}, started {found.started})"
        if said != self._said:
            self._said = said
            _LOG.log(logging.INFO if graph != domain_only else logging.WARNING, "%s", said)
        return graph

    def current(self, *, reread: bool = False) -> str:
        """The graph now: the file is read again if it changed since it was last read, or, ``reread``, in any case
        (while waiting for the supervisor: a stale file becomes held when a bringup takes it over)."""
        if self.given is not None:
            return self._graph
        seen = self._stat()
        with self._lock:
            if seen != self._seen or reread:
                self._seen = seen
                graph = self._read()
                if graph != self._graph:
                    _LOG.warning("the graph id file changed: now signing for %s (was %s)", graph, self._graph)
                    self._graph = graph
            return self._graph

    def hint(self) -> str:
        """Why a supervisor that runs may not be heard, for a command nobody answered: its reply is sealed for its
        own graph, which this console does not know."""
        if self.given is not None:
            return (f". This console signs for graph id {self.given} (--graph-id): if its bringup was restarted, "
                    "restart the console with the id the bringup printed")
        if self.current() == graph_identity(self.domain_id):
            return (". No running bringup holds the graph id file of this console's keys folder: on another host, "
                    "restart the console with --graph-id ID (the id its bringup printed)")
        return ""
