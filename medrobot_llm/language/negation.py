"""What a command says about a step without asking for it: negated, deferred, past and confirmed steps.

"lateral of the sacrum, don't take a shot", "we'll take the shot later", "the previous shot was blurry",
"exposure confirmed": each names a step, and a reader that only looks for step phrases plans it. Both
planners ask here which phrase occurrences are governed so, and strike them; the words around them (the
view) are still read. A confirmation inside a command answers nothing: the supervisor asks for each
hazardous step on its own, so the words neither add a step nor confirm one.
"""

from __future__ import annotations

from dataclasses import dataclass

from medrobot_llm.language.lexicon import hazard_phrases
from medrobot_llm.language.phrases import SOFT, Phrase, match_phrases

__all__ = ["CONFIRMATIONS", "DEFERRALS", "NEGATED_TAILS", "NEGATORS", "PAST_AFTER", "PAST_BEFORE", "Governed", "confirmation_spans",
           "asked_only", "governed", "strike"]

#: words that negate the step phrase after them, in the same clause
NEGATORS: tuple[tuple[str, ...], ...] = (
    ("do", "not"), ("don't",), ("dont",), ("never",), ("no",), ("without",), ("skip",), ("skipping",),
    ("avoid",), ("avoiding",), ("hold", "off", "on"), ("hold", "off"), ("not", "yet"), ("not",), ("no", "need", "for"),
    ("no", "need", "to"), ("instead", "of"), ("rather", "than"), ("leave", "out"), ("omit",), ("forget",),
    ("cancel",), ("refrain", "from"), ("stop", "short", "of"), ("nor",), ("neither",), ("won't",), ("shouldn't",),
)
#: words right after a negated step phrase that qualify the negation itself ("don't take a shot yet"): they belong
#: to the struck phrase, so no word of a refusal to act is left over as an unknown word
NEGATED_TAILS: tuple[tuple[str, ...], ...] = (
    ("just", "yet"), ("yet",), ("for", "now"), ("right", "now"), ("at", "all"), ("this", "time"), ("today",),
    ("anymore",), ("any", "more"), ("again",),
)
#: words that put the step phrase before (or after) them off until later: it is not a step of this plan
DEFERRALS: tuple[tuple[str, ...], ...] = (
    ("later",), ("after", "i", "say", "so"), ("after", "i", "say"), ("when", "i", "say", "so"), ("when", "i", "say"),
    ("until", "i", "say"), ("once", "i", "say"), ("after", "i", "tell", "you"), ("when", "i", "tell", "you"),
    ("on", "my", "signal"), ("on", "my", "command"), ("on", "my", "mark"), ("on", "my", "go"), ("when", "ready"),
    ("when", "i'm", "ready"), ("in", "a", "moment"), ("in", "a", "minute"), ("for", "later"), ("another", "time"),
    ("tomorrow",), ("eventually",), ("at", "some", "point"),
)
#: words right before a step's noun that point back at one already done ("the previous shot")
PAST_BEFORE: frozenset[str] = frozenset(["previous", "earlier", "prior", "already", "old", "former"])
#: words after a step phrase that say it already happened ("contact was already made", "the shot was blurry")
PAST_AFTER: tuple[tuple[str, ...], ...] = (
    ("was",), ("were",), ("has", "been"), ("have", "been"), ("had", "been"), ("already",), ("is", "done"),
    ("looked",), ("looks",), ("came", "out"),
)
#: words that confirm a step; inside a command they are struck, with the step noun they confirm
CONFIRMATIONS: tuple[tuple[str, ...], ...] = (
    ("i", "confirm"), ("i", "hereby", "confirm"), ("confirmed",), ("confirm",), ("confirming",), ("approved",),
    ("i", "approve"),
)
_BOUNDARY = frozenset([",", ";", ".", "!", "?", ":", "and", "then", "but"])
#: how many words may stand between a negator and the step phrase it governs ("don't yet take a shot")
_REACH = 3


@dataclass(frozen=True)
class Governed:
    """A step phrase that is not asked for: ``how`` is negated, deferred, past or confirmed; ``span`` the
    token positions to strike (the phrase with the words that govern it)."""

    phrase: Phrase
    how: str
    span: tuple[int, ...]


def _at(tokens: list[str], k: int, table: tuple[tuple[str, ...], ...]) -> tuple[str, ...] | None:
    return next((w for w in table if tuple(tokens[k:k + len(w)]) == w), None)


def _before(tokens: list[str], start: int, table: tuple[tuple[str, ...], ...]) -> range | None:
    """The governing words ending at most ``_REACH`` words before ``start``, with no clause boundary between."""
    k = start - 1
    skipped = 0
    while k >= 0 and tokens[k] not in _BOUNDARY and skipped <= _REACH:
        for words in table:
            a = k - len(words) + 1
            if a >= 0 and tuple(tokens[a:k + 1]) == words:
                return range(a, start)
        if tokens[k] not in SOFT:
            skipped += 1
        k -= 1
    return None


def _after(tokens: list[str], end: int, table: tuple[tuple[str, ...], ...], reach: int) -> range | None:
    k = end + 1
    while k < len(tokens) and tokens[k] not in _BOUNDARY and k - end <= reach:
        hit = _at(tokens, k, table)
        if hit:
            return range(end + 1, k + len(hit))
        k += 1
    return None


def governed(tokens: list[str], phrases: list[Phrase]) -> list[Governed]:
    """The occurrences of ``phrases`` (a domain's hazardous step phrases) that a command does not ask for."""
    out: list[Governed] = []
    for m in match_phrases(tokens, phrases, set()):
        start, end = m.positions[0], m.positions[-1]
        own = tuple(range(start, end + 1))
        neg = _before(tokens, start, NEGATORS)
        if neg is not None:
            tail = _after(tokens, end, NEGATED_TAILS, reach=1)
            out.append(Governed(m.phrase, "negated", tuple(neg) + own + tuple(tail or ())))
            continue
        later = _after(tokens, end, DEFERRALS, reach=6)
        if later is not None:
            out.append(Governed(m.phrase, "deferred", own + tuple(later)))
            continue
        first = _before(tokens, start, DEFERRALS)
        if first is not None:
            out.append(Governed(m.phrase, "deferred", tuple(first) + own))
            continue
        prev = start - 1
        while prev >= 0 and tokens[prev] in SOFT:
            prev -= 1
        noun_only = len(m.positions) == 1
        if (noun_only and prev >= 0 and tokens[prev] in PAST_BEFORE) or _after(tokens, end, PAST_AFTER, 3):
            out.append(Governed(m.phrase, "past", own))
            continue
        conf = _before(tokens, start, CONFIRMATIONS) or _after(tokens, end, CONFIRMATIONS, 1)
        if conf is not None and noun_only:
            out.append(Governed(m.phrase, "confirmed", tuple(sorted(set(conf) | set(own)))))
    return out


def strike(tokens: list[str], spans: list[tuple[int, ...]]) -> list[str]:
    """``tokens`` without the struck positions (a comma keeps the clauses either side apart)."""
    gone = {k for span in spans for k in span}
    out: list[str] = []
    for k, t in enumerate(tokens):
        if k in gone:
            if out and out[-1] != ",":
                out.append(",")
            continue
        out.append(t)
    while out and out[-1] == ",":
        out.pop()
    while out and out[0] == ",":
        out.pop(0)
    return out


def confirmation_spans(tokens: list[str]) -> list[tuple[int, ...]]:
    """Confirmation words said inside a command ("confirmed, take a shot"): struck, never a confirmation."""
    out: list[tuple[int, ...]] = []
    k = 0
    while k < len(tokens):
        hit = _at(tokens, k, CONFIRMATIONS)
        if hit:
            out.append(tuple(range(k, k + len(hit))))
            k += len(hit)
            continue
        k += 1
    return out


def asked_only(domain: str, tokens: list[str]) -> tuple[list[str], list[Governed]]:
    """The tokens of what a command asks for: without the hazardous steps it negates, defers, refers back
    to or confirms, and without confirmation words; with what was struck. Both planners read these."""
    found = governed(tokens, hazard_phrases(domain))
    rest = strike(tokens, [g.span for g in found])
    return strike(rest, confirmation_spans(rest)), found
