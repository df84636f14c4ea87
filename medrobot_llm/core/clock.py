"""The one notion of time that timeouts, heartbeats, confirmations and the LLM breaker are measured on.

Everything that decides by elapsed time takes a ``Clock`` instead of reading ``time.monotonic`` itself,
so a test can drive time with a ``ManualClock`` and assert the same decisions without sleeping. Only
code that measures real latency or paces real motion keeps the wall of the machine.
"""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["Clock", "ManualClock"]


class Clock(Protocol):
    """Seconds on a monotonic scale; ``time.monotonic`` is one, and the default everywhere."""

    def __call__(self) -> float: ...


class ManualClock:
    """A clock that moves only when told: confirmation expiry and watchdog tests without sleeping."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, dt: float) -> float:
        with self._lock:
            self._now += dt
            return self._now

    def set(self, t: float) -> None:
        """Move to ``t``; never backwards (a monotonic clock does not)."""
        with self._lock:
            self._now = max(self._now, t)
