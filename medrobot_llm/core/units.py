"""Physical quantities: what people and models write ("2 cm", "a quarter turn") into plan units.

Plans carry mm, deg, N, mm/s and %. Converting here, once, means a planner or an LLM may hand the
validator "3 cm" and get 30 mm, and a force can never be mistaken for a length.
"""

from __future__ import annotations

import math
import re

__all__ = ["DIMENSION_OF_UNIT", "UNIT_WORDS", "UnitError", "convert", "parse_quantity", "unit_readings"]


class UnitError(ValueError):
    """A quantity cannot be read, or its unit does not fit the argument."""


# word -> (dimension, factor to the dimension's plan unit)
UNIT_WORDS: dict[str, tuple[str, float]] = {}
_TABLE: dict[tuple[str, float], tuple[str, ...]] = {
    ("length", 1.0): ("mm", "millimetre", "millimetres", "millimeter", "millimeters", "mil", "mils", "mms"),
    ("length", 10.0): ("cm", "centimetre", "centimetres", "centimeter", "centimeters", "cms", "centi"),
    ("length", 1000.0): ("m", "metre", "metres", "meter", "meters"),
    ("length", 25.4): ("in", "inch", "inches", '"'),
    ("length", 0.001): ("micrometre", "micrometres", "micrometer", "micrometers", "micron", "microns"),
    ("length", 914.4): ("yard", "yards"),
    ("length", 1_000_000.0): ("km", "kilometre", "kilometres", "kilometer", "kilometers"),
    ("length", 1_609_344.0): ("mile", "miles"),
    ("angle", 1.0): ("deg", "degree", "degrees", "°", "degs"),
    ("angle", 180.0 / math.pi): ("rad", "radian", "radians"),
    ("angle", 360.0): ("turn", "turns", "revolution", "revolutions"),
    ("force", 1.0): ("n", "newton", "newtons"),
    ("speed", 1.0): ("mm/s", "mm per second", "millimetres per second", "millimeters per second", "mm/sec"),
    ("speed", 10.0): ("cm/s", "cm per second", "centimetres per second", "centimeters per second", "cm/sec"),
    ("speed", 1000.0): ("m/s", "m per second", "metres per second", "meters per second", "m/sec"),
    ("percent", 1.0): ("%", "percent", "per cent", "pct"),
}
for (_dim, _factor), _words in _TABLE.items():
    for _w in _words:
        UNIT_WORDS[_w] = (_dim, _factor)



def unit_readings(dimension: str) -> tuple[tuple[str, float], ...]:
    """The units a number said without one could be in, for ``dimension``: each unit once, by its plural name
    where it has one, with its factor to the plan unit. Units finer than the plan's are left out: nobody
    leaves off "microns" and means them."""
    return tuple((next((w for w in words if w.isalpha() and len(w) > 4 and w.endswith("s")), words[0]), factor)
                 for (dim, factor), words in _TABLE.items() if dim == dimension and factor >= 1.0)


# the plan unit of every dimension, as skill files spell it
DIMENSION_OF_UNIT: dict[str, str] = {"mm": "length", "deg": "angle", "N": "force", "mm/s": "speed", "%": "percent"}

_QUANTITY = re.compile(r"^\s*(?P<num>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*(?P<unit>.*?)\s*$")


def convert(value: float, unit_word: str | None, plan_unit: str) -> float:
    """``value`` in ``unit_word`` (None: already in plan units) expressed in ``plan_unit``."""
    if unit_word is None or unit_word == "":
        return value
    key = unit_word.strip().lower()
    if key not in UNIT_WORDS:
        raise UnitError(f"unknown unit {unit_word!r}")
    dim, factor = UNIT_WORDS[key]
    want = DIMENSION_OF_UNIT.get(plan_unit)
    if want is None:
        raise UnitError(f"unknown plan unit {plan_unit!r}")
    if dim != want:
        raise UnitError(f"{unit_word!r} is a unit of {dim}, but this value is a {want} in {plan_unit}")
    return value * factor


def parse_quantity(text: str, plan_unit: str) -> float:
    """Read "2 cm", "15", "-10 deg" into a number in ``plan_unit``."""
    m = _QUANTITY.match(text)
    if not m:
        raise UnitError(f"{text!r} is not a number with an optional unit")
    value = float(m.group("num"))
    return convert(value, m.group("unit") or None, plan_unit)
