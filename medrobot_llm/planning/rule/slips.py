"""Which words a slip may be of, for the rule planner (``language.typos`` decides what is a slip).

Every word the planner reads or refuses by name is a candidate, so a slip is read as the nearest word only
when no other word it knows is as near; number words are not, so a slip never becomes an amount.
"""

from __future__ import annotations

import functools

from medrobot_llm.core.command_set import DOMAINS, load_command_set
from medrobot_llm.core.units import UNIT_WORDS
from medrobot_llm.language.lexicon import lexicon
from medrobot_llm.language.negation import (
    CONFIRMATIONS,
    DEFERRALS,
    DEFERRED_SUBJECTS,
    HEDGES_AFTER,
    HEDGES_BEFORE,
    NEGATED_AFTER,
    NEGATED_TAILS,
    NEGATORS,
    PAST_AFTER,
    PAST_BEFORE,
    ZERO_COUNTS,
)
from medrobot_llm.language.numbers import FRACTIONS, NUMBER_WORDS
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.typos import read_slips
from medrobot_llm.language.words import (
    CONTROL_OBJECTS,
    CONTROL_PHRASES,
    FILLER,
    FUNCTION_WORDS,
    LABEL_WORDS,
    ROOM_OBJECTS,
    UNSUPPORTED_ACTIONS,
    UNSUPPORTED_TARGETS,
)
from medrobot_llm.planning.rule.model import known, sign_words

__all__ = ["read_as_said"]

#: entity kinds whose words say which way or which side: a slip becomes one only with a clear margin
_WAY_KINDS = ("side", "direction", "arm", "axis")


#: the words of the negation, deferral and past rules: read as they are, and candidates for a slip
_SCOPE_WORDS = frozenset(w for table in (CONFIRMATIONS, DEFERRALS, NEGATED_TAILS, NEGATORS, PAST_AFTER, NEGATED_AFTER,
                                         HEDGES_BEFORE, HEDGES_AFTER)
                         for words in table for w in words) | PAST_BEFORE | DEFERRED_SUBJECTS | ZERO_COUNTS


@functools.cache
def _vocabulary(domain: str) -> frozenset[str]:
    lex = lexicon(domain)
    words = set(lex.known_words) | FUNCTION_WORDS | FILLER | UNSUPPORTED_ACTIONS | UNSUPPORTED_TARGETS | ROOM_OBJECTS
    words |= {w for u in UNIT_WORDS for w in tokenize(u)} | _SCOPE_WORDS
    words |= {w for phrases in CONTROL_PHRASES.values() for p in phrases for w in tokenize(p)}
    words |= {w for p in lex.foreign_entities for w in p.split()} | sign_words(domain)
    # every ``vocabulary`` list of every skill file: landmarks, settings, views and modes refused by name
    words |= {w for d in DOMAINS for phrases in load_command_set(d).vocabulary.model_dump().values()
              for p in phrases for w in tokenize(p)} | CONTROL_OBJECTS | LABEL_WORDS
    return frozenset(w for w in words if w.isalpha() and w not in NUMBER_WORDS and w not in FRACTIONS)


@functools.cache
def _ways(domain: str) -> frozenset[str]:
    cs = lexicon(domain).cs
    kinds = [cs.entities[kind] for kind in _WAY_KINDS if kind in cs.entities]
    said = {w for ent in kinds for ev in ent.values.values() for syn in ev.synonyms for w in tokenize(syn)}
    values = {w for ent in kinds for v in ent.values for w in v.split("_")}
    return sign_words(domain) | frozenset(values) | frozenset(said - FUNCTION_WORDS - FILLER)


def read_as_said(domain: str, tokens: list[str]) -> tuple[list[str], dict[str, str]]:
    """``tokens`` with slips read as the words they are of, and what was read for what."""
    lex = lexicon(domain)
    return read_slips(tokens, lambda t: known(lex, t) or t in FRACTIONS or t in _SCOPE_WORDS, units=_unit_words(),
                      vocabulary=_vocabulary(domain), signs=_ways(domain), everywhere=_every_vocabulary())


@functools.cache
def _unit_words() -> frozenset[str]:
    return frozenset(w for u in UNIT_WORDS for w in tokenize(u))


@functools.cache
def _every_vocabulary() -> frozenset[str]:
    return frozenset(w for d in DOMAINS for w in _vocabulary(d))
