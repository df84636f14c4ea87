"""One domain's phrases (skills, tasks, entities, units), generated from ``skills/``, for greedy matching.

Skill verbs, entity names, tasks and argument keywords all come from the skill files. The language that is
the same in every domain lives beside this module: tokens (``text``), fillers and control phrases
(``words``), numbers (``numbers``), inflection and phrase matching, and the injection screen (``screen``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from medrobot_llm.core.command_set import DOMAINS, CommandSet, load_command_set
from medrobot_llm.core.units import UNIT_WORDS
from medrobot_llm.language.numbers import words_to_numbers
from medrobot_llm.language.phrases import Phrase
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import OTHER_MODALITIES

__all__ = ["Lexicon", "SharedVocabulary", "hazard_phrases", "lexicon", "shared_vocabulary"]


@dataclass
class Lexicon:
    """One domain's phrases, longest first, for greedy matching."""

    cs: CommandSet
    skills: list[Phrase] = field(default_factory=list)
    entities: list[Phrase] = field(default_factory=list)
    known_words: set[str] = field(default_factory=set)
    foreign_entities: dict[str, str] = field(default_factory=dict)
    unit_phrases: list[tuple[tuple[str, ...], str]] = field(default_factory=list)


def _phrase_words(text: str) -> tuple[str, ...]:
    return tuple(words_to_numbers(tokenize(text)))


@functools.cache
def lexicon(domain: str) -> Lexicon:
    cs = load_command_set(domain)
    lex = Lexicon(cs)
    for name, skill in cs.skills.items():
        for syn in dict.fromkeys((*skill.synonyms, name.replace("_", " "))):
            lex.skills.append(Phrase(_phrase_words(syn), "skill", name))
        for phrase in skill.implied:
            lex.skills.append(Phrase(_phrase_words(phrase), "skill", name))
    for name, task in cs.tasks.items():
        for syn in dict.fromkeys((*task.synonyms, name.replace("_", " "))):
            lex.skills.append(Phrase(_phrase_words(syn), "task", name))
    for etype, ent in cs.entities.items():
        for value, ev in ent.values.items():
            for syn in dict.fromkeys((*ev.synonyms, value.replace("_", " "), value.lower())):
                lex.entities.append(Phrase(_phrase_words(syn), "entity", etype, value))
    lex.skills.sort(key=lambda p: -len(p.words))
    lex.entities.sort(key=lambda p: -len(p.words))
    for p in (*lex.skills, *lex.entities):
        lex.known_words.update(p.words)
    for skill in cs.skills.values():
        for arg in skill.args.values():
            lex.known_words.update(w for k in arg.keywords for w in tokenize(k))
    for other in DOMAINS:
        if other == domain:
            continue
        ocs = load_command_set(other)
        for etype, ent in ocs.entities.items():
            if etype not in ("organ", "anatomy", "object"):
                continue
            for value, ev in ent.values.items():
                for syn in dict.fromkeys((*ev.synonyms, value.replace("_", " "))):
                    words = " ".join(_phrase_words(syn))
                    if words and not any(" ".join(p.words) == words for p in lex.entities):
                        lex.foreign_entities[words] = value
    lex.unit_phrases = sorted(((_phrase_words(w), w) for w in UNIT_WORDS), key=lambda x: -len(x[0]))
    return lex


@dataclass(frozen=True)
class SharedVocabulary:
    """The ``vocabulary`` sections of every skill file together: a setting, view or mode that one domain
    lacks is refused by name in all of them, and a count noun counts in all of them."""

    count_nouns: frozenset[str]
    unsupported_settings: frozenset[str]
    unsupported_views: tuple[str, ...]
    unsupported_modes: tuple[str, ...]


@functools.cache
def shared_vocabulary() -> SharedVocabulary:
    vocabularies = [load_command_set(domain).vocabulary for domain in DOMAINS]
    return SharedVocabulary(
        count_nouns=frozenset(w for v in vocabularies for w in v.count_nouns),
        unsupported_settings=frozenset(w for v in vocabularies for w in v.unsupported_settings),
        unsupported_views=tuple(dict.fromkeys(w for v in vocabularies for w in v.unsupported_views)),
        unsupported_modes=tuple(dict.fromkeys([*(w for v in vocabularies for w in v.unsupported_modes),
                                               *OTHER_MODALITIES])),
    )


@functools.cache
def hazard_phrases(domain: str) -> list[Phrase]:
    """The phrases that name a contact or radiation step, alone or in a task ("take a shot", "scan"): what a
    negation, a deferral or a confirmation inside a command must never turn into a step."""
    lex = lexicon(domain)
    cs = lex.cs
    hazardous = cs.hazardous_skills
    return [p for p in lex.skills if (p.name in hazardous if p.kind == "skill"
                                      else any(s in hazardous for s in cs.tasks[p.name].steps))]
