"""The one JSON encoder: the audit log, ROS messages and ``--json`` output write the same value the same way."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from medrobot_llm.core.jsonable import jsonable
from medrobot_llm.safety import audit, gate


class Colour(str, Enum):
    RED = "red"


class Plain(Enum):
    ONE = 1


@dataclass
class Point:
    x: float
    y: float


class Model(BaseModel):
    name: str
    where: Path


class Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


VALUES = {
    "enum": Plain.ONE,
    "numpy_scalar": np.float64(1.5),
    "numpy_int": np.int64(3),
    "numpy_array": np.array([[1, 2], [3, 4]]),
    "dataclass": Point(1.0, 2.0),
    "model": Model(name="a", where=Path("/tmp/x")),
    "set": {3},
    "path": Path("/tmp/y"),
    "bytes": b"caf\xc3\xa9",
    "unknown": Unknown(),
}
EXPECTED = {
    "enum": 1,
    "numpy_scalar": 1.5,
    "numpy_int": 3,
    "numpy_array": [[1, 2], [3, 4]],
    "dataclass": {"x": 1.0, "y": 2.0},
    "model": {"name": "a", "where": "/tmp/x"},
    "set": [3],
    "path": "/tmp/y",
    "bytes": "café",
    "unknown": "<unknown>",
}


def test_every_kind_of_value_becomes_plain_json() -> None:
    assert json.loads(json.dumps(VALUES, default=jsonable)) == EXPECTED
    assert json.dumps({"c": Colour.RED}, default=jsonable) == '{"c": "red"}'


def test_the_audit_log_and_ros_messages_agree() -> None:
    log = audit.AuditLog(None)
    log.append("telemetry", **VALUES)
    record = {k: v for k, v in log.records[-1].items() if k in VALUES}
    assert record == EXPECTED
    assert json.loads(gate.to_json(VALUES)) == EXPECTED
