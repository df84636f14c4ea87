"""Checks of the rule planner: what in a clause is refused by name, or asked about, instead of planned.

Run around stages 2-4 (``steps.StepBuilder`` calls them): a word no command set has, a name the skill
needs but the command set does not know, a verb with no skill, a motion of something in the room.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from medrobot_llm.core.command_set import ArgSpec, Hazard, SkillSpec
from medrobot_llm.core.plan import Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.language.lexicon import shared_vocabulary
from medrobot_llm.language.phrases import SOFT
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import FILLER, MANNER_WORDS, ROOM_OBJECTS, UNSUPPORTED_ACTIONS, UNSUPPORTED_TARGETS
from medrobot_llm.planning.rule.model import (
    POSSESSIVE,
    VERB_PARTICLES,
    Clause,
    Qty,
    Question,
    Refusal,
    Stage,
    agent_kinds,
    clean_number,
    dimension,
    known,
    numbered_kind,
    span_of,
    targets,
    unknown_words,
)

#: entity kinds that name what a skill acts on; an unknown word where one is needed is refused
_NAMED_KINDS = frozenset(("object", "organ", "anatomy", "mode"))


@functools.cache
def _view_phrases() -> tuple[str, ...]:
    views = shared_vocabulary().unsupported_views
    return tuple(sorted((" ".join(tokenize(v)) for v in views), key=lambda v: -len(v)))


@functools.cache
def _mode_phrases() -> tuple[str, ...]:
    modes = shared_vocabulary().unsupported_modes
    return tuple(sorted((" ".join(tokenize(m)) for m in modes), key=lambda m: -len(m)))


class ClauseChecks(Stage):
    """Refusals and questions about what a clause says, before or after its steps are built: words no
    command set has, names it does not know, a verb with nothing the robot can do."""

    def exposure_limit(self, clauses: list[Clause]) -> None:
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
            raise Refusal(f"the command asks for {total} exposures, above the limit of {limit} in one plan",
                          code=Reason.EXPOSURE_LIMIT)

    def check_clause(self, clause: Clause) -> None:
        toks = clause.tokens
        for i, t in enumerate(toks):
            if i in clause.covered:
                continue
            if t in UNSUPPORTED_ACTIONS:
                raise Refusal(f"'{t}' is not an action of the {self.cs.domain} command set "
                              f"(its skills: {', '.join(self.cs.skills)})", code=Reason.UNKNOWN_SKILL)
            if t in UNSUPPORTED_TARGETS:
                raise Refusal(f"'{t}' is not in the {self.cs.domain} command set ({targets(self.cs)})")
            if t in shared_vocabulary().unsupported_settings:
                raise Refusal(f"'{t}' is not a setting of the {self.cs.domain} command set: it cannot be chosen "
                              f"(its skills: {', '.join(self.cs.skills)})")
            if t in self.state.numbered_prefixes and i + 1 < len(toks) and toks[i + 1].isdigit():
                what = numbered_kind(self.lex, t)
                raise Refusal(f"'{t}{toks[i + 1]}' is not a known {what} in the {self.cs.domain} command set")
            if re.fullmatch(r"(psm|arm|l|t)\d+", t):
                raise Refusal(f"'{t}' is not known in the {self.cs.domain} command set ({targets(self.cs)})")
        joined = " " + " ".join(toks) + " "
        m = re.search(r" (third|fourth|fifth|sixth|3rd|4th|5th|another|extra|additional) (arm|instrument|psm|"
                      r"manipulator|tool|gripper|robot) ", joined)
        if m and "arm" in self.cs.entities:
            raise Refusal(f"there is no {m.group(1)} {m.group(2)}: the {self.cs.domain} command set has "
                          f"{', '.join(v for v, ev in self.cs.entities['arm'].values.items() if not ev.expands_to)}")
        for words in sorted(self.lex.foreign_entities, key=lambda w: -len(w)):
            if f" {words} " in joined:
                span = span_of(toks, words.split())
                if span is not None and not (set(span) & clause.covered):
                    raise Refusal(f"'{words}' is not in the {self.cs.domain} command set ({targets(self.cs)})")
        for words in _view_phrases():
            span = span_of(toks, words.split())
            if span is not None and not set(span) <= clause.covered:
                views = self.cs.entities.get("view")
                have = f" (its views: {', '.join(views.values)})" if views else ""
                raise Refusal(f"'{words}' is not a view of the {self.cs.domain} command set{have}")
        for words in _mode_phrases():
            if f" {words} " in joined:
                span = span_of(toks, words.split())
                if span is not None and not set(span) <= clause.covered:
                    raise Refusal(f"'{words}' is not in the {self.cs.domain} command set: it has no such mode "
                                  f"or procedure (its skills: {', '.join(self.cs.skills)})")

    def check_names(self, clause: Clause, main: list[tuple[SkillSpec, dict[str, Any]]]) -> None:
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
                unknown = unknown_words(self.lex, clause)
                if unknown:
                    kind = min(kinds)
                    raise Refusal(f"'{unknown}' is not a known {kind} in the {self.cs.domain} command set "
                                  f"({targets(self.cs)})", code=Reason.UNKNOWN_WORD)

    def unknown_action(self, clause: Clause, size: int) -> None:
        """"measure the left kidney", "fetch the needle with psm1": the verb is not one the command set knows,
        and no skill phrase is in the clause, so the names alone would pick a skill (a move to the kidney, a
        move to the needle). That is a guess; the unknown verb is refused by name instead."""
        if size:
            return
        # "then one more time": the count's own word is no verb
        head = next((t for t in clause.tokens if t.isalpha() and len(t) > 2 and t not in FILLER and t not in SOFT
                     and not t.endswith("ly") and t not in MANNER_WORDS
                     and not (clause.count and t in ("time", "times"))), None)
        if head is not None and not known(self.lex, head):
            raise Refusal(f"'{head}' is not an action of the {self.cs.domain} command set "
                          f"(its skills: {', '.join(self.cs.skills)})", understood=False, code=Reason.UNKNOWN_SKILL)

    def agent_only(self, clause: Clause, size: int) -> None:
        """"what is the right arm holding", "psm1 please": an arm named with no word for what it should do. A
        skill picked because it takes nothing but an arm (release) would be a guess, so the planner asks."""
        agents = agent_kinds(self.cs)
        if size or clause.qtys or not clause.items or not agents \
                or not all(e in agents for it in clause.items for e, _ in it.options):
            return
        who = " and ".join(" ".join(clause.tokens[k] for k in sorted(it.positions)) for it in clause.items)
        raise Question(f"What should '{who}' do? Say the action too.")

    def room_object(self, clause: Clause, kind: str, name: str) -> None:
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
            if toks[end] in VERB_PARTICLES:
                continue
            k = end + 1
            while k < len(toks) and (toks[k] in POSSESSIVE or toks[k] in SOFT):
                k += 1
            if k < len(toks) and toks[k] in ROOM_OBJECTS:
                raise Refusal(f"'{toks[k]}' is not moved by any skill of the {self.cs.domain} command set; "
                              f"it moves only its own robot (its skills: {', '.join(self.cs.skills)})")

    def wrong_object(self, clause: Clause, main: list[tuple[SkillSpec, dict[str, Any]]], out: list[Step]) -> None:
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
                        raise Refusal(f"{spec.name} takes {a} {' or '.join(allowed)} only; '{wrong}' cannot be "
                                      f"used for it", code=Reason.NOT_ALLOWED)

    def out_of_range(self, q: Qty, main: list[tuple[SkillSpec, dict[str, Any]]]) -> None:
        """A quantity the planner cannot place is still refused when no argument of its kind could take it:
        "eight centimetres to the left of the needle" is over the offset limit whatever the direction."""
        if q.dim is None:
            return
        fits = [(spec, a, s, s.min, s.max) for spec, args in main for a, s in spec.args.items()
                if s.type in ("number", "vector3") and dimension(s, self.cs, spec, args) == q.dim
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
            raise Refusal(f"{spec.name}: {a} = {clean_number(value)} {s.unit} ('{q.text}') is outside the limit "
                          f"of {clean_number(limit)} {s.unit} (allowed {clean_number(lo)}..{clean_number(hi)}"
                          f" {s.unit})", code=Reason.OUT_OF_RANGE)
