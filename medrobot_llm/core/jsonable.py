"""One way to turn what the system holds into JSON: the audit log, ROS messages and ``--json`` output.

Records and telemetry carry enums, pydantic models, dataclasses, paths, sets and numpy values. Each writer
once had its own ``default=`` and they disagreed (numpy arrays became lists on ROS but their repr in the
audit log), so the same record read differently depending on where it was seen.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """``json.dumps(..., default=jsonable)``: plain JSON for anything a record may hold; never raises, because
    the audit log must never refuse a record (an unknown object is written as its repr)."""
    if isinstance(value, Enum):
        return value.value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)
