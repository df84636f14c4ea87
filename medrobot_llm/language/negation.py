"""What a command says about a step without asking for it: negated, deferred, past and confirmed steps.

"lateral of the sacrum, don't take a shot", "we'll take the shot later", "the previous shot was blurry",
"exposure confirmed": each names a step, and a reader that only looks for step phrases plans it. Both
planners ask here which phrase occurrences are governed so, and strike them; the words around them (the
view) are still read. A confirmation inside a command answers nothing: the supervisor asks for each
hazardous step on its own, so the words neither add a step nor confirm one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from medrobot_llm.language.inflection import is_form
from medrobot_llm.language.lexicon import hazard_phrases, lexicon
from medrobot_llm.language.phrases import SOFT, Phrase, match_phrases
from medrobot_llm.language.words import LABEL_WORDS

__all__ = ["CONDITIONS", "CONDITIONS_FIRST", "CONFIRMATIONS", "DEFERRALS", "DEFERRED_SUBJECTS", "HEDGES_AFTER",
           "HEDGES_BEFORE", "NEGATED_AFTER", "condition", "NEGATED_TAILS", "NEGATORS", "OBJECT_PRONOUNS", "PAST_AFTER", "RESTATING", "ZERO_COUNTS", "PAST_BEFORE", "Governed", "asked_only", "confirmation_spans", "governed", "strike"]

#: words that negate the step phrase after them, in the same clause
NEGATORS: tuple[tuple[str, ...], ...] = (
    ("do", "not"), ("don't",), ("dont",), ("never",), ("no",), ("without",), ("skip",), ("skipping",),
    ("avoid",), ("avoiding",), ("hold", "off", "on"), ("hold", "off"), ("not", "yet"), ("not",), ("no", "need", "for"),
    ("no", "need", "to"), ("instead", "of"), ("rather", "than"), ("leave", "out"), ("omit",), ("forget",),
    ("cancel",), ("refrain", "from"), ("stop", "short", "of"), ("nor",), ("neither",), ("won't",), ("shouldn't",),
    ("w", "/", "o"), ("w", "o"),
)
#: words after a step phrase that negate it ("shot not needed", "a shot is not needed", "contact unnecessary"):
#: read only before the verb, the step was planned
NEGATED_AFTER: tuple[tuple[str, ...], ...] = tuple(
    (*lead, word) for lead in (("not",), ("isn't",), ("is", "not"), ("no", "longer")) for word in
    ("needed", "required", "necessary", "wanted", "indicated", "please")) + (("unnecessary",), ("unneeded",))
#: a count of none right before a step's noun ("zero shots", "0 shots"): no step, never one
ZERO_COUNTS: frozenset[str] = frozenset(["zero", "0", "none"])
#: words that hedge, ask about or only prepare the step phrase after them ("maybe a shot", "should we take a
#: shot?", "prepare a shot"): no command to act, so the planner asks
HEDGES_BEFORE: tuple[tuple[str, ...], ...] = (
    ("maybe",), ("perhaps",), ("possibly",), ("probably",), ("might",), ("may", "need"), ("should", "we"),
    ("should", "i"), ("shall", "we"), ("do", "we", "need"), ("do", "we", "want"), ("do", "you", "think"),
    ("would", "it", "help"), ("prepare",), ("prepare", "for"), ("set", "up", "for"), ("get", "ready", "for"),
    ("ready", "for"), ("if", "needed"), ("if", "necessary"), ("if", "required"),
)
#: words after a step phrase that make it conditional or tentative ("shot only if needed", "a shot maybe")
HEDGES_AFTER: tuple[tuple[str, ...], ...] = (
    ("only", "if", "needed"), ("only", "if", "necessary"), ("only", "if", "required"), ("only", "if"), ("if", "needed"), ("if", "necessary"), ("if", "required"), ("if", "you", "think"),
    ("if", "it", "helps"), ("maybe",), ("perhaps",), ("possibly",), ("as", "needed"), ("when", "needed"),
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
#: the object pronoun of a negated or deferred step ("don't retract it yet"): it belongs to the struck phrase
OBJECT_PRONOUNS: frozenset[str] = frozenset(["it", "them", "that", "this"])
#: who will do a deferred step, said before it ("we'll shoot later"): struck with the step it introduces
DEFERRED_SUBJECTS: frozenset[str] = frozenset(["we'll", "i'll", "you'll", "we", "i", "you", "will", "shall", "can",
                                               "we're", "i'm", "going", "gonna", "to", "let's", "lets"])
#: words that urge or confirm a step already said ("..., ok shoot", "(yes, shoot)", "yes retract"): a clause of
#: only these and the same step phrase restates the step, it is no second one (a count says "twice")
RESTATING: frozenset[str] = frozenset(["ok", "okay", "yes", "yeah", "yep", "sure", "go", "ahead", "alright", "do",
                                       "please", "now", "then", "and"])
#: the only soft words a restating clause may hold: "another shot", "one more" ask for a second step
_ARTICLES = frozenset(["a", "an", "the"])
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


#: words that make what follows hold only under a condition the planner cannot check ("if psm1 holds the needle,
#: lift it" was planned as a grasp and a lift): the command is asked about, never run as if the condition held
CONDITIONS: frozenset[str] = frozenset(["if", "unless", "whether", "whenever", "provided", "providing"])
#: words that say a condition only when they open the command with a clause of their own ("when psm1 holds the
#: needle, lift it", "once it has the needle, hand it over"; a wh-question otherwise: "when is the scan done?"), and
#: phrases of them that are no condition ("once done" orders, "when ready" defers)
CONDITIONS_FIRST: frozenset[str] = frozenset(["when", "once", "should", "were", "after", "as"])
_NO_CONDITION: tuple[tuple[str, ...], ...] = (("once", "done"), ("when", "done"), ("after", "that"), ("as", "well"),
                                              ("once", "more"), ("as", "before"), *DEFERRALS)
_IN_CASE = ("in", "case")


def condition(tokens: list[str]) -> str | None:
    """The first condition said (from its word to the next clause boundary), or None; words inside quotation
    marks or after a label word are a name, never a condition."""
    naming = False
    for k, t in enumerate(tokens):
        if t in LABEL_WORDS or tokens[:k].count('"') % 2 == 1:
            naming = naming or t in LABEL_WORDS
            continue
        if naming and t not in _BOUNDARY:
            continue
        naming = False
        opens = k == 0 and t in CONDITIONS_FIRST and any(x in (",", "then") for x in tokens[k + 1:]) \
            and not any(tuple(tokens[k:k + len(p)]) == p for p in _NO_CONDITION)
        if t in CONDITIONS or tuple(tokens[k:k + 2]) == _IN_CASE or opens:
            end = next((i for i in range(k + 1, len(tokens)) if tokens[i] in _BOUNDARY), len(tokens))
            return " ".join(tokens[k:end])
    return None


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
            obj = end
            while obj + 1 < len(tokens) and tokens[obj + 1] in OBJECT_PRONOUNS and not _at(tokens, obj + 1, NEGATED_TAILS):
                obj += 1
            tail = _after(tokens, obj, NEGATED_TAILS, reach=1)
            out.append(Governed(m.phrase, "negated", tuple(neg) + own + tuple(range(end + 1, obj + 1))
                                + tuple(tail or ())))
            continue
        after = _after(tokens, end, NEGATED_AFTER, reach=3)
        prev = start - 1
        while prev >= 0 and tokens[prev] in SOFT:
            prev -= 1
        zero = range(prev, start) if prev >= 0 and tokens[prev] in ZERO_COUNTS else None
        if after is not None or zero is not None:
            out.append(Governed(m.phrase, "negated", tuple(zero or ()) + own + tuple(after or ())))
            continue
        if _quoted(tokens, start, end) or (len(m.positions) == 1 and tokens[end + 1:end + 2] == [":"]):
            # 'lateral of the sacrum "take a shot"': quoted words are mentioned, not commanded; "shot: N" is a
            # field of a form whose value (a count, yes or no) the planner cannot read
            out.append(Governed(m.phrase, "hedged", own))
            continue
        hedge = _before(tokens, start, HEDGES_BEFORE) or _after(tokens, end, HEDGES_AFTER, reach=3)
        if hedge is not None:
            out.append(Governed(m.phrase, "hedged", tuple(sorted(set(hedge) | set(own)))))
            continue
        later = _after(tokens, end, DEFERRALS, reach=6)
        if later is not None:
            who = start
            while who > 0 and tokens[who - 1] in DEFERRED_SUBJECTS:
                who -= 1
            out.append(Governed(m.phrase, "deferred", tuple(range(who, start)) + own + tuple(later)))
            continue
        first = _before(tokens, start, DEFERRALS)
        if first is not None:
            out.append(Governed(m.phrase, "deferred", tuple(first) + own))
            continue
        noun_only = len(m.positions) == 1
        if (noun_only and prev >= 0 and tokens[prev] in PAST_BEFORE) or _after(tokens, end, PAST_AFTER, 3):
            out.append(Governed(m.phrase, "past", own))
            continue
        conf = _before(tokens, start, CONFIRMATIONS) or _after(tokens, end, CONFIRMATIONS, 1)
        if conf is not None and noun_only:
            out.append(Governed(m.phrase, "confirmed", tuple(sorted(set(conf) | set(own)))))
    out += _negated_forms(tokens, phrases, out)
    return out + _restated(tokens, phrases, out)


def _restated(tokens: list[str], phrases: list[Phrase], found: list[Governed]) -> list[Governed]:
    """"AP of the pelvis, take a shot, fire", "lift it 2 cm, ok lift": a clause that only says a step phrase
    again, with urging words, right after the clause that said it, restates that step; read as a step, it
    became a second exposure, lift or insertion."""
    taken = {k for g in found for k in g.span}
    # in the order said: matching returns phrases in lexicon order (longest first)
    said = sorted((m for m in match_phrases(tokens, phrases, set()) if not set(m.positions) & taken),
                  key=lambda m: m.positions[0])
    out: list[Governed] = []
    for i, second in enumerate(said):
        first = next((m for m in reversed(said[:i]) if (m.phrase.kind, m.phrase.name) ==
                      (second.phrase.kind, second.phrase.name)), None)
        if first is None:
            continue
        k = first.positions[-1] + 1
        while k < second.positions[0] and tokens[k] not in _BOUNDARY:
            k += 1
        while k > first.positions[-1] + 1 and tokens[k - 1] in RESTATING:
            k -= 1
        end = second.positions[-1] + 1
        while end < len(tokens) and tokens[end] in OBJECT_PRONOUNS:
            end += 1
        own = set(second.positions)
        between = [t for j, t in enumerate(tokens[k:end], k) if j not in own]
        if k < second.positions[0] and (end == len(tokens) or tokens[end] in _BOUNDARY) and all(
                t in _BOUNDARY or t in RESTATING or t in _ARTICLES or t in OBJECT_PRONOUNS for t in between):
            out.append(Governed(second.phrase, "restated", tuple(range(k, end))))
    return out


def _negated_forms(tokens: list[str], phrases: list[Phrase], found: list[Governed]) -> list[Governed]:
    """"scan the kidney without pressing": a negator before a verb form of a one-word step phrase ("pressing",
    "touching") negates that step too; phrase matching reads plurals only, so the form alone named nothing."""
    taken = {k for g in found for k in g.span}
    out: list[Governed] = []
    for k, t in enumerate(tokens):
        if k in taken:
            continue
        # the negator first: it is rare, and the form check runs over every one-word step phrase
        neg = _before(tokens, k, NEGATORS)
        phrase = None if neg is None else next(
            (p for p in phrases if len(p.words) == 1 and t != p.words[0] and is_form(t, p.words[0])), None)
        if phrase is not None and neg is not None:
            out.append(Governed(phrase, "negated", (*neg, k)))
    return out


def _quoted(tokens: list[str], start: int, end: int) -> bool:
    """The phrase stands between an opening and a closing quotation mark."""
    return tokens[:start].count('"') % 2 == 1 and '"' in tokens[end + 1:]


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


#: entity kinds a pronoun may stand for (an arm is who acts, not what "it" is)
_REFERRED_KINDS = frozenset(["object", "organ", "anatomy"])


def _referents(domain: str, tokens: list[str], found: list[Governed]) -> list[str]:
    """``tokens`` with a pronoun after a struck step replaced by the one thing that step named: in "dilate
    the vessel later; for now just locate it", "it" is the vessel, which the struck words took with them."""
    spans = {k for g in found for k in g.span}
    names = [m for m in match_phrases(tokens, lexicon(domain).entities, set()) if m.phrase.name in _REFERRED_KINDS]
    out = list(tokens)
    for g in found:
        if g.how not in ("negated", "deferred"):
            continue
        named = {m.phrase.value: m for m in names if set(m.positions) <= set(g.span)}
        if len(named) != 1:
            continue
        m = next(iter(named.values()))
        said = [tokens[k] for k in m.positions]
        k = next((k for k in range(g.span[-1] + 1, len(tokens)) if k not in spans and tokens[k] in ("it", "them")
                  and not any(set(n.positions) & set(range(g.span[-1] + 1, k)) for n in names)), None)
        if k is not None:
            out[k] = " ".join(["the", *said])
    return out


@functools.cache
def _harmless_skill_phrases(domain: str) -> list[Phrase]:
    """Built once per domain: comparing every skill phrase with every hazard phrase was a third of the time the
    rule planner took for a command."""
    hazards = hazard_phrases(domain)
    return [p for p in lexicon(domain).skills if p not in hazards and p.kind == "skill"]


def asked_only(domain: str, tokens: list[str]) -> tuple[list[str], list[Governed]]:
    """The tokens of what a command asks for: without the hazardous steps it negates, defers, refers back
    to or confirms, and without confirmation words; with what was struck. Both planners read these."""
    found = governed(tokens, hazard_phrases(domain))
    # "the last capture was blurry": a step already done is no step of this plan, hazardous or not
    others = _harmless_skill_phrases(domain)
    taken = {k for g in found for k in g.span}
    # "lift it 2 cm, ok lift": a restated step is no second step, hazardous or not
    found += [g for g in governed(tokens, others) if g.how in ("past", "restated") and not set(g.span) & taken]
    rest = strike(_referents(domain, tokens, found), [g.span for g in found])
    rest = [w for t in rest for w in t.split(" ")]
    return strike(rest, confirmation_spans(rest)), found
