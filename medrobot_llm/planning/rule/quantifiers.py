"""Quantifiers over a kind of name: "all views of the pelvis", "all three views of the left knee", "both
sides of the thyroid", "both kidneys". Each is the list of values it stands for, written out before the
clauses are read, so the plan holds one step per value (and the validator counts them, exposures too).

Read as they were, the words were dropped: "all views of the pelvis, one shot each" planned the default
view and one shot. A count that does not match what the command set has, or a kind whose values depend on
a name the command does not say, is a question instead.
"""

from __future__ import annotations

from medrobot_llm.core.command_set import Entity, EntityValue
from medrobot_llm.language.lexicon import Lexicon
from medrobot_llm.language.numbers import words_to_numbers
from medrobot_llm.language.phrases import match_phrases
from medrobot_llm.language.text import tokenize
from medrobot_llm.planning.rule.model import NUMBER, Question, count_nouns

#: words that quantify over every value of a kind ("all views"), and "both", which says there are two
_ALL = frozenset(["all", "every", "both"])
#: "each knee", "either carotid": every side of a name that has a left and a right, like "both"; "each" before
#: anything else is read where it distributes ("a shot of each")
_EACH = frozenset(["each", "either"])


def expand_quantifiers(lex: Lexicon, tokens: list[str]) -> list[str]:
    """``tokens`` with each quantified kind replaced by its values ("all views of the knee" -> "ap, lateral,
    left oblique and right oblique of the knee"); raises ``Question`` where the values cannot be known."""
    out: list[str] = []
    i = 0
    n = len(tokens)
    own = _own_phrases(lex, tokens)
    while i < n:
        t = tokens[i]
        if (t not in _ALL and t not in _EACH) or i in own:
            out.append(t)
            i += 1
            continue
        j = i + 1
        while tokens[j:j + 1] in (["the"], ["of"]):
            j += 1
        count: float | None = 2 if t == "both" else None
        if j < n and NUMBER.match(tokens[j]):
            # compared, never converted: "all 1e400 views" is a float infinity, not an int
            count = float(tokens[j])
            j += 1
        noun = tokens[j] if j < n else ""
        if t != "both" and (noun in count_nouns() or noun + "s" in count_nouns()):
            # "take all the shots", "every image": how many is not said, and one is not all
            raise Question(f"'{' '.join(tokens[i:j + 1])}': how many? Say the number.")
        kind = _kind(lex, noun) if t not in _EACH else None
        if kind is not None:
            out.extend(_listed(lex, kind, _values(lex, kind, tokens, " ".join(tokens[i:j + 1]), count)))
            i = j + 1
            continue
        sided = _sided(lex, noun) if t == "both" or t in _EACH else None
        if sided is not None:
            out.extend(["left", "and", "right", sided])
            i = j + 1
            continue
        out.append(t)
        i += 1
    return out


def _own_phrases(lex: Lexicon, tokens: list[str]) -> set[int]:
    """Positions inside a name the command set has with a quantifier in it ("both arms" is arm ``all``)."""
    return {k for m in match_phrases(tokens, lex.entities, set()) if set(m.phrase.words) & _ALL
            for k in m.positions}


def _kind(lex: Lexicon, noun: str) -> str | None:
    """The entity kind a noun names ("views" -> view), if it is one of the domain's kinds."""
    kinds = lex.cs.entities
    if noun in kinds:
        return noun
    if noun.endswith("s") and noun[:-1] in kinds:
        return noun[:-1]
    return None


def _sided(lex: Lexicon, noun: str) -> str | None:
    """"kidneys" in "both kidneys": a name whose value may be on the left and on the right, singular."""
    for word in (noun, noun[:-1] if noun.endswith("s") else noun):
        for p in lex.entities:
            if p.words == (word,):
                ev = lex.cs.entities[p.name].values.get(p.value)
                if ev is not None and {"left", "right"} <= set(ev.sides or ()):
                    return word
    return None


def _values(lex: Lexicon, kind: str, tokens: list[str], said: str, count: float | None) -> list[str]:
    """The values of ``kind`` the names in the command allow (the views of the anatomy named, the sides of
    the organ named); a count said that differs, or values that depend on a name not said, is asked."""
    entities = lex.cs.entities
    named = [(m.phrase.name, m.phrase.value) for m in match_phrases(tokens, lex.entities, set())
             if m.phrase.value is not None]
    parents = _parents(entities, kind)
    if parents and not any(name in parents for name, _ in named):
        raise Question(f"'{said}' of what? The {kind}s differ with the {' or '.join(sorted(parents))}; name it.")
    values = [v for v, ev in entities[kind].values.items()
              if not ev.expands_to and _allowed(entities, kind, v, ev, named)]
    if count is not None and count != len(values):
        if said.startswith("both") and {"left", "right"} <= set(values):
            return ["left", "right"]
        raise Question(f"'{said}': there are {len(values)} {kind}s here ({', '.join(values)}); say which.")
    return values


def _restricts(ev: EntityValue, kind: str) -> bool:
    """Whether a value lists the values of ``kind`` it allows (an organ's ``sides``)."""
    return ev.attr(kind + "s") is not None


def _parents(entities: dict[str, Entity], kind: str) -> set[str]:
    """The kinds whose value decides which values of ``kind`` there are: the anatomy for views, the organ
    for sides."""
    out = {name for ev in entities[kind].values.values() for name in (ev.only_for or {})}
    return out | {name for name, e in entities.items() if any(_restricts(ev, kind) for ev in e.values.values())}


def _allowed(entities: dict[str, Entity], kind: str, value: str, ev: EntityValue,
             named: list[tuple[str, str]]) -> bool:
    for name, v in named:
        pv = entities[name].values.get(v) if name in entities else None
        if pv is not None and _restricts(pv, kind) and value not in (pv.attr(kind + "s") or ()):
            return False
        if ev.only_for and name in ev.only_for and v not in ev.only_for[name]:
            return False
    return True


def _listed(lex: Lexicon, kind: str, values: list[str]) -> list[str]:
    """The values as a person lists them: "ap , lateral and left oblique"."""
    words = [list(words_to_numbers(tokenize(lex.cs.entities[kind].values[v].synonyms[0]))) for v in values]
    out: list[str] = []
    for k, w in enumerate(words):
        if k:
            out.append("and" if k == len(words) - 1 else ",")
        out.extend(w)
    return out


#: what may follow "another" / "one more" when the noun is left out ("... and take another")
_ELLIPSIS_END = frozenset([",", ".", ";", "!", "?", "and", "then", "please", "too", "now", "of"])


def elided_nouns(tokens: list[str]) -> list[str]:
    """"take a shot, tilt forward a bit and take another": "another" (or "another one", "one more", "three more")
    with its noun left out counts that many more of the last countable thing the command named (a shot, an image,
    a spin). Without a noun before it, nothing is filled in, and the words are read as they were said: "then 3
    more" was a 3 mm collimation."""
    out: list[str] = []
    n = len(tokens)
    skip = False
    for i, t in enumerate(tokens):
        if skip:
            skip = False
            continue
        out.append(t)
        one = t == "another" and tokens[i + 1:i + 2] == ["one"]
        more = t == "another" or (t == "more" and i > 0 and NUMBER.match(tokens[i - 1]) is not None)
        end = i + 1 + one
        if not more or (end < n and tokens[end] not in _ELLIPSIS_END):
            continue
        noun = next((w for w in reversed(tokens[:i]) if w in count_nouns()), None)
        if noun is not None:
            single = t == "another" or tokens[i - 1] == "1"
            out.append(noun[:-1] if single and noun.endswith("s") and noun[:-1] in count_nouns() else noun)
            skip = one
    return out
