""""sweep cranial 3 cm and back", "hand the needle from psm1 to psm2 and back": the step, then the same step
the other way. Read as one step, "and back" was dropped silently and the probe stayed 3 cm up.

The other way is what the command set says it is: the from and to of a step swapped, the ``opposite`` of a
direction (skills/), or a signed amount negated. A step with none of these (a move to a place, a lift, a
task), or with more than one (which would undo the other?), has no return the command set can express,
and where "back" is also a word of the step ("tilt 10 degrees and back": back is a tilt's way) the words
say two things: the planner asks instead.
"""

from __future__ import annotations

from typing import Any

from medrobot_llm.core.command_set import CommandSet, SkillSpec
from medrobot_llm.core.plan import Step
from medrobot_llm.language.phrases import find_phrase
from medrobot_llm.language.text import tokenize
from medrobot_llm.planning.rule.model import Clause, ParseState

#: words in a clause that ask for its step the other way too ("there and back", "and come back")
RETURN_PHRASES: tuple[tuple[str, ...], ...] = (
    ("there", "and", "back"), ("and", "back"), ("and", "come", "back"), ("and", "go", "back"))

#: a clause of its own, after "then", that asks for the step before it the other way ("..., then back")
RETURN_CLAUSES: frozenset[tuple[str, ...]] = frozenset(
    [("back",), ("back", "again"), ("come", "back"), ("come", "back", "again"), ("go", "back"), ("go", "back", "again")])

#: the word of a return phrase that says "the other way"
_BACK = "back"


def said_back(clause: Clause) -> str | None:
    """The return phrase the clause says, unless a skill phrase holds its "back" ("and back off")."""
    toks = clause.tokens
    skill_words = {k for m in clause.skills for k in m.positions}
    for words in RETURN_PHRASES:
        for at in find_phrase(toks, words, set(), allow_gaps=False):
            if not any(toks[k] == _BACK and k in skill_words for k in at):
                return " ".join(toks[k] for k in at)
    return None


def return_steps(state: ParseState, kind: str, main: list[tuple[SkillSpec, dict[str, Any]]],
                 clause: Clause) -> list[tuple[SkillSpec, dict[str, Any]]]:
    """The step the clause asks for the other way, after it; or a question in ``state.questions`` and none."""
    said = said_back(clause)
    if said is None:
        return []
    cs = state.cs
    steps = ", then ".join(Step(skill=spec.name, args=dict(args)).describe() for spec, args in main)
    way = next((spec.name for spec, args in main if _BACK in _step_words(cs, spec, args)), None)
    if way is not None:
        state.questions.append(f"Does 'back' in '{said}' say a way or a value of {way}, or ask for the step "
                               f"again the other way? The plan would be {steps}; say the way on its own, or the "
                               "return as a step of its own")
        return []
    back = _reversed(cs, main[0][0], main[0][1]) if kind == "skill" and len(main) == 1 else None
    if back is None:
        state.questions.append(f"What should '{said}' do after {steps}? The {cs.domain} command set has no "
                               "single step that undoes it; say the step that should follow")
        return []
    if clause.count:
        state.questions.append(f"Should the count repeat {steps} and its return together, or one of them? Say "
                               "each step with its own count")
        return []
    return [(main[0][0], back)]


def _reversed(cs: CommandSet, spec: SkillSpec, args: dict[str, Any]) -> dict[str, Any] | None:
    """``args`` the other way: from and to swapped, else the one direction with an opposite or the one signed
    amount negated; None where the command set gives no other way, or more than one."""
    pairs = [(a, "to_" + a[5:]) for a in args if a.startswith("from_") and "to_" + a[5:] in args]
    if pairs:
        back = dict(args)
        for f, t in pairs:
            back[f], back[t] = args[t], args[f]
        return back
    ways: list[tuple[str, Any]] = []
    for a, s in spec.args.items():
        v = args.get(a)
        ev = cs.entity_value(v, s) if s.type == "enum" and isinstance(v, str) else None
        if ev is not None and ev.opposite is not None:
            ways.append((a, ev.opposite))
        elif s.type == "number" and isinstance(v, (int, float)) and not isinstance(v, bool) and _signed(cs, spec, a, args):
            ways.append((a, -v))
    if len(ways) != 1:
        return None
    a, v = ways[0]
    return {**args, a: v}


def _signed(cs: CommandSet, spec: SkillSpec, a: str, args: dict[str, Any]) -> bool:
    """Whether the number may go either way: its range, or the range of the value it takes it from (the
    gantry's tilt), holds negative amounts."""
    s = spec.args[a]
    if s.min is not None and s.min < 0:
        return True
    ref = args.get(s.range_from) if s.range_from else None
    ev = cs.entity_value(ref, spec.args[s.range_from]) if isinstance(ref, str) and s.range_from else None
    return ev is not None and ev.min is not None and ev.min < 0


def _step_words(cs: CommandSet, spec: SkillSpec, args: dict[str, Any]) -> set[str]:
    """The words that say a way or a value of this step: the signs of its values and numbers, and the names
    of the values its enum arguments may take."""
    out: set[str] = set()
    for a, s in spec.args.items():
        phrases: tuple[str, ...] = (*s.positive, *s.negative)
        v = args.get(a)
        ev = cs.entity_value(v, s) if s.type == "enum" and isinstance(v, str) else None
        if ev is not None:
            phrases += (*ev.positive, *ev.negative)
        if s.type == "enum":
            for value in cs.allowed_values(s):
                other = cs.entity_value(value, s)
                phrases += other.synonyms if other is not None else ()
        out.update(w for p in phrases for w in tokenize(p))
    return out
