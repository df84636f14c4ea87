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
from medrobot_llm.safety.machine import LATCHED, RUNNING, SupervisorState

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
            if all(d in node.value for d in DOMAINS) or node.value.startswith("unknown domain "):
                found.append(_where(path, node))
    assert not found, f"the domains listed outside core/command_set.py (import DOMAINS, unknown_domain): {found}"


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


# -- the ROS node list: one table (backends/ros/nodes.py); files that cannot import it are held to it ----------

ROOT = PACKAGE.parent
BRINGUP = ROOT / "ros_ws" / "src" / "medrobot_bringup"


def test_the_wheels_console_scripts_are_the_node_table() -> None:
    import tomllib

    from medrobot_llm.backends.ros.nodes import NODES

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    ros = {name: target for name, target in scripts.items() if target.startswith("medrobot_llm.backends.ros.")}
    assert ros == {n.script: f"{n.module}:main" for n in NODES}


def test_the_bringup_executables_are_the_node_table() -> None:
    import re

    from medrobot_llm.backends.ros.nodes import NODES

    scripts = BRINGUP / "scripts"
    assert sorted(p.name for p in scripts.iterdir()) == sorted(n.name for n in NODES)
    for node in NODES:
        text = (scripts / node.name).read_text(encoding="utf-8")
        assert f"from {node.module} import main" in text, node.name
        assert f"Start the {node.name} node" in text, node.name
    cmake = (BRINGUP / "CMakeLists.txt").read_text(encoding="utf-8")
    programs = re.search(r"install\(PROGRAMS(.*?)DESTINATION", cmake, re.S)
    assert programs is not None
    assert sorted(programs.group(1).split()) == sorted(f"scripts/{n.name}" for n in NODES)


def test_the_launch_file_starts_the_node_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``generate_launch_description`` against stand-ins for the ROS launch packages (the wheels lack them)."""
    import runpy
    import sys
    import types

    from medrobot_llm.backends.ros.nodes import NODES, SKILL_SERVER
    from medrobot_llm.cli.options import domain_names

    class Recorded:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.args, self.kwargs = args, kwargs

    class Node(Recorded):
        pass

    class DeclareLaunchArgument(Recorded):
        pass

    fakes = {
        "ament_index_python": {},
        "ament_index_python.packages": {"get_package_share_directory": lambda p: f"/share/{p}"},
        "launch": {"LaunchDescription": Recorded},
        "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "SetEnvironmentVariable": Recorded},
        "launch.substitutions": {"LaunchConfiguration": lambda name: f"$({name})"},
        "launch_ros": {}, "launch_ros.actions": {"Node": Node},
    }
    for name, attrs in fakes.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    launch = runpy.run_path(str(BRINGUP / "launch" / "sim.launch.py"))
    actions = launch["generate_launch_description"]().args[0]
    nodes = [a.kwargs for a in actions if isinstance(a, Node)]
    assert [(n["executable"], n["name"]) for n in nodes] == [(n.name, n.name) for n in NODES]
    for n in nodes:
        extra = {"gui": "$(gui)"} if n["name"] == SKILL_SERVER.name else {}
        assert n["parameters"] == ["$(params_file)", {"domain": "$(domain)", "keys_dir": "$(keys_dir)", **extra}]
    domain = next(a for a in actions if isinstance(a, DeclareLaunchArgument) and a.args[0] == "domain")
    assert domain.kwargs["description"] == domain_names()


def test_bringup_starts_the_node_table() -> None:
    from medrobot_llm.backends.ros.nodes import NODES as TABLE
    from medrobot_llm.cli.bringup import NODES

    assert list(NODES.items()) == [(n.name, n.module) for n in TABLE]


def test_node_names_are_spelled_only_by_the_table() -> None:
    import re

    from medrobot_llm.backends.ros import nodes

    home = Path(inspect.getsourcefile(nodes) or "").resolve()
    names = {n.name for n in nodes.NODES} | {n.module for n in nodes.NODES} | {n.script for n in nodes.NODES}
    spelled = re.compile("|".join(rf"(?<![\w.-]){re.escape(n)}(?![\w-])" for n in names))
    found = [_where(path, node) for path, tree in _modules() if path != home
             for node in _strings(tree) if spelled.search(node.value)]
    assert not found, f"node names spelled outside backends/ros/nodes.py: {found}"


# -- conditions and effects: parsed once, at load, into the command-set models --------------------------------

def test_conditions_and_effects_are_parsed_at_load() -> None:
    from medrobot_llm.core.command_set import Condition, Effect, load_command_set

    surgery = load_command_set("surgery")
    handover = surgery.skills["handover"]
    assert all(isinstance(c, Condition) for c in handover.preconditions)
    assert all(isinstance(e, Effect) for e in handover.effects)
    first = handover.preconditions[0]
    assert (first.fact, first.op, first.value, str(first)) == ("holding[{from_arm}]", "==", "{object}",
                                                               "holding[{from_arm}] == {object}")
    assert first.arguments == ("from_arm", "object") and first.fact_arguments == ("from_arm",)
    release = surgery.skills["release"]
    assert release.effects[0].instances(surgery, release, {"arm": "all"}) == [
        ("holding[psm1]", "none"), ("holding[psm2]", "none")]


def test_nothing_else_parses_a_condition() -> None:
    from medrobot_llm.core import command_set

    home = Path(inspect.getsourcefile(command_set) or "").resolve()
    found = []
    for path, tree in _modules():
        if path == home:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "split" \
                    and node.args and isinstance(node.args[0], ast.Constant) \
                    and node.args[0].value in ("=", "==", "!="):
                found.append(_where(path, node))
            if isinstance(node, ast.ImportFrom) and any(a.name in ("_CONDITION", "_EFFECT", "_expand")
                                                        for a in node.names):
                found.append(_where(path, node))
        for node in _strings(tree):
            if "(?P<op>" in node.value or "==|!=" in node.value:
                found.append(_where(path, node))
    assert not found, f"conditions or effects parsed outside core/command_set.py: {found}"


# -- arms: from the command set's arm entity ---------------------------------------------------------------------

def test_arms_come_from_the_arm_entity() -> None:
    from medrobot_llm.core.command_set import load_command_set
    from medrobot_llm.core.plan import Step
    from medrobot_llm.safety.gate import arms_of

    surgery, ultrasound = load_command_set("surgery"), load_command_set("ultrasound")
    assert surgery.arms == ("psm1", "psm2") and ultrasound.arms == ()
    assert arms_of(surgery, Step(skill="home", args={"arm": "all"})) == {"psm1", "psm2"}
    assert arms_of(surgery, Step(skill="release", args={"arm": "psm2"})) == {"psm2"}
    assert arms_of(surgery, Step(skill="handover", args={"from_arm": "psm1", "to_arm": "psm2",
                                                         "object": "needle"})) == {"psm1", "psm2"}
    assert arms_of(surgery, Step(skill="locate", args={"object": "needle"})) == {"psm1", "psm2"}
    assert arms_of(ultrasound, Step(skill="capture", args={})) == {"arm"}


def test_arm_values_are_not_compared_or_listed_in_python() -> None:
    """``x == "all"`` or ``["psm1", "psm2"]`` in Python would go stale when the skill file changes its arms.
    Hand-written example plans (the bench suite's expectations, the README pictures) may name arms."""
    from medrobot_llm.core.command_set import ARM_ENTITY, load_command_set

    values = set(load_command_set("surgery").entities[ARM_ENTITY].values)
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if any(isinstance(o, ast.Constant) and o.value in values for o in operands):
                    found.append(_where(path, node))
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) > 1 and all(
                    isinstance(e, ast.Constant) and e.value in values for e in node.elts):
                found.append(_where(path, node))
    assert not found, f"arm values spelled in Python (read the command set's arms): {found}"


# -- JSON Schema: one builder (core/schema.py); the LLM's wire shapes derive from it ------------------------------

def test_the_llm_wire_schema_is_the_core_schema() -> None:
    from medrobot_llm.core import schema as core
    from medrobot_llm.core.command_set import load_command_set
    from medrobot_llm.planning.llm import schema as wire

    checked = 0
    for domain in DOMAINS:
        cs = load_command_set(domain)
        for skill in cs.skills.values():
            for name, spec in skill.args.items():
                ours, theirs = core.arg_schema(cs, spec), wire.arg_schema(cs, skill, name)
                assert theirs["type"] == [ours["type"], "null"]
                if "enum" in ours:
                    assert theirs["enum"] == [*ours["enum"], None]
                for key in ("minimum", "maximum", "maxLength", "minItems", "maxItems", "items"):
                    if key in ours:
                        assert theirs[key] == ours[key], (domain, skill.name, name, key)
                if spec.type == "number":
                    assert (theirs["minimum"], theirs["maximum"]) == core.number_bounds(cs, skill, spec)
                checked += 1
    assert checked


def test_a_range_taken_from_another_argument_is_the_validators() -> None:
    """The core schema states no bounds for it, the wire schema the union: the validator's per-axis range is
    the truth, and every value it accepts lies inside the union."""
    from medrobot_llm.core import schema as core
    from medrobot_llm.core.command_set import load_command_set
    from medrobot_llm.core.validator import PlanValidationError, WorldState, check_steps
    from medrobot_llm.planning.llm import schema as wire

    cs = load_command_set("xray")
    adjust = cs.skills["adjust"]
    assert "minimum" not in core.arg_schema(cs, adjust.args["amount"])
    lo, hi = core.number_bounds(cs, adjust, adjust.args["amount"])
    theirs = wire.arg_schema(cs, adjust, "amount")
    assert (theirs["minimum"], theirs["maximum"]) == (lo, hi)
    world = {"view_set": True}
    for axis in cs.allowed_values(adjust.args["axis"]):
        ev = cs.entities["axis"].values[axis]
        assert ev.min is not None and ev.max is not None and lo <= ev.min and ev.max <= hi
        check_steps("xray", [{"skill": "adjust", "args": {"axis": axis, "amount": ev.max}}], WorldState(world, True))
        if ev.max < hi:
            with pytest.raises(PlanValidationError):
                check_steps("xray", [{"skill": "adjust", "args": {"axis": axis, "amount": hi}}],
                            WorldState(world, True))


def test_json_schema_is_built_only_in_core() -> None:
    from medrobot_llm.core import schema

    home = Path(inspect.getsourcefile(schema) or "").resolve()
    keys = {"minItems", "maxLength", "x-unit", "x-hazard"}  # maxItems also bounds the LLM answer's step list
    found = []
    for path, tree in _modules():
        if path == home:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value in keys for k in node.keys):
                found.append(_where(path, node))
            if isinstance(node, ast.Call) and any(k.arg in keys for k in node.keywords):
                found.append(_where(path, node))
    assert not found, f"JSON Schema built outside core/schema.py: {found}"
