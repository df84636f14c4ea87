"""Typed slips: a word nobody knows that is one keystroke from exactly one word the reader knows.

"Lift teh needle", "plese scna the liver", "tilt foward 5 degress": each word is a slip of a known word, and
asking about it ("what does 'teh' mean?") helps nobody. A slip is read as the word it is next to only where
that word is the one reading: the correction is unique at its distance, a word the reader knows is never
changed, a number is never produced (a slip must not invent an amount), and a word that gives a sign or a
direction ("cranialy") is produced only when no other word is within one more edit, so "cranialy" can never
become "caudal". Anything less clear stays unknown and is asked about by name, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

__all__ = ["edit_distance", "read_slips"]

_VOWELS = frozenset("aeiouy")


def edit_distance(a: str, b: str, limit: int) -> int:
    """Insertions, deletions, substitutions and swaps of two neighbours ("teh" -> "the" is one); any
    distance above ``limit`` is returned as ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[-1], limit + 1)


def _reach(word: str) -> int:
    """How many edits a slip of ``word`` may be: one, two for a long word."""
    return 2 if len(word) >= 8 else 1


def _swapped(a: str, b: str) -> bool:
    """``a`` is ``b`` with two neighbouring letters swapped ("teh", "scna", "rigth")."""
    if len(a) != len(b):
        return False
    diff = [k for k in range(len(a)) if a[k] != b[k]]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def _could_slip(said: str, word: str) -> bool:
    """Whether ``said`` may be a slip of ``word`` at all. A short word is a slip only by a swap: one letter
    off turns it into another real word ("size", "side"). Otherwise the first and last letters stay: what
    differs at the end is another form of the word ("model", "mode"; "possible", "possibly")."""
    if _swapped(said, word):
        return True
    return len(said) >= 5 and said[0] == word[0] and said[-1] == word[-1]


def _same_reading(a: str, b: str) -> bool:
    """Two candidates that are one reading ("cranial" / "cranially"): a slip between them is no ambiguity."""
    short, long_ = sorted((a, b), key=len)
    return long_ in (short + "ly", short + "s", short + "es")


def read_slips(tokens: list[str], known: Callable[[str], bool], vocabulary: Collection[str],
               signs: Collection[str], units: Collection[str],
               everywhere: Collection[str] = ()) -> tuple[list[str], dict[str, str]]:
    """``tokens`` with each slip read as its word, and what was read for what ("teh" -> "the").

    ``known`` says whether a token is read as it is; ``vocabulary`` is every word a slip may be of (with the
    words that are refused by name, so a slip of "brain" is not read as something allowed); ``signs`` the
    words that give a sign or a direction, read only when no word of ``everywhere`` (every command set's
    vocabulary) is as near; ``units`` the unit words, a reading only right after a number."""
    out = list(tokens)
    read: dict[str, str] = {}
    for k, t in enumerate(tokens):
        if len(t) < 3 or not t.isalpha() or not set(t) & _VOWELS or known(t) or t in vocabulary:
            continue
        after_number = k > 0 and tokens[k - 1].replace(".", "", 1).isdigit()
        reach = _reach(t)
        # the first letter stays, or is swapped with the second ("ofotward")
        near = sorted((edit_distance(t, w, reach + 1), w) for w in vocabulary
                      if w[:1] in (t[:1], t[1:2]) and w.isalpha() and abs(len(w) - len(t)) <= reach + 1)
        near = [(d, w) for d, w in near if (d > reach or _could_slip(t, w)) and (after_number or w not in units)]
        best = [w for d, w in near if d == near[0][0]] if near and near[0][0] <= reach else []
        if not best:
            continue
        word = min(best, key=len)
        if any(w != word and not _same_reading(word, w) for w in best):
            continue
        if any(w in signs for w in best) and (near[0][0] > 1 or any(
                w != word and not _same_reading(word, w) and _could_slip(t, w)
                and edit_distance(t, w, 1) <= 1 for w in everywhere if w[:1] in (t[:1], t[1:2]))):
            # a way or a sign is read from one slip only, and only where no command set has another reading
            continue
        out[k] = word
        read[t] = word
    return out, read
