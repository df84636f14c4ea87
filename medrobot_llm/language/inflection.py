"""Inflection: when a word said is a form of a word the command set knows ("scans", "scanning", "moved").

Both planners ask it: the rule planner to match phrases (plurals only, so "shots" is "shot" but "pressing"
does not become a second "press") and to recognise a skill verb in any form (``verb_bases``), the LLM
planner to see that a text said what a model planned (``is_form``, built from the same two rules).
"""

from __future__ import annotations

__all__ = ["SAME_PREPOSITION", "is_form", "same_word", "verb_bases"]

#: prepositions people use interchangeably in a phrase: "slide the shunt in the vessel" is "slide into"
SAME_PREPOSITION = {"in": "into", "into": "in", "inside": "into"}


def same_word(token: str, word: str) -> bool:
    """``token`` is ``word``, its plural, or a preposition used for it."""
    return token == word or (len(word) > 2 and token in (word + "s", word + "es")) \
        or SAME_PREPOSITION.get(token) == word


def verb_bases(word: str) -> tuple[str, ...]:
    """Readings of an inflected verb ("scanning" -> scan, "moving" -> move), to know a skill word in any form."""
    out = [word]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            base = word[:-len(suffix)]
            out += [base, base + "e"]
            if len(base) > 2 and base[-1] == base[-2]:
                out.append(base[:-1])
    return tuple(out)


def is_form(token: str, word: str) -> bool:
    """``token`` says ``word``: the word itself, its plural, or a verb form that keeps it whole ("scans",
    "scanning", "moved"). A form that reads as the word only once an "e" is put back ("taking", "imaging")
    is a known word (``verb_bases``) but does not say it: a grounding check that read "without taking an
    image" as "take an image", or "the imaging depth" as "image", would let a model plan a step nobody asked
    for, and where a reading could guess or refuse, it refuses."""
    return same_word(token, word) or (token.startswith(word) and word in verb_bases(token))
