"""The highest scheduling priority the OS grants one thread: the skill server's e-stop thread.

With every core busy, a thread at the default priority waits its turn behind the load, and a halt
waited up to 120 ms. A real-time thread (``SCHED_FIFO``) runs as soon as its message arrives; when the
process may not have one (no ``CAP_SYS_NICE``, ``RLIMIT_RTPRIO`` 0, not Linux), the lowest nice value it
may take is the next best. What was granted, or why nothing was, is a sentence for the node's log: an
operator must know when the stop path runs at ordinary priority. No ROS here: tested with fake OS calls.
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Granted", "raise_priority", "reception_threads", "threads_of_this_process"]

#: Fast DDS names the threads that take samples off its transports ``dds.shm.<port>`` and ``dds.udp.<port>``
#: (``dds.shm.wdog``, ``dds.ev.*``, ``dds.asyn.*`` are the watchdog, timed events and senders)
RECEPTION_THREAD = re.compile(r"dds\.(shm|udp|tcp)\.\d+")

#: the best nice value Linux has (lower is more favoured)
NICEST = -20


@dataclass(frozen=True)
class Granted:
    """What a thread got: ``realtime`` (SCHED_FIFO at ``priority``), else a ``nice`` value, else nothing."""

    realtime: bool
    priority: int | None
    nice: int | None
    refused: tuple[str, ...] = ()  # what was asked for and why the OS said no

    @property
    def raised(self) -> bool:
        return self.realtime or self.nice is not None

    def sentence(self, who: str) -> str:
        """``who`` and what it runs at, with why it is no more where the OS refused."""
        if self.realtime:
            return f"{who} runs SCHED_FIFO at priority {self.priority}"
        why = "; ".join(self.refused) or "not supported here"
        if self.nice is not None:
            return f"{who} runs at nice {self.nice}, not real-time ({why})"
        return f"{who} runs at the default priority: could not raise it ({why})"


def _fifo(tid: int, priority: int) -> None:
    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))


def _nice(tid: int, value: int) -> None:
    # on Linux, PRIO_PROCESS with a thread id sets that one thread
    os.setpriority(os.PRIO_PROCESS, tid, value)


def _fifo_candidates() -> list[int]:
    """The highest FIFO priority, then the process's RLIMIT_RTPRIO (what an unprivileged user may take)."""
    if not hasattr(os, "SCHED_FIFO"):
        return []
    top = os.sched_get_priority_max(os.SCHED_FIFO)
    limit = resource.getrlimit(resource.RLIMIT_RTPRIO)[0] if hasattr(resource, "RLIMIT_RTPRIO") else 0
    return [top] + ([limit] if 0 < limit < top else [])


def _nice_candidates() -> list[int]:
    """The best nice value, then the best RLIMIT_NICE allows (its soft limit v permits nice 20 - v)."""
    limit = resource.getrlimit(resource.RLIMIT_NICE)[0] if hasattr(resource, "RLIMIT_NICE") else 0
    allowed = 20 - limit if limit > 0 else None
    return [NICEST] + ([allowed] if allowed is not None and NICEST < allowed < 0 else [])


def raise_priority(tid: int, *, fifo: Callable[[int, int], None] = _fifo, nice: Callable[[int, int], None] = _nice,
                   fifo_priorities: list[int] | None = None, nice_values: list[int] | None = None) -> Granted:
    """Give thread ``tid`` (its native id) the highest priority allowed: SCHED_FIFO first, else a nice value."""
    refused: list[str] = []
    for priority in _fifo_candidates() if fifo_priorities is None else fifo_priorities:
        try:
            fifo(tid, priority)
        except (OSError, AttributeError) as exc:
            refused.append(f"SCHED_FIFO {priority}: {_why(exc)}")
        else:
            return Granted(realtime=True, priority=priority, nice=None, refused=tuple(refused))
    for value in _nice_candidates() if nice_values is None else nice_values:
        try:
            nice(tid, value)
        except (OSError, AttributeError) as exc:
            refused.append(f"nice {value}: {_why(exc)}")
        else:
            return Granted(realtime=False, priority=None, nice=value, refused=tuple(refused))
    return Granted(realtime=False, priority=None, nice=None, refused=tuple(refused))


def _why(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"


def reception_threads(threads: Iterable[tuple[int, str]]) -> list[int]:
    """The native ids of the DDS threads a message passes through before any subscription sees it."""
    return [tid for tid, name in threads if RECEPTION_THREAD.fullmatch(name)]


def threads_of_this_process(proc: Path = Path("/proc/self/task")) -> list[tuple[int, str]]:
    """(native id, name) of this process's threads; empty where there is no /proc."""
    out: list[tuple[int, str]] = []
    try:
        tasks = list(proc.iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out.append((int(task.name), (task / "comm").read_text().strip()))
        except (OSError, ValueError):
            continue
    return out
