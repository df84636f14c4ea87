"""Phrase matching: where the words of a known phrase occur in what was said, in order, with small gaps.

The rule planner finds skills, entities and control phrases with it, and the LLM planner finds with it
whether a text said what a model planned; one matcher means one word-gap limit and one set of skipped words.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from medrobot_llm.language.inflection import SAME_PREPOSITION, is_form, same_word

__all__ = ["MAX_GAP", "SOFT", "Match", "Phrase", "core_words", "find_phrase", "match_phrases", "present_words",
           "said", "said_together"]

#: words skipped when matching phrases, so "take a shot" matches "take the shot" and "press a bit harder"
SOFT = frozenset(["a", "an", "the", "bit", "little", "slightly", "some", "more", "much", "it", "its", "this", "that", "please", "just", "gently", "carefully", "slowly", "now", "also", "another", "extra", "additional", "further", "current"])
#: words a gapped phrase may skip between two of its words ("put the shunt 4 mm into")
MAX_GAP = 3


@dataclass(frozen=True)
class Phrase:
    """A known phrase and what it names, as the lexicon and the control table list them."""

    words: tuple[str, ...]
    kind: str  # "skill", "task", "entity"
    name: str  # skill / task name, or entity type
    value: str = ""  # entity value


@dataclass
class Match:
    """Where in the tokens a phrase was found (a gapped match has positions that are not consecutive)."""

    phrase: Phrase
    positions: tuple[int, ...]

    @property
    def start(self) -> int:
        return self.positions[0]

    @property
    def size(self) -> int:
        return len(self.phrase.words)

    @property
    def gaps(self) -> int:
        return self.positions[-1] - self.positions[0] + 1 - len(self.positions)


@functools.cache
def core_words(words: tuple[str, ...]) -> tuple[str, ...]:
    """The words of a phrase that must be said; soft words may be left out ("take shot"). Kept per phrase: every
    match asks it of every phrase of the lexicon."""
    return tuple(w for w in words if w not in SOFT) or words


@functools.cache
def _core_set(words: tuple[str, ...]) -> frozenset[str]:
    return frozenset(core_words(words))


def present_words(tokens: list[str]) -> set[str]:
    """Every word a token may stand for (singular forms too), to skip phrases that cannot match."""
    out = set(tokens)
    out.update(t[:-1] for t in tokens if t.endswith("s"))
    out.update(t[:-2] for t in tokens if t.endswith("es"))
    out.update(SAME_PREPOSITION[t] for t in tokens if t in SAME_PREPOSITION)
    return out


def find_phrase(tokens: list[str], words: tuple[str, ...], taken: set[int], allow_gaps: bool,
                skip: frozenset[int] = frozenset(),
                same: Callable[[str, str], bool] = same_word) -> list[tuple[int, ...]]:
    """Positions where ``words`` occur in ``tokens`` (soft words and ``skip`` positions skipped; up to
    ``MAX_GAP`` other words between two of its words if ``allow_gaps``). ``same`` says when a token is a
    phrase word: plurals by default, any inflected form for a reader that only asks whether it was said."""
    core = core_words(words)
    found: list[tuple[int, ...]] = []
    n = len(tokens)
    for i in range(n):
        if not same(tokens[i], core[0]) or i in taken:
            continue
        pos = [i]
        j = i + 1
        ok = True
        for w in core[1:]:
            gap = 0
            while j < n and (not same(tokens[j], w) or j in taken):
                soft = tokens[j] in SOFT or j in skip
                if tokens[j] in (",", ";", ".") or (not allow_gaps and not soft):
                    break
                if not soft:
                    gap += 1
                if gap > MAX_GAP:
                    break
                j += 1
            if j < n and same(tokens[j], w) and j not in taken:
                pos.append(j)
                j += 1
            else:
                ok = False
                break
        if ok:
            found.append(tuple(pos))
    return found


def match_phrases(tokens: list[str], phrases: list[Phrase], taken: set[int],
                  skip: frozenset[int] = frozenset()) -> list[Match]:
    """Greedy longest-first matching; contiguous readings win over gapped ones. Positions in ``skip`` are
    neither matched nor a gap."""
    out: list[Match] = []
    used: set[int] = set(taken) | skip
    present = present_words(tokens)
    candidates = [p for p in phrases if _core_set(p.words) <= present]
    for allow_gaps in (False, True):
        for p in candidates:
            if allow_gaps and len(core_words(p.words)) < 2:
                continue
            for pos in find_phrase(tokens, p.words, used, allow_gaps, skip):
                if any(q in used for q in pos):
                    continue
                out.append(Match(p, pos))
                used.update(pos)
    return out


def said_together(tokens: Sequence[str], words: Sequence[str]) -> bool:
    """``words`` said one right after another, in any inflected form: how a name is said. "right the arm"
    does not name the right arm, so no word, not even a filler, may stand between a name's words."""
    n = len(words)
    return any(all(is_form(tokens[i + k], words[k]) for k in range(n)) for i in range(len(tokens) - n + 1))


def said(tokens: list[str], words: tuple[str, ...], gaps: bool = True) -> bool:
    """``words`` were said, in order and in any inflected form ("putting the shunt 4 mm into" says "put
    into"); without ``gaps`` only soft words may stand between them."""
    return bool(find_phrase(tokens, words, set(), allow_gaps=gaps, same=is_form))
