"""Number and quantity sub-grammars: spoken whole numbers and decimals, and per argument the units (and their
dimension, sign and size) the planner will accept, all from the number words and unit table it reads with.
"""

from __future__ import annotations

from medrobot_llm.consoles.voice.jsgf import one_of
from medrobot_llm.consoles.voice.phones import PRONUNCIATIONS, SPELLED, acoustic_dictionary, derive
from medrobot_llm.consoles.voice.spoken import UNSPOKEN, spoken_words
from medrobot_llm.core.command_set import ArgSpec, CommandSet, SkillSpec
from medrobot_llm.core.units import DIMENSION_OF_UNIT, UNIT_WORDS
from medrobot_llm.language.numbers import SPOKEN_ONES, SPOKEN_TENS

__all__ = [
    "MAX_NUMBER",
    "arg_dimension",
    "arg_limits",
    "may_be_negative",
    "number_rules",
    "units_by_dimension",
]

#: the largest whole number the grammar has; plan ranges stop at 400 mm, but people say "20 by 40 cm"
MAX_NUMBER = 200


def number_rules() -> dict[str, str]:
    digits = list(SPOKEN_ONES[1:10])
    teens = list(SPOKEN_ONES[10:20])
    tens = list(SPOKEN_TENS[2:])
    top = MAX_NUMBER // 100
    return {
        "digit": one_of([*SPOKEN_ONES[:10], "oh"]),
        "nonzero": one_of(digits),
        "below100": "<nonzero> | " + one_of(teens) + " | (" + one_of(tens) + ") [<nonzero>]",
        "whole": ("zero | <below100> | ((a | one) hundred [[and] <below100>]) | ("
                  + one_of(list(SPOKEN_ONES[2:top + 1])) + ") hundred [[and] <below100>]"),
        "number": "<whole> [(point <digit> [<digit>]) | (and a half) | (and a quarter)] | half | a half | "
                  "a quarter | one and a half",
    }


def units_by_dimension() -> dict[str, list[tuple[str, float]]]:
    """Spoken unit phrases per dimension (length, angle, ...) with their size in the plan unit, from the unit
    table the planner converts with."""
    dic = acoustic_dictionary()
    out: dict[str, list[tuple[str, float]]] = {}
    for written, (dim, factor) in UNIT_WORDS.items():
        words = spoken_words(written)
        if not words or any(w in UNSPOKEN for w in words):
            continue
        if len(words) == 1 and len(words[0]) <= 2 and words[0] not in SPELLED:
            continue
        if all(w in dic or w in SPELLED or w in PRONUNCIATIONS or derive(w, dic) for w in words):
            out.setdefault(dim, []).append((" ".join(words), factor))
    return {k: list(dict.fromkeys(v)) for k, v in out.items()}


def arg_dimension(cs: CommandSet, skill: SkillSpec, arg: ArgSpec) -> list[str]:
    """The dimensions a numeric argument's unit may be in (an amount along an axis: every axis' unit)."""
    units: list[str] = []
    if arg.unit:
        units.append(arg.unit)
    if arg.unit_from:
        src = skill.args.get(arg.unit_from)
        if src is not None:
            for value in cs.allowed_values(src):
                ev = cs.entity_value(value, src)
                if ev is not None and ev.unit:
                    units.append(ev.unit)
    return list(dict.fromkeys(DIMENSION_OF_UNIT[u] for u in units if u in DIMENSION_OF_UNIT))


def arg_limits(cs: CommandSet, skill: SkillSpec, arg: ArgSpec) -> dict[str, float]:
    """The largest magnitude a numeric argument may take, per dimension, in the plan unit (an amount along an
    axis: the widest range of the axes in that dimension)."""
    out: dict[str, float] = {}
    if arg.min is not None and arg.max is not None and arg.unit in DIMENSION_OF_UNIT:
        out[DIMENSION_OF_UNIT[arg.unit]] = max(abs(arg.min), abs(arg.max))
    src = skill.args.get(arg.range_from or "")
    if src is not None:
        for value in cs.allowed_values(src):
            ev = cs.entity_value(value, src)
            if ev is None or ev.min is None or ev.max is None:
                continue
            unit = ev.unit or arg.unit
            if unit in DIMENSION_OF_UNIT:
                dim = DIMENSION_OF_UNIT[unit]
                out[dim] = max(out.get(dim, 0.0), abs(ev.min), abs(ev.max))
    return out


def may_be_negative(cs: CommandSet, skill: SkillSpec, arg: ArgSpec) -> bool:
    if arg.min is not None:
        return arg.min < 0
    src = skill.args.get(arg.range_from or "")
    if src is None:
        return False
    values = [cs.entity_value(v, src) for v in cs.allowed_values(src)]
    return any(ev is not None and ev.min is not None and ev.min < 0 for ev in values)
