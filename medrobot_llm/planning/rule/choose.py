"""Stage 2 of the rule planner: which skill or task a clause asks for (a ``Choice``).

Phrases are weighed by length and gaps, against what the clause names and the quantities it says, so
"send psm2 to the rest position" is the rest skill and "take the left arm to the vessel" is a move.
"""

from __future__ import annotations

from medrobot_llm.language.phrases import SOFT, Match, core_words
from medrobot_llm.language.words import ADDED_WORDS, FILLER
from medrobot_llm.planning.rule.model import (
    COUNT_ADJECTIVES,
    NUMBER,
    POSSESSIVE,
    Choice,
    Clause,
    Question,
    Refusal,
    Stage,
    agent_kinds,
    count_nouns,
    dimension,
    skill_specs,
)


#: words that say a step is wanted again ("then another 5 degrees", "then two more times", "again")
_AGAIN_WORDS = ADDED_WORDS | frozenset(["another", "again", "once", "twice", "time", "times", "then", "and"])


class SkillChooser(Stage):
    """A clause to the skill or task it asks for (a ``Choice``)."""

    def choose(self, clause: Clause) -> Choice:
        """(kind, name, phrase size) of the best skill or task for the clause."""
        best: tuple[float, str, str, int] | None = None
        phrase_size: dict[tuple[str, str], tuple[int, int]] = {}
        for m in clause.skills:
            if self._inside_name(clause, m) or self._causative(clause, m) or self._argument_word(clause, m) \
                    or self._counted_noun(clause, m):
                continue
            key = (m.phrase.kind, m.phrase.name)
            weight = m.size * 10 - m.gaps * 3 + (15 if self._destination(clause, m) else 0)
            prev = phrase_size.get(key)
            if prev is None or weight > prev[0]:
                phrase_size[key] = (weight, m.size)
        for it in clause.items:
            # "send psm2 to the rest position": a place that is a skill's own destination names that skill
            before = [t for t in clause.tokens[:it.start] if t not in POSSESSIVE]
            for _, v in it.options:
                if v in self.cs.skills and before[-1:] in (["to"], ["into"]):
                    phrase_size[("skill", v)] = max(phrase_size.get(("skill", v), (0, 0)), (25, 1))
        self._moved_agent(clause, phrase_size)
        candidates: list[tuple[str, str]] = list(phrase_size)
        again = self._elided_task(clause) if not candidates else None
        if again is not None:
            return again
        if not candidates:
            candidates = [("skill", s) for s in self.cs.skills]
        for kind, name in candidates:
            specs = skill_specs(self.cs, kind, name)
            ent_types = {e for s in specs for a in s.args.values() for e in a.entities}
            dims = {dimension(a, self.cs, s, {}) for s in specs for a in s.args.values()
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
                         and q.dim == dimension(a, self.cs, s, {}))
            score = syn + 2 * fit - 3 * missing + (0.5 if kind == "task" else 0) + needed
            if best is None or score > best[0]:
                best = (score, kind, name, phrase_size.get((kind, name), (0, 0))[1])
        if best is None:
            raise Refusal(self._not_understood(clause), understood=False)
        return self._target_value(clause, Choice(best[1], best[2], best[3]))

    def _counted_noun(self, clause: Clause, m: Match) -> bool:
        """"2 more images", "another image": a word counted is a noun, never the verb of a whole task it also is
        ("image the liver" scans). A counted skill word is that skill ("two shots")."""
        return m.phrase.kind == "task" and len(m.positions) == 1 and m.start == _counted_at(clause)


    def _argument_word(self, clause: Clause, m: Match) -> bool:
        """"scan the thyroid with 5 N pressure": a word that names an argument of the verb said before it
        (a keyword of one of its numbers) is that argument, even where it also names a skill of its own
        ("(more) pressure" sets the force): the scan was planned as a bare force change. Only the words said
        count: "more pressure" is still a change of force."""
        said = {clause.tokens[k] for k in m.positions}
        near = clause.tokens[max(0, m.start - 2):m.start] + clause.tokens[m.positions[-1] + 1:m.positions[-1] + 3]
        if set(m.phrase.words) - said & set(near):
            return False
        for other in clause.skills:
            if other is m or other.start >= m.start or (other.phrase.kind, other.phrase.name) == (m.phrase.kind,
                                                                                                  m.phrase.name):
                continue
            keywords = {k for s in skill_specs(self.cs, other.phrase.kind, other.phrase.name)
                        for a in s.args.values() if a.type == "number" for k in a.keywords}
            if said <= keywords:
                return True
        return False

    def _elided_task(self, clause: Clause) -> Choice | None:
        """"scan the liver, then the spleen": a clause without a verb that names only what a step or task before
        acts on asks for it again. Chosen by what it names alone, it was a move to the spleen's window with no
        contact and no sweep, a plan that moves and is not what was said ("move the right arm to the needle, then
        the left one" was a retraction to the left)."""
        previous = self.state.previous
        if "more" in clause.tokens and not (clause.items or clause.qtys or clause.count) and all(
                not t.isalpha() or t in _AGAIN_WORDS or t in SOFT or t in FILLER for t in clause.tokens):
            # "take a shot, then more", "more": was refused as an unknown action
            raise Question(f"'{' '.join(clause.tokens)}': more of what, and how much? Say the step with its amount "
                           "or count")
        if previous is None and not clause.items and clause.qtys and any(t in _AGAIN_WORDS - {"then", "and"}
                                                                          for t in clause.tokens):
            raise Question(f"'{' '.join(clause.tokens)}': more of what? Nothing before it in the command says; "
                           "say the step with its value")
        if previous is not None and _counted_at(clause) is not None and not clause.items:
            # "capture an image, then 2 more images": the noun counted names no verb; the count repeats the last
            return Choice(previous.kind, previous.name, 0)
        if previous is not None and not clause.items and (clause.qtys or clause.count or "again" in clause.tokens) \
                and all(k in clause.covered or not t.isalpha() or t in _AGAIN_WORDS or t in SOFT or t in FILLER
                        for k, t in enumerate(clause.tokens)):
            # "tilt back 5 degrees, then another 5 degrees", "sweep caudal, then one more time": an amount or a
            # count alone is the step before again; chosen by what it fits, "another 10" after a rotation was a
            # 10 N contact
            specs = skill_specs(self.cs, previous.kind, previous.name)
            dims = {dimension(a, self.cs, s, {}) for s in specs for a in s.args.values() if a.type == "number"}
            if any(a.unit_from for s in specs for a in s.args.values()):
                dims |= {"length", "angle"}
            if all(q.dim is None or q.dim in dims for q in clause.qtys) and (dims or not clause.qtys):
                return Choice(previous.kind, previous.name, 0)
            raise Question(f"'{' '.join(clause.tokens)}': which step should take it? The step before has no value "
                           "of that kind; say the step with its value")
        if not clause.items:
            return None
        # the latest step or task before that takes every name this clause says ("scan the gallbladder, capture
        # an image, then the liver" scans the liver; "home the right arm, then the left one" homes psm2)
        for before in reversed(self.state.chosen):
            specs = skill_specs(self.cs, before.kind, before.name)
            takes = {e for s in specs for a in s.args.values() if a.type == "enum" for e in a.entities}
            if all(any(e in takes for e, _ in it.options) for it in clause.items):
                return Choice(before.kind, before.name, 0)
        return None

    def _moved_agent(self, clause: Clause, phrase_size: dict[tuple[str, str], tuple[int, int]]) -> None:
        """"take the left arm to the vessel", "bring psm1 over to the needle": a verb whose object is the
        robot's own arm, then "to" and a name, moves that arm there. Whatever the verb means elsewhere ("take"
        also grasps), an arm is not grasped: the words name a "go to" skill, one whose phrases end in "to"
        and which takes the name after it."""
        agents = agent_kinds(self.cs)
        toks = clause.tokens
        for m in clause.skills:
            k = m.positions[-1] + 1
            while k < len(toks) and toks[k] in POSSESSIVE:
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
            while k < len(toks) and toks[k] in POSSESSIVE:
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

    def _target_value(self, clause: Clause, chosen: Choice) -> Choice:
        """"back off to 4 newtons": a value said as the target ("to 4 N") that the chosen verb cannot take,
        of a kind exactly one skill requires (set_force), names that skill when the two share a phrase word
        ("back off" / "ease off"). Without "to" the value may be a change ("back off by 2 N"), which no skill
        takes, so the planner still asks."""
        kind, name, size = chosen
        specs = skill_specs(self.cs, kind, name)
        toks = clause.tokens
        dims = {dimension(a, self.cs, s, {}) for s in specs for a in s.args.values() if a.type in ("number", "vector3")}
        verb_words = {w for m in clause.skills if (m.phrase.kind, m.phrase.name) == (kind, name)
                      for w in core_words(m.phrase.words)}
        for q in clause.qtys:
            if q.dim is None or q.dim in dims or toks[max(0, q.start - 1):q.start] != ["to"]:
                continue
            needing = [sk for sk in self.cs.skills.values()
                       if any(a.required and a.type == "number" and dimension(a, self.cs, sk, {}) == q.dim
                              for a in sk.args.values())]
            if len(needing) != 1:
                continue
            other = needing[0]
            words = {w for p in self.lex.skills if p.kind == "skill" and p.name == other.name for w in p.words}
            if verb_words & words:
                return Choice("skill", other.name, size)
        return chosen

    def _inside_name(self, clause: Clause, m: Match) -> bool:
        """"the handover point" names a place, not the handover skill."""
        pos = set(m.positions)
        return any(pos < it.positions and not any(v == m.phrase.name for _, v in it.options)
                   for it in clause.items)

    def _causative(self, clause: Clause, m: Match) -> bool:
        """"get the right arm to hand ...", "have psm1 grab ...": the first verb only says who does the next."""
        toks = clause.tokens
        agents = agent_kinds(self.cs)
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

    def _destination(self, clause: Clause, m: Match) -> bool:
        """"send the arm to its home position", "move the gantry to its park position": a skill named as the
        place to go is that skill (unless the words name a different place, as "handover point" does)."""
        toks = clause.tokens
        k = m.start - 1
        while k >= 0 and toks[k] in POSSESSIVE:
            k -= 1
        if k < 0 or toks[k] not in ("to", "into"):
            return False
        after = [t for t in toks[m.positions[-1] + 1:] if t not in SOFT]
        if after[:1] and after[0].rstrip("s") not in ("position", "pose", "location", "spot", "place", "posture", ","):
            return False
        pos = set(m.positions)
        return not any(it.positions & pos and not any(v == m.phrase.name for _, v in it.options)
                       and len(it.positions) > len(pos) for it in clause.items)

    def _not_understood(self, clause: Clause) -> str:
        said = " ".join(clause.tokens)
        return (f"'{said}' is not something the {self.cs.domain} command set can do "
                f"(its skills: {', '.join(self.cs.skills)})")


def _counted_at(clause: Clause) -> int | None:
    """Where the clause counts a noun ("2 more images", "another shot"), if it does."""
    toks = clause.tokens
    for k in range(1, len(toks)):
        if toks[k] in count_nouns() and (NUMBER.match(toks[k - 1]) is not None or toks[k - 1] in COUNT_ADJECTIVES
                                         or toks[k - 1] == "another"):
            return k
    return None
