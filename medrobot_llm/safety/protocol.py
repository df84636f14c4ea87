"""``SupervisorClient``: the supervisor as an operator front end sees it, in this process or over ROS.

``Supervisor`` and ``medrobot_llm.backends.ros.remote.RemoteSupervisor`` both implement it and answer
with the same types (a ``Reply`` for every command, typed events for every record), so a console is
written once, against this, and never asks which of the two it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from medrobot_llm.safety.events import EventListener
from medrobot_llm.safety.replies import Reply

__all__ = ["SupervisorClient"]


@runtime_checkable
class SupervisorClient(Protocol):
    """Commands answer with a ``Reply``; ``subscribe`` delivers every record (and step feedback) in order,
    on some thread of the client's, and returns the function that unsubscribes."""

    def command(self, text: str, *, source: str = ...) -> Reply: ...

    def confirm(self, step_index: int | None = None, *, source: str = ...) -> Reply:
        """Confirm the question about ``step_index`` (any open question if None); never another step."""
        ...

    def deny(self, *, source: str = ...) -> Reply: ...

    def stop(self, reason: str = ..., *, source: str = ...) -> Reply:
        """E-stop: the halt is on its way before anything waits."""
        ...

    def reset(self, *, source: str = ...) -> Reply: ...

    def status(self) -> dict[str, Any]: ...

    def subscribe(self, listener: EventListener) -> Callable[[], None]: ...
