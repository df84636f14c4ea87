"""The model's plan held to the offline planner's reading of the same words.

Where the rule planner reads a command completely, its plan *is* the shared reading of the words: signs
from direction words and minus characters, each number with its own unit on its own argument, named values,
counts and struck (negated, deferred, past, confirmed) steps all come from ``language/`` and ``skills/``.
A model's plan must then say the same thing: ``abs()`` or "the number appears somewhere" would let "tilt
back 20" become -20, "a 20 mm sweep" lend its 20 to a force, or "lateral" fall back to the default AP. Where
the rule planner cannot read the command, ``grounding``'s word-level checks are all there is.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medrobot_llm.core.command_set import CommandSet, Hazard, load_command_set
from medrobot_llm.core.plan import PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.units import UNIT_WORDS
from medrobot_llm.core.validator import Issue, WorldState

__all__ = ["DIFFERENCE_KINDS", "Reading", "against_reading", "difference", "read", "rule_reading", "unmatched"]

#: how a model's argument can differ from the reading; the benchmark counts plans by these too
DIFFERENCE_KINDS: tuple[str, ...] = ("sign", "value", "unit", "enum", "count")


@dataclass(frozen=True)
class Reading:
    """The offline planner's reading of one command (``steps`` None: it reads no plan there), made once per
    command: every answer and repair of the model is judged against the same one."""

    steps: list[Step] | None


def read(domain: str, text: str, world: WorldState | None = None) -> Reading:
    return Reading(rule_reading(domain, text, world))


def rule_reading(domain: str, text: str, world: WorldState | None = None) -> list[Step] | None:
    """The steps the offline planner reads in ``text``, or None when it does not read a plan there (a
    question, a refusal, a control intent or words it does not know)."""
    from medrobot_llm.planning.rule.planner import RulePlanner

    plan, understood = RulePlanner().parse(domain, text, world)
    return list(plan.steps) if understood and plan.status is PlanStatus.OK else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return bool(a == b)


def _unit_ratios() -> frozenset[float]:
    factors: dict[str, set[float]] = {}
    for dim, factor in UNIT_WORDS.values():
        factors.setdefault(dim, {1.0}).add(factor)
    return frozenset(a / b for fs in factors.values() for a in fs for b in fs if a != b)


_RATIOS = _unit_ratios()


def difference(mine: Any, theirs: Any) -> str | None:
    """How a model's value differs from the reading's: None (it does not), "sign" (the same amount the other
    way), "unit" (the amount read in another unit of the same kind: 20 µm as 20 mm), "enum" (another name)
    or "value"."""
    if _same(mine, theirs):
        return None
    if isinstance(mine, str) or isinstance(theirs, str):
        return "enum"
    if isinstance(mine, list) or isinstance(theirs, list):
        pairs = list(zip(mine, theirs)) if isinstance(mine, list) and isinstance(theirs, list) else []
        kinds = {difference(a, b) for a, b in pairs} - {None}
        return kinds.pop() if len(kinds) == 1 else "value"
    if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)):
        if theirs and _same(-float(mine), float(theirs)):
            return "sign"
        if theirs and mine and any(_same(abs(float(mine) / float(theirs)), r) for r in _RATIOS):
            return "unit"
    return "value"


def unmatched(reading: Sequence[Step], steps: Sequence[Step]) -> frozenset[int]:
    """The positions of ``steps`` beyond the reading's count of their skill (the reading has no such step)."""
    left = Counter(r.skill for r in reading)
    out = set()
    for i, step in enumerate(steps):
        if left[step.skill] > 0:
            left[step.skill] -= 1
        else:
            out.add(i)
    return frozenset(out)


def _extra_reason(cs: CommandSet, skill: str, reading: Sequence[Step]) -> Reason:
    """An unasked step's code, as the word-level checks give it: contact or radiation the command does not
    ask for at all, one exposure more than it asks for, or a motion step."""
    hazard = cs.skills[skill].hazard
    if hazard is Hazard.MOTION:
        return Reason.UNGROUNDED_STEP
    if hazard is Hazard.RADIATION and any(cs.skills[r.skill].hazard is hazard for r in reading):
        return Reason.EXPOSURE_COUNT
    return Reason.UNGROUNDED_HAZARD


def against_reading(domain: str, reading: Sequence[Step], steps: Sequence[Step]) -> list[Issue]:
    """Issues where the model's (validated) ``steps`` say other than the ``reading``: each occurrence of a
    skill is compared with the same occurrence in the reading, argument by argument, defaults included (a
    named value the model left out became the default); a hazardous or motion step beyond the reading's
    count is unasked, and a contact or radiation step the reading has but the plan lacks is left out. Steps
    with no hazard (locate, collimate, capture...) may be added: they move nothing."""
    cs = load_command_set(domain)
    said: dict[str, list[Step]] = {}
    for r in reading:
        said.setdefault(r.skill, []).append(r)
    seen: Counter[str] = Counter()
    issues: list[Issue] = []
    for i, step in enumerate(steps):
        spec = cs.skills[step.skill]
        k = seen[step.skill]
        seen[step.skill] += 1
        ours = said.get(step.skill, [])
        if k >= len(ours):
            if spec.hazard is not Hazard.NONE:
                each = "; each exposure must be asked for" if spec.hazard is Hazard.RADIATION else ""
                issues.append(Issue(_extra_reason(cs, step.skill, reading), f"{step.skill} ({spec.hazard.value}) is not asked "
                                    f"for: the command asks for {len(ours)} {step.skill} step"
                                    f"{'s' if len(ours) != 1 else ''}{each}; remove it or refuse", i, step.skill))
            continue
        want = ours[k]
        for name in spec.args:
            mine, theirs = step.args.get(name), want.args.get(name)
            kind = difference(mine, theirs)
            if kind is not None:
                issues.append(Issue(Reason.UNGROUNDED_VALUE, f"{name} = {mine!r}, but the command says {theirs!r} "
                                    f"({kind} differs); use the person's own value", i, step.skill, name,
                                    value=mine))
    for skill, ours in said.items():
        # a motion step the reading chains in (grasp before lift) may be left to the world state to need
        if seen[skill] < len(ours) and cs.skills[skill].hazard in (Hazard.CONTACT, Hazard.RADIATION):
            issues.append(Issue(Reason.UNGROUNDED_STEP, f"the command asks for {len(ours)} {skill} step"
                                f"{'s' if len(ours) != 1 else ''}, the plan has {seen[skill]}", skill=skill))
    return issues
