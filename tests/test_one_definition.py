"""Each safety-relevant fact has one definition; these tests fail when one is restated elsewhere.

A second copy of a fact (a state name typed as a string, a ``choices=`` tuple of domains, a node list)
goes stale silently the day the first one changes, so the copies are looked for in the source itself.
"""

from __future__ import annotations

import argparse
import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

import medrobot_llm
from medrobot_llm.cli import build_parser
from medrobot_llm.core.command_set import DOMAINS
from medrobot_llm.safety.supervisor import LATCHED, RUNNING, SupervisorState

PACKAGE = Path(medrobot_llm.__file__).resolve().parent


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _strings(tree: ast.AST) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"


def test_state_names_are_spelled_only_by_the_enum() -> None:
    home = Path(inspect.getsourcefile(SupervisorState) or "").resolve()
    names = {s.value for s in SupervisorState}
    found = [_where(path, node) for path, tree in _modules() if path != home
             for node in _strings(tree) if node.value in names]
    assert not found, f"state names spelled as strings (use SupervisorState): {found}"


def test_console_state_sets_are_the_supervisors() -> None:
    from medrobot_llm.consoles.core import LATCHED_STATES, RUNNING_STATES
    from medrobot_llm.safety import gate

    assert RUNNING_STATES == {s.value for s in RUNNING}
    assert LATCHED_STATES == gate.LATCHED_STATES == {s.value for s in LATCHED}


def _domain_options(parser: argparse.ArgumentParser, prefix: str = "medrobot") -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _domain_options(child, f"{prefix} {name}")
        elif "--domain" in action.option_strings:
            yield prefix, action


def test_every_domain_option_offers_the_command_sets_domains() -> None:
    options = dict(_domain_options(build_parser()))
    assert {"medrobot run", "medrobot voice", "medrobot bench", "medrobot console", "medrobot bringup"} <= set(options)
    for command, action in options.items():
        if action.choices is not None:
            assert tuple(action.choices) == DOMAINS, command


def test_domains_are_listed_only_by_the_command_set() -> None:
    from medrobot_llm.core import command_set

    home = Path(inspect.getsourcefile(command_set) or "").resolve()
    found = []
    for path, tree in _modules():
        if path == home:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) > 1 and all(
                    isinstance(e, ast.Constant) and e.value in DOMAINS for e in node.elts):
                found.append(_where(path, node))
        for node in _strings(tree):
            if all(d in node.value for d in DOMAINS):
                found.append(_where(path, node))
    assert not found, f"the domains listed outside core/command_set.py (import DOMAINS): {found}"


@pytest.mark.parametrize("last", ["or", "and"])
def test_domain_prose_follows_the_tuple(last: str) -> None:
    from medrobot_llm.cli.options import domain_names

    text = domain_names(last)
    assert text.endswith(f" {last} {DOMAINS[-1]}")
    assert [w.strip(",") for w in text.split() if w != last] == list(DOMAINS)


def test_every_json_writer_uses_the_one_encoder() -> None:
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "default" and isinstance(node.value, ast.Name) \
                    and node.value.id in {"str", "repr", "json_default", "_jsonable"}:
                found.append(_where(path, node.value))
            if isinstance(node, ast.FunctionDef) and node.name != "jsonable" and "json" in node.name \
                    and "default" in node.name:
                found.append(_where(path, node))
    assert not found, f"a JSON default other than core.jsonable.jsonable: {found}"
