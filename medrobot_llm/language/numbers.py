"""Numbers as people say them: number words, fractions and signs, into the digits a plan carries.

The rule planner reads quantities with them, the LLM planner checks with them that a model's number was
said, and the voice grammar writes its number rules from them, so all three agree on what a number is.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from medrobot_llm.core.units import UNIT_WORDS

__all__ = [
    "FRACTIONS",
    "MINUS_CHARACTERS",
    "NEGATIVE_SIGNS",
    "NUMBER_WORDS",
    "SIGN_WORDS",
    "SPOKEN_ONES",
    "SPOKEN_TENS",
    "NON_FINITE",
    "normalise_numerals",
    "vague_amount",
    "number_words",
    "words_to_numbers",
]

#: the minus signs of mathematics that Unicode does not file as dashes: the minus sign, heavy minus (an emoji
#: keyboard's), subscript and superscript minus, the modifier-letter minus
_MATH_MINUS = "\u2212\u2796\u208b\u207b\u02d7"
#: every character people (and keyboards, word processors, speech engines) write for a minus: every dash
#: Unicode knows (category Pd: hyphen-minus, non-breaking hyphen, en and em dash, small and full-width forms...)
#: and the mathematical minus family. Before a number each one is the sign: "tilt \u201120" read without it
#: tilted the gantry the wrong way, and a refused "\u22121 cm" became a valid "\u20111 cm".
MINUS_CHARACTERS = "-" + "".join(sorted(
    {chr(c) for c in range(0x80, 0x10000) if unicodedata.category(chr(c)) == "Pd"} | set(_MATH_MINUS)))
_VULGAR_CHARACTERS = "\u00bc-\u00be\u2150-\u215e"
#: "x2", "\u00d73": a repetition mark, said as a count ("2 times"); read as a bare number, it became the sweep
#: speed or the lift height. After a number it is a dimension ("10 x15") and left to the readers
_REPEAT_MARK = re.compile("(?<![\\w.])[x\u00d7\u2715\u2716](\\d+)\\b", re.IGNORECASE)
#: "2 c m", "5 m m": a metric length unit spelled letter by letter after a number is the unit ("2 cm"); read
#: apart, "c" was dropped and "m" read, and the gantry moved 2 mm for 2 cm
_SPLIT_UNIT = re.compile(r"(?<=\d)(\s*)([cmk])\s+m\b", re.IGNORECASE)
#: "\u00b1 20": a sign that is both signs; read as the words the quantity reader asks about
_PLUS_MINUS = re.compile("\u00b1|\\+\\s*/\\s*-")
_MICRO = re.compile(r"(?<![a-zA-Z])[\u00b5\u03bc]m\b")
#: "1/2 cm", "1 1/2 cm": a fraction written with a slash (between digits only: "mm/s" is a unit)
_SLASHED = re.compile(r"(?<![\w.])(?:(\d+)\s+)?(\d+)\s*/\s*(\d+)(?![\d.])")
_VULGAR = re.compile(f"(\\d+)?\\s?([{_VULGAR_CHARACTERS}])")


def normalise_numerals(text: str) -> str:
    """Signs and fraction characters as the words every number reader knows, once, before tokens exist.

    A minus written in any form before a digit becomes " minus " (so "plus or minus" keeps working); "½",
    "1½", "⅛", "1/2", "1 1/2" become the decimal they are exactly. A fraction with no exact decimal ("⅓") becomes
    " inexact fraction ", which the readers refuse by name rather than round or drop.
    """
    text = _PLUS_MINUS.sub(" plus or minus ", text)
    text = _SIGN_BEFORE_NUMBER.sub(_sign, text)
    text = _REPEAT_MARK.sub(_repeat, text)
    text = _SPLIT_UNIT.sub(lambda m: f"{m.group(1)}{m.group(2)}m", text)
    text = _MICRO.sub(" micrometres", text)
    text = _SLASHED.sub(_slashed, text)
    return _VULGAR.sub(_vulgar, text)


_ENDS_IN_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s*$")


def _repeat(m: re.Match[str]) -> str:
    if _ENDS_IN_NUMBER.search(m.string, 0, m.start()):
        return m.group(0)
    return f" {m.group(1)} times "


def _sign(m: re.Match[str]) -> str:
    """" minus ", unless the dash stands between two numbers ("10 - 20 degrees" is a range, not -20)."""
    if m.group(0) != m.group(0).rstrip() and _ENDS_IN_NUMBER.search(m.string, 0, m.start()):
        return m.group(0)
    return " minus "


def _vulgar(m: re.Match[str]) -> str:
    return _exact(int(m.group(1) or 0), Fraction(unicodedata.numeric(m.group(2))).limit_denominator(100))


def _slashed(m: re.Match[str]) -> str:
    if int(m.group(3)) == 0:
        return " inexact fraction "
    return _exact(int(m.group(1) or 0), Fraction(int(m.group(2)), int(m.group(3))))


def _exact(whole: int, part: Fraction) -> str:
    """``whole + part`` as the decimal it is, or the words that get an inexact fraction refused."""
    den = part.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den != 1:
        return " inexact fraction "
    value = whole + part
    return f" {value.numerator // value.denominator if value.denominator == 1 else float(value)} "

#: spelled numbers; the planner also uses them to tell a number word from an unknown name
NUMBER_WORDS: dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}


#: "the right one", "the other one": "one" after these words is a pronoun, not a number
_ONE_AS_PRONOUN = frozenset(["right", "left", "other", "this", "that", "the", "which", "each", "every", "another", "any", "no",
                             "first", "second", "third", "next", "last", "previous", "same", "final", "opposite",
                             "remaining", "current", "new", "former", "latter", "middle", "upper", "lower"])


#: words that start a description of a thing after "the one": "the gallbladder, the one under the liver"
_DESCRIBING_ONE = frozenset(["under", "on", "in", "at", "near", "next", "beside", "behind", "above", "below", "over",
                             "by", "with", "that", "which", "closest", "nearest", "from", "between"])


def one_described(tokens: list[str]) -> str | None:
    """"scan the gallbladder, the one under the liver": the words from "the one" that describe a thing already named
    by naming another (planned as a scan of the liver), or None. The planner asks which thing is meant."""
    for k, t in enumerate(tokens):
        if t != "one" or k + 1 >= len(tokens) or tokens[k + 1] not in _DESCRIBING_ONE:
            continue
        start = k
        while start > 0 and tokens[start - 1] in _ONE_AS_PRONOUN:
            start -= 1
        if start < k and (start == 0 or tokens[start - 1] in (",", ";", ":", "-", "and", "then")):
            end = next((i for i in range(k + 1, len(tokens)) if tokens[i] in (",", ";", ".", "!", "?")), len(tokens))
            return " ".join(tokens[start:end])
    return None


def words_to_numbers(tokens: list[str]) -> list[str]:
    """Replace spelled numbers ("twenty five", "two point five", "a hundred") by digits."""
    out: list[str] = []
    i = 0
    n = len(tokens)
    while i < n:
        t = tokens[i]
        after = i + (3 if tokens[i + 2:i + 3] == ["of"] else 2)
        if t == "a" and tokens[i + 1:i + 2] in (["couple"], ["pair"]) and not any(
                w in UNIT_WORDS for w in tokens[after:after + 2]):
            # "a couple of shots", "a couple more": two; "a couple of centimetres" is no exact amount
            out.append("2")
            i = after
            continue
        if t == "one" and out and out[-1] in _ONE_AS_PRONOUN and tokens[i + 1:i + 2] not in (["and"], ["point"]) \
                and not (i + 1 < n and (tokens[i + 1] in UNIT_WORDS or tokens[i + 1] in NUMBER_WORDS)):
            out.append(t)
            i += 1
            continue
        if t in NUMBER_WORDS or (t in ("hundred", "thousand") and out and out[-1] in ("a", "one")):
            value = 0.0
            current = 0.0
            j = i
            if t in ("hundred", "thousand"):
                out.pop()
                current = 1
            seen = False
            while j < n:
                w = tokens[j]
                if w in NUMBER_WORDS:
                    v = NUMBER_WORDS[w]
                    if seen and v >= 10 and current % 100 != 0 and current % 10 != 0:
                        break
                    if seen and v < 10 and current % 10 != 0:
                        break
                    current += v
                    seen = True
                elif w == "hundred" and (seen or current):
                    current = (current or 1) * 100
                    seen = True
                elif w == "thousand" and (seen or current):
                    value += (current or 1) * 1000
                    current = 0
                    seen = True
                elif w == "and" and seen and j + 1 < n and tokens[j + 1] in NUMBER_WORDS \
                        and (current >= 100 or value >= 1000):
                    pass
                else:
                    break
                j += 1
            total = value + current
            if tokens[j:j + 3] == ["and", "a", "half"]:
                total += 0.5
                j += 3
            if j + 1 < n and tokens[j] == "point" and re.fullmatch(r"\d+|[a-z]+", tokens[j + 1]):
                frac_digits = []
                k = j + 1
                while k < n and (tokens[k] in NUMBER_WORDS and NUMBER_WORDS[tokens[k]] < 10 or tokens[k].isdigit()):
                    frac_digits.append(str(NUMBER_WORDS.get(tokens[k], tokens[k])))
                    k += 1
                if frac_digits:
                    total = float(f"{int(total)}.{''.join(frac_digits)}")
                    j = k
            out.append(_num(total))
            i = j
            continue
        if re.fullmatch(r"\d+", t) and tokens[i + 1:i + 4] == ["and", "a", "half"]:
            out.append(_num(int(t) + 0.5))
            i += 4
            continue
        if re.fullmatch(r"\d+(\.\d+)?", t) and i + 2 < n and tokens[i + 1] == "point" and tokens[i + 2].isdigit():
            out.append(f"{t}.{tokens[i + 2]}")
            i += 3
            continue
        out.append(t)
        i += 1
    return out


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


#: fractions said as words ("half a turn", "three quarters of a centimetre"). A word that is not here is not
#: a number: "third" is an ordinal too ("the third rib"), so neither planner reads it as a fraction
FRACTIONS: dict[str, float] = {"half": 0.5, "quarter": 0.25, "eighth": 0.125, "halves": 0.5, "quarters": 0.25,
                               "eighths": 0.125}

#: a minus before a number, a fraction character or a fraction word, also with spaces between ("\u2212 20",
#: "- half a turn"); after a number it is a range ("10 - 20") and left to the readers
_SIGN_BEFORE_NUMBER = re.compile(
    f"(?<![\\w.])[{re.escape(MINUS_CHARACTERS)}][ \\t\u00a0]*"
    f"(?=\\d|[{_VULGAR_CHARACTERS}]|(?:an? )?(?:{'|'.join(FRACTIONS)})\\b)", re.IGNORECASE)

#: words that make the number after them negative ("minus 10 degrees"; the tokenizer writes "-10" so too)
NEGATIVE_SIGNS: tuple[str, ...] = ("minus", "negative")
#: every sign word said before a number
SIGN_WORDS: tuple[str, ...] = ("minus", "plus", "negative")

#: the spoken name of 0..19, by value, and of each multiple of ten (index = tens) as people say them
SPOKEN_ONES: tuple[str, ...] = tuple(w for w, v in NUMBER_WORDS.items() if v < 20)
_FIRST_SPELLING = {v: w for w, v in reversed(NUMBER_WORDS.items())}  # "forty", not "fourty"
SPOKEN_TENS: tuple[str, ...] = ("_", "_", *(_FIRST_SPELLING[t] for t in range(20, 100, 10)))


def number_words(n: int) -> list[str]:
    """``n`` (0..999) as people say it, in the planner's words ("one hundred and twenty")."""
    if not 0 <= n <= 999:
        raise ValueError(f"{n} is outside 0..999")
    if n < 20:
        return [SPOKEN_ONES[n]]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [SPOKEN_TENS[tens]] + ([SPOKEN_ONES[ones]] if ones else [])
    hundreds, rest = divmod(n, 100)
    return [SPOKEN_ONES[hundreds], "hundred"] + (["and", *number_words(rest)] if rest else [])


#: words that name no finite number; "infinity mm" read around them became the default
NON_FINITE: frozenset[str] = frozenset(["infinity", "infinite", "inf", "nan", "endless", "unlimited", "limitless",
                                        "inexact"])
_VAGUE = re.compile(r"\b(as \w+ as (possible|you can|it goes|it will go|it can go)|all the way|maximum|maximal|max"
                    r"|the most|as far as (possible|you can))\b")


def vague_amount(tokens: list[str]) -> str | None:
    """The words of an amount that is no number ("as high as possible", "infinity mm", "maximum"): planners
    refuse it by name; read around, it was replaced by a default the person never said."""
    for k, t in enumerate(tokens):
        if t in NON_FINITE:
            return " ".join(tokens[k:k + 2]) if t == "inexact" else t
    m = _VAGUE.search(" ".join(tokens))
    return m.group(0) if m else None
