"""Grounding: a validated plan may still do more than the person asked, so it is held to the text.

The validator knows only the command set; a model that obeys an injected instruction, or guesses, can write
a plan that is valid and unwanted. Where the offline planner reads the text, its plan is the reference
(``reading``); where it does not, these checks compare the plan with the person's own words: no contact or
radiation step the text does not ask for, no more exposures of a kind than it asks for, no motion step it
does not ask for, no arm, organ or view it never named (nor the default for one it named), no number it
never said with that sign and unit (``quantities``), and no control intent it does not say. The trigger
words come from ``skills/``, so a new skill is grounded without code here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from medrobot_llm.core.command_set import ArgSpec, CommandSet, Hazard, SkillSpec, load_command_set
from medrobot_llm.core.plan import Control, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.units import DIMENSION_OF_UNIT
from medrobot_llm.core.validator import Issue, WorldState
from medrobot_llm.language.inflection import is_form
from medrobot_llm.language.negation import asked_only
from medrobot_llm.language.numbers import words_to_numbers
from medrobot_llm.language.phrases import said, said_together
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import CONTROL_PHRASES, FILLER, SMALL_AMOUNT
from medrobot_llm.planning.llm.quantities import Quantity, quantities
from medrobot_llm.planning.llm.reading import Reading, against_reading, read, unmatched

__all__ = ["control_grounded", "ground_plan", "ground_words", "words_of"]

_PUNCT = frozenset(",.!?;:\"%/°")

#: verbs too general to show what was asked for ("take" a shot and "take" a picture)
_GENERIC = frozenset("take make do get set put give have show one".split())
_ARTICLES = frozenset("a an the some".split())
#: words that only qualify another ("press harder", "touch down"): never a request on their own
_MODIFIERS = frozenset("more less harder softer higher lower down up back change adjust increase decrease reduce "
                       "open close".split())


def words_of(text: str) -> list[str]:
    """The words grounding compares: number words as digits and punctuation dropped, so a "five" the person
    said meets the 5 the model wrote."""
    return [t for t in words_to_numbers(tokenize(text)) if t not in _PUNCT]


def _content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w not in FILLER]


def _usable(word: str) -> bool:
    return len(word) > 1 and not word.replace(".", "").isdigit() and word not in FILLER and word not in _GENERIC


@dataclass(frozen=True)
class _Triggers:
    """Words and phrases that show a person asked for one hazard class, generated from the skill files."""

    #: shortest first, so that the word a token is a form of is its stem ("shots": "shot", a plural)
    words: tuple[str, ...]
    phrases: tuple[tuple[str, ...], ...]


@functools.cache
def _shared(domain: str) -> frozenset[str]:
    """Words of skills that need no confirmation and of entity names: they show no hazardous request."""
    cs = load_command_set(domain)
    shared = {w for s in cs.skills.values() if not s.hazard.needs_confirmation for syn in s.synonyms
              for w in words_of(syn)}
    shared |= {w for ent in cs.entities.values() for ev in ent.values.values() for syn in ev.synonyms
               for w in words_of(syn)}
    return frozenset(shared)


def _trigger_set(domain: str, skills: frozenset[str], shared: frozenset[str]) -> _Triggers:
    """The words and phrases that ask for one of ``skills``: their single-word synonyms, argument keywords
    and the synonyms of tasks that include them; a multi-word synonym contributes its whole phrase, and
    those of its words that are in no ``shared`` word and are not mere modifiers."""
    cs = load_command_set(domain)
    synonyms: list[str] = []
    keywords: list[str] = []
    for name in skills:
        spec = cs.skills[name]
        synonyms += [*spec.synonyms, name.replace("_", " ")]
        keywords += [k for a in spec.args.values() for k in a.keywords]
    for task in cs.tasks.values():
        if skills & set(task.steps):
            synonyms += list(task.synonyms)
    words: set[str] = set()
    phrases: set[tuple[str, ...]] = set()
    for syn in synonyms:
        ws = words_of(syn)
        content = tuple(_content(ws))
        if len(ws) == 1 and _usable(ws[0]):
            words.add(ws[0])
            continue
        words.update(w for w in content if _usable(w) and w not in shared and w not in _MODIFIERS)
        phrase = tuple(w for w in ws if w not in _ARTICLES)
        if len(phrase) >= 2:
            phrases.add(phrase)
    words.update(w for k in keywords for w in words_of(k) if _usable(w))
    return _Triggers(tuple(sorted(words, key=lambda w: (len(w), w))),
                     tuple(sorted(phrases, key=lambda p: (-len(p), p))))


@functools.cache
def _triggers(domain: str) -> dict[Hazard, _Triggers]:
    """Per class of hazard that needs a confirmation, the words that ask for one of its skills."""
    cs = load_command_set(domain)
    out: dict[Hazard, _Triggers] = {}
    for hazard in (Hazard.CONTACT, Hazard.RADIATION):
        skills = frozenset(n for n, s in cs.skills.items() if s.hazard is hazard)
        if skills:
            out[hazard] = _trigger_set(domain, skills, _shared(domain))
    return out


@functools.cache
def _skill_triggers(domain: str) -> dict[str, _Triggers]:
    """Per hazardous skill, the words that ask for that skill and no other of its class: "shots" asks for
    exposures, not for 3-D spins."""
    cs = load_command_set(domain)
    out: dict[str, _Triggers] = {}
    for name, spec in cs.skills.items():
        if spec.hazard is Hazard.NONE:
            continue
        others = frozenset(w for o, other in cs.skills.items() if o != name and other.hazard is spec.hazard
                           for syn in other.synonyms for w in words_of(syn))
        out[name] = _trigger_set(domain, frozenset([name]), _shared(domain) | others)
    return out


def _contains(seq: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return any(tuple(seq[i:i + n]) == tuple(phrase) for i in range(len(seq) - n + 1))


def _asked_for(domain: str, hazard: Hazard, words: Sequence[str]) -> bool:
    trig = _triggers(domain).get(hazard)
    if trig is None:
        return False
    content = _content(words)
    if any(is_form(t, w) for t in content for w in trig.words):
        return True
    return any(said(list(words), p) for p in trig.phrases)


def _exposures_asked(trig: _Triggers, words: Sequence[str], cap: int) -> tuple[int, int]:
    """How many exposures of one kind (``trig``: its words) the text allows, and how many it asks for for
    certain: a count said before an exposure word ("3 shots", "ten x-rays") or a singular mention is
    certain; a plural without a count allows one per view the plan sets up ("AP and lateral shots"), which
    ``cap`` carries."""
    allowed = definite = 0
    for i, t in enumerate(words):
        hit = next((w for w in trig.words if is_form(t, w)), None)
        if hit is None:
            continue
        count = None
        for j in range(max(0, i - 3), i):
            if re.fullmatch(r"\d+", words[j]) and words[j + 1] != "d":
                count = int(words[j])
        if count is None and t in (hit + "s", hit + "es"):
            allowed += cap
            continue
        allowed += count if count is not None else 1
        definite += count if count is not None else 1
    if allowed == 0 and any(said(list(words), p) for p in trig.phrases):
        allowed = definite = 1
    return allowed, definite


def _views(cs: CommandSet, steps: Sequence[Step]) -> int:
    """Steps that establish what an exposure needs (the X-ray view): each may take its own exposure."""
    needed = {cond.fact for name in cs.radiation_skills for cond in cs.skills[name].preconditions if cond.op == "=="}
    count = 0
    for step in steps:
        spec = cs.skill(step.skill)
        if spec is not None and spec.hazard is not Hazard.RADIATION and \
                any(eff.fact in needed for eff in spec.effects):
            count += 1
    return count


def _unit_of(cs: CommandSet, skill: SkillSpec, spec: ArgSpec, args: dict[str, Any]) -> str:
    if spec.unit_from:
        ref = args.get(spec.unit_from)
        ev = cs.entity_value(ref, skill.args[spec.unit_from]) if isinstance(ref, str) else None
        if ev is not None and ev.unit:
            return ev.unit
    return spec.unit or ""


def _polarity(cs: CommandSet, skill: SkillSpec, args: dict[str, Any], words: Sequence[str]) -> int:
    """+1 or -1 when the step's axis has sign words and the text says one ("tilt back", "toward the feet"),
    else 0: the same words, read the same way, as the offline planner's."""
    for a, spec in skill.args.items():
        value = args.get(a)
        ev = cs.entity_value(value, spec) if spec.type == "enum" and isinstance(value, str) else None
        if ev is None:
            continue
        if any(said_together(words, words_of(w)) for w in ev.negative):
            return -1
        if any(said_together(words, words_of(w)) for w in ev.positive):
            return 1
    return 0


def _signed(value: float, polarity: int, minus_said: bool) -> float:
    if polarity < 0:
        return -abs(value)
    if polarity > 0 and not minus_said:
        return abs(value)
    return value


def _value_ok(value: float, allowed: set[float]) -> bool:
    return any(abs(value - a) <= 0.01 + 1e-6 * abs(a) for a in allowed)


def _allowed_values(cs: CommandSet, skill: SkillSpec, name: str, spec: ArgSpec, args: dict[str, Any],
                    said: list[Quantity], words: Sequence[str]) -> set[float]:
    """The values an argument may hold: its default or a value its skill implies, "a bit" along its axis when
    a small amount is said, or
    a number said with a unit of the argument's own kind (or with none), signed as the words sign it. A
    vector's components are signed by the axis words around them, so they match by size."""
    vector = spec.type == "vector3"
    allowed: set[float] = {0.0} if vector else set()
    if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
        allowed.add(float(spec.default))
    for implied in skill.implied.values():
        v = implied.get(name)
        if isinstance(v, (int, float)):
            allowed.add(float(v))
    polarity = _polarity(cs, skill, args, words)
    if spec.range_from:
        ref = args.get(spec.range_from)
        ev = cs.entity_value(ref, skill.args[spec.range_from]) if isinstance(ref, str) else None
        if ev is not None and ev.small is not None and any(_contains(words, sm) for sm in SMALL_AMOUNT):
            allowed.add(_signed(ev.small, polarity, False))
    dim = DIMENSION_OF_UNIT.get(_unit_of(cs, skill, spec, args))
    for q in said:
        if q.dimension is None or q.dimension == dim:
            allowed.add(_signed(q.in_plan_unit(), polarity, q.negative))
    return {abs(v) for v in allowed} if vector else allowed


def _said_any(trig: _Triggers, words: Sequence[str]) -> bool:
    return any(is_form(t, w) for t in _content(words) for w in trig.words) or \
        any(said(list(words), p) for p in trig.phrases)


def _establishes(cs: CommandSet, before: Step, after: Step) -> bool:
    """``before`` makes true a precondition of ``after`` (grasp before lift, a view before a shot)."""
    first, then = cs.skills[before.skill], cs.skills[after.skill]
    made = {(f, v) for eff in first.effects for f, v in eff.instances(cs, first, before.args)}
    for cond in then.preconditions:
        for fact, op, value in cond.instances(cs, then, after.args):
            if any(f == fact and ((v == value) == (op == "==")) for f, v in made):
                return True
    return False


def _names_its_own(cs: CommandSet, i: int, steps: Sequence[Step], words: Sequence[str]) -> bool:
    """Step ``i`` holds a value the person named that no other step holds ("a lateral of the sacrum",
    "sideways left 5 mm"): the name asks for this step even without a verb. A lift that names only the arm
    the grasp already holds asks for nothing."""
    spec = cs.skills[steps[i].skill]
    for name, value in steps[i].args.items():
        arg = spec.args.get(name)
        if arg is None or arg.type != "enum" or not isinstance(value, str):
            continue
        elsewhere = any(value in other.args.values() for j, other in enumerate(steps) if j != i)
        if not elsewhere and _named(cs.domain, arg.entities, value, words):
            return True
    return False


def _unasked_motion(cs: CommandSet, words: Sequence[str], steps: Sequence[Step]) -> list[Issue]:
    """Motion steps the text does not ask for: a motion step stands when its own words are said (or a
    task's that includes it), when it sets up a later step that stands (grasp before lift), or when it
    holds a value the person named for it alone. A park, lift or release the model adds stands on none."""
    trig = _skill_triggers(cs.domain)
    asked = [False] * len(steps)
    for i in reversed(range(len(steps))):
        step = steps[i]
        asked[i] = cs.skills[step.skill].hazard is not Hazard.MOTION or _said_any(trig[step.skill], words) \
            or any(asked[j] and _establishes(cs, step, steps[j]) for j in range(i + 1, len(steps))) \
            or _names_its_own(cs, i, steps, words)
    return [Issue(Reason.UNGROUNDED_STEP, f"{steps[i].skill} moves the robot, but the command does not ask for it; "
                  "remove it or refuse", i, steps[i].skill) for i in range(len(steps)) if not asked[i]]


def _swapped_for_default(cs: CommandSet, words: Sequence[str], raw_steps: Sequence[Any],
                         steps: Sequence[Step]) -> list[Issue]:
    """A value the person named, dropped for the argument's default (or left out, which is the same):
    "lateral" planned as the default AP, "towards the head" as the default caudal. Only where the named value
    is one this argument may take and no other argument of the plan holds it."""
    held = {v for step in steps for v in step.args.values() if isinstance(v, str)}
    issues: list[Issue] = []
    for i, spec, given, name, value, arg in _model_args(cs, raw_steps, steps):
        if arg.type != "enum" or not isinstance(value, str) or (given.get(name) is not None and value != arg.default):
            continue
        if _named(cs.domain, arg.entities, value, words):
            continue
        other = next((v for v in cs.allowed_values(arg) if v != value and v not in held
                      and _named(cs.domain, arg.entities, v, words)), None)
        if other is not None:
            issues.append(Issue(Reason.UNGROUNDED_VALUE, f"{name} is {value!r}, but the command names {other!r}; "
                                "use the value the person named", i, spec.name, name, value=value))
    return issues


@functools.cache
def _control_words() -> dict[str, list[tuple[str, ...]]]:
    return {name: [w for p in ps if (w := tuple(words_of(p)))] for name, ps in CONTROL_PHRASES.items()}


def control_grounded(domain: str, words: Sequence[str], intent: Control) -> bool:
    """A model's control intent stands only if the text says it; ``confirm`` and ``resume`` (the ones that
    let a robot move) only if the text is nothing but control words. ``stop`` always stands: a false
    stop is an annoyance, a missed one is not."""
    if intent is Control.STOP:
        return True
    phrases = _control_words()
    if not any(_contains(words, p) for p in phrases.get(intent.value, [])):
        return False
    if intent not in (Control.CONFIRM, Control.RESUME):
        return True
    covered = [False] * len(words)
    for plist in phrases.values():
        for p in plist:
            n = len(p)
            for i in range(len(words) - n + 1):
                if tuple(words[i:i + n]) == p:
                    covered[i:i + n] = [True] * n
    return all(c or w in FILLER for c, w in zip(covered, words))


@functools.cache
def _entity_phrases(domain: str) -> dict[str, dict[str, tuple[frozenset[str], tuple[tuple[str, ...], ...]]]]:
    """Per entity and value: the words that name this value and no other value of the entity, and the
    value's synonyms as phrases."""
    cs = load_command_set(domain)
    out: dict[str, dict[str, tuple[frozenset[str], tuple[tuple[str, ...], ...]]]] = {}
    for etype, ent in cs.entities.items():
        per: dict[str, set[str]] = {}
        phrases: dict[str, set[tuple[str, ...]]] = {}
        for value, ev in ent.values.items():
            names = {*ev.synonyms, value.replace("_", " "), value}
            phrases[value] = {p for n in names if (p := tuple(w for w in words_of(n) if w not in _ARTICLES))}
            per[value] = {w for p in phrases[value] for w in p if _usable(w) and not w.isdigit()}
        counts: dict[str, int] = {}
        for ws in per.values():
            for w in ws:
                counts[w] = counts.get(w, 0) + 1
        out[etype] = {v: (frozenset(w for w in ws if counts[w] == 1), tuple(phrases[v])) for v, ws in per.items()}
    return out


def _named(domain: str, etypes: Sequence[str], value: str, words: Sequence[str]) -> bool:
    table = _entity_phrases(domain)
    for etype in etypes:
        entry = table.get(etype, {}).get(value)
        if entry is None:
            continue
        distinct, phrases = entry
        if any(is_form(t, w) for t in words for w in distinct):
            return True
        if any(said_together(words, p) for p in phrases):
            return True
    return False


def _ungrounded_entities(cs: CommandSet, words: Sequence[str], raw_steps: Sequence[Any],
                         steps: Sequence[Step]) -> list[Issue]:
    """Every arm, organ, view... the model chose must be named in the text, be the only choice, a default,
    the parent of a named value (L4 names the lumbar spine) or the other of a pair whose partner is named
    (hand over to the left arm: from the right). Catches a model that maps "psm3" to psm1."""
    named: set[tuple[str, str]] = set()
    choices: list[tuple[int, SkillSpec, str, ArgSpec, str]] = []
    for i, spec, given, name, value, arg in _model_args(cs, raw_steps, steps):
        if arg.type == "enum" and isinstance(value, str):
            key = (arg.entities[0] if arg.entities else name, value)
            if _named(cs.domain, arg.entities, value, words):
                named.add(key)
            elif given.get(name) is not None:
                choices.append((i, spec, name, arg, value))
    changed = True
    while changed and choices:
        changed = False
        for choice in list(choices):
            i, spec, name, arg, value = choice
            if _implied_choice(cs, spec, name, arg, value, steps[i].args, named):
                named.add((arg.entities[0] if arg.entities else name, value))
                choices.remove(choice)
                changed = True
    return [Issue(Reason.UNGROUNDED_VALUE, f"{name} {value!r} is not named in the command; use only what the "
                  "person named, or ask", i, spec.name, name, value=value) for i, spec, name, arg, value in choices]


def _implied_choice(cs: CommandSet, skill: SkillSpec, name: str, arg: ArgSpec, value: str, args: dict[str, Any],
                    named: set[tuple[str, str]]) -> bool:
    etype = arg.entities[0] if arg.entities else name
    if (etype, value) in named or value == arg.default or len(cs.allowed_values(arg)) == 1:
        return True
    if arg.values_from:
        other, attr = arg.values_from.split(".")
        ov = args.get(other)
        ev = cs.entity_value(ov, skill.args[other]) if isinstance(ov, str) else None
        choices = ev.attr(attr) if ev is not None else None
        if choices is not None and len(choices) == 1 and choices[0] == value:
            return True
    ev = cs.entity_value(value, arg)
    levels = ev.levels if ev is not None else None
    if levels and any(v in levels for _e, v in named):
        return True
    for group in skill.distinct:
        if name in group:
            partners = [args.get(a) for a in group if a != name]
            rest = [v for v in cs.allowed_values(arg) if v not in partners]
            if len(rest) == 1 and rest[0] == value and all((etype, p) in named for p in partners):
                return True
    return False


def _asked_words(domain: str, text: str) -> tuple[list[str], list[str]]:
    """The tokens of what the text asks for ("do not take a shot yet", "exposure confirmed": a step the text
    negates, defers or confirms is struck), and the same without punctuation."""
    asked_tokens = asked_only(domain, words_to_numbers(tokenize(text)))[0]
    return asked_tokens, [t for t in asked_tokens if t not in _PUNCT]


def ground_plan(domain: str, text: str, raw_steps: Sequence[Any], steps: Sequence[Step],
                world: WorldState | None = None, reading: Reading | None = None) -> list[Issue]:
    """Issues for a validated plan that says other than the text. Where the offline planner reads the text
    completely, the plan must say what that reading says (``reading.against_reading``), and every arm,
    organ or view it holds must be named as a name; where it does not (the only texts ``--planner hybrid``
    sends to a model), the word-level checks of ``ground_words``.

    ``raw_steps`` are the model's steps as sent (to tell a value it gave from a default the validator
    filled); ``steps`` the validator's normalised ones, index for index. ``reading`` is the command's
    reading when the caller made it already (``reading.read``), else it is made here.
    """
    said = (reading or read(domain, text, world)).steps
    if said is None:
        return ground_words(domain, text, raw_steps, steps)
    cs = load_command_set(domain)
    asked_tokens, words = _asked_words(domain, text)
    # a step the reading lacks (one with no hazard: those may be added) still holds only said numbers
    return against_reading(domain, said, steps) or _ungrounded_entities(cs, words, raw_steps, steps) or \
        _ungrounded_numbers(cs, asked_tokens, words, raw_steps, steps, unmatched(said, steps))


def ground_words(domain: str, text: str, raw_steps: Sequence[Any], steps: Sequence[Step]) -> list[Issue]:
    """The word-level checks, for a text no planner reads completely: a contact or radiation step nobody
    asked for, more exposures of a kind than asked (or a text asking for more than the limit), a motion step
    nobody asked for, an arm, organ or view the person never named or a named one dropped for the default,
    or a number the person never said with that sign and unit (a clamped, invented or borrowed value)."""
    cs = load_command_set(domain)
    asked_tokens, words = _asked_words(domain, text)
    issues: list[Issue] = []
    for hazard in (Hazard.CONTACT, Hazard.RADIATION):
        if _asked_for(domain, hazard, words):
            continue
        for i, step in enumerate(steps):
            spec = cs.skill(step.skill)
            if spec is not None and spec.hazard is hazard:
                issues.append(Issue(Reason.UNGROUNDED_HAZARD, f"{step.skill} is a {hazard.value} step, but the "
                                    f"command does not ask for {hazard.value}; remove it or refuse", i, step.skill))
    if cs.max_exposures is not None:
        cap = max(1, _views(cs, steps))
        per_skill = {name: _exposures_asked(_skill_triggers(domain)[name], words, cap)
                     for name in cs.skills if name in cs.radiation_skills}
        definite = sum(d for _a, d in per_skill.values())
        if definite > cs.max_exposures:
            issues.append(Issue(Reason.EXPOSURE_LIMIT, f"the command asks for {definite} exposures, above the limit "
                                f"of {cs.max_exposures} in one plan; refuse it", limit=(0, cs.max_exposures),
                                value=definite))
        elif not issues:
            for name, (asked, _d) in per_skill.items():
                n = sum(1 for s in steps if s.skill == name)
                if n > asked:
                    issues.append(Issue(Reason.EXPOSURE_COUNT, f"the plan has {n} {name} exposures but the command "
                                        f"asks for {asked}; each exposure must be asked for", limit=(0, asked),
                                        value=n, skill=name))
    issues += _unasked_motion(cs, words, steps)
    issues += _ungrounded_entities(cs, words, raw_steps, steps)
    issues += _swapped_for_default(cs, words, raw_steps, steps)
    return issues + _ungrounded_numbers(cs, asked_tokens, words, raw_steps, steps)


def _ungrounded_numbers(cs: CommandSet, asked_tokens: Sequence[str], words: Sequence[str], raw_steps: Sequence[Any],
                        steps: Sequence[Step], only: frozenset[int] | None = None) -> list[Issue]:
    """A number the model gave (in the steps ``only`` names, or all) that the person never said, with that
    sign and in a unit of that kind."""
    said = quantities(asked_tokens)
    issues: list[Issue] = []
    for i, spec, given, name, value, arg in _model_args(cs, raw_steps, steps):
        if given.get(name) is None or arg.type not in ("number", "vector3") or (only is not None and i not in only):
            continue
        args = steps[i].args
        allowed = _allowed_values(cs, spec, name, arg, args, said, words)
        values = [abs(v) for v in value] if isinstance(value, list) else [value]
        bad = [v for v in values if isinstance(v, (int, float)) and not _value_ok(float(v), allowed)]
        if bad:
            unit = _unit_of(cs, spec, arg, args)
            issues.append(Issue(Reason.UNGROUNDED_VALUE, f"{name} = {bad[0]} {unit} is not a value the person "
                                "said; use the person's own value, null for the default, or ask", i, spec.name, name,
                                value=bad[0]))
    return issues


def _model_args(cs: CommandSet, raw_steps: Sequence[Any], steps: Sequence[Step]
                ) -> Iterator[tuple[int, SkillSpec, dict[str, Any], str, Any, ArgSpec]]:
    """Each resolved argument of a step the model answered with args, beside what the model itself wrote:
    grounding checks judge only what the model chose, never a default the validator filled in."""
    for i, (raw, step) in enumerate(zip(raw_steps, steps)):
        spec = cs.skill(step.skill)
        given = raw.get("args") if isinstance(raw, dict) else None
        if spec is None or not isinstance(given, dict):
            continue
        for name, value in step.args.items():
            arg = spec.args.get(name)
            if arg is not None:
                yield i, spec, given, name, value, arg
