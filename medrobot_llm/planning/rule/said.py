"""Which words of a command produced each argument of each step: what the plan JSON's ``words`` says.

A console shows them beside the step ("side=left" from "left", "force_n=6" from "6 newtons"), so a person
sees what each value was read from, and that a value no word produced is a default. Read from the clause
that produced the step, after the pipeline has marked the names and quantities it used.
"""

from __future__ import annotations

from typing import Any

from medrobot_llm.core.command_set import CommandSet
from medrobot_llm.core.plan import Step
from medrobot_llm.planning.rule.model import Clause, clean_number, sign_words, small_amount_positions


def step_words(cs: CommandSet, step: Step, clause: Clause | None) -> dict[str, str]:
    """Argument -> the words that said its value; an argument no word of the clause said is left out."""
    if clause is None:
        return {}
    out: dict[str, str] = {}
    spec = cs.skills.get(step.skill)
    for a, v in step.args.items():
        s = spec.args.get(a) if spec is not None else None
        if s is None:
            continue
        if isinstance(v, str):
            words = _named(clause, v, s.entities) if v != clause.label else clause.label
        else:
            words = _quantity(clause, v, cs.domain)
        if words:
            out[a] = words
    return out


def _named(clause: Clause, value: str, entities: tuple[str, ...]) -> str | None:
    for it in clause.items:
        if any(e in entities and v == value for e, v in it.options):
            return " ".join(clause.tokens[k] for k in sorted(it.positions))
    return None


def _quantity(clause: Clause, value: Any, domain: str) -> str | None:
    """The quantity said for a number (or a component of an offset), with the words that gave it its sign."""
    values = value if isinstance(value, list) else [value]
    wanted = {clean_number(abs(float(x))) for x in values if isinstance(x, (int, float)) and x}
    named = {k for it in clause.items for k in it.positions}
    signs = {k for k, t in enumerate(clause.tokens) if t in sign_words(domain) and k not in named}
    for q in clause.qtys:
        if q.used and clean_number(abs(q.value)) in wanted:
            keep = set(range(q.start, q.end + 1)) | signs
            return " ".join(clause.tokens[k] for k in sorted(keep))
    small = small_amount_positions(clause.tokens)
    if clause.small and small and wanted:
        return " ".join(clause.tokens[k] for k in sorted(small | signs))
    return None

