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

from ._lexicon import (
    CONTROL_PHRASES,
    FILLER,
    UNSUPPORTED_ACTIONS,
    UNSUPPORTED_TARGETS,
    Lexicon,
    Phrase,
    lexicon,
    screen_text,
    tokenize,
    words_to_numbers,
)
from ._plan import Control, Plan, PlanStatus, Step
from ._skillset import DOMAINS, ArgSpec, CommandSet, Hazard, SkillSpec
from ._units import DIMENSION_OF_UNIT, UNIT_WORDS
from ._validator import (
    WorldState,
    apply_step,
    conditions_of,
    effect_templates,
    validate_plan,
)

__all__ = ["RulePlanner", "screen_text"]

#: words skipped when matching phrases, so "take a shot" matches "take the shot" and "press a bit harder"
_SOFT = frozenset("a an the bit little slightly some more much it its this that please just gently carefully "
                  "slowly now also".split())
_SPLIT_WORDS = (("and", "then"), ("after", "that"), ("then",), ("afterwards",), ("followed", "by"), ("next",),
                ("and", "after", "that"), ("once", "done"), ("when", "done"))
_SMALL = (("a", "little", "bit"), ("a", "bit"), ("a", "little"), ("slightly",), ("a", "touch"), ("a", "tad"),
          ("just", "a", "bit"), ("a", "smidge"), ("somewhat",))
_FRACTIONS = {"half": 0.5, "quarter": 0.25}
_COUNT_NOUNS = frozenset("shot shots exposure exposures image images picture pictures radiograph radiographs "
                         "spin spins scan scans acquisition acquisitions x xray xrays film films".split())
_TIMES = {"once": 1, "twice": 2, "thrice": 3}
_LABEL_WORDS = frozenset("labelled labeled label called named titled tagged caption captioned".split())
_ABOVE = frozenset("above over higher up".split())
_PARTICLES = frozenset("back up down over off away forward out".split())
_BELOW = frozenset("below under beneath lower down".split())
_NUMBER = re.compile(r"^\d+(\.\d+)?$")
_MAX_GAP = 3
_CONTROL_PRIORITY = ("stop", "cancel", "deny", "confirm", "pause", "resume", "status")
_CONTROL_LEXICON = sorted((Phrase(tuple(tokenize(p)), "control", name) for name, ps in CONTROL_PHRASES.items()
                           for p in ps), key=lambda p: -len(p.words))


@dataclass
class _Match:
    phrase: Phrase
    positions: tuple[int, ...]

    @property
    def start(self) -> int:
        return self.positions[0]

    @property
    def size(self) -> int:
        return len(self.phrase.words)

    @property
    def gaps(self) -> int:
        return self.positions[-1] - self.positions[0] + 1 - len(self.positions)


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
    skills: list[_Match] = field(default_factory=list)
    items: list[_Item] = field(default_factory=list)
    qtys: list[_Qty] = field(default_factory=list)
    small: bool = False
    count: int | None = None
    label: str | None = None
    covered: set[int] = field(default_factory=set)
    skill_positions: set[int] = field(default_factory=set)

    def use(self, item: _Item) -> None:
        """Mark ``item`` used, and every other reading of the same words with it."""
        item.used = True
        for other in self.items:
            if other.overlaps(item):
                other.used = True


class _Refusal(Exception):
    def __init__(self, reason: str, understood: bool = True):
        super().__init__(reason)
        self.reason = reason
        self.understood = understood


class _Question(Exception):
    pass


def _same(token: str, word: str) -> bool:
    return token == word or (len(word) > 2 and token in (word + "s", word + "es"))


@functools.lru_cache(maxsize=None)
def _core(words: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(w for w in words if w not in _SOFT) or words


def _present(tokens: list[str]) -> set[str]:
    """Every word a token may stand for (singular forms too), to skip phrases that cannot match."""
    out = set(tokens)
    out.update(t[:-1] for t in tokens if t.endswith("s"))
    out.update(t[:-2] for t in tokens if t.endswith("es"))
    return out


def _find(tokens: list[str], words: tuple[str, ...], taken: set[int], allow_gaps: bool) -> list[tuple[int, ...]]:
    """Positions where ``words`` occur in ``tokens`` (soft words skipped; small gaps allowed if asked)."""
    core = _core(words)
    found: list[tuple[int, ...]] = []
    n = len(tokens)
    for i in range(n):
        if not _same(tokens[i], core[0]) or i in taken:
            continue
        pos = [i]
        j = i + 1
        ok = True
        for w in core[1:]:
            gap = 0
            while j < n and (not _same(tokens[j], w) or j in taken):
                if tokens[j] in (",", ";", ".") or (not allow_gaps and tokens[j] not in _SOFT):
                    break
                if tokens[j] not in _SOFT:
                    gap += 1
                if gap > _MAX_GAP:
                    break
                j += 1
            if j < n and _same(tokens[j], w) and j not in taken:
                pos.append(j)
                j += 1
            else:
                ok = False
                break
        if ok:
            found.append(tuple(pos))
    return found


def _match_phrases(tokens: list[str], phrases: list[Phrase], taken: set[int]) -> list[_Match]:
    """Greedy longest-first matching; contiguous readings win over gapped ones."""
    out: list[_Match] = []
    used: set[int] = set(taken)
    present = _present(tokens)
    candidates = [p for p in phrases if all(w in present for w in _core(p.words))]
    for p in candidates:
        for allow_gaps in (False, True):
            if allow_gaps and len(_core(p.words)) < 2:
                continue
            for pos in _find(tokens, p.words, used, allow_gaps):
                if any(q in used for q in pos):
                    continue
                out.append(_Match(p, pos))
                used.update(pos)
    return out


class RulePlanner:
    """Deterministic, offline, no network. ``parse`` also says whether the text was understood at all."""

    name = "rule"

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        return self.parse(domain, text, world)[0]

    def parse(self, domain: str, text: str, world: WorldState | None = None) -> tuple[Plan, bool]:
        if domain not in DOMAINS:
            return Plan.refused(str(domain), f"unknown domain {domain!r}; choose one of: {', '.join(DOMAINS)}"), True
        if not text or not text.strip():
            return Plan.refused(domain, "the command is empty; say what the robot should do"), True
        tokens = words_to_numbers(tokenize(text))
        lex = lexicon(domain)
        control = _control(tokens, lex, embedded_stop=False)
        if control is not None:
            return Plan.of_control(domain, control), True
        why = screen_text(text)
        if why:
            return Plan.refused(domain, why), True
        if _control(tokens, lex, embedded_stop=True) is Control.STOP:
            return Plan.of_control(domain, Control.STOP), True
        parser = _Parser(lex, world, text)
        try:
            steps = parser.run(tokens)
        except _Refusal as r:
            return Plan.refused(domain, r.reason), r.understood
        except _Question as q:
            return Plan.clarify(domain, str(q)), True
        plan = validate_plan(Plan(status=PlanStatus.OK, domain=domain, steps=steps), world)
        if parser.questions and plan.status is not PlanStatus.REFUSED:
            return Plan.clarify(domain, parser.questions[0]), True
        return plan, True


def _control(tokens: list[str], lex: Lexicon, embedded_stop: bool) -> Control | None:
    """A control intent: the whole utterance, or (``embedded_stop``) a stop word anywhere in it, since a
    stop said inside a longer sentence must still stop the robot."""
    words = [t for t in tokens if t not in (",", ".", "!", "?", ";", ":", '"')]
    if not words:
        return None
    if embedded_stop:
        stop = [Phrase(tuple(tokenize(p)), "control", "stop") for p in CONTROL_PHRASES["stop"]]
        stop_words = {"stop", "halt", "estop", "emergency", "abort", "freeze"}
        if any(w in stop_words for w in words) or _match_phrases(words, stop, set()):
            return Control.STOP
        return None
    if any(_NUMBER.match(w) for w in words):
        return None
    found = _match_phrases(words, _CONTROL_LEXICON, set())
    covered = {i for m in found for i in m.positions}
    rest = [w for i, w in enumerate(words) if i not in covered]
    if not found or any(w not in FILLER for w in rest):
        return None
    if rest and (_match_phrases(rest, lex.skills, set()) or _match_phrases(rest, lex.entities, set())):
        return None
    names = {m.phrase.name for m in found}
    for name in _CONTROL_PRIORITY:
        if name in names:
            return Control(name)
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
        self.numbered_prefixes = {p.words[0] for p in lex.entities if len(p.words) == 2 and p.words[1].isdigit()}

    # -- clauses -------------------------------------------------------------------------------
    def run(self, tokens: list[str]) -> list[Step]:
        clauses = [self.analyse(c) for c in self.split(tokens)]
        clauses = [c for c in clauses if c.tokens]
        if not clauses:
            raise _Refusal("the command has no words the planner can use", understood=False)
        steps: list[Step] = []
        for k, clause in enumerate(clauses):
            later = clauses[k + 1:]
            steps.extend(self.clause_steps(clause, later))
        if not steps:
            raise _Refusal("the command names no action of the command set", understood=False)
        return steps

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
                if j in starts:
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

    def _skill_starts(self, tokens: list[str]) -> set[int]:
        starts = set()
        present = _present(tokens)
        for p in self.lex.skills:
            if not all(w in present for w in _core(p.words)):
                continue
            for pos in _find(tokens, p.words, set(), allow_gaps=False):
                starts.add(pos[0])
        return starts

    def analyse(self, tokens: list[str]) -> _Clause:
        clause = _Clause(tokens=list(tokens))
        toks = clause.tokens
        for k, t in enumerate(toks):
            saves_as = t == "as" and any(w in ("save", "store", "capture", "record", "keep", "file") for w in toks[:k])
            if t in _LABEL_WORDS or saves_as:
                j = k + 1
                while j < len(toks) and toks[j] in ("it", "as", "with", "the", "label", ":", '"', "of"):
                    j += 1
                label = " ".join(w for w in toks[j:] if w not in ('"', ","))
                if label:
                    clause.label = self._original_case(label)
                clause.tokens = toks = toks[:k]
                break
        skills = _match_phrases(toks, self.lex.skills, set())
        ents = [m for etype in self.cs.entities
                for m in _match_phrases(toks, [p for p in self.lex.entities if p.name == etype], set())]
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
                        if not any(o is not it and it.positions < o.positions for o in clause.items)]
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
            small = next((s for s in _SMALL if tuple(toks[i:i + len(s)]) == s), None)
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
            if t in ("minus", "negative"):
                negative = True
                j += 1
            value: float | None = None
            if j < n and _NUMBER.match(toks[j]) and j not in clause.covered:
                value = float(toks[j])
                j += 1
            elif j < n and toks[j] in _FRACTIONS:
                value = _FRACTIONS[toks[j]]
                j += 1
                if j < n and toks[j] in ("a", "an"):
                    j += 1
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
                ul2, u2 = self._unit_at(toks, j + 2)
                if u2 is not None:
                    unit = u2
            if j < n and toks[j] in _COUNT_NOUNS and unit is None and not negative:
                clause.count = int(value)
                clause.covered.update(range(i, j + 1))
                i = j + 1
                continue
            if j < n and toks[j] == "times" and not negative:
                clause.count = int(value)
                clause.covered.update(range(i, j + 1))
                i = j + 1
                continue
            dim = None
            factor = 1.0
            if unit is not None:
                dim, factor = UNIT_WORDS[unit]
            q = _Qty(i, j + unit_len - 1, value * factor, dim, negative,
                     text=" ".join(toks[i:j + unit_len]))
            clause.qtys.append(q)
            clause.covered.update(range(i, j + unit_len))
            i = j + unit_len
        return

    def _unit_at(self, toks: list[str], j: int) -> tuple[int, str | None]:
        for words, unit in self.lex.unit_phrases:
            k = len(words)
            if tuple(toks[j:j + k]) == words:
                if unit == "in" or (unit == "m" and j + 1 < len(toks) and toks[j + 1] not in (",", ".")):
                    continue
                if unit == "n" and False:
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
                               f"(its skills: {', '.join(self.cs.skills)})")
            if t in UNSUPPORTED_TARGETS:
                raise _Refusal(f"'{t}' is not in the {self.cs.domain} command set ({self._targets()})")
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
        for words, value in sorted(self.lex.foreign_entities.items(), key=lambda kv: -len(kv[0])):
            if f" {words} " in joined:
                span = self._span_of(toks, words.split())
                if span is not None and not (set(span) & clause.covered):
                    raise _Refusal(f"'{words}' is not in the {self.cs.domain} command set ({self._targets()})")

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
            key = (m.phrase.kind, m.phrase.name)
            score = m.size * 10 - m.gaps * 3
            prev = phrase_size.get(key)
            if prev is None or score > prev[0]:
                phrase_size[key] = (score, m.size)
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
            inferable = {s.args[a2].values_from.split(".")[0] for s in specs for a2 in s.args
                         if s.args[a2].values_from and set(s.args[a2].entities) & present}
            missing = sum(1 for a in required if not set(a.entities) & present
                          and not any(n in inferable for s in specs for n, x in s.args.items() if x is a))
            syn = phrase_size.get((kind, name), (0, 0))[0]
            if syn == 0 and fit == 0:
                continue
            score = syn + 2 * fit - 3 * missing + (0.5 if kind == "task" else 0)
            if best is None or score > best[0]:
                best = (score, kind, name, phrase_size.get((kind, name), (0, 0))[1])
        if best is None:
            raise _Refusal(self._not_understood(clause), understood=False)
        return best[1], best[2], best[3]

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
        kind, name, _ = self.choose(clause)
        specs = self._specs(kind, name)
        main: list[tuple[SkillSpec, dict[str, Any]]] = []
        for spec in specs:
            args = self.fill(spec, clause, later)
            main.append((spec, args))
        if kind == "skill" and len(main) == 1:
            main.extend(self._conjoined(main[0][0], main[0][1], clause))
        leftovers = [it for it in clause.items if not it.used]
        unused_q = [q for q in clause.qtys if not q.used]
        if unused_q:
            q = unused_q[0]
            self.questions.append(f"What is '{q.text}' for? The plan has {', '.join(s.name for s, _ in main)}; "
                                  "say which value it sets")
        out: list[Step] = []
        for spec, args in main:
            out.extend(self.establish(spec, args, leftovers, clause, depth=0))
            reps = clause.count if (clause.count and spec is specs[-1]) else 1
            for _ in range(max(1, min(reps, 50))):
                out.append(Step(skill=spec.name, args=dict(args)))
                apply_step(self.cs, spec, args, self.world)
        incomplete = any(a not in args for spec, args in main for a, s in spec.args.items()
                         if s.required and s.type == "enum")
        stray = [] if incomplete else [
            it for it in leftovers if not it.used and not self._echo(it, out)
            and not (it.positions & clause.skill_positions)
            and not (len(it.positions) == 1 and clause.tokens[min(it.positions)] in _PARTICLES)]
        if stray:
            words = " ".join(clause.tokens[stray[0].start:stray[0].end + 1])
            self.questions.append(f"What should '{words}' do in this command? The plan is: "
                                  + ", then ".join(s.describe() for s in out))
        for it in clause.items:
            for etype, value in it.options[:1]:
                self.context[etype] = value
        for s in out:
            for a, v in s.args.items():
                spec = self.cs.skills[s.skill].args[a]
                for e in spec.entities:
                    if isinstance(v, str):
                        self.context[e] = v
        return out

    def _conjoined(self, spec: SkillSpec, args: dict[str, Any], clause: _Clause) -> list[tuple[SkillSpec,
                                                                                                  dict[str, Any]]]:
        """"locate the needle and the shunt": one more step per extra value of an argument already filled."""
        extra = []
        for a, s in spec.args.items():
            if s.type != "enum" or a not in args or s.values_from or a.startswith(("from_", "to_")):
                continue
            for it in clause.items:
                before = [w for w in clause.tokens[:it.start] if w not in _SOFT]
                if it.used or not before or before[-1] not in ("and", ",", "or", "&", "plus"):
                    continue
                v = it.value_for(s.entities, self.cs.allowed_values(s))
                if v is not None and v != args[a]:
                    clause.use(it)
                    extra.append((spec, {**args, a: v}))
        return extra

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
        cs = self.cs
        args: dict[str, Any] = {}
        toks = clause.tokens
        for phrase, implied in spec.implied.items():
            if _find(toks, tuple(tokenize(phrase)), set(), allow_gaps=False):
                args.update(implied)
        enums = [(a, s) for a, s in spec.args.items() if s.type == "enum"]
        enums.sort(key=lambda kv: kv[1].values_from is not None)
        for a, s in enums:
            if a in args:
                continue
            allowed = self._allowed(spec, a, s, args)
            item = self._pick(clause, a, s, allowed)
            if item is not None:
                args[a] = item
        self._infer_parents(spec, args)
        self._numbers(spec, clause, args)
        for a, s in spec.args.items():
            if s.type == "text" and clause.label is not None and a not in args:
                args[a] = clause.label
        for a, s in enums:
            if a in args or not s.required:
                continue
            if a.startswith("to_") or a.startswith("from_"):
                continue
            for etype in s.entities:
                value = self.context.get(etype) or self._from_later(later, s, self._allowed(spec, a, s, args))
                if value and value in self._allowed(spec, a, s, args):
                    args[a] = value
                    break
        self._pair(spec, args)
        return args

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
            if v is None and prep is not None:
                words = [toks[k] for k in sorted(it.positions) if toks[k] not in _SOFT and toks[k] not in
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
                if not any(b in marks for b in before) or any(b in other for b in before[-1:]):
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
                if near & _BELOW:
                    args[best] = [0, 0, -abs(value)]
                elif near & _ABOVE:
                    args[best] = [0, 0, abs(value)]
                else:
                    continue
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
            if any(_find(toks, tuple(tokenize(w)), set(), allow_gaps=False) for w in ev.negative):
                return -abs(value)
            if any(_find(toks, tuple(tokenize(w)), set(), allow_gaps=False) for w in ev.positive):
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
        for key, op, want in conditions_of(self.cs, spec, args):
            have = self.world.facts.get(key, _UNSET)
            if have is not _UNSET and ((have == want) if op == "==" else (have != want)):
                continue
            if op == "!=" and any(_bind(k, key) is not None for k, _ in effect_templates(spec)):
                continue
            for cspec, cargs, consumed in self._establishers(key, op, want, leftovers, named, clause):
                for it in consumed:
                    clause.use(it)
                out.extend(self.establish(cspec, cargs, leftovers, clause, depth + 1))
                out.append(Step(skill=cspec.name, args=cargs))
                apply_step(self.cs, cspec, cargs, self.world)
                break
        return out

    def _establishers(self, key: str, op: str, want: Any, leftovers: list[_Item], named: set[str],
                      clause: _Clause) -> list[tuple[SkillSpec, dict[str, Any], list[_Item]]]:
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
                        if it.used or it in consumed:
                            continue
                        v = it.value_for(s.entities, allowed)
                        if v is not None:
                            args[a] = v
                            consumed.append(it)
                            break
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
