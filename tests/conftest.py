"""Shared fixtures. Tests that need ROS, pybullet, a terminal or audio carry a marker (see pyproject)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse", action="store_true",
                     help="run the collected tests in reverse order, to show that none depends on another having run")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--reverse"):
        items.reverse()


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


class Closing(Protocol):
    """The ``closing`` fixture's type, for test signatures."""

    def __call__(self, thing: C) -> C: ...


@pytest.fixture
def closing() -> Iterator[Closing]:
    """``closing(thing)`` returns ``thing`` and closes it after the test, pass or fail, last opened first:
    a failing assertion must not leave threads, processes or physics clients behind for the next test."""
    opened: list[Closable] = []

    def register(thing: C) -> C:
        opened.append(thing)
        return thing

    yield register
    while opened:
        opened.pop().close()


@pytest.fixture(autouse=True)
def _close_supervisor_rigs() -> Iterator[None]:
    """Every rig ``make_rig`` made during a test is closed after it, pass or fail (closing twice is harmless)."""
    yield
    for name in ("_helpers_supervisor", "tests._helpers_supervisor"):
        helpers = sys.modules.get(name)
        if helpers is not None:
            helpers.close_rigs()
