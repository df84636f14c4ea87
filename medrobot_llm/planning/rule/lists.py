"""Lists of two arguments in one clause: "AP and lateral of both hips" lists the views and the hips.

Each value listed was planned with the first value of every other argument, so the plan held three of the
four views the words ask for (and "with a shot each" exposed three): one list was dropped silently. Every
combination is planned instead, each thing named in each way listed, so the count is what was said (and the
validator counts the exposures). Where two lists are both of what the step acts on ("move psm1 and psm2 to
the needle and the shunt"), whether each goes with each or one with one, the words do not say: the planner
asks.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

from medrobot_llm.core.command_set import SkillSpec
from medrobot_llm.planning.rule.model import Question


class Listed(NamedTuple):
    """One more value of argument ``arg`` said in a list ("..., and the right hip"): the step's arguments with
    it (``args``), where it was said, and whether other names said with it replaced the first step's too
    (``paired``: "the needle with the right arm and the shunt with the left arm")."""

    arg: str
    start: int
    args: dict[str, Any]
    paired: bool


def combine_lists(spec: SkillSpec, first: dict[str, Any], listed: list[Listed]) -> list[dict[str, Any]]:
    """The arguments of the steps after ``first`` that the lists ask for. One list gives one step per value
    listed, as said, and so does a value said with its own names (``paired``: "and a lateral of the chest");
    lists of two or more independent arguments give every combination, the first argument of the skill
    outermost (each hip in both views, not each view on both hips), then the paired steps."""
    lists = [x for x in listed if not x.paired]
    roots = {_root(spec, x.arg) for x in lists}
    if len(roots) < 2:
        return [x.args for x in listed]
    ordered = [a for a in spec.args if a in roots]
    acted_on = [a for a in ordered if spec.args[a].required and spec.args[a].default is None]
    if len(acted_on) > 1:
        said = "; ".join(", ".join(_values(spec, first, lists, a)) for a in ordered)
        raise Question(f"Which {' goes with which '.join(a.replace('_', ' ') for a in ordered)}? The command "
                       f"lists several of each ({said}); say each one with its own, as a step of its own")
    groups = {a: _group(spec, a) for a in ordered}
    options = []
    for a in ordered:
        keys = groups[a]
        mine = sorted((x for x in lists if _root(spec, x.arg) == a), key=lambda x: x.start)
        options.append([{k: first[k] for k in keys if k in first},
                        *({k: x.args[k] for k in keys if k in x.args} for x in mine)])
    common = {k: v for k, v in first.items() if not any(k in keys for keys in groups.values())}
    out = []
    for combo in itertools.product(*options):
        args = dict(common)
        for part in combo:
            args.update(part)
        out.append(args)
    return out[1:] + [x.args for x in listed if x.paired]


def _root(spec: SkillSpec, arg: str) -> str:
    """The argument whose value ``arg``'s values depend on (a side's anatomy), or ``arg`` itself."""
    seen = {arg}
    while True:
        vf = spec.args[arg].values_from
        parent = vf.split(".")[0] if vf else None
        if parent is None or parent not in spec.args or parent in seen:
            return arg
        arg = parent
        seen.add(arg)


def _group(spec: SkillSpec, root: str) -> list[str]:
    """``root`` and the arguments that depend on it: a side is listed with its anatomy ("the left hip")."""
    return [a for a in spec.args if _root(spec, a) == root]


def _values(spec: SkillSpec, first: dict[str, Any], listed: list[Listed], root: str) -> list[str]:
    keys = _group(spec, root)
    out: list[str] = []
    for args in (first, *(x.args for x in listed if _root(spec, x.arg) == root)):
        said = " ".join(str(args[k]) for k in reversed(keys) if k in args)
        if said not in out:
            out.append(said)
    return out
