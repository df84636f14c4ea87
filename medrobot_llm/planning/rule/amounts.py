"""Stage 3 of the rule planner, its numbers: which argument an amount sets, in which unit and with which sign.

Split from ``slots`` (the names of a step): an amount is read against the skill's ranges and ways, and against
the amounts said earlier in the command ("another 10" after "90 degrees").
"""

from __future__ import annotations

from typing import Any

from medrobot_llm.core.command_set import SkillSpec
from medrobot_llm.core.units import unit_readings
from medrobot_llm.language.numbers import FRACTIONS, NEGATIVE_SIGNS
from medrobot_llm.language.phrases import find_phrase
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import PLACE_WORDS
from medrobot_llm.planning.rule.model import NUMBER, Clause, Qty, Question, Stage, clean_number, dimension

_ABOVE = frozenset(["above", "over", "higher", "up"])

_BELOW = frozenset(["below", "under", "beneath", "lower", "down"])

#: offset words -> (component, sign). x is toward the patient's left (command-set.md), as in every domain: read
#: in a camera frame, "1 cm to the left" went to the patient's right while the x-ray "left" went to the left;
#: z up, y away from the camera
_OFFSET_AXES: tuple[tuple[frozenset[str], tuple[int, int]], ...] = (
    (_BELOW, (2, -1)), (_ABOVE, (2, 1)),
    (frozenset(["left", "leftward", "leftwards"]), (0, 1)), (frozenset(["right", "rightward", "rightwards"]), (0, -1)),
    (frozenset(["behind", "beyond", "past", "forward", "forwards", "away", "farther", "further"]), (1, 1)),
    (frozenset(["front", "backward", "backwards", "closer", "nearer", "toward", "towards"]), (1, -1)),
)


class AmountFiller(Stage):
    """The numbers of a chosen skill: which argument each amount sets, its unit and its sign."""

    def unit_from_before(self, clause: Clause, q: Qty) -> bool:
        """"rotate the probe 90 degrees, then another 10": a bare amount that repeats a step takes the unit the
        step's amount was said in; with none said there it is read as any bare number is."""
        earlier = self.state.clauses[:next((k for k, c in enumerate(self.state.clauses) if c is clause),
                                           len(self.state.clauses))]
        said = next((p for c in reversed(earlier) for p in reversed(c.qtys) if p.dim is not None
                     and any(NUMBER.match(w) and float(w) != 0 for w in p.text.split())), None)
        if said is None:
            return False
        words = said.text.split()
        k = next(k for k, w in enumerate(words) if NUMBER.match(w))
        factor = abs(said.value) / float(words[k])
        q.value, q.dim, q.text = q.value * factor, said.dim, " ".join([q.text, *words[k + 1:]])
        return True

    def same_amount(self, spec: SkillSpec, args: dict[str, Any], clause: Clause) -> None:
        """"scan the spleen with the same force": the amount an earlier step of this plan set for the argument
        named after "same" (its name or a keyword), not the default; with no such step the planner does not
        know which it is, and asks. It took the default 8 N after a 5 N scan."""
        toks = clause.tokens
        for a, s in spec.args.items():
            if a in args or s.type != "number":
                continue
            words = {a.split("_")[0], *s.keywords}
            said = next((k for k, t in enumerate(toks) if t == "same"
                         and any(w in words for w in toks[k + 1:k + 3])), None)
            if said is None:
                continue
            prev = next((st for st in reversed(self.state.done) if st.skill == spec.name and a in st.args), None) \
                or next((st for st in reversed(self.state.done) if a in st.args), None)
            if prev is None:
                what = " ".join(toks[said:said + 2])
                raise Question(f"'{what}' as what? The plan has no {a.split('_')[0]} before it, and the planner "
                               "does not know earlier ones; say the value itself")
            args[a] = prev.args[a]

    def numbers(self, spec: SkillSpec, clause: Clause, args: dict[str, Any]) -> None:
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
                dim = dimension(s, cs, spec, args)
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
            if q.dim is None and self._unit_needed(spec, best, args, q.text, value):
                q.used = True
                continue
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
                if q.dim is None and spec.args[best].unit == "%" and any(w in FRACTIONS for w in q.text.split()):
                    # "gain to half": a fraction of what? read as the number, it set 0.5 % for 50 %
                    raise Question(f"'{q.text}' of what? Say the {best.replace('_pct', '')} in percent "
                                   f"(allowed {spec.args[best].min:g}..{spec.args[best].max:g} %)")
                args[best] = clean_number(self.signed(spec, args, value, toks))
            q.used = True
        # "over to the handover point" is a particle of the move, "next to the needle" a place
        place = next((t for k, t in enumerate(toks) if t in PLACE_WORDS
                      and (t == "next" or toks[k + 1:k + 2] != ["to"])), None)
        for a, spec_a in numeric:
            if spec_a.type == "vector3" and a not in args and place is not None:
                place_words = "next to" if place == "next" else place
                self.state.questions.append(f"How far, and which way? '{place_words}' says where, not how far; say the "
                                            f"{a.replace('_mm', '')} in mm or cm with its way (e.g. '1 cm above', "
                                            "'2 cm to the left')")
        if clause.small:
            for a, s in numeric:
                if a in args or not s.range_from:
                    continue
                ref = args.get(s.range_from)
                ev = cs.entity_value(ref, spec.args[s.range_from]) if isinstance(ref, str) else None
                if ev is not None and ev.small is not None:
                    if (ev.positive or ev.negative) and not self.sign_said(ev.positive + ev.negative, toks):
                        # "tilt a bit": the small amount is a size, not a way; its sign would be a guess
                        ways = " or ".join(w for w in (ev.positive[:1] + ev.negative[:1]))
                        self.state.questions.append(f"Which way should the {str(ref).replace('_', ' ')} go ({ways})? "
                                                    "'a bit' says how far, not which way")
                        continue
                    args[a] = clean_number(self.signed(spec, args, ev.small, toks))

    def _unit_needed(self, spec: SkillSpec, name: str, args: dict[str, Any], said: str, value: float) -> bool:
        """A number said without its unit is in the argument's plan unit only when no other unit of the same
        kind would make it an allowed value: "lift 2" is 2 mm or 2 cm, a tenfold difference the person has to
        settle (a misheard "1 cm" came out as "one psm"), and "sweep 1" is not refused as 1 mm when 1 cm is
        allowed; "rotate 30" can only be degrees. The number is then left unused, and a limit the rest of the
        command breaks still refuses."""
        s = spec.args[name]
        lo, hi = s.min, s.max
        if s.range_from:
            ref = args.get(s.range_from)
            ev = self.cs.entity_value(ref, spec.args[s.range_from]) if isinstance(ref, str) else None
            lo, hi = (ev.min, ev.max) if ev is not None else (None, None)
        dim = dimension(s, self.cs, spec, args)
        if lo is None or hi is None or dim is None or value == 0:
            return False
        readings = [(word, factor) for word, factor in unit_readings(dim)
                    if any(lo <= v * factor <= hi for v in (value, -value))]
        if any(factor != 1.0 for _, factor in readings):
            readings_said = [word for word, _ in readings]
            units = " or ".join(readings_said) if len(readings_said) < 3 else \
                f"{', '.join(readings_said[:-1])} or {readings_said[-1]}"
            self.state.questions.append(f"'{said}' in what unit: {units}? Say the {name.split('_')[0]} with its unit")
            return True
        return False

    @staticmethod
    def sign_said(words: tuple[str, ...], toks: list[str]) -> bool:
        return any(find_phrase(toks, tuple(tokenize(w)), set(), allow_gaps=False) for w in words)

    def signed(self, spec: SkillSpec, args: dict[str, Any], value: float, toks: list[str]) -> float:
        """Sign words of the chosen axis ("tilt back" +, "toward the feet" -), or of the number itself
        ("clockwise" +), set the amount's sign."""
        signs: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        for a, s in spec.args.items():
            if s.type == "number" and (s.positive or s.negative):
                signs.append((s.positive, s.negative))
            if s.type != "enum" or a not in args:
                continue
            ev = self.cs.entity_value(args[a], s)
            if ev is not None and (ev.positive or ev.negative):
                signs.insert(0, (ev.positive, ev.negative))
        if signs and find_phrase(toks, ("plus", "or", "minus"), set(), allow_gaps=False):
            raise Question("'plus or minus' says both ways; say which way, or say the amount as a size")
        for positive, negative in signs:
            at_neg, at_pos = self._sign_at(negative, toks), self._sign_at(positive, toks)
            # "counter clockwise" holds "clockwise": a way said inside the other way's words is not said
            way_neg, way_pos = bool(at_neg - at_pos), bool(at_pos - at_neg)
            if at_neg and at_pos and (at_neg <= at_pos or at_pos <= at_neg):
                way_neg, way_pos = len(at_neg) >= len(at_pos), len(at_pos) > len(at_neg)
            if way_neg and way_pos:
                # "move up 20 mm down": two ways for one amount; the last one said is a guess, not a reading
                raise Question(f"Which way: '{self._said(positive, toks)}' or '{self._said(negative, toks)}'? "
                               "Both were said for one amount")
            if (way_neg or way_pos) and value < 0 and any(w in toks for w in NEGATIVE_SIGNS):
                # "move left -5 cm", "tilt forward -20": a way and a minus sign disagree, or negate twice
                way = self._said(negative if way_neg else positive, toks)
                raise Question(f"'{way}' and a minus sign were both said for one amount; say the way, or the "
                               "signed amount, not both")
            if way_neg:
                return -abs(value)
            if way_pos:
                return abs(value)
        return value

    @staticmethod
    def _sign_at(words: tuple[str, ...], toks: list[str]) -> set[int]:
        return {k for w in words for at in find_phrase(toks, tuple(tokenize(w)), set(), allow_gaps=False) for k in at}

    @staticmethod
    def _said(words: tuple[str, ...], toks: list[str]) -> str:
        return next(w for w in words if find_phrase(toks, tuple(tokenize(w)), set(), allow_gaps=False))
