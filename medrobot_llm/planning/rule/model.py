"""What the rule planner's stages hand each other: clauses with what they name, the shared parse state.

Each stage of the pipeline (clauses, checks, choice, slots, steps) reads a ``Clause`` and the
``ParseState``; keeping them here, apart from the stages, shows what flows between them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from medrobot_llm.core.command_set import ArgSpec, CommandSet, SkillSpec
from medrobot_llm.core.plan import Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.units import DIMENSION_OF_UNIT, UNIT_WORDS
from medrobot_llm.core.validator import WorldState
from medrobot_llm.language.inflection import verb_bases
from medrobot_llm.language.lexicon import Lexicon, lexicon, shared_vocabulary
from medrobot_llm.language.numbers import NUMBER_WORDS
from medrobot_llm.language.phrases import SOFT, Match, find_phrase
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import (
    CONTROL_OBJECTS,
    FILLER,
    FUNCTION_WORDS,
    LABEL_WORDS,
    SMALL_AMOUNT,
    SWITCH_OFF,
)

NUMBER = re.compile(r"^\d+(\.\d+)?$")

#: words that may stand between a count and the noun counted ("2 more images", "one extra shot")
COUNT_ADJECTIVES = frozenset(["more", "additional", "extra", "further", "new", "separate", "single", "of"])
#: words that answer a question rather than ask for something ("yes, scan the liver")
ANSWER_WORDS = frozenset(["no", "nope", "yes", "yeah", "yep", "ok", "okay", "alright", "right", "sure", ",", "."])
POSSESSIVE = frozenset(["the", "its", "their", "his", "her", "your", "my", "our", "a"])

#: particles and prepositions that finish a phrasal verb, which the verb's object may split ("put the shunt in")
VERB_PARTICLES = frozenset(["in", "into", "inside", "up", "down", "off", "out", "back", "over", "on", "onto", "away"])


@dataclass
class Item:
    """Something named in a clause: an entity with its possible readings."""

    start: int
    end: int
    options: list[tuple[str, str]]
    used: bool = False
    positions: set[int] = field(default_factory=set)

    def overlaps(self, other: Item) -> bool:
        return bool(self.positions & other.positions) and self is not other

    def value_for(self, types: tuple[str, ...], allowed: tuple[str, ...]) -> str | None:
        for etype, value in self.options:
            if etype in types and value in allowed:
                return value
        return None


@dataclass
class Qty:
    """A quantity said in a clause, already in its dimension's plan unit (``dim`` None: no unit was said)."""

    start: int
    end: int
    value: float
    dim: str | None
    negative: bool = False
    used: bool = False
    text: str = ""


@dataclass
class Clause:
    """One clause as stage 1 read it; later stages mark the names and quantities they use (``used``)."""

    tokens: list[str]
    skills: list[Match] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    qtys: list[Qty] = field(default_factory=list)
    small: bool = False
    count: int | None = None
    count_noun: str | None = None
    label: str | None = None
    switched_off: bool = False
    covered: set[int] = field(default_factory=set)
    skill_positions: set[int] = field(default_factory=set)
    #: where "each" / "every" / "per" distributes the clause's steps over the things named before it
    #: ("AP and lateral of the knee, one shot each"); None when the clause has no such word
    each: int | None = None
    #: words that are known detail of the clause's step, not a target ("starting below the ribs")
    detail: set[int] = field(default_factory=set)

    def use(self, item: Item) -> None:
        """Mark ``item`` used, and every other reading of the same words with it."""
        item.used = True
        for other in self.items:
            if other.overlaps(item):
                other.used = True


class Refusal(Exception):
    """Raised by any stage: the command is refused (``understood`` False lets a hybrid planner try it). Most
    refusals name something the command set does not have; those not understood at all say so."""

    def __init__(self, reason: str, understood: bool = True, code: Reason | None = None):
        super().__init__(reason)
        self.reason = reason
        self.understood = understood
        self.code = code or (Reason.UNKNOWN_VALUE if understood else Reason.NOT_UNDERSTOOD)


class Question(Exception):
    """Raised by any stage: the planner must ask before it can plan."""


class Choice(NamedTuple):
    """The skill or task a clause asks for: what the chooser hands to the slot filler."""

    kind: str  # "skill" or "task"
    name: str
    size: int  # words of the phrase that named it (0: chosen by what the clause names)


@dataclass
class ParseState:
    """What one command's stages share: the command set, the world as the plan so far leaves it, and what
    earlier clauses named (a side said once holds for the next mention) or left to ask."""

    lex: Lexicon
    original: str
    world: WorldState
    context: dict[str, str] = field(default_factory=dict)
    questions: list[str] = field(default_factory=list)
    verb_start: int | None = None
    later: list[Clause] = field(default_factory=list)
    done: list[Step] = field(default_factory=list)
    clauses: list[Clause] = field(default_factory=list)
    #: the world's facts before any step of this plan: what the robot says, told apart from what the plan set
    given: dict[str, Any] = field(default_factory=dict)
    #: what the clause before asked for: a clause that names only a target ("then the spleen") asks for it again
    previous: Choice | None = None
    #: what every clause so far asked for, in order
    chosen: list[Choice] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.given = dict(self.world.facts)

    @property
    def cs(self) -> CommandSet:
        return self.lex.cs

    @functools.cached_property
    def numbered_prefixes(self) -> set[str]:
        """"psm", "l": words that, with a number after them, name an entity value ("psm1", "L4")."""
        return {p.words[0] for p in self.lex.entities if len(p.words) == 2 and p.words[1].isdigit()}


class Stage:
    """A step of the pipeline; it reads the command set through ``state`` and records what it learns there."""

    def __init__(self, state: ParseState) -> None:
        self.state = state
        self.lex = state.lex
        self.cs = state.cs


def skill_specs(cs: CommandSet, kind: str, name: str) -> list[SkillSpec]:
    """The skills a choice stands for: the skill itself, or a task's steps."""
    if kind == "task":
        return [cs.skills[s] for s in cs.tasks[name].steps]
    return [cs.skills[name]]


def allowed_values(cs: CommandSet, spec: SkillSpec, name: str, s: ArgSpec, args: dict[str, Any]) -> tuple[str, ...]:
    """The values argument ``name`` may take, given the ones already chosen (a side only among its organ's)."""
    allowed = cs.allowed_values(s)
    if s.values_from:
        other, attr = s.values_from.split(".")
        ov = args.get(other)
        ev = cs.entity_value(ov, spec.args[other]) if isinstance(ov, str) else None
        if ev is not None:
            choices = ev.attr(attr) or ()
            allowed = tuple(v for v in allowed if v in choices)
    return allowed


def agent_kinds(cs: CommandSet) -> set[str]:
    """Entity kinds that name the robot's own arms."""
    return {e for sk in cs.skills.values() for a, s in sk.args.items()
            if a == "arm" or a.endswith("_arm") for e in s.entities}


@functools.cache
def agent_words(domain: str) -> frozenset[str]:
    """Words that name the robot's own arms ("arm", "psm1", "instrument")."""
    lex = lexicon(domain)
    kinds = agent_kinds(lex.cs)
    return frozenset(w for p in lex.entities if p.name in kinds for w in p.words
                     if w not in ("left", "right", "first", "second", "both", "all", "every", "of", "them"))


def from_later(later: list[Clause], s: ArgSpec, allowed: tuple[str, ...]) -> str | None:
    """A value for ``s`` named in a clause still to come ("two AP shots and two lateral shots of the pelvis")."""
    for c in later:
        for it in c.items:
            v = it.value_for(s.entities, allowed)
            if v is not None:
                return v
    return None


def infer_parents(cs: CommandSet, spec: SkillSpec, args: dict[str, Any]) -> None:
    """A value that only one parent allows names the parent: "L4" means the lumbar spine."""
    for a, s in spec.args.items():
        if not s.values_from or a not in args:
            continue
        other, attr = s.values_from.split(".")
        if other in args:
            continue
        owners = [v for v in cs.allowed_values(spec.args[other])
                  if args[a] in ((cs.entity_value(v, spec.args[other]) or _NOATTR).attr(attr) or ())]
        if len(owners) == 1:
            args[other] = owners[0]


def targets(cs: CommandSet) -> str:
    """What the command set can act on, for a refusal that names an unknown target."""
    parts = []
    for etype in ("arm", "object", "organ", "anatomy"):
        ent = cs.entities.get(etype)
        if ent:
            values = [v for v, ev in ent.values.items() if not ev.expands_to]
            parts.append(f"{etype}s: {', '.join(values)}" if etype != "anatomy" else f"anatomy: {', '.join(values)}")
    return "; ".join(parts)


def known(lex: Lexicon, t: str) -> bool:
    """Whether ``t`` is a word the planner reads: the lexicon's, a function word, a number or a unit;
    "reposition", "rescan" too, a known verb done again."""
    return known_as_is(lex, t) or (t.startswith("re") and len(t) > 4 and known_as_is(lex, t[2:]))


def known_as_is(lex: Lexicon, t: str) -> bool:
    words = lex.known_words
    if any(x in words or x in FUNCTION_WORDS or x in FILLER or x in SOFT or x in count_nouns()
           or x in CONTROL_OBJECTS or x in UNIT_WORDS or x in LABEL_WORDS for x in verb_bases(t)):
        return True
    return t in NUMBER_WORDS or any(t in p for p in switch_off_phrases()) or (t.endswith("s") and t[:-1] in words)


def unknown_words(lex: Lexicon, clause: Clause) -> str | None:
    """The first word of the clause that the planner does not read (nor placed as a name or a quantity)."""
    toks = clause.tokens
    qty = {k for q in clause.qtys for k in range(q.start, q.end + 1)}
    for i, t in enumerate(toks):
        if i in clause.covered or i in qty or not t[0].isalpha() or len(t) < 3:
            continue
        if not known(lex, t):
            return t
    return None


@functools.cache
def sign_words(domain: str) -> frozenset[str]:
    """Words that give an amount its sign ("tilt forward" is a negative tilt): the ``positive`` and
    ``negative`` words of the domain's entity values."""
    return frozenset(w for p in sign_phrases(domain) for w in p)


@functools.cache
def sign_phrases(domain: str) -> tuple[tuple[str, ...], ...]:
    """The ``positive`` and ``negative`` phrases of the domain's entity values and numbers, as tokens."""
    cs = lexicon(domain).cs
    said = [(ev.positive, ev.negative) for ent in cs.entities.values() for ev in ent.values.values()]
    said += [(s.positive, s.negative) for sk in cs.skills.values() for s in sk.args.values()]
    return tuple(dict.fromkeys(tuple(tokenize(p)) for positive, negative in said for p in (*positive, *negative)))


@functools.cache
def used_words(domain: str) -> frozenset[str]:
    """Words a step uses beside its phrases and names: the sign words, and the names of the entities and
    arguments themselves ("about the pitch axis", "the view")."""
    cs = lexicon(domain).cs
    names = {w for name in (*cs.entities, *(a for sk in cs.skills.values() for a in sk.args))
             for w in name.split("_")}
    return sign_words(domain) | frozenset(names)


def small_amount_positions(toks: list[str]) -> set[int]:
    """Where "a bit", "a touch" say the amount of a step."""
    return {k for i in range(len(toks)) for sm in SMALL_AMOUNT if tuple(toks[i:i + len(sm)]) == sm
            for k in range(i, i + len(sm))}


def unaccounted_word(lex: Lexicon, clause: Clause) -> str | None:
    """The first word of the clause no step used that is neither a known filler nor known detail (every word
    accounted for, command-set.md); a sign word or "a touch" is used by the amount it says."""
    signs = used_words(lex.cs.domain)
    small = small_amount_positions(clause.tokens)
    ignored = Clause(tokens=[t if k not in small and t not in signs else "," for k, t in enumerate(clause.tokens)],
                     qtys=clause.qtys, covered=clause.covered)
    return unknown_words(lex, ignored)


def span_of(toks: list[str], words: list[str]) -> range | None:
    for i in range(len(toks) - len(words) + 1):
        if toks[i:i + len(words)] == words:
            return range(i, i + len(words))
    return None


def numbered_kind(lex: Lexicon, prefix: str) -> str:
    for p in lex.entities:
        if p.words[0] == prefix and len(p.words) == 2:
            return p.name
    return "name"


#: what may follow "3 in" for "in" to be the inch rather than a preposition ("3 in the vessel")
_AFTER_INCHES = frozenset([",", ".", ";", "and", "then", "to", "toward", "towards", "up", "down", "higher", "lower",
                           "deeper", "further", "left", "right", "forward", "back", "backward", "cranially",
                           "caudally", "medially", "laterally", "per"])


def unit_at(lex: Lexicon, toks: list[str], j: int) -> tuple[int, str | None]:
    """(words, unit) of a unit said at ``j``; (0, None) if none."""
    for words, unit in lex.unit_phrases:
        k = len(words)
        if tuple(toks[j:j + k]) == words:
            # "in" is a preposition unless a direction or the end follows, and "m" too short to trust mid-sentence; "n" stays newtons even there
            # ("6 n of force", "35 n to the abdomen"), and the force is checked against its limit anyway
            if (unit == "in" and j + 1 < len(toks) and toks[j + 1] not in _AFTER_INCHES) \
                    or (unit == "m" and j + 1 < len(toks) and toks[j + 1] not in (",", ".")):
                continue
            # "mm per second" etc. may be split: "4 mm a second" -> speed
            if j + k + 1 < len(toks) and toks[j + k] in ("per", "a", "each") and \
                    toks[j + k + 1] in ("second", "sec", "s"):
                dim, _ = UNIT_WORDS[unit]
                speed = {"length": "mm/s" if UNIT_WORDS[unit][1] == 1.0 else "cm/s"}.get(dim)
                if speed:
                    return k + 2, speed
            return k, unit
    return 0, None


@functools.cache
def switch_off_phrases() -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(tokenize(p)) for p in SWITCH_OFF)


def switches_off(clause: Clause) -> bool:
    return any(find_phrase(clause.tokens, w, set(), allow_gaps=False) for w in switch_off_phrases())


def count_nouns() -> frozenset[str]:
    return shared_vocabulary().count_nouns


def dimension(spec: ArgSpec, cs: CommandSet, skill: SkillSpec, args: dict[str, Any]) -> str | None:
    unit = spec.unit
    if spec.unit_from:
        ref = args.get(spec.unit_from)
        ev = cs.entity_value(ref, skill.args[spec.unit_from]) if isinstance(ref, str) else None
        unit = ev.unit if ev else None
    return DIMENSION_OF_UNIT.get(unit or "")


class _NoAttr:
    def attr(self, name: str) -> tuple[str, ...] | None:
        return None


_NOATTR = _NoAttr()


def clean_number(v: float) -> float | int:
    v = round(v, 6)
    return int(v) if float(v).is_integer() else v
