"""Written text to the words a person says, and the recogniser's words back to the planner's spelling.

The grammar is built from the command set's written phrases ("psm1", "20 mm"), the recogniser hears spoken
words ("psm one", "twenty millimetres"): both directions live here so that they stay each other's inverse.
"""

from __future__ import annotations

import re

from medrobot_llm.consoles.voice.phones import SPELLED
from medrobot_llm.core.command_set import CommandSet
from medrobot_llm.language.numbers import SPOKEN_ONES, number_words
from medrobot_llm.language.text import tokenize

__all__ = [
    "UNSPOKEN",
    "normalise_transcript",
    "spoken_phrases",
    "spoken_words",
    "written_forms",
]

#: written forms the planner knows that are never said as they are written (symbols, digit words)
UNSPOKEN = frozenset('" % . / , ; : ? ! ° \''.split() + ["s", "sec", "deg", "degs", "pct", "mms", "cms", "rad"])

def _spoken_number(token: str) -> list[str]:
    if "." in token:
        whole, frac = token.split(".", 1)
        return [*number_words(int(whole or "0")), "point", *(SPOKEN_ONES[int(d)] for d in frac)]
    return number_words(int(token))


def spoken_words(text: str) -> list[str]:
    """The words a person says for written ``text``: digits become number words, "psm1" becomes
    "psm one", symbols that nobody pronounces are dropped. Lower case, like the planner's tokens."""
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text.lower())
    text = text.replace("%", " percent ").replace("°", " degrees ")
    out: list[str] = []
    for tok in tokenize(text):
        if re.fullmatch(r"\d+(\.\d+)?", tok):
            out.extend(_spoken_number(tok))
        elif tok not in UNSPOKEN:
            out.append(tok)
    return out


def spoken_phrases(items: list[str]) -> list[str]:
    """Spoken forms of written phrases, deduplicated, in a stable order."""
    out: dict[str, None] = {}
    for item in items:
        words = spoken_words(item)
        if words:
            out[" ".join(words)] = None
    return list(out)


def written_forms(cs: CommandSet) -> dict[tuple[str, ...], str]:
    """Spoken sequences that read back as one written entity value: "psm one" -> psm1, "l four" -> L4,
    "a p" -> AP, "three d" -> 3D. Only for values whose written name is not itself said as one word."""
    out: dict[tuple[str, ...], str] = {}
    for ent in cs.entities.values():
        for value, ev in ent.values.items():
            written = value if value.startswith("psm") else value.upper()
            if not re.search(r"\d", value) and value not in SPELLED:
                continue
            for syn in (value, *ev.synonyms):
                words = tuple(spoken_words(syn))
                if len(words) >= 2 and _compact(words) == value.lower():
                    out[words] = written
            if value in SPELLED:
                out[tuple(value)] = written
    for skill in cs.skills.values():
        for syn in skill.synonyms:
            words = tuple(spoken_words(syn.split()[0]))
            if len(words) >= 2 and re.fullmatch(r"\d+[a-z]", _compact(words)):
                out[words] = _compact(words).upper()
    out[("c", "m")] = "cm"
    out[("m", "m")] = "mm"
    return out


def _compact(words: tuple[str, ...]) -> str:
    return "".join(str(SPOKEN_ONES.index(w)) if w in SPOKEN_ONES[:10] else w for w in words)


def normalise_transcript(transcript: str, written: dict[tuple[str, ...], str]) -> str:
    """The recogniser's words in the planner's spelling, longest spoken sequence first."""
    words = transcript.split()
    keys = sorted(written, key=len, reverse=True)
    out: list[str] = []
    i = 0
    while i < len(words):
        for key in keys:
            if tuple(words[i:i + len(key)]) == key:
                out.append(written[key])
                i += len(key)
                break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)
