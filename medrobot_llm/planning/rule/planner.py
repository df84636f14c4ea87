"""The embedded offline planner: a slot-filling parser over a lexicon generated from ``skills/``.

It reads a command the way a scrub nurse would: find the action (a skill or a task such as "scan"), the
things named (arms, organs, views...), the quantities with their units, and fill the skill's arguments.
Steps a command implies are added by chaining preconditions to the skills whose effects establish them
(locate before grasp, a view before a shot), but only where the person named what the step acts on, and
never a contact or radiation step. Anything it cannot place is a question or a refusal, never a guess.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from medrobot_llm.language.inflection import verb_bases
from medrobot_llm.language.lexicon import Lexicon, lexicon, shared_vocabulary
from medrobot_llm.language.numbers import FRACTIONS, NEGATIVE_SIGNS, NUMBER_WORDS, words_to_numbers
from medrobot_llm.language.phrases import (
    SOFT,
    Match,
    Phrase,
    core_words,
    find_phrase,
    match_phrases,
    present_words,
)
from medrobot_llm.language.screen import blanket_confirmation, screen_text
from medrobot_llm.language.text import fold_text, tokenize
from medrobot_llm.language.words import (
    CONTROL_IDIOMS,
    CONTROL_OBJECTS,
    CONTROL_PHRASES,
    FILLER,
    FUNCTION_WORDS,
    LABEL_WORDS,
    ROOM_OBJECTS,
    SMALL_AMOUNT,
    SWITCH_OFF,
    UNSUPPORTED_ACTIONS,
    UNSUPPORTED_TARGETS,
    drop_fillers,
)
from medrobot_llm.core.plan import Control, Plan, PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.command_set import DOMAINS, ArgSpec, CommandSet, Hazard, SkillSpec, load_command_set
from medrobot_llm.core.units import DIMENSION_OF_UNIT, UNIT_WORDS
from medrobot_llm.core.validator import (
    WorldState,
    apply_step,
    conditions_of,
    effect_templates,
    validate_plan,
)

__all__ = ["RulePlanner", "screen_text"]

_SPLIT_WORDS = (("and", "then"), ("after", "that"), ("then",), ("afterwards",), ("followed", "by"), ("next",),
                ("and", "after", "that"), ("once", "done"), ("when", "done"))
_TIMES = {"once": 1, "twice": 2, "thrice": 3}
_ABOVE = frozenset(["above", "over", "higher", "up"])
_PARTICLES = frozenset(["back", "up", "down", "over", "off", "away", "forward", "out"])
_BELOW = frozenset(["below", "under", "beneath", "lower", "down"])
#: offset words -> (component, sign) in the camera frame: x to the right, y away from the camera, z up
_OFFSET_AXES: tuple[tuple[frozenset[str], tuple[int, int]], ...] = (
    (_BELOW, (2, -1)), (_ABOVE, (2, 1)),
    (frozenset(["left", "leftward", "leftwards"]), (0, -1)), (frozenset(["right", "rightward", "rightwards"]), (0, 1)),
    (frozenset(["behind", "beyond", "past", "forward", "forwards", "away", "farther", "further"]), (1, 1)),
    (frozenset(["front", "backward", "backwards", "closer", "nearer", "toward", "towards"]), (1, -1)),
)
_NUMBER = re.compile(r"^\d+(\.\d+)?$")
#: entity kinds that name what a skill acts on; an unknown word where one is needed is refused
_NAMED_KINDS = frozenset(("object", "organ", "anatomy", "mode"))
#: words that only link a name to the sentence: "to the right" also holds the side "right"
_LINK_WORDS = frozenset(["to", "toward", "towards", "the", "into", "onto", "of"])
_COUNT_ADJECTIVES = frozenset(["more", "additional", "extra", "further", "new", "separate", "single", "of"])
_ANSWER_WORDS = frozenset(["no", "nope", "yes", "yeah", "yep", "ok", "okay", "alright", "right", "sure", ",", "."])
_PRONOUNS = frozenset(["it", "them", "him", "her", "this", "that", "everything", "both", "back"])
_POSSESSIVE = frozenset(["the", "its", "their", "his", "her", "your", "my", "our", "a"])
_CONTROL_PRIORITY = ("stop", "cancel", "deny", "confirm", "pause", "resume", "status")
_CONTROL_LEXICON = sorted((Phrase(tuple(words_to_numbers(tokenize(p))), "control", name)
                           for name, ps in CONTROL_PHRASES.items() for p in ps), key=lambda p: -len(p.words))


@dataclass
class _Item:
    """Something named in a clause: an entity with its possible readings."""

    start: int
    end: int
    options: list[tuple[str, str]]
    used: bool = False
    positions: set[int] = field(default_factory=set)

    def overlaps(self, other: _Item) -> bool:
        return bool(self.positions & other.positions) and self is not other

    def value_for(self, types: tuple[str, ...], allowed: tuple[str, ...]) -> str | None:
        for etype, value in self.options:
            if etype in types and value in allowed:
                return value
        return None


@dataclass
class _Qty:
    start: int
    end: int
    value: float
    dim: str | None
    negative: bool = False
    used: bool = False
    text: str = ""


@dataclass
class _Clause:
    tokens: list[str]
    skills: list[Match] = field(default_factory=list)
    items: list[_Item] = field(default_factory=list)
    qtys: list[_Qty] = field(default_factory=list)
    small: bool = False
    count: int | None = None
    count_noun: str | None = None
    label: str | None = None
    switched_off: bool = False
    covered: set[int] = field(default_factory=set)
    skill_positions: set[int] = field(default_factory=set)

    def use(self, item: _Item) -> None:
        """Mark ``item`` used, and every other reading of the same words with it."""
        item.used = True
        for other in self.items:
            if other.overlaps(item):
                other.used = True


class _Refusal(Exception):
    """Most refusals name something the command set does not have; those not understood at all say so."""

    def __init__(self, reason: str, understood: bool = True, code: Reason | None = None):
        super().__init__(reason)
        self.reason = reason
        self.understood = understood
        self.code = code or (Reason.UNKNOWN_VALUE if understood else Reason.NOT_UNDERSTOOD)


class _Question(Exception):
    pass


#: particles and prepositions that finish a phrasal verb, which the verb's object may split ("put the shunt in")
_VERB_PARTICLES = frozenset(["in", "into", "inside", "up", "down", "off", "out", "back", "over", "on", "onto", "away"])


def _phrasal_matches(tokens: list[str], phrases: list[Phrase], found: list[Match],
                     agents: frozenset[str]) -> list[Match]:
    """Phrasal verbs split by their object ("place the shunt in the vessel", "put the probe back on"), read
    alongside the bare verb they start with: the greedy pass gave the verb ("place" = move) the word first,
    and the longer phrase would otherwise never be weighed against it. Not when the words between name the
    robot itself (``agents``): "place the left arm in the vessel" moves the arm."""
    single = {m.start: m for m in found if m.size == 1}
    taken = {i for m in found for i in m.positions}
    present = present_words(tokens)
    out: list[Match] = []
    for p in phrases:
        core = core_words(p.words)
        if not all(w in present for w in core):
            continue
        for pos in find_phrase(tokens, p.words, set(), allow_gaps=True):
            verb = single.get(pos[0])
            if verb is None or verb.phrase.kind == p.kind and verb.phrase.name == p.name \
                    or any(q in taken for q in pos[1:]) or pos[-1] - pos[0] < len(pos) \
                    or any(a in tokens[pos[0]:pos[-1]] for a in agents):
                continue
            out.append(Match(p, pos))
    return out


@functools.cache
def _phrasal_phrases(domain: str) -> list[Phrase]:
    """The domain's skill phrases that end in a particle ("put in", "slide into")."""
    return [p for p in lexicon(domain).skills if len(core_words(p.words)) >= 2 and core_words(p.words)[-1] in _VERB_PARTICLES]


class RulePlanner:
    """Deterministic, offline, no network. ``parse`` also says whether the text was understood at all."""

    name = "rule"

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        return self.parse(domain, text, world)[0]

    def parse(self, domain: str, text: str, world: WorldState | None = None) -> tuple[Plan, bool]:
        if domain not in DOMAINS:
            return Plan.refused(str(domain), f"unknown domain {domain!r}; choose one of: {', '.join(DOMAINS)}",
                                Reason.UNKNOWN_DOMAIN), True
        if not text or not text.strip():
            return Plan.refused(domain, "the command is empty; say what the robot should do", Reason.EMPTY), True
        tokens = words_to_numbers(drop_fillers(tokenize(text)))
        lex = lexicon(domain)
        blanket = blanket_confirmation(text)
        if blanket and _control(tokens, lex, embedded_stop=True) is not Control.STOP:
            return Plan.refused(domain, blanket, Reason.INJECTION), True
        control = _control(tokens, lex, embedded_stop=False)
        if control is not None:
            return Plan.of_control(domain, control), True
        why = screen_text(text)
        if why:
            return Plan.refused(domain, why, Reason.INJECTION), True
        why = _unreadable(text)
        if why:
            return Plan.refused(domain, why, Reason.INVALID_TEXT), True
        control = _negated(tokens)
        if control is not None:
            return Plan.of_control(domain, control), True
        if _control(tokens, lex, embedded_stop=True) is Control.STOP:
            return Plan.of_control(domain, Control.STOP), True
        control = _asked(tokens)
        if control is not None:
            return Plan.of_control(domain, control), True
        parser = _Parser(lex, world, text)
        try:
            steps = parser.run(tokens)
        except _Refusal as r:
            return Plan.refused(domain, r.reason, r.code), r.understood
        except _Question as q:
            return Plan.clarify(domain, str(q), Reason.MISSING), True
        if parser.questions:
            # the unanswered slot left steps out, so judge what was said against the unknown state: a value
            # out of range still refuses, a precondition the missing step would have met does not
            partial = validate_plan(Plan(status=PlanStatus.OK, domain=domain, steps=steps), None)
            if partial.status is not PlanStatus.REFUSED:
                return parser.unless_unknown(Plan.clarify(domain, parser.questions[0], Reason.AMBIGUOUS))
            return partial, True
        plan = validate_plan(Plan(status=PlanStatus.OK, domain=domain, steps=steps), world)
        return parser.unless_unknown(plan)


def _unreadable(text: str) -> str | None:
    """The tokenizer drops letters it cannot fold to ASCII, so "tаke" with a Cyrillic "а" would be planned
    from the fragments around it; a look-alike spelling is refused instead, naming the letters."""
    folded = fold_text(text)
    if folded.isascii():
        return None
    odd = sorted({ch for ch in folded if ch.isalpha() and not ch.isascii()})
    if not odd:
        return None
    return (f"Refused: it contains letters the planner cannot read ({', '.join(odd[:5])}); "
            "write the command in plain English letters")


@functools.cache
def _control_lexicon() -> list[Phrase]:
    """Control phrases, those with the most meaningful words first ("one moment" before "just a moment")."""
    return sorted(_CONTROL_LEXICON, key=lambda p: (-len(core_words(p.words)), -len(p.words)))


@functools.cache
def _switch_off_phrases() -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(tokenize(p)) for p in SWITCH_OFF)


def _switches_off(clause: _Clause) -> bool:
    return any(find_phrase(clause.tokens, w, set(), allow_gaps=False) for w in _switch_off_phrases())


def _count_nouns() -> frozenset[str]:
    return shared_vocabulary().count_nouns


@functools.cache
def _view_phrases() -> tuple[str, ...]:
    views = shared_vocabulary().unsupported_views
    return tuple(sorted((" ".join(tokenize(v)) for v in views), key=lambda v: -len(v)))


@functools.cache
def _mode_phrases() -> tuple[str, ...]:
    modes = shared_vocabulary().unsupported_modes
    return tuple(sorted((" ".join(tokenize(m)) for m in modes), key=lambda m: -len(m)))


def _skill_words(lex: Lexicon) -> frozenset[str]:
    return frozenset(w for p in lex.skills for w in p.words if not _NUMBER.match(w))


def _strip_idioms(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        hit = next((idiom for idiom in CONTROL_IDIOMS if tuple(words[i:i + len(idiom)]) == idiom), None)
        if hit:
            i += len(hit)
            continue
        out.append(words[i])
        i += 1
    return out


def _control(tokens: list[str], lex: Lexicon, embedded_stop: bool) -> Control | None:
    """A control intent: the whole utterance, or (``embedded_stop``) a stop word anywhere in it, since a
    stop said inside a longer sentence must still stop the robot.

    A control verb followed only by filler, generic nouns ("the arms", "the plan") or the bare name of a skill
    ("confirm the exposure", "no, don't take that shot") is a control: nothing in it says what to act on."""
    words = [t for t in tokens if t not in (",", ".", "!", "?", ";", ":", '"')]
    if not words:
        return None
    if embedded_stop:
        stop = [Phrase(tuple(tokenize(p)), "control", "stop") for p in CONTROL_PHRASES["stop"]]
        stop_words = {"stop", "halt", "estop", "emergency", "abort", "freeze"}
        if any(w in stop_words for w in words) or match_phrases(words, stop, set()):
            return Control.STOP
        return None
    stripped = _strip_idioms(words)
    if stripped != words:
        return _control(stripped, lex, False) or _control_of(words, lex) if stripped else _control_of(words, lex)
    return _control_of(words, lex)


#: control phrases made of a general verb and a pronoun: only the whole phrase is a control, since the verb
#: alone starts a request ("do a cone-beam spin" asks for an exposure; it must never read as "do it" = confirm)
_LITERAL_CONTROLS = frozenset({("do", "it"), ("go", "ahead"), ("go", "on"), ("carry", "on"), ("back", "to", "it")})


def _literal(m: Match, words: list[str]) -> bool:
    if m.phrase.words not in _LITERAL_CONTROLS:
        return True
    start = min(m.positions)
    return tuple(words[start:start + len(m.phrase.words)]) == m.phrase.words


def _control_of(words: list[str], lex: Lexicon) -> Control | None:
    found = [m for m in match_phrases(words, _control_lexicon(), set()) if _literal(m, words)]
    if not found:
        return None
    # a control word that is part of a longer skill phrase is the skill ("go home", "freeze and save")
    skill_matches = match_phrases(words, lex.skills, set())
    found = [m for m in found if not any(s.size > m.size and set(s.positions) & set(m.positions)
                                         for s in skill_matches)]
    if not found:
        return None
    covered = {i for m in found for i in m.positions}
    rest = [w for i, w in enumerate(words) if i not in covered]
    if any(_NUMBER.match(w) for w in rest):
        return None
    if rest and (match_phrases(rest, lex.entities, set()) or any(w in UNSUPPORTED_TARGETS for w in rest)):
        return None
    skill_words = _skill_words(lex)
    at_head = min(covered) == 0
    for w in rest:
        if w in FILLER or w in CONTROL_OBJECTS or w in SOFT:
            continue
        if at_head and any(x in skill_words for x in verb_bases(w)):
            continue
        return None
    names = {m.phrase.name for m in found}
    for name in _CONTROL_PRIORITY:
        if name in names:
            return Control(name)
    return None


@functools.cache
def _negated_pauses() -> tuple[Phrase, ...]:
    """Pause phrases that open with a negation ("don't move", "do not move")."""
    return tuple(p for p in _CONTROL_LEXICON if p.name == "pause"
                 and (p.words[:1] in (("don't",), ("dont",), ("never",)) or p.words[:2] == ("do", "not")))


def _negated(tokens: list[str]) -> Control | None:
    """A command that starts by negating or cancelling ("don't move the right arm", "cancel the liver scan")
    is never a plan, whatever it names."""
    words = [t for t in tokens if t not in (",", ".", "!", "?", ";", ":", '"')]
    while words and words[0] in ("no", "nope", "please", "oh", "wait"):
        words = words[1:]
    if words[:1] in (["don't"], ["dont"], ["never"]) or words[:2] == ["do", "not"]:
        if words[:2] == ["never", "mind"]:
            return Control.CANCEL
        # "don't move psm1" and "don't move the arms" are one intent, whatever is named: hold still now.
        # Negating a motion as such is a pause (the supervisor can resume); negating one named task ("don't
        # take the shot", "don't grab the needle") rejects what was proposed, a deny. The planner has no
        # pending question to consult, so the verb decides, not the object.
        if any(tuple(words[:len(p.words)]) == p.words for p in _negated_pauses()):
            return Control.PAUSE
        return Control.DENY
    if words[:1] in (["cancel"], ["scrap"], ["abandon"], ["discard"]) or words[:2] == ["call", "off"]:
        return Control.CANCEL
    return None


#: words that open a yes/no question about the robot's state ("is the probe in contact?"), and the subjects
#: after which "do" / "have" ask rather than command ("do a fan" and "have psm1 grab it" are commands)
_QUESTION_OPENERS = frozenset(["is", "are", "am", "was", "were", "does", "did", "has", "isn't", "aren't", "doesn't",
                               "hasn't"])
_ASKED_SUBJECTS = frozenset(["you", "we", "i", "it", "they"])


def _asked(tokens: list[str]) -> Control | None:
    """"is the probe in contact?", "have you taken the shot?": a question about the robot's state is a status
    request. Read as a command, its nouns named a task: "in contact" became a contact step."""
    words = [t for t in tokens if t not in (",", ".", "!", "?", ";", ":", '"')]
    if not words:
        return None
    if words[0] in _QUESTION_OPENERS or (words[0] in ("do", "have", "had") and words[1:2]
                                         and words[1] in _ASKED_SUBJECTS):
        return Control.STATUS
    return None


def _dimension(spec: ArgSpec, cs: CommandSet, skill: SkillSpec, args: dict[str, Any]) -> str | None:
    unit = spec.unit
    if spec.unit_from:
        ref = args.get(spec.unit_from)
        ev = cs.entity_value(ref, skill.args[spec.unit_from]) if isinstance(ref, str) else None
        unit = ev.unit if ev else None
    return DIMENSION_OF_UNIT.get(unit or "")


class _Parser:
    def __init__(self, lex: Lexicon, world: WorldState | None, original: str = ""):
        self.original = original
        self.lex = lex
        self.cs = lex.cs
        self.world = world.copy() if world is not None else WorldState(dict(self.cs.always_known), known=False)
        self.context: dict[str, str] = {}
        self.questions: list[str] = []
        self.verb_start: int | None = None
        self.later: list[_Clause] = []
        self.done: list[Step] = []
        self.numbered_prefixes = {p.words[0] for p in lex.entities if len(p.words) == 2 and p.words[1].isdigit()}
        self.clauses: list[_Clause] = []

    # -- clauses -------------------------------------------------------------------------------
    def run(self, tokens: list[str]) -> list[Step]:
        parts = self.split(_elided_nouns(self._repeated_verbs(tokens)))
        while parts and all(t in _ANSWER_WORDS for t in parts[0]) and len(parts) > 1:
            parts = parts[1:]
        clauses = self._merge_vocatives([self.analyse(c) for c in parts])
        clauses = [c for c in clauses if c.tokens]
        self.clauses = clauses
        self._exposure_limit(clauses)
        if not clauses:
            raise _Refusal("the command has no words the planner can use", understood=False)
        steps: list[Step] = []
        for k, clause in enumerate(clauses):
            later = clauses[k + 1:]
            for step in self.clause_steps(clause, later):
                if not (steps and self._merge_settings(steps[-1], step)):
                    steps.append(step)
        if not steps:
            raise _Refusal("the command names no action of the command set", understood=False)
        return steps

    def _repeated_verbs(self, tokens: list[str]) -> list[str]:
        """"rescan the spleen", "re-insert the shunt": the verb done again is the verb. Only for words the
        lexicon does not know as they are ("release" and "return" stay themselves)."""
        out: list[str] = []
        for k, t in enumerate(tokens):
            if t == "re" and k + 1 < len(tokens) and self._known_as_is(tokens[k + 1]):
                continue
            if t.startswith("re") and len(t) > 4 and not self._known_as_is(t) and self._known_as_is(t[2:]):
                t = t[2:]
            out.append(t)
        return out

    def unless_unknown(self, plan: Plan) -> tuple[Plan, bool]:
        """A question is only worth asking about a command the planner understood. "turn up the room lights"
        or "measure the blood pressure" would otherwise be asked for a rotation angle or a contact force: a
        word it does not know, in a command it would ask about, is refused by name instead (and marked not
        understood, so a hybrid planner may try it)."""
        if plan.status is not PlanStatus.CLARIFY:
            return plan, True
        for clause in self.clauses:
            word = self._unknown_words(clause)
            if word is not None:
                return Plan.refused(self.cs.domain, f"'{word}' is not something the {self.cs.domain} command set "
                                                    f"knows (its skills: {', '.join(self.cs.skills)})",
                                    Reason.UNKNOWN_WORD), False
        return plan, True

    def _merge_settings(self, prev: Step, step: Step) -> bool:
        """"set gain to 20 percent and depth to 10 cm": the person changes two settings of one skill, which
        takes them together (its ``at_least_one`` group), so they are one step. Merged into ``prev`` only when
        both steps set nothing but those settings and no setting twice: "depth 10 cm and depth 12 cm" is two
        steps, and the validator judges them."""
        if prev.skill != step.skill:
            return False
        group = set(self.cs.skills[step.skill].at_least_one)
        if not group or not set(prev.args) <= group or not set(step.args) <= group \
                or set(prev.args) & set(step.args):
            return False
        prev.args.update(step.args)
        return True

    def _exposure_limit(self, clauses: list[_Clause]) -> None:
        """Count the exposures asked for before anything else, so "three AP shots and three lateral shots"
        is refused for the exposure limit rather than answered with a question about a missing anatomy."""
        limit = self.cs.max_exposures
        if limit is None:
            return
        rad = {s.name for s in self.cs.skills.values() if s.hazard is Hazard.RADIATION}
        nouns = {w for s in self.cs.skills.values() if s.hazard is Hazard.RADIATION for syn in s.synonyms
                 for w in tokenize(syn)}
        total = 0
        for c in clauses:
            # every exposure phrase counts: "AP with a shot, inlet with a shot, ..." may stay one clause
            said = sum(1 for m in c.skills if m.phrase.name in rad)
            if c.count_noun is not None and (c.count_noun in nouns or c.count_noun.rstrip("s") in nouns):
                said = max(said, 1)
            if said:
                total += (c.count or 1) + said - 1
        if total > limit:
            raise _Refusal(f"the command asks for {total} exposures, above the limit of {limit} in one plan",
                           code=Reason.EXPOSURE_LIMIT)

    @functools.cached_property
    def _agent_word_set(self) -> frozenset[str]:
        kinds = self._agent_kinds()
        return frozenset(w for p in self.lex.entities if p.name in kinds for w in p.words
                         if w not in ("left", "right", "first", "second", "both", "all", "every", "of", "them"))

    def _agent_words(self) -> frozenset[str]:
        """Words that name the robot's own arms ("arm", "psm1", "instrument")."""
        return self._agent_word_set

    def _agent_kinds(self) -> set[str]:
        return {e for sk in self.cs.skills.values() for a, s in sk.args.items()
                if a == "arm" or a.endswith("_arm") for e in s.entities}

    def _merge_vocatives(self, clauses: list[_Clause]) -> list[_Clause]:
        """"psm2, release the needle" / "release the needle, psm2": the arm addressed belongs to the clause
        next to it, it is not a clause of its own."""
        agents = self._agent_kinds()
        out: list[_Clause] = []
        pending: list[str] = []
        for k, c in enumerate(clauses):
            rest = [t for i, t in enumerate(c.tokens) if i not in c.covered]
            vocative = (agents and not c.skills and not c.qtys and c.items and len(clauses) > 1
                        and all(e in agents for it in c.items for e, _ in it.options)
                        and all(t in FILLER or t in SOFT or t in _ANSWER_WORDS or t == ":" or
                                (t in FUNCTION_WORDS and not c.skills and k + 1 < len(clauses)) for t in rest))
            if vocative and k + 1 < len(clauses):
                pending += c.tokens + [","]
                continue
            if vocative and out:
                out[-1] = self.analyse(out[-1].tokens + [","] + c.tokens)
                continue
            out.append(self.analyse(pending + c.tokens) if pending else c)
            pending = []
        return out

    def split(self, tokens: list[str]) -> list[list[str]]:
        starts = self._skill_starts(tokens)
        parts: list[list[str]] = []
        cur: list[str] = []
        i = 0
        n = len(tokens)
        while i < n:
            t = tokens[i]
            if t in (";", ".", "!", "?"):
                parts.append(cur)
                cur = []
                i += 1
                continue
            hit = next((w for w in _SPLIT_WORDS if tuple(tokens[i:i + len(w)]) == w), None)
            if hit and cur:
                parts.append(cur)
                cur = []
                i += len(hit)
                continue
            if t in (",", "and") and cur and i + 1 < n:
                j = i + 1
                while j < n and tokens[j] in (",", "and", "then", "please", "also", "now"):
                    j += 1
                # "... and 2 shots", "... and take 1 more shot": a counted exposure (its verb before it) is a step
                counted = _counted_at(tokens, j) or (j < n and tokens[j].isalpha() and _counted_at(tokens, j + 1))
                # "... and another shot" counts one more, as "... and 2 shots" counts two
                counted = counted or (j < n and tokens[j] == "another" and any(
                    tokens[k] in _count_nouns() for k in range(j + 1, min(j + 3, n))))
                counted = counted or self._named_then_skill(tokens, j, starts)
                if j in starts or counted or self._verb_before(tokens, j, starts):
                    parts.append(cur)
                    cur = []
                    i = j
                    continue
            if t in (",", "and") and not cur:
                i += 1
                continue
            cur.append(t)
            i += 1
        parts.append(cur)
        return [p for p in parts if p]

    def _named_then_skill(self, tokens: list[str], j: int, starts: set[int]) -> bool:
        """"... and a lateral shot", "... and psm1 grab it", ", lateral with a shot": names, then a skill
        phrase (after "with", which only ties the two), start a clause."""
        entity_words = {w for p in self.lex.entities for w in p.words}
        named = False
        for k in range(j, min(j + 5, len(tokens))):
            if k in starts:
                return named
            if tokens[k] in entity_words:
                named = True
            elif tokens[k] not in SOFT and not (named and tokens[k] == "with"):
                return False
        return False

    def _verb_before(self, tokens: list[str], j: int, starts: set[int]) -> bool:
        """"... and send it home": a word the lexicon does not know (a verb such as "send"), then at most a
        pronoun, then a skill phrase, starts a new clause."""
        if j >= len(tokens) or not tokens[j].isalpha() or tokens[j] in self.lex.known_words or tokens[j] in SOFT:
            return False
        entity_words = {w for p in self.lex.entities for w in p.words}
        for k in range(j + 1, min(j + 5, len(tokens))):
            if k in starts:
                return True
            if tokens[k] not in _PRONOUNS and tokens[k] not in SOFT and tokens[k] not in entity_words \
                    and tokens[k] not in ("arm", "arms", "robot", "probe", "gantry", "instrument"):
                return False
        return False

    def _skill_starts(self, tokens: list[str]) -> set[int]:
        starts = set()
        present = present_words(tokens)
        for p in self.lex.skills:
            if not all(w in present for w in core_words(p.words)):
                continue
            for pos in find_phrase(tokens, p.words, set(), allow_gaps=False):
                starts.add(pos[0])
        return starts

    def analyse(self, tokens: list[str]) -> _Clause:
        clause = _Clause(tokens=list(tokens))
        toks = clause.tokens
        for k, t in enumerate(toks):
            saves_as = t == "as" and any(w in ("save", "store", "capture", "record", "keep", "file") for w in toks[:k])
            if t in LABEL_WORDS or saves_as:
                j = k + 1
                while j < len(toks) and toks[j] in ("it", "as", "with", "the", "label", ":", '"', "of"):
                    j += 1
                label = " ".join(w for w in toks[j:] if w not in ('"', ","))
                if label:
                    clause.label = self._original_case(label)
                clause.tokens = toks = toks[:k]
                break
        # "press a touch harder": the words of "a touch", "a bit" say how much, never which skill
        small = frozenset(k for i in range(len(toks)) for sm in SMALL_AMOUNT if len(sm) > 1
                          and tuple(toks[i:i + len(sm)]) == sm for k in range(i, i + len(sm)))
        skills = match_phrases(toks, self.lex.skills, set(), small)
        if not _VERB_PARTICLES.isdisjoint(toks):
            skills += _phrasal_matches(toks, _phrasal_phrases(self.cs.domain), skills, self._agent_words())
        ents = [m for etype in self.cs.entities
                for m in match_phrases(toks, [p for p in self.lex.entities if p.name == etype], set())]
        by_span: dict[tuple[int, ...], _Item] = {}
        for m in ents:
            item = by_span.get(m.positions)
            if item is None:
                item = by_span[m.positions] = _Item(m.start, m.positions[-1], [])
            item.options.append((m.phrase.name, m.phrase.value))
        for m in ents:
            for p in self.lex.entities:
                if p.words == m.phrase.words and (p.name, p.value) not in by_span[m.positions].options:
                    by_span[m.positions].options.append((p.name, p.value))
        clause.items = sorted(by_span.values(), key=lambda it: (it.start, -(it.end - it.start)))
        for it in clause.items:
            it.positions = set(next(m.positions for m in ents if m.start == it.start and m.positions[-1] == it.end))
        clause.items = [it for it in clause.items
                        if not any(o is not it and it.positions < o.positions
                                   and not all(toks[k] in _LINK_WORDS for k in o.positions - it.positions)
                                   for o in clause.items)]
        clause.skills = skills
        clause.skill_positions = {i for m in skills for i in m.positions}
        clause.covered = {i for m in (*skills, *ents) for i in m.positions}
        self._quantities(clause)
        return clause

    def _original_case(self, label: str) -> str:
        """Labels keep the person's capitals ("LK upper pole"); matching ignores case and spacing."""
        pattern = r"\W+".join(re.escape(w) for w in label.split())
        m = re.search(pattern, self.original, flags=re.IGNORECASE)
        return m.group(0) if m else label

    def _quantities(self, clause: _Clause) -> None:
        toks = clause.tokens
        n = len(toks)
        i = 0
        while i < n:
            small = next((s for s in SMALL_AMOUNT if tuple(toks[i:i + len(s)]) == s), None)
            if small:
                clause.small = True
                i += len(small)
                continue
            t = toks[i]
            if t in _TIMES:
                clause.count = _TIMES[t]
                i += 1
                continue
            if i in clause.covered and not (_NUMBER.match(t) and toks[i - 1:i] not in (["psm"], ["l"])):
                i += 1
                continue
            negative = False
            j = i
            if t in NEGATIVE_SIGNS:
                # "plus or minus 10 degrees" is a symmetric amount, not a negative one
                negative = toks[max(0, i - 2):i] != ["plus", "or"]
                j += 1
            value: float | None = None
            if j < n and _NUMBER.match(toks[j]) and j not in clause.covered:
                value = float(toks[j])
                j += 1
                # "three quarters of a centimetre"
                if j < n and toks[j] in FRACTIONS:
                    value *= FRACTIONS[toks[j]]
                    j = _past_article(toks, j + 1)
            elif j < n and toks[j] in FRACTIONS:
                value = FRACTIONS[toks[j]]
                j = _past_article(toks, j + 1)
            elif j < n and toks[j] in ("a", "an", "one") and j + 1 < n and toks[j + 1] in UNIT_WORDS \
                    and toks[j + 1] not in ("in", "m", "n", "%"):
                value = 1.0
                j += 1
            if value is None:
                i += 1
                continue
            unit_len, unit = self._unit_at(toks, j)
            # "10 by 15 cm": the second number's unit applies to the first too
            if unit is None and j + 1 < n and toks[j] in ("by", "x") and _NUMBER.match(toks[j + 1]):
                _, u2 = self._unit_at(toks, j + 2)
                if u2 is not None:
                    unit = u2
            noun = next((k for k in range(j, min(j + 3, n)) if toks[k] in _count_nouns()
                         and all(x in clause.covered or toks[x] in _COUNT_ADJECTIVES for x in range(j, k))), None)
            if noun is not None and unit is None and not negative:
                clause.count = int(value)
                clause.count_noun = toks[noun]
                clause.covered.update(range(i, j))
                clause.covered.add(noun)
                i = j
                continue
            if j < n and toks[j] == "times" and not negative:
                clause.count = int(value)
                clause.covered.update(range(i, j + 1))
                i = j + 1
                continue
            if unit is None and j < n and toks[j][0].isalpha() and len(toks[j]) > 1 and not self._known(toks[j]) \
                    and toks[j] not in shared_vocabulary().unsupported_settings:
                # "3 kilograms", "7 psi", "2 o'clock": a unit the planner cannot convert is never dropped, or
                # the bare number would land in the argument's own unit (3 N for 3 kg)
                raise _Refusal(f"'{' '.join(toks[i:j + 1])}': the planner does not know the unit '{toks[j]}'; "
                               "say the value in mm, cm, degrees, turns, newtons, mm/s or percent",
                               code=Reason.UNKNOWN_UNIT)
            dim = None
            factor = 1.0
            if unit is not None:
                dim, factor = UNIT_WORDS[unit]
            q = _Qty(i, j + unit_len - 1, value * factor, dim, negative,
                     text=" ".join(toks[i:j + unit_len]))
            clause.qtys.append(q)
            clause.covered.update(range(i, j + unit_len))
            i = j + unit_len

    def _unit_at(self, toks: list[str], j: int) -> tuple[int, str | None]:
        for words, unit in self.lex.unit_phrases:
            k = len(words)
            if tuple(toks[j:j + k]) == words:
                # "in" is a preposition and "m" too short to trust mid-sentence; "n" stays newtons even there
                # ("6 n of force", "35 n to the abdomen"), and the force is checked against its limit anyway
                if unit == "in" or (unit == "m" and j + 1 < len(toks) and toks[j + 1] not in (",", ".")):
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

    # -- a clause to steps ---------------------------------------------------------------------
    def check_clause(self, clause: _Clause) -> None:
        toks = clause.tokens
        for i, t in enumerate(toks):
            if i in clause.covered:
                continue
            if t in UNSUPPORTED_ACTIONS:
                raise _Refusal(f"'{t}' is not an action of the {self.cs.domain} command set "
                               f"(its skills: {', '.join(self.cs.skills)})", code=Reason.UNKNOWN_SKILL)
            if t in UNSUPPORTED_TARGETS:
                raise _Refusal(f"'{t}' is not in the {self.cs.domain} command set ({self._targets()})")
            if t in shared_vocabulary().unsupported_settings:
                raise _Refusal(f"'{t}' is not a setting of the {self.cs.domain} command set: it cannot be chosen "
                               f"(its skills: {', '.join(self.cs.skills)})")
            if t in self.numbered_prefixes and i + 1 < len(toks) and toks[i + 1].isdigit():
                what = self._numbered_kind(t)
                raise _Refusal(f"'{t}{toks[i + 1]}' is not a known {what} in the {self.cs.domain} command set")
            if re.fullmatch(r"(psm|arm|l|t)\d+", t):
                raise _Refusal(f"'{t}' is not known in the {self.cs.domain} command set ({self._targets()})")
        joined = " " + " ".join(toks) + " "
        m = re.search(r" (third|fourth|fifth|sixth|3rd|4th|5th|another|extra|additional) (arm|instrument|psm|"
                      r"manipulator|tool|gripper|robot) ", joined)
        if m and "arm" in self.cs.entities:
            raise _Refusal(f"there is no {m.group(1)} {m.group(2)}: the {self.cs.domain} command set has "
                           f"{', '.join(v for v, ev in self.cs.entities['arm'].values.items() if not ev.expands_to)}")
        for words in sorted(self.lex.foreign_entities, key=lambda w: -len(w)):
            if f" {words} " in joined:
                span = self._span_of(toks, words.split())
                if span is not None and not (set(span) & clause.covered):
                    raise _Refusal(f"'{words}' is not in the {self.cs.domain} command set ({self._targets()})")
        for words in _view_phrases():
            span = self._span_of(toks, words.split())
            if span is not None and not set(span) <= clause.covered:
                views = self.cs.entities.get("view")
                have = f" (its views: {', '.join(views.values)})" if views else ""
                raise _Refusal(f"'{words}' is not a view of the {self.cs.domain} command set{have}")
        for words in _mode_phrases():
            if f" {words} " in joined:
                span = self._span_of(toks, words.split())
                if span is not None and not set(span) <= clause.covered:
                    raise _Refusal(f"'{words}' is not in the {self.cs.domain} command set: it has no such mode "
                                   f"or procedure (its skills: {', '.join(self.cs.skills)})")

    def check_names(self, clause: _Clause, main: list[tuple[SkillSpec, dict[str, Any]]]) -> None:
        """A name the command set does not know, where the skill needed one of its own, is refused: the
        planner never maps an unknown instrument, organ or anatomy onto a default or a known one."""
        named = {(e, v) for it in clause.items if it.used for e, v in it.options}
        for spec, args in main:
            for a, s in spec.args.items():
                kinds = set(s.entities) & _NAMED_KINDS
                if s.type != "enum" or not kinds:
                    continue
                if a in args and any((e, args[a]) in named for e in s.entities):
                    continue
                unknown = self._unknown_words(clause)
                if unknown:
                    kind = min(kinds)
                    raise _Refusal(f"'{unknown}' is not a known {kind} in the {self.cs.domain} command set "
                                   f"({self._targets()})", code=Reason.UNKNOWN_WORD)

    def _unknown_words(self, clause: _Clause) -> str | None:
        toks = clause.tokens
        qty = {k for q in clause.qtys for k in range(q.start, q.end + 1)}
        for i, t in enumerate(toks):
            if i in clause.covered or i in qty or not t[0].isalpha() or len(t) < 3:
                continue
            if not self._known(t):
                return t
        return None

    def _known(self, t: str) -> bool:
        """Whether ``t`` is a word the planner reads: the lexicon's, a function word, a number or a unit;
        "reposition", "rescan" too, a known verb done again."""
        return self._known_as_is(t) or (t.startswith("re") and len(t) > 4 and self._known_as_is(t[2:]))

    def _known_as_is(self, t: str) -> bool:
        known = self.lex.known_words
        if any(x in known or x in FUNCTION_WORDS or x in FILLER or x in SOFT or x in _count_nouns()
               or x in CONTROL_OBJECTS or x in UNIT_WORDS or x in LABEL_WORDS for x in verb_bases(t)):
            return True
        return t in NUMBER_WORDS or any(t in p for p in _switch_off_phrases()) or (t.endswith("s") and t[:-1] in known)

    def _span_of(self, toks: list[str], words: list[str]) -> range | None:
        for i in range(len(toks) - len(words) + 1):
            if toks[i:i + len(words)] == words:
                return range(i, i + len(words))
        return None

    def _numbered_kind(self, prefix: str) -> str:
        for p in self.lex.entities:
            if p.words[0] == prefix and len(p.words) == 2:
                return p.name
        return "name"

    def _targets(self) -> str:
        parts = []
        for etype in ("arm", "object", "organ", "anatomy"):
            ent = self.cs.entities.get(etype)
            if ent:
                values = [v for v, ev in ent.values.items() if not ev.expands_to]
                parts.append(f"{etype}s: {', '.join(values)}" if etype != "anatomy" else f"anatomy: {', '.join(values)}")
        return "; ".join(parts)

    def choose(self, clause: _Clause) -> tuple[str, str, int]:
        """(kind, name, phrase size) of the best skill or task for the clause."""
        best: tuple[float, str, str, int] | None = None
        phrase_size: dict[tuple[str, str], tuple[int, int]] = {}
        for m in clause.skills:
            if self._inside_name(clause, m) or self._causative(clause, m):
                continue
            key = (m.phrase.kind, m.phrase.name)
            weight = m.size * 10 - m.gaps * 3 + (15 if self._destination(clause, m) else 0)
            prev = phrase_size.get(key)
            if prev is None or weight > prev[0]:
                phrase_size[key] = (weight, m.size)
        for it in clause.items:
            # "send psm2 to the rest position": a place that is a skill's own destination names that skill
            before = [t for t in clause.tokens[:it.start] if t not in _POSSESSIVE]
            for _, v in it.options:
                if v in self.cs.skills and before[-1:] in (["to"], ["into"]):
                    phrase_size[("skill", v)] = max(phrase_size.get(("skill", v), (0, 0)), (25, 1))
        self._moved_agent(clause, phrase_size)
        candidates: list[tuple[str, str]] = list(phrase_size)
        if not candidates:
            candidates = [("skill", s) for s in self.cs.skills]
        for kind, name in candidates:
            specs = self._specs(kind, name)
            ent_types = {e for s in specs for a in s.args.values() for e in a.entities}
            dims = {_dimension(a, self.cs, s, {}) for s in specs for a in s.args.values()
                    if a.type in ("number", "vector3")}
            if any(a.unit_from for s in specs for a in s.args.values()):
                dims |= {"length", "angle"}
            fit = sum(1 for it in clause.items if any(e in ent_types for e, _ in it.options))
            fit += sum(1 for q in clause.qtys if q.dim in dims or (q.dim is None and dims))
            required = [a for s in specs for a in s.args.values() if a.required and a.type == "enum"
                        and not a.values_from]
            present = {e for it in clause.items for e, _ in it.options}
            inferable = {x.values_from.split(".")[0] for s in specs for x in s.args.values()
                         if x.values_from and set(x.entities) & present}
            missing = sum(1 for a in required if not set(a.entities) & present
                          and not any(n in inferable for s in specs for n, x in s.args.items() if x is a))
            syn = phrase_size.get((kind, name), (0, 0))[0]
            if syn == 0 and fit == 0:
                continue
            needed = sum(1 for q in clause.qtys for s in specs for a in s.args.values()
                         if a.required and a.type == "number" and q.dim is not None
                         and q.dim == _dimension(a, self.cs, s, {}))
            score = syn + 2 * fit - 3 * missing + (0.5 if kind == "task" else 0) + needed
            if best is None or score > best[0]:
                best = (score, kind, name, phrase_size.get((kind, name), (0, 0))[1])
        if best is None:
            raise _Refusal(self._not_understood(clause), understood=False)
        return self._target_value(clause, (best[1], best[2], best[3]))

    def _moved_agent(self, clause: _Clause, phrase_size: dict[tuple[str, str], tuple[int, int]]) -> None:
        """"take the left arm to the vessel", "bring psm1 over to the needle": a verb whose object is the
        robot's own arm, then "to" and a name, moves that arm there. Whatever the verb means elsewhere ("take"
        also grasps), an arm is not grasped: the words name a "go to" skill, one whose phrases end in "to"
        and which takes the name after it."""
        agents = self._agent_kinds()
        toks = clause.tokens
        for m in clause.skills:
            k = m.positions[-1] + 1
            while k < len(toks) and toks[k] in _POSSESSIVE:
                k += 1
            arm = next((it for it in clause.items if it.start == k and it.options
                        and all(e in agents for e, _ in it.options)), None)
            if arm is None:
                continue
            k = arm.end + 1
            if toks[k:k + 1] == ["over"]:
                k += 1
            if toks[k:k + 1] not in (["to"], ["toward"], ["towards"]):
                continue
            k += 1
            while k < len(toks) and toks[k] in _POSSESSIVE:
                k += 1
            target = next((it for it in clause.items if it.start == k), None)
            if target is None or any(o.start == k and not set(o.positions) <= target.positions for o in clause.skills):
                continue
            kinds = {e for e, _ in target.options}
            weight = m.size * 10 - m.gaps * 3 + 5
            for name, spec in self.cs.skills.items():
                goes_to = any(p.name == name and p.kind == "skill" and p.words[-1] == "to" for p in self.lex.skills)
                takes = any(a not in ("arm",) and not a.endswith("_arm") and set(x.entities) & kinds
                            for a, x in spec.args.items())
                if goes_to and takes and any(set(x.entities) & agents for x in spec.args.values()):
                    phrase_size[("skill", name)] = max(phrase_size.get(("skill", name), (0, 0)), (weight, m.size))
            return

    def _target_value(self, clause: _Clause, chosen: tuple[str, str, int]) -> tuple[str, str, int]:
        """"back off to 4 newtons": a value said as the target ("to 4 N") that the chosen verb cannot take,
        of a kind exactly one skill requires (set_force), names that skill when the two share a phrase word
        ("back off" / "ease off"). Without "to" the value may be a change ("back off by 2 N"), which no skill
        takes, so the planner still asks."""
        kind, name, size = chosen
        specs = self._specs(kind, name)
        toks = clause.tokens
        dims = {_dimension(a, self.cs, s, {}) for s in specs for a in s.args.values() if a.type in ("number", "vector3")}
        verb_words = {w for m in clause.skills if (m.phrase.kind, m.phrase.name) == (kind, name)
                      for w in core_words(m.phrase.words)}
        for q in clause.qtys:
            if q.dim is None or q.dim in dims or toks[max(0, q.start - 1):q.start] != ["to"]:
                continue
            needing = [sk for sk in self.cs.skills.values()
                       if any(a.required and a.type == "number" and _dimension(a, self.cs, sk, {}) == q.dim
                              for a in sk.args.values())]
            if len(needing) != 1:
                continue
            other = needing[0]
            words = {w for p in self.lex.skills if p.kind == "skill" and p.name == other.name for w in p.words}
            if verb_words & words:
                return "skill", other.name, size
        return chosen

    def _inside_name(self, clause: _Clause, m: Match) -> bool:
        """"the handover point" names a place, not the handover skill."""
        pos = set(m.positions)
        return any(pos < it.positions and not any(v == m.phrase.name for _, v in it.options)
                   for it in clause.items)

    def _causative(self, clause: _Clause, m: Match) -> bool:
        """"get the right arm to hand ...", "have psm1 grab ...": the first verb only says who does the next."""
        toks = clause.tokens
        agents = self._agent_kinds()
        k = m.positions[-1] + 1
        while k < len(toks) and toks[k] in SOFT:
            k += 1
        item = next((it for it in clause.items if it.start == k and all(e in agents for e, _ in it.options)), None)
        if item is None:
            return False
        k = item.end + 1
        if k < len(toks) and toks[k] == "to":
            k += 1
        return any(o.start == k for o in clause.skills if o is not m)

    def _destination(self, clause: _Clause, m: Match) -> bool:
        """"send the arm to its home position", "move the gantry to its park position": a skill named as the
        place to go is that skill (unless the words name a different place, as "handover point" does)."""
        toks = clause.tokens
        k = m.start - 1
        while k >= 0 and toks[k] in _POSSESSIVE:
            k -= 1
        if k < 0 or toks[k] not in ("to", "into"):
            return False
        after = [t for t in toks[m.positions[-1] + 1:] if t not in SOFT]
        if after[:1] and after[0].rstrip("s") not in ("position", "pose", "location", "spot", "place", "posture", ","):
            return False
        pos = set(m.positions)
        return not any(it.positions & pos and not any(v == m.phrase.name for _, v in it.options)
                       and len(it.positions) > len(pos) for it in clause.items)

    def _not_understood(self, clause: _Clause) -> str:
        said = " ".join(clause.tokens)
        return (f"'{said}' is not something the {self.cs.domain} command set can do "
                f"(its skills: {', '.join(self.cs.skills)})")

    def _specs(self, kind: str, name: str) -> list[SkillSpec]:
        if kind == "task":
            return [self.cs.skills[s] for s in self.cs.tasks[name].steps]
        return [self.cs.skills[name]]

    def clause_steps(self, clause: _Clause, later: list[_Clause]) -> list[Step]:
        self.check_clause(clause)
        self.later = later
        kind, name, size = self.choose(clause)
        self._unknown_action(clause, size)
        self._agent_only(clause, size)
        self._room_object(clause, kind, name)
        self.verb_start = min((m.start for m in clause.skills if (m.phrase.kind, m.phrase.name) == (kind, name)),
                              default=None)
        specs = self._specs(kind, name)
        main: list[tuple[SkillSpec, dict[str, Any]]] = []
        for spec in specs:
            args = self.fill(spec, clause, later)
            main.append((spec, args))
        if kind == "skill" and len(main) == 1:
            main.extend(self._conjoined(main[0][0], main[0][1], clause))
        elif kind == "task" and main:
            # "scan the right kidney and the liver": the whole task again for the second organ, so the plan
            # says what was asked (and the validator judges it) instead of a contact on the last organ only
            for extra in self._conjoined(main[0][0], main[0][1], clause):
                main.extend([extra] + [(spec, dict(args)) for spec, args in main[1:len(specs)]])
        if _switches_off(clause) and not clause.switched_off:
            # "disable the left kidney": only a setting can be switched off; anything else is not a motion
            raise _Refusal(f"the command switches off something that is not a setting of the {self.cs.domain} "
                           f"command set (its skills: {', '.join(self.cs.skills)})", code=Reason.NOT_ALLOWED)
        self.check_names(clause, main)
        leftovers = [it for it in clause.items if not it.used]
        unused_q = [q for q in clause.qtys if not q.used]
        for q in unused_q:
            self._out_of_range(q, main)
        if unused_q:
            q = unused_q[0]
            self.questions.append(f"What is '{q.text}' for? The plan has {', '.join(s.name for s, _ in main)}; "
                                  "say which value it sets")
        out: list[Step] = []
        shot = self._implied_exposure(clause, main)
        for spec, args in main:
            out.extend(self.establish(spec, args, leftovers, clause, depth=0))
            reps = clause.count if (clause.count and spec is specs[-1] and shot is None) else 1
            for _ in range(max(1, min(reps, 50))):
                out.append(Step(skill=spec.name, args=dict(args)))
                apply_step(self.cs, spec, args, self.world)
            if shot is not None and _establishes(spec, shot):
                for _ in range(max(1, min(clause.count or 1, 50))):
                    out.append(Step(skill=shot.name, args={}))
                    apply_step(self.cs, shot, {}, self.world)
        self._wrong_object(clause, main, out)
        incomplete = any(a not in args for spec, args in main for a, s in spec.args.items()
                         if s.required and s.type == "enum")
        agents = self._agent_kinds()
        stray = [] if incomplete else [
            it for it in leftovers if not it.used and not self._echo(it, out)
            and not (it.positions & clause.skill_positions)
            and not (len(it.positions) == 1 and clause.tokens[min(it.positions)] in _PARTICLES)
            and not (all(e in agents for e, _ in it.options) and not any(
                e in agents for spec, _ in main for s in spec.args.values() for e in s.entities))]
        if stray:
            words = " ".join(clause.tokens[stray[0].start:stray[0].end + 1])
            self.questions.append(f"What should '{words}' do in this command? The plan is: "
                                  + ", then ".join(s.describe() for s in out))
        for it in clause.items:
            for etype, value in it.options[:1]:
                self.context[etype] = value
        for step in out:
            for a, v in step.args.items():
                if isinstance(v, str):
                    for e in self.cs.skills[step.skill].args[a].entities:
                        self.context[e] = v
        self.done.extend(out)
        return out

    def _unknown_action(self, clause: _Clause, size: int) -> None:
        """"measure the left kidney", "fetch the needle with psm1": the verb is not one the command set knows,
        and no skill phrase is in the clause, so the names alone would pick a skill (a move to the kidney, a
        move to the needle). That is a guess; the unknown verb is refused by name instead."""
        if size:
            return
        head = next((t for t in clause.tokens if t.isalpha() and len(t) > 2 and t not in FILLER and t not in SOFT
                     and not t.endswith("ly")), None)
        if head is not None and not self._known(head):
            raise _Refusal(f"'{head}' is not an action of the {self.cs.domain} command set "
                           f"(its skills: {', '.join(self.cs.skills)})", understood=False, code=Reason.UNKNOWN_SKILL)

    def _agent_only(self, clause: _Clause, size: int) -> None:
        """"what is the right arm holding", "psm1 please": an arm named with no word for what it should do. A
        skill picked because it takes nothing but an arm (release) would be a guess, so the planner asks."""
        agents = self._agent_kinds()
        if size or clause.qtys or not clause.items or not agents \
                or not all(e in agents for it in clause.items for e, _ in it.options):
            return
        who = " and ".join(" ".join(clause.tokens[k] for k in sorted(it.positions)) for it in clause.items)
        raise _Question(f"What should '{who}' do? Say the action too.")

    def _room_object(self, clause: _Clause, kind: str, name: str) -> None:
        """"move the table up", "rotate the patient", "lower the bed": a motion verb whose object is something
        in the room that no robot here moves would otherwise move the robot instead."""
        if kind != "skill" or not self.cs.skills[name].hazard.moves:
            return
        toks = clause.tokens
        # the verb: a phrase of the skill, or the clause's first word ("turn" names the orbit axis, not a skill)
        ends = [m.positions[-1] for m in clause.skills if m.phrase.name == name]
        ends += [k for k, t in enumerate(toks) if t.isalpha() and t not in FILLER and t not in SOFT][:1]
        for end in ends:
            # "take the probe off the patient": what follows a particle is where from, not what moves
            if toks[end] in _VERB_PARTICLES:
                continue
            k = end + 1
            while k < len(toks) and (toks[k] in _POSSESSIVE or toks[k] in SOFT):
                k += 1
            if k < len(toks) and toks[k] in ROOM_OBJECTS:
                raise _Refusal(f"'{toks[k]}' is not moved by any skill of the {self.cs.domain} command set; "
                               f"it moves only its own robot (its skills: {', '.join(self.cs.skills)})")

    def _wrong_object(self, clause: _Clause, main: list[tuple[SkillSpec, dict[str, Any]]], out: list[Step]) -> None:
        """A skill that only takes some objects ("insert" takes the shunt) must not fall back on its default
        while the person named another one: "insert the needle into the vessel" is refused, not turned into
        a shunt insertion nobody asked for."""
        in_plan = {v for step in out for v in step.args.values() if isinstance(v, str)}
        for spec, _args in main:
            for a, s in spec.args.items():
                if s.type != "enum" or not s.values:
                    continue
                allowed = self.cs.allowed_values(s)
                for it in clause.items:
                    if it.used or any(v in in_plan for _, v in it.options):
                        continue
                    wrong = next((v for e, v in it.options if e in s.entities and v not in allowed), None)
                    if wrong is not None:
                        raise _Refusal(f"{spec.name} takes {a} {' or '.join(allowed)} only; '{wrong}' cannot be "
                                       f"used for it", code=Reason.NOT_ALLOWED)

    def _out_of_range(self, q: _Qty, main: list[tuple[SkillSpec, dict[str, Any]]]) -> None:
        """A quantity the planner cannot place is still refused when no argument of its kind could take it:
        "eight centimetres to the left of the needle" is over the offset limit whatever the direction."""
        if q.dim is None:
            return
        fits = [(spec, a, s, s.min, s.max) for spec, args in main for a, s in spec.args.items()
                if s.type in ("number", "vector3") and _dimension(s, self.cs, spec, args) == q.dim
                and s.min is not None and s.max is not None]
        if not fits:
            return
        value = -abs(q.value) if q.negative else q.value
        # a vector's limit bounds the length of the offset, whatever its sign; a number has both ends
        outside: list[tuple[SkillSpec, str, ArgSpec, float, float, float]] = []
        for spec, a, s, lo, hi in fits:
            if s.type == "vector3" and abs(value) > hi:
                outside.append((spec, a, s, lo, hi, hi))
            elif s.type != "vector3" and not lo <= value <= hi:
                outside.append((spec, a, s, lo, hi, hi if value > hi else lo))
        if len(outside) == len(fits):
            spec, a, s, lo, hi, limit = outside[0]
            raise _Refusal(f"{spec.name}: {a} = {_clean_number(value)} {s.unit} ('{q.text}') is outside the limit "
                           f"of {_clean_number(limit)} {s.unit} (allowed {_clean_number(lo)}..{_clean_number(hi)}"
                           f" {s.unit})", code=Reason.OUT_OF_RANGE)

    def _implied_exposure(self, clause: _Clause, main: list[tuple[SkillSpec, dict[str, Any]]]) -> SkillSpec | None:
        """"take an AP and a lateral of the knee", "five exposures of the chest": the exposure the words ask
        for, after each view the clause sets. Only when asked: an exposure verb or a counted exposure noun."""
        rad = [s for s in self.cs.skills.values() if s.hazard is Hazard.RADIATION]
        if not rad or any(spec.hazard is Hazard.RADIATION for spec, _ in main):
            return None
        if not any(_establishes(spec, r) for spec, _ in main for r in rad):
            return None
        if clause.count_noun is not None:
            noun = clause.count_noun
            for r in rad:
                words = {w for syn in r.synonyms for w in tokenize(syn)}
                if noun in words or noun.rstrip("s") in words:
                    return r
            return rad[0]
        verbs = _exposure_verbs_of(self.cs.domain)
        for k, t in enumerate(clause.tokens):
            if t in verbs and k not in clause.covered:
                return None if self._exposure_said_next(rad) else verbs[t]
        return None

    def _exposure_said_next(self, rad: list[SkillSpec]) -> bool:
        """"take an AP of the pelvis and a shot": the verb's object runs on to the exposure itself, so the view
        is not a second exposure. Looked for in the clauses that follow, up to the next view or anatomy named
        ("take an AP and a lateral shot" still exposes both views)."""
        rad_names = {r.name for r in rad}
        setters = {s.name for s in self.cs.skills.values() if any(_establishes(s, r) for r in rad)}
        named = {e for n in setters for a in self.cs.skills[n].args.values() for e in a.entities}
        elsewhere = {e for s in self.cs.skills.values() if s.name not in setters for a in s.args.values()
                     for e in a.entities}
        for c in self.later:
            # a view named, or an anatomy named where no other skill's verb takes it ("collimate to the sacrum")
            other_verb = any(m.phrase.name not in setters | rad_names for m in c.skills)
            kinds = {e for it in c.items for e, _ in it.options}
            if kinds & (named - elsewhere) or (not other_verb and kinds & named):
                return False
            if any(m.phrase.name in rad_names for m in c.skills):
                return True
        return False

    def _conjoined(self, spec: SkillSpec, args: dict[str, Any], clause: _Clause) -> list[tuple[SkillSpec,
                                                                                                  dict[str, Any]]]:
        """"locate the needle and the shunt", "the right kidney and the left kidney": one more step per extra
        value of an argument already filled (a side only among the sides its organ or anatomy has)."""
        extra = []
        for a, s in spec.args.items():
            if s.type != "enum" or a not in args or a.startswith(("from_", "to_")):
                continue
            for it in clause.items:
                # "... and the left kidney": the side in front of the noun does not hide the "and"
                named = {k for o in clause.items if o is not it and o.end < it.start for k in o.positions}
                before = [w for k, w in enumerate(clause.tokens[:it.start]) if w not in SOFT
                          and not (k in named and k > max((j for j, t in enumerate(clause.tokens[:it.start])
                                                           if t in ("and", ",")), default=-1))]
                if it.used or not before or before[-1] not in ("and", ",", "or", "&", "plus"):
                    continue
                v = it.value_for(s.entities, self._allowed(spec, a, s, args))
                if v is not None and v != args[a]:
                    clause.use(it)
                    more = {**args, a: v}
                    # "... and the left kidney": the noun after the side is the same kidney, not a new name
                    for other in clause.items:
                        if not other.used and other.start == it.end + 1 and any(
                                o in more.values() for _, o in other.options):
                            clause.use(other)
                    self._gapped(spec, a, it, more, clause)
                    extra.append((spec, more))
        return extra

    def _gapped(self, spec: SkillSpec, a: str, item: _Item, args: dict[str, Any], clause: _Clause) -> None:
        """"grab the needle with the right arm and the shunt with the left arm": what is named after the second
        value, up to the next "and", belongs to its step and replaces what the first step had."""
        end = next((k for k in range(item.end + 1, len(clause.tokens)) if clause.tokens[k] in ("and", ",")),
                   len(clause.tokens))
        for b, s in spec.args.items():
            if b == a or s.type != "enum" or s.values_from:
                continue
            for other in clause.items:
                if other.used or not item.end < other.start < end:
                    continue
                v = other.value_for(s.entities, self._allowed(spec, b, s, args))
                if v is not None:
                    args[b] = v
                    clause.use(other)
                    break

    def _echo(self, item: _Item, steps: list[Step]) -> bool:
        """An unused name that repeats a value already in the plan ("the kidney ... the kidney") or in the
        facts the steps rely on ("lift the needle" while the arm already holds it)."""
        values = {v for s in steps for v in s.args.values() if isinstance(v, str)}
        for s in steps:
            for key, _op, _want in conditions_of(self.cs, self.cs.skills[s.skill], s.args):
                have = self.world.facts.get(key)
                if isinstance(have, str):
                    values.add(have)
                fact = self.cs.facts.get(re.sub(r"\[[^\]]*\]", "[X]", key)) or self.cs.facts.get(key)
                if fact is None:
                    fact = next((f for k, f in self.cs.facts.items() if k.split("[")[0] == key.split("[")[0]), None)
                if fact is not None:
                    values.update(str(v) for v in fact.values if v != "none")
        return any(v in values for _, v in item.options)

    # -- arguments ----------------------------------------------------------------------------
    def fill(self, spec: SkillSpec, clause: _Clause, later: list[_Clause]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        toks = clause.tokens
        for phrase, implied in spec.implied.items():
            if find_phrase(toks, tuple(tokenize(phrase)), set(), allow_gaps=False):
                args.update(implied)
        enums = [(a, s) for a, s in spec.args.items() if s.type == "enum"]
        enums.sort(key=lambda kv: kv[1].values_from is not None)
        for a, s in enums:
            if a in args:
                continue
            allowed = self._allowed(spec, a, s, args)
            item = self._pick(clause, a, s, allowed)
            if item is not None:
                args[a] = self._switched_off(spec, a, item, allowed, clause)
        self._infer_parents(spec, args)
        self._same_as_before(spec, args, clause)
        self._carry(spec, args)
        self._numbers(spec, clause, args)
        for a, s in spec.args.items():
            if s.type == "text" and clause.label is not None and a not in args:
                args[a] = clause.label
        for a, s in enums:
            if a in args or not s.required or s.values_from:
                continue
            if a.startswith(("to_", "from_")):
                continue
            for etype in s.entities:
                value = self.context.get(etype) or self._from_later(later, s, self._allowed(spec, a, s, args))
                if value and value in self._allowed(spec, a, s, args):
                    args[a] = value
                    break
        # a thing taken from the clause before keeps the side and level it was said with there ("AP of the left
        # knee, then a lateral"); a side said for another organ or anatomy is never carried to this one
        self._carry(spec, args)
        for a, s in enums:
            if a in args or not s.required or not s.values_from or s.values_from.split(".")[0] in args:
                continue
            value = self._from_later(later, s, self._allowed(spec, a, s, args))
            if value:
                args[a] = value
        self._pair(spec, args)
        return args

    def _switched_off(self, spec: SkillSpec, a: str, value: str, allowed: tuple[str, ...], clause: _Clause) -> str:
        """"turn off colour doppler": a setting said after a switching-off verb is the one to leave, not the one
        to choose. With one other value it can take (B-mode) that is the setting; with more, the planner asks."""
        if a not in spec.at_least_one or not _switches_off(clause):
            return value
        clause.switched_off = True
        others = [v for v in allowed if v != value]
        if len(others) != 1:
            self.questions.append(f"Which {a} instead of {value}: {' or '.join(others)}?")
            return value
        return others[0]

    def _allowed(self, spec: SkillSpec, name: str, s: ArgSpec, args: dict[str, Any]) -> tuple[str, ...]:
        allowed = self.cs.allowed_values(s)
        if s.values_from:
            other, attr = s.values_from.split(".")
            ov = args.get(other)
            ev = self.cs.entity_value(ov, spec.args[other]) if isinstance(ov, str) else None
            if ev is not None:
                choices = ev.attr(attr) or ()
                allowed = tuple(v for v in allowed if v in choices)
        return allowed

    def _from_later(self, later: list[_Clause], s: ArgSpec, allowed: tuple[str, ...]) -> str | None:
        for c in later:
            for it in c.items:
                v = it.value_for(s.entities, allowed)
                if v is not None:
                    return v
        return None

    def _pick(self, clause: _Clause, name: str, s: ArgSpec, allowed: tuple[str, ...]) -> str | None:
        toks = clause.tokens
        prep = name.split("_")[0] if name.startswith(("from_", "to_")) else None
        for it in clause.items:
            if it.used:
                continue
            v = it.value_for(s.entities, allowed)
            if v is None:
                v = it.value_for(s.entities, self.cs.allowed_values(s) + s.exclude)
            after = toks[it.end + 1:it.end + 2]
            if v is None and (prep is not None or after == ["one"] or toks[max(0, it.start - 2):it.start]
                              in (["with", "the"], ["using", "the"])):
                words = [toks[k] for k in sorted(it.positions) if toks[k] not in SOFT and toks[k] not in
                         ("to", "from", "toward", "towards", "into", "over")]
                if len(words) == 1:
                    v = self._by_first_word(words[0], s, allowed)
            if v is None:
                continue
            if prep is not None:
                before = toks[max(0, it.start - 3):it.start]
                marks = {"from": ("from", "of"), "to": ("to", "into", "towards", "toward", "over")}[prep]
                other = {"from": ("to", "into", "towards", "toward"), "to": ("from",)}[prep]
                own = [toks[k] for k in sorted(it.positions)][:1]
                if own and own[0] in marks:
                    before = before + own
                subject = prep == "from" and self.verb_start is not None and it.end < self.verb_start \
                    and not any(b in other for b in before)
                if not subject and (not any(b in marks for b in before) or any(b in other for b in before[-1:])):
                    continue
            clause.use(it)
            return v
        return None

    def _by_first_word(self, word: str, s: ArgSpec, allowed: tuple[str, ...]) -> str | None:
        """"to the left" for an arm: the one value whose names start with that word ("left arm")."""
        hits = {v for v in allowed for ent in s.entities
                for syn in (self.cs.entities[ent].values[v].synonyms if v in self.cs.entities[ent].values else ())
                if syn.split()[0] == word}
        return hits.pop() if len(hits) == 1 else None

    def _pair(self, spec: SkillSpec, args: dict[str, Any]) -> None:
        """``from_arm`` / ``to_arm``: the giver is the arm the facts say holds the object; the one not
        named is the other arm."""
        pairs = [a for a in spec.args if a.startswith("from_")]
        for f in pairs:
            t = "to_" + f[len("from_"):]
            if t not in spec.args:
                continue
            values = [v for v in self.cs.allowed_values(spec.args[f])]
            if f not in args:
                held = [v for v in values if self.world.facts.get(f"holding[{v}]") in args.values()
                        and v != args.get(t)]
                if len(held) == 1:
                    args[f] = held[0]
            if f in args and t not in args:
                rest = [v for v in values if v != args[f]]
                if len(rest) == 1:
                    args[t] = rest[0]
            elif t in args and f not in args:
                rest = [v for v in values if v != args[t]]
                if len(rest) == 1:
                    args[f] = rest[0]

    def _carry(self, spec: SkillSpec, args: dict[str, Any]) -> None:
        """A side or level said earlier in the same command holds for a later mention of the same thing:
        "lateral view of the right knee, collimate to the knee" collimates to the right knee. Only within one
        command, and only for the same parent value: "the left hip ... the knee" carries nothing."""
        for a, s in spec.args.items():
            if a in args or not s.values_from:
                continue
            other = s.values_from.split(".")[0]
            if other not in args:
                continue
            for step in reversed(self.done):
                if step.args.get(other) == args[other] and a in step.args:
                    if step.args[a] in self._allowed(spec, a, s, args):
                        args[a] = step.args[a]
                    break

    def _same_as_before(self, spec: SkillSpec, args: dict[str, Any], clause: _Clause) -> None:
        """"lateral of the pelvis and a shot, then the same on the sacrum": "the same" keeps what the last step
        of this skill chose and this clause does not say (the lateral view), rather than the default (AP)."""
        if "same" not in clause.tokens:
            return
        prev = next((st for st in reversed(self.done) if st.skill == spec.name), None)
        if prev is None:
            return
        for a, s in spec.args.items():
            if a not in args and a in prev.args and s.type == "enum" and not s.values_from \
                    and prev.args[a] in self._allowed(spec, a, s, args):
                args[a] = prev.args[a]

    def _inherit(self, spec: SkillSpec, args: dict[str, Any]) -> set[str]:
        """"AP of the pelvis and a shot, then lateral view and another shot": a step the person named only
        in part (the view) acts on what the clause before set up, as a radiographer would read it. Only the
        required names no other argument depends on come from there; side and level then follow that same
        anatomy through ``_carry``. Returns the arguments so filled."""
        filled: set[str] = set()
        for a, s in spec.args.items():
            if a in args or s.type != "enum" or not s.required or s.values_from or a.startswith(("to_", "from_")):
                continue
            for etype in s.entities:
                value = self.context.get(etype)
                if value is not None and value in self._allowed(spec, a, s, args):
                    args[a] = value
                    filled.add(a)
                    break
        if filled:
            self._carry(spec, args)
        return filled

    def _infer_parents(self, spec: SkillSpec, args: dict[str, Any]) -> None:
        """A value that only one parent allows names the parent: "L4" means the lumbar spine."""
        for a, s in spec.args.items():
            if not s.values_from or a not in args:
                continue
            other, attr = s.values_from.split(".")
            if other in args:
                continue
            owners = [v for v in self.cs.allowed_values(spec.args[other])
                      if args[a] in ((self.cs.entity_value(v, spec.args[other]) or _NOATTR).attr(attr) or ())]
            if len(owners) == 1:
                args[other] = owners[0]

    def _numbers(self, spec: SkillSpec, clause: _Clause, args: dict[str, Any]) -> None:
        cs = self.cs
        toks = clause.tokens
        numeric = [(a, s) for a, s in spec.args.items() if s.type in ("number", "vector3") and a not in args]
        if not numeric:
            return
        for q in clause.qtys:
            if q.used:
                continue
            near = set(toks[max(0, q.start - 4):q.start]) | set(toks[q.end + 1:q.end + 4])
            best: str | None = None
            candidates = []
            for a, s in numeric:
                if a in args:
                    continue
                dim = _dimension(s, cs, spec, args)
                if s.unit_from and dim is None:
                    dim = q.dim
                if q.dim is not None and dim is not None and q.dim != dim:
                    continue
                if q.dim is not None and dim is None:
                    continue
                candidates.append((a, s))
            for a, s in candidates:
                if any(w in near for k in s.keywords for w in tokenize(k)):
                    best = a
                    break
            if best is None and candidates:
                best = candidates[0][0]
            if best is None:
                continue
            s = spec.args[best]
            value = -abs(q.value) if q.negative else q.value
            if s.type == "vector3":
                named = {k for it in clause.items if it.used for k in it.positions}
                around = {toks[k] for k in range(max(0, q.start - 4), min(len(toks), q.end + 4))
                          if k not in named and not q.start <= k <= q.end}
                axis = next((v for words, v in _OFFSET_AXES if around & words), None)
                if axis is None:
                    continue
                index, sign = axis
                said = next(w for w, v in _OFFSET_AXES if v == axis)
                for it in clause.items:
                    if not it.used and any(toks[k] in said for k in it.positions):
                        clause.use(it)
                vec: list[float] = [0, 0, 0]
                vec[index] = sign * abs(value)
                args[best] = vec
            else:
                args[best] = _clean_number(self._signed(spec, args, value, toks))
            q.used = True
        if clause.small:
            for a, s in numeric:
                if a in args or not s.range_from:
                    continue
                ref = args.get(s.range_from)
                ev = cs.entity_value(ref, spec.args[s.range_from]) if isinstance(ref, str) else None
                if ev is not None and ev.small is not None:
                    args[a] = _clean_number(self._signed(spec, args, ev.small, toks))

    def _signed(self, spec: SkillSpec, args: dict[str, Any], value: float, toks: list[str]) -> float:
        """Sign words of the chosen axis ("tilt back" +, "toward the feet" -) set the amount's sign."""
        for a, s in spec.args.items():
            if s.type != "enum" or a not in args:
                continue
            ev = self.cs.entity_value(args[a], s)
            if ev is None or not (ev.positive or ev.negative):
                continue
            if any(find_phrase(toks, tuple(tokenize(w)), set(), allow_gaps=False) for w in ev.negative):
                return -abs(value)
            if any(find_phrase(toks, tuple(tokenize(w)), set(), allow_gaps=False) for w in ev.positive):
                return abs(value) if value >= 0 or "minus" not in toks else value
        return value

    # -- implied steps ------------------------------------------------------------------------
    def establish(self, spec: SkillSpec, args: dict[str, Any], leftovers: list[_Item], clause: _Clause,
                  depth: int) -> list[Step]:
        """Steps that make ``spec``'s preconditions true, where the person named what they act on."""
        if depth > 3:
            return []
        if any(a not in args for a, s in spec.args.items() if s.required and s.type == "enum"):
            return []
        named = {v for it in clause.items for _, v in it.options}
        out: list[Step] = []
        said = conditions_of(self.cs, spec, args)
        for key, op, want in conditions_of(self.cs, spec, {**self._sole_defaults(spec, args), **args}):
            # a defaulted argument with one possible value ("insert" always goes into the vessel) names its
            # value as surely as the person would, but only far enough to look for it: nothing that moves
            only_look = (key, op, want) not in said
            have = self.world.facts.get(key, _UNSET)
            holds = have is not _UNSET and ((have == want) if op == "==" else (have != want))
            if op == "!=" and any(_bind(k, key) is not None for k, _ in effect_templates(spec)):
                continue
            acted_on = frozenset(v for v in args.values() if isinstance(v, str))
            for cspec, cargs, consumed in self._establishers(key, op, want, leftovers, named, clause, acted_on):
                if cspec.name == spec.name or (only_look and cspec.hazard is not Hazard.NONE):
                    continue
                # the fact holds, but the person named a new setting for it ("... and a lateral shot")
                if holds and not (consumed and all(not v.startswith("{") for k, v in effect_templates(cspec)
                                                   if _bind(k, key) is not None)):
                    continue
                for it in consumed:
                    clause.use(it)
                out.extend(self.establish(cspec, cargs, leftovers, clause, depth + 1))
                out.append(Step(skill=cspec.name, args=cargs))
                apply_step(self.cs, cspec, cargs, self.world)
                break
        return out

    def _sole_defaults(self, spec: SkillSpec, args: dict[str, Any]) -> dict[str, Any]:
        """Enum arguments left out whose default is the only value they may take."""
        out: dict[str, Any] = {}
        for a, s in spec.args.items():
            if a in args or s.type != "enum" or s.default is None:
                continue
            if self._allowed(spec, a, s, args) == (s.default,):
                out[a] = s.default
        return out

    def _establishers(self, key: str, op: str, want: Any, leftovers: list[_Item], named: set[str],
                      clause: _Clause, acted_on: frozenset[str] = frozenset(),
                      ) -> list[tuple[SkillSpec, dict[str, Any], list[_Item]]]:
        """Skills that would make ``key op want`` true, with the arguments the clause names for them.

        A name counts for a step only if the step it prepares does not already act on it (``acted_on``): "dilate
        the vessel with psm2" grasps the vessel, and the same word "vessel" must not also justify handing the
        vessel away to empty the gripper first."""
        found: list[tuple[SkillSpec, dict[str, Any], list[_Item]]] = []
        for cspec in self.cs.skills.values():
            if cspec.hazard.needs_confirmation:
                continue
            for ktpl, vtpl in effect_templates(cspec):
                bound = _bind(ktpl, key)
                if bound is None:
                    continue
                value_named = False
                if vtpl.startswith("{"):
                    var = vtpl[1:-1]
                    if op == "==":
                        bound[var] = want
                        value_named = str(want) in named
                else:
                    lit = {"true": True, "false": False}.get(vtpl, vtpl)
                    if (op == "==" and lit != want) or (op == "!=" and lit == want):
                        continue
                args = dict(bound)
                consumed: list[_Item] = []
                for a, s in cspec.args.items():
                    if a in args or s.type != "enum":
                        continue
                    allowed = self._allowed(cspec, a, s, args)
                    for it in leftovers:
                        # a word that is also part of another name ("head" in "toward the head") is too
                        # ambiguous to justify a step of its own
                        if it.used or it in consumed or any(v in acted_on for _, v in it.options) \
                                or any(it.overlaps(o) and not set(o.options) & set(it.options) for o in clause.items):
                            continue
                        v = it.value_for(s.entities, allowed)
                        if v is not None:
                            args[a] = v
                            consumed.append(it)
                            break
                if consumed:
                    self._same_as_before(cspec, args, clause)
                    inherited = self._inherit(cspec, args)
                    # "two AP shots and two lateral shots of the pelvis": the anatomy comes later
                    for a, s in sorted(cspec.args.items(), key=lambda kv: kv[1].values_from is not None):
                        if a in args or s.type != "enum" or (s.values_from or ".").split(".")[0] in inherited:
                            continue
                        v = self._from_later(self.later, s, self._allowed(cspec, a, s, args))
                        if v is not None:
                            args[a] = v
                # "a lateral shot at L2": the level names its anatomy, the lumbar spine
                self._infer_parents(cspec, args)
                self._carry(cspec, args)
                if any(a not in args and s.required and s.type == "enum" and not s.values_from
                       for a, s in cspec.args.items()):
                    continue
                if not (cspec.hazard is Hazard.NONE or consumed or value_named):
                    continue
                if any(str(v) not in self.cs.allowed_values(cspec.args[a]) for a, v in args.items()
                       if cspec.args[a].type == "enum"):
                    continue
                self._infer_parents(cspec, args)
                found.append((cspec, args, consumed))
        found.sort(key=lambda f: -len(f[2]))
        return found


def _past_article(toks: list[str], j: int) -> int:
    """After a fraction: past "a" / "of a" ("half a centimetre", "a quarter of a turn")."""
    for words in (("of", "a"), ("of", "an"), ("a",), ("an",)):
        if tuple(toks[j:j + len(words)]) == words:
            return j + len(words)
    return j


def _counted_at(tokens: list[str], k: int) -> bool:
    """A number at ``k`` that counts a noun right after it ("2 shots", "1 more exposure")."""
    return k < len(tokens) and _NUMBER.match(tokens[k]) is not None \
        and any(tokens[m] in _count_nouns() for m in range(k + 1, min(k + 4, len(tokens))))


#: what may follow "another" / "one more" when the noun is left out ("... and take another")
_ELLIPSIS_END = frozenset([",", ".", ";", "!", "?", "and", "then", "please", "too", "now"])


def _elided_nouns(tokens: list[str]) -> list[str]:
    """"take a shot, tilt forward a bit and take another": "another" (or "one more") with its noun left out
    counts one more of the last countable thing the command named (a shot, an image, a spin). Without a noun
    before it, nothing is filled in, and the words are read as they were said."""
    out: list[str] = []
    n = len(tokens)
    for i, t in enumerate(tokens):
        out.append(t)
        more = t == "another" or (t == "more" and i > 0 and tokens[i - 1] == "1")
        if not more or (i + 1 < n and tokens[i + 1] not in _ELLIPSIS_END):
            continue
        noun = next((w for w in reversed(tokens[:i]) if w in _count_nouns()), None)
        if noun is not None:
            out.append(noun[:-1] if noun.endswith("s") and noun[:-1] in _count_nouns() else noun)
    return out


def _establishes(spec: SkillSpec, other: SkillSpec) -> bool:
    """Whether ``spec`` sets a fact that ``other`` needs (a view before a shot)."""
    made = {e.split("=")[0].strip() for e in spec.effects}
    return any(c.split("==")[0].split("!=")[0].strip() in made for c in other.preconditions)


@functools.cache
def _exposure_verbs_of(domain: str) -> dict[str, SkillSpec]:
    """Verbs that, with a view as their object, ask for an exposure: the first word of a radiation skill's
    phrases of the form "take a shot", "acquire an image"."""
    out: dict[str, SkillSpec] = {}
    for spec in load_command_set(domain).skills.values():
        if spec.hazard is not Hazard.RADIATION:
            continue
        for syn in spec.synonyms:
            words = tokenize(syn)
            if len(words) >= 3 and words[1] in ("a", "an", "the") and words[0].isalpha():
                out.setdefault(words[0], spec)
    return out


class _NoAttr:
    def attr(self, name: str) -> tuple[str, ...] | None:
        return None


_NOATTR = _NoAttr()
_UNSET = object()


def _bind(template: str, key: str) -> dict[str, Any] | None:
    names = re.findall(r"\{([a-z_]+)\}", template)
    pattern = re.escape(template)
    for n in names:
        pattern = pattern.replace(re.escape("{" + n + "}"), f"(?P<{n}>[^\\]]+)")
    m = re.fullmatch(pattern, key)
    if m is None:
        return None
    return dict(m.groupdict())


def _clean_number(v: float) -> float | int:
    v = round(v, 6)
    return int(v) if float(v).is_integer() else v
