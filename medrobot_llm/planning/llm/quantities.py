"""The quantities a command says, as grounding reads them: each number with its sign and its own unit.

A model's number is grounded only by a number said for an argument of the same kind, in the unit it was
said in, with the sign the words give it: "a 20 mm sweep" says a length, so it cannot ground a force of
20 N or a speed of 20 mm/s; "tilt back 20" says +20 on the tilt axis, and -20 was never said. The signs
and units are those of ``language.numbers`` and ``core.units``, the ones the offline planner reads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from medrobot_llm.core.units import UNIT_WORDS
from medrobot_llm.language.numbers import FRACTIONS, NEGATIVE_SIGNS
from medrobot_llm.language.text import tokenize

__all__ = ["Quantity", "quantities"]

#: words that may stand between a fraction word and its unit ("half a turn", "a quarter of a turn")
_FRACTION_GLUE = frozenset(["a", "an", "of"])


@dataclass(frozen=True)
class Quantity:
    """A number said: signed as written ("minus 20", "−20"), with the dimension and factor of its unit, or
    no unit (then it can only be the argument's own plan unit)."""

    value: float
    dimension: str | None = None
    factor: float = 1.0

    @property
    def negative(self) -> bool:
        return self.value < 0

    def in_plan_unit(self) -> float:
        return self.value * self.factor


@functools.cache
def _unit_phrases() -> tuple[tuple[tuple[str, ...], str, float], ...]:
    phrases = {tuple(tokenize(w)): (dim, f) for w, (dim, f) in UNIT_WORDS.items()}
    return tuple(sorted(((p, d, f) for p, (d, f) in phrases.items() if p), key=lambda x: -len(x[0])))


def quantities(tokens: Sequence[str]) -> list[Quantity]:
    """Every number in ``tokens`` (digits, after ``words_to_numbers``, or a fraction word) with its unit."""
    out: list[Quantity] = []
    for i, t in enumerate(tokens):
        if re.fullmatch(r"\d+(\.\d+)?", t):
            value = float(t)
            j = i + 1
        elif t in FRACTIONS:
            value = FRACTIONS[t]
            j = i + 1
            while j < len(tokens) and tokens[j] in _FRACTION_GLUE:
                j += 1
        else:
            continue
        if i > 0 and tokens[i - 1] in NEGATIVE_SIGNS:
            value = -value
        unit = next(((d, f) for p, d, f in _unit_phrases() if tuple(tokens[j:j + len(p)]) == p), None)
        out.append(Quantity(value, *unit) if unit else Quantity(value))
    return out
