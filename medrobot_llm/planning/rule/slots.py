"""Stage 3 of the rule planner: the arguments of the chosen skill.

Names and numbers come from the clause; what it leaves out may come from what the command said before
(``ParseState.context``), from a later clause, or from what the facts allow (the other arm of a pair).
"""

from __future__ import annotations

from typing import Any

from medrobot_llm.core.command_set import ArgSpec, SkillSpec
from medrobot_llm.language.phrases import SOFT, find_phrase
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import ADDED_WORDS, SETTING_DIMENSIONS
from medrobot_llm.planning.rule.amounts import AmountFiller
from medrobot_llm.planning.rule.lists import Listed, combine_lists
from medrobot_llm.planning.rule.model import (
    Clause,
    Item,
    ParseState,
    Question,
    Stage,
    allowed_values,
    clean_number,
    dimension,
    from_later,
    infer_parents,
    switches_off,
)

class SlotFiller(Stage):
    """A chosen skill's arguments from the clause: the names and numbers it says, what the command said
    before, and what the facts allow."""

    def __init__(self, state: ParseState) -> None:
        super().__init__(state)
        self.amounts = AmountFiller(state)

    def fill(self, spec: SkillSpec, clause: Clause, later: list[Clause]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        toks = clause.tokens
        for phrase, implied in spec.implied.items():
            if find_phrase(toks, tuple(tokenize(phrase)), set(), allow_gaps=False):
                # "a quarter turn counterclockwise": the implied amount takes the sign said with it
                args.update({a: clean_number(self.amounts.signed(spec, args, v, toks))
                             if isinstance(v, (int, float)) and spec.args[a].type == "number" else v
                             for a, v in implied.items()})
        enums = [(a, s) for a, s in spec.args.items() if s.type == "enum"]
        enums.sort(key=lambda kv: kv[1].values_from is not None)
        for a, s in enums:
            if a in args:
                continue
            allowed = allowed_values(self.cs, spec, a, s, args)
            others = frozenset(e for b, x in spec.args.items() if b != a for e in x.entities)
            item = self._pick(clause, a, s, allowed, others)
            if item is not None:
                args[a] = self._switched_off(spec, a, item, allowed, clause)
        self._named_by_way(spec, clause, args)
        infer_parents(self.cs, spec, args)
        self.same_as_before(spec, args, clause)
        self.carry(spec, args)
        self.amounts.numbers(spec, clause, args)
        self._way_as_before(spec, clause, args)
        for a, s in spec.args.items():
            if s.type == "text" and clause.label is not None and a not in args:
                args[a] = clause.label
        for a, s in enums:
            if a in args or not s.required or s.values_from:
                continue
            if a.startswith(("to_", "from_")):
                continue
            for etype in s.entities:
                value = self.state.context.get(etype) or from_later(later, s, allowed_values(self.cs, spec, a, s, args))
                if value and value in allowed_values(self.cs, spec, a, s, args):
                    args[a] = value
                    break
        # a thing taken from the clause before keeps the side and level it was said with there ("AP of the left
        # knee, then a lateral"); a side said for another organ or anatomy is never carried to this one
        self.carry(spec, args)
        for a, s in enums:
            if a in args or not s.required or not s.values_from or s.values_from.split(".")[0] in args:
                continue
            value = from_later(later, s, allowed_values(self.cs, spec, a, s, args))
            if value:
                args[a] = value
        self._pair(spec, args)
        return args

    def _switched_off(self, spec: SkillSpec, a: str, value: str, allowed: tuple[str, ...], clause: Clause) -> str:
        """"turn off colour doppler": a setting said after a switching-off verb is the one to leave, not the one
        to choose. With one other value it can take (B-mode) that is the setting; with more, the planner asks."""
        if a not in spec.at_least_one or not switches_off(clause):
            return value
        clause.switched_off = True
        others = [v for v in allowed if v != value]
        if len(others) != 1:
            self.state.questions.append(f"Which {a} instead of {value}: {' or '.join(others)}?")
            return value
        return others[0]

    def _pick(self, clause: Clause, name: str, s: ArgSpec, allowed: tuple[str, ...],
              others: frozenset[str] = frozenset()) -> str | None:
        toks = clause.tokens
        prep = name.split("_")[0] if name.startswith(("from_", "to_")) else None
        for it in clause.items:
            if it.used:
                continue
            v = it.value_for(s.entities, allowed)
            if v is None:
                v = it.value_for(s.entities, self.cs.allowed_values(s) + s.exclude)
            after = toks[it.end + 1:it.end + 2]
            # "the right one" is this argument's value by its first word only when the skill has no other
            # argument the word names: "AP of the left knee, then the right one" is the right knee, not a right
            # oblique of the left one
            if v is None and (prep is not None or (after == ["one"] and not any(e in others for e, _ in it.options))
                              or toks[max(0, it.start - 2):it.start] in (["with", "the"], ["using", "the"])):
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
                subject = prep == "from" and self.state.verb_start is not None and it.end < self.state.verb_start \
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
                held = [v for v in values if self.state.world.facts.get(f"holding[{v}]") in args.values()
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

    def carry(self, spec: SkillSpec, args: dict[str, Any]) -> None:
        """A side or level said earlier in the same command holds for a later mention of the same thing:
        "lateral view of the right knee, collimate to the knee" collimates to the right knee. Only within one
        command, and only for the same parent value: "the left hip ... the knee" carries nothing."""
        for a, s in spec.args.items():
            if a in args or not s.values_from:
                continue
            other = s.values_from.split(".")[0]
            if other not in args:
                continue
            for step in reversed(self.state.done):
                if step.args.get(other) == args[other] and a in step.args:
                    if step.args[a] in allowed_values(self.cs, spec, a, s, args):
                        args[a] = step.args[a]
                    break

    def _way_as_before(self, spec: SkillSpec, clause: Clause, args: dict[str, Any]) -> None:
        """"tilt forward 5 degrees, then another 5": an amount alone goes the way the step before went (the
        second tilt went back, undoing the first); a way or a sign said with it is its own."""
        if clause.skills or clause.items or any(q.negative for q in clause.qtys):
            return
        ways: tuple[str, ...] = ()
        for a, s in spec.args.items():
            ways += s.positive + s.negative
            ev = self.cs.entity_value(args[a], s) if s.type == "enum" and isinstance(args.get(a), str) else None
            if ev is not None:
                ways += ev.positive + ev.negative
        if self.amounts.sign_said(ways, clause.tokens):
            return
        prev = next((st for st in reversed(self.state.done) if st.skill == spec.name), None)
        for a, s in spec.args.items():
            was = prev.args.get(a) if prev is not None else None
            if s.type == "number" and isinstance(args.get(a), (int, float)) and isinstance(was, (int, float)) \
                    and was < 0 < args[a]:
                args[a] = -args[a]

    def same_as_before(self, spec: SkillSpec, args: dict[str, Any], clause: Clause) -> None:
        """"lateral of the pelvis and a shot, then the same on the sacrum": "the same" keeps what the last step
        of this skill chose and this clause does not say (the lateral view), rather than the default (AP). So
        does a clause without a verb of its own ("lateral of the left hip, then the right one": a lateral)."""
        if "same" in clause.tokens:
            self.amounts.same_amount(spec, args, clause)
        elif clause.skills:
            return
        prev = next((st for st in reversed(self.state.done) if st.skill == spec.name), None)
        if prev is None:
            return
        if not clause.items and not clause.qtys and "same" not in clause.tokens:
            # "sweep caudal 4 cm, then one more time": the step again, as it was
            args.update({a: v for a, v in prev.args.items() if a not in args})
            return
        for q in clause.qtys:
            if q.dim is None and not q.used:
                if clause.tokens[q.end + 1:q.end + 2] == ["more"]:
                    # "lift it 5 mm, then two more": two more millimetres, or two more lifts?
                    raise Question(f"'{q.text} more' what: more {spec.name.replace('_', ' ')} steps, or more of the "
                                   "amount? Say it with its unit or with the step")
                self.amounts.unit_from_before(clause, q)
        # the amount's own kind, or for a bare one the kind of the skill's first number ("set the force to 10,
        # then another 2")
        first = next((dimension(x, self.cs, spec, args) for x in spec.args.values() if x.type == "number"), None)
        setting = bool(spec.at_least_one) or any((q.dim or first) in SETTING_DIMENSIONS for q in clause.qtys)
        if setting and clause.qtys and any(t == "another" or t in ADDED_WORDS for t in clause.tokens):
            # "set the depth to 9 cm, then another 2 cm": a setting again by an amount is a change of it
            raise Question(f"'{clause.qtys[0].text}' added to what? A {spec.name} sets a value; say the new "
                           "value itself")
        for a, s in spec.args.items():
            if a not in args and a in prev.args and s.type == "enum" and not s.values_from \
                    and prev.args[a] in allowed_values(self.cs, spec, a, s, args):
                args[a] = prev.args[a]

    def inherit(self, spec: SkillSpec, args: dict[str, Any]) -> set[str]:
        """"AP of the pelvis and a shot, then lateral view and another shot": a step the person named only
        in part (the view) acts on what the clause before set up, as a radiographer would read it. Only the
        required names no other argument depends on come from there; side and level then follow that same
        anatomy through ``_carry``. Returns the arguments so filled."""
        filled: set[str] = set()
        for a, s in spec.args.items():
            if a in args or s.type != "enum" or not s.required or s.values_from or a.startswith(("to_", "from_")):
                continue
            for etype in s.entities:
                value = self.state.context.get(etype)
                if value is not None and value in allowed_values(self.cs, spec, a, s, args):
                    args[a] = value
                    filled.add(a)
                    break
        if filled:
            self.carry(spec, args)
        return filled

    def _named_by_way(self, spec: SkillSpec, clause: Clause, args: dict[str, Any]) -> None:
        """"tilt the probe 10 degrees toward the head": the axis is not named, but the way said is the sign of
        exactly one axis (pitch toward the head is +), so it names that axis; and the words that said the way
        ("the patient's left") are used by the sign, not left over as a side nobody asked for."""
        toks = clause.tokens
        for a, s in spec.args.items():
            if s.type != "enum":
                continue
            spans: dict[str, set[int]] = {}
            for v in allowed_values(self.cs, spec, a, s, args):
                ev = self.cs.entity_value(v, s)
                if ev is not None and (ev.positive or ev.negative):
                    spans[v] = {k for w in (*ev.positive, *ev.negative)
                                for at in find_phrase(toks, tuple(tokenize(w)), set(), allow_gaps=False) for k in at}
            if a not in args:
                said = [v for v, at in spans.items() if at]
                if len(said) != 1:
                    continue
                args[a] = said[0]
            way = spans.get(args[a], set())
            for it in clause.items:
                if not it.used and way and it.positions <= way:
                    clause.use(it)

    def conjoined(self, spec: SkillSpec, args: dict[str, Any], clause: Clause) -> list[tuple[SkillSpec,
                                                                                             dict[str, Any]]]:
        """"locate the needle and the shunt", "the right kidney and the left kidney": one more step per extra
        value of an argument already filled (a side only among the sides its organ or anatomy has). Lists of
        two arguments in one clause ("AP and lateral of both hips") are combined by ``combine_lists``."""
        extra: list[Listed] = []
        for a, s in spec.args.items():
            if s.type != "enum" or a not in args or a.startswith(("from_", "to_")):
                continue
            own = self._own_qualifiers(spec, a, args, clause)
            for it in clause.items:
                # "... and the left kidney": the side in front of the noun does not hide the "and"
                named = {k for o in clause.items if o is not it and o.end < it.start for k in o.positions}
                before = [w for k, w in enumerate(clause.tokens[:it.start]) if w not in SOFT
                          and not (k in named and k > max((j for j, t in enumerate(clause.tokens[:it.start])
                                                           if t in ("and", ",")), default=-1))]
                if it.used or not before or before[-1] not in ("and", ",", "or", "&", "plus"):
                    continue
                v = it.value_for(s.entities, allowed_values(self.cs, spec, a, s, args))
                if v is not None and v != args[a]:
                    clause.use(it)
                    more = {**args, a: v}
                    # "... and the left kidney": the noun after the side is the same kidney, not a new name
                    for other in clause.items:
                        if not other.used and other.start == it.end + 1 and any(
                                o in more.values() for _, o in other.options):
                            clause.use(other)
                    if own is not None:
                        own.bind(it, more)
                    paired = self._gapped(spec, a, it, more, clause)
                    extra.append(Listed(a, it.start, more, paired))
            if own is not None:
                own.check_first(args)
        return [(spec, more) for more in combine_lists(spec, args, extra)]

    def _own_qualifiers(self, spec: SkillSpec, a: str, args: dict[str, Any], clause: Clause) -> _OwnQualifiers | None:
        """The arguments that depend on ``a`` (a side depends on its anatomy or organ), when the clause lists
        several values of ``a``: each value then keeps the qualifier said with it."""
        dependent = [b for b, s in spec.args.items() if s.type == "enum" and (s.values_from or "").startswith(f"{a}.")]
        return _OwnQualifiers(self, spec, a, dependent, args, clause) if dependent else None

    def _gapped(self, spec: SkillSpec, a: str, item: Item, args: dict[str, Any], clause: Clause) -> bool:
        """"grab the needle with the right arm and the shunt with the left arm": what is named after the second
        value, up to the next "and", belongs to its step and replaces what the first step had. Returns whether
        it did (the two values are then paired, not listed)."""
        paired = False
        end = next((k for k in range(item.end + 1, len(clause.tokens)) if clause.tokens[k] in ("and", ",")),
                   len(clause.tokens))
        for b, s in spec.args.items():
            if b == a or s.type != "enum" or s.values_from:
                continue
            for other in clause.items:
                if other.used or not item.end < other.start < end:
                    continue
                v = other.value_for(s.entities, allowed_values(self.cs, spec, b, s, args))
                if v is not None:
                    args[b] = v
                    clause.use(other)
                    paired = True
                    break
        return paired


class _OwnQualifiers:
    """"AP of the left femur and right knee": a side binds to the noun it is written with, never to the whole
    list; cross-multiplied, it put a view, a contact or an exposure on a side nobody named. A listed noun without
    a side of its own, next to one that has one, asks (command-set.md lets no side carry over), unless its
    anatomy or organ allows only one side."""

    def __init__(self, filler: SlotFiller, spec: SkillSpec, a: str, dependent: list[str], args: dict[str, Any],
                 clause: Clause) -> None:
        self.filler, self.spec, self.a, self.dependent, self.clause = filler, spec, a, dependent, clause
        allowed = allowed_values(filler.cs, spec, a, spec.args[a], args)
        first = next((it for it in sorted(clause.items, key=lambda i: i.start)
                      if it.used and it.value_for(spec.args[a].entities, allowed) == args[a]), None)
        self.first_own = self._said_with(first, args) if first is not None else {}
        self.bound: set[str] = set(self.first_own)

    def _said_with(self, noun: Item, args: dict[str, Any]) -> dict[str, tuple[Item, str]]:
        """The dependent values written right before ``noun`` ("the right carotid"): only soft words between."""
        out: dict[str, tuple[Item, str]] = {}
        toks = self.clause.tokens
        for b in self.dependent:
            s = self.spec.args[b]
            allowed = allowed_values(self.filler.cs, self.spec, b, s, {**args, self.a: args[self.a]})
            for it in self.clause.items:
                if it.end < noun.start and all(toks[k] in SOFT for k in range(it.end + 1, noun.start)):
                    v = it.value_for(s.entities, allowed)
                    if v is not None:
                        out[b] = (it, v)
        return out

    def bind(self, noun: Item, more: dict[str, Any]) -> None:
        own = self._said_with(noun, more)
        for b in self.dependent:
            if b in own:
                item, v = own[b]
                more[b] = v
                self.clause.use(item)
                self.bound.add(b)
            elif b in self.first_own:
                self._ask_or_only(b, more)

    def check_first(self, args: dict[str, Any]) -> None:
        """"AP of the femur and right knee": the side of the knee is no side of the femur. In the skill's order
        (``dependent``), so that a command with two such values asks about the same one first in every run."""
        for b in self.dependent:
            if b in self.bound and b not in self.first_own:
                self._ask_or_only(b, args)

    def _ask_or_only(self, b: str, args: dict[str, Any]) -> None:
        s = self.spec.args[b]
        allowed = allowed_values(self.filler.cs, self.spec, b, s, {k: v for k, v in args.items() if k != b})
        if len(allowed) <= 1:
            # the pelvis has no side and the liver only one: nothing to carry over, nothing to ask
            args.pop(b, None)
            if allowed:
                args[b] = allowed[0]
            return
        noun = str(args[self.a]).replace("_", " ")
        raise Question(f"Which {b} for the {noun}? A {b} was said for another item of the list, and it does not "
                       f"carry over; say the {b} with each one")
