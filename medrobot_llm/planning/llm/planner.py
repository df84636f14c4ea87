"""The LLM planner: any OpenAI-compatible endpoint behind the same validator as the offline planner.

A model is a fallible, persuadable text generator, so nothing it says is trusted on its own. The person's
text is screened before any call; the answer goes through ``check_steps`` (which recomputes the
confirmations from ``skills/``) and through grounding checks that hold the plan to what the person
actually said: no contact or radiation step, no exposure count, no number and no control intent that the
text does not ask for. Rejections go back to the model as the validator's structured issues for a bounded
number of repairs; then the command is refused with the reason. The transport retries with backoff,
trips a circuit breaker when the endpoint keeps failing, and can hand over to the offline planner with a
visible notice. Every HTTP attempt is written to the audit log.
"""

from __future__ import annotations

import functools
import json
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from medrobot_llm.language.inflection import is_form
from medrobot_llm.language.numbers import FRACTIONS, words_to_numbers
from medrobot_llm.language.phrases import said
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import CONTROL_PHRASES, FILLER
from medrobot_llm.planning.llm.config import LLMConfig, LLMConfigError, config_from_args
from medrobot_llm.planning.llm.prompt import build_messages, repair_message
from medrobot_llm.planning.llm.schema import (
    CLARIFY_TOOL,
    CONTROL_TOOL,
    PLAN_TOOL,
    REFUSE_TOOL,
    response_format,
    skill_tools,
    submit_plan_tool,
)
from medrobot_llm.core.clock import Clock
from medrobot_llm.core.plan import Control, Plan, PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.command_set import (DOMAINS, ArgSpec, CommandSet, Hazard, SkillSpec, load_command_set,
                                           unknown_domain)
from medrobot_llm.core.units import DIMENSION_OF_UNIT, UNIT_WORDS
from medrobot_llm.core.validator import Issue, PlanValidationError, WorldState, check_steps

if TYPE_CHECKING:
    import argparse

    from medrobot_llm.planning.base import Planner

__all__ = [
    "CircuitBreaker",
    "HybridPlanner",
    "LLMPlanner",
    "LLMUnavailable",
    "Trace",
    "ground_plan",
    "planner_from_args",
]

_AUTO_ORDER: tuple[str, ...] = ("json_schema", "tools", "json")
_MAX_TEXT = 300
_PUNCT = frozenset(",.!?;:\"%/°")


class AuditSink(Protocol):
    def append(self, kind: str, **fields: Any) -> Any: ...


class ParsingPlanner(Protocol):
    """The offline planner as the hybrid uses it: ``parse`` also says whether the text was understood."""

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan: ...

    def parse(self, domain: str, text: str, world: WorldState | None = None) -> tuple[Plan, bool]: ...


class LLMUnavailable(RuntimeError):
    """The endpoint cannot answer (timeouts, 5xx after retries, circuit open, auth, no model)."""


class _Rejected(RuntimeError):
    """The server refused the request's shape (400/404/422): a feature it lacks, so try a simpler mode."""


# -- circuit breaker -------------------------------------------------------------------------------------
class CircuitBreaker:
    """Stops calling an endpoint that keeps failing, so a dead server costs one fast refusal, not a timeout
    per command; after ``cooldown`` seconds one trial request decides whether it closes again."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0, clock: Clock = time.monotonic):
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def remaining(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self.opened_at))

    def allow(self) -> bool:
        return self.state != "open"

    def success(self) -> None:
        with self._lock:
            self.failures = 0
            self.opened_at = None

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold or self.opened_at is not None:
                self.opened_at = self.clock()


# -- per-command trace ----------------------------------------------------------------------------------
@dataclass
class Trace:
    """What one command cost and why it ended as it did; read by tests, benchmarks and the audit log."""

    domain: str = ""
    http_attempts: int = 0
    model_calls: int = 0
    repairs: int = 0
    transport_retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_s: float = 0.0
    total_s: float = 0.0
    mode: str = ""
    modes_tried: list[str] = field(default_factory=list)
    issues: list[list[dict[str, Any]]] = field(default_factory=list)
    stripped: list[str] = field(default_factory=list)
    screened: str | None = None
    unavailable: str | None = None
    fallback: bool = False

    @property
    def overhead_s(self) -> float:
        return max(0.0, self.total_s - self.model_s)


# -- grounding: the plan may not do more than the text asks -----------------------------------------------
#: verbs too general to show what was asked for ("take" a shot and "take" a picture)
_GENERIC = frozenset("take make do get set put give have show one".split())
_ARTICLES = frozenset("a an the some".split())
#: words that only qualify another ("press harder", "touch down"): never a request on their own
_MODIFIERS = frozenset("more less harder softer higher lower down up back change adjust increase decrease reduce "
                       "open close".split())


def _words(text: str) -> list[str]:
    return [t for t in words_to_numbers(tokenize(text)) if t not in _PUNCT]


def _content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w not in FILLER]


def _usable(word: str) -> bool:
    return len(word) > 1 and not word.replace(".", "").isdigit() and word not in FILLER and word not in _GENERIC


@dataclass(frozen=True)
class _Triggers:
    """Words and phrases that show a person asked for one hazard class, generated from the skill files."""

    words: frozenset[str]
    phrases: tuple[tuple[str, ...], ...]


@functools.cache
def _triggers(domain: str) -> dict[Hazard, _Triggers]:
    """Single-word synonyms and argument keywords of the class's skills (and of tasks that include them) are
    trigger words; a multi-word synonym contributes its whole phrase, and those of its words that name
    nothing else in the domain (no other skill, no entity) and are not mere modifiers."""
    cs = load_command_set(domain)
    shared = {w for s in cs.skills.values() if not s.hazard.needs_confirmation for syn in s.synonyms
              for w in _words(syn)}
    shared |= {w for ent in cs.entities.values() for ev in ent.values.values() for syn in ev.synonyms
               for w in _words(syn)}
    out: dict[Hazard, _Triggers] = {}
    for hazard in (Hazard.CONTACT, Hazard.RADIATION):
        skills = {n for n, s in cs.skills.items() if s.hazard is hazard}
        if not skills:
            continue
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
            ws = _words(syn)
            content = tuple(_content(ws))
            if len(ws) == 1 and _usable(ws[0]):
                words.add(ws[0])
                continue
            words.update(w for w in content if _usable(w) and w not in shared and w not in _MODIFIERS)
            phrase = tuple(w for w in ws if w not in _ARTICLES)
            if len(phrase) >= 2:
                phrases.add(phrase)
        words.update(w for k in keywords for w in _words(k) if _usable(w))
        out[hazard] = _Triggers(frozenset(words), tuple(sorted(phrases, key=len, reverse=True)))
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


def _exposures_asked(domain: str, words: Sequence[str], cap: int) -> tuple[int, int]:
    """How many exposures the text allows, and how many it asks for for certain: a count said before an
    exposure word ("3 shots", "ten x-rays") or a singular mention is certain; a plural without a count
    allows one per view the plan sets up ("AP and lateral shots"), which ``cap`` carries."""
    trig = _triggers(domain).get(Hazard.RADIATION)
    if trig is None:
        return 0, 0
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


@functools.cache
def _unit_factors() -> dict[str, frozenset[float]]:
    out: dict[str, set[float]] = {}
    for dim, factor in UNIT_WORDS.values():
        out.setdefault(dim, {1.0}).add(factor)
    return {k: frozenset(v) for k, v in out.items()}


def _numbers_said(words: Sequence[str]) -> list[float]:
    out = [float(w) for w in words if re.fullmatch(r"\d+(\.\d+)?", w)]
    out += [v for w, v in FRACTIONS.items() if w in words]
    return out


def _unit_of(cs: CommandSet, skill: SkillSpec, spec: ArgSpec, args: dict[str, Any]) -> str:
    if spec.unit_from:
        ref = args.get(spec.unit_from)
        ev = cs.entity_value(ref, skill.args[spec.unit_from]) if isinstance(ref, str) else None
        if ev is not None and ev.unit:
            return ev.unit
    return spec.unit or ""


def _value_ok(value: float, allowed: set[float]) -> bool:
    v = abs(value)
    return any(abs(v - a) <= 0.01 + 1e-6 * a for a in allowed)


def _allowed_values(cs: CommandSet, skill: SkillSpec, name: str, spec: ArgSpec, args: dict[str, Any],
                    numbers: list[float]) -> set[float]:
    allowed: set[float] = {0.0} if spec.type == "vector3" else set()
    if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
        allowed.add(abs(float(spec.default)))
    for implied in skill.implied.values():
        v = implied.get(name)
        if isinstance(v, (int, float)):
            allowed.add(abs(float(v)))
    if spec.range_from:
        ref = args.get(spec.range_from)
        ev = cs.entity_value(ref, skill.args[spec.range_from]) if isinstance(ref, str) else None
        if ev is not None and ev.small is not None:
            allowed.add(abs(ev.small))
    dim = DIMENSION_OF_UNIT.get(_unit_of(cs, skill, spec, args))
    factors = _unit_factors().get(dim or "", frozenset({1.0}))
    allowed.update(abs(n * f) for n in numbers for f in factors)
    return allowed


@functools.cache
def _control_words() -> dict[str, list[tuple[str, ...]]]:
    return {name: [w for p in ps if (w := tuple(_words(p)))] for name, ps in CONTROL_PHRASES.items()}


def _control_grounded(domain: str, words: Sequence[str], intent: Control) -> bool:
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
            phrases[value] = {p for n in names if (p := tuple(w for w in _words(n) if w not in _ARTICLES))}
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
        if any(said(list(words), p, gaps=False) for p in phrases):
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


def ground_plan(domain: str, text: str, raw_steps: Sequence[Any], steps: Sequence[Step]) -> list[Issue]:
    """Issues for a validated plan that does more than the text asks: a contact or radiation step nobody
    asked for, more exposures than asked (or a text asking for more than the limit), an arm, organ or view
    the person never named, or a number the person never said (a clamped or invented value).

    ``raw_steps`` are the model's steps as sent (to tell a value it gave from a default the validator
    filled); ``steps`` the validator's normalised ones, index for index.
    """
    cs = load_command_set(domain)
    words = _words(text)
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
        n = sum(1 for s in steps if s.skill in cs.radiation_skills)
        asked, definite = _exposures_asked(domain, words, max(1, _views(cs, steps)))
        if definite > cs.max_exposures:
            issues.append(Issue(Reason.EXPOSURE_LIMIT, f"the command asks for {definite} exposures, above the limit "
                                f"of {cs.max_exposures} in one plan; refuse it", limit=(0, cs.max_exposures),
                                value=definite))
        elif n > asked and not issues:
            issues.append(Issue(Reason.EXPOSURE_COUNT, f"the plan has {n} exposures but the command asks for "
                                f"{asked}; each exposure must be asked for", limit=(0, asked), value=n))
    issues += _ungrounded_entities(cs, words, raw_steps, steps)
    numbers = _numbers_said(words)
    for i, spec, given, name, value, arg in _model_args(cs, raw_steps, steps):
        if given.get(name) is None or arg.type not in ("number", "vector3"):
            continue
        args = steps[i].args
        allowed = _allowed_values(cs, spec, name, arg, args, numbers)
        values = value if isinstance(value, list) else [value]
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


# -- reading the model's answer ---------------------------------------------------------------------------
def _json_object(text: str) -> Any:
    """The first JSON value in a model's text, tolerating code fences and prose around it."""
    s = text.strip()
    if s.startswith("```"):
        s = re.sub(r"^```[a-zA-Z]*\s*", "", s)
        s = re.sub(r"\s*```\s*$", "", s)
    try:
        return json.loads(s)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[{\[]", s):
        try:
            value, _end = decoder.raw_decode(s, m.start())
        except ValueError:
            continue
        if isinstance(value, dict | list):
            return value
    raise ValueError("no JSON object in the answer")


def _tool_args(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise ValueError("tool arguments are neither a JSON string nor an object")
    return json.loads(raw) if raw.strip() else {}


def _answer_from_tools(calls: list[tuple[str, Any]]) -> dict[str, Any]:
    """A submit_plan call is the whole answer; calls named after skills are the steps, in order."""
    for name, raw in calls:
        if name == PLAN_TOOL:
            got = _tool_args(raw)
            if not isinstance(got, dict):
                raise ValueError(f"{PLAN_TOOL} arguments are not an object")
            return got
    steps: list[dict[str, Any]] = []
    for name, raw in calls:
        got = _tool_args(raw)
        if name == REFUSE_TOOL:
            return {"status": "refused", "reason": got.get("reason") if isinstance(got, dict) else None}
        if name == CLARIFY_TOOL:
            return {"status": "clarify", "question": got.get("question") if isinstance(got, dict) else None}
        if name == CONTROL_TOOL:
            return {"status": "control", "control": got.get("control") if isinstance(got, dict) else None}
        steps.append({"skill": name, "args": got})
    return {"status": "ok", "steps": steps}


def _clean_text(value: Any, fallback: str) -> str:
    if not isinstance(value, str) or not value.strip():
        return fallback
    text = "".join(c if c.isprintable() else " " for c in value)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


_ANSWER_KEYS = frozenset({"status", "steps", "control", "reason", "question"})


# -- the planner ------------------------------------------------------------------------------------------
def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# What only a text written for a language model says: notes addressed to the model, approvals claimed in
# advance, steps to hide, answers dictated. The offline screen catches the common forms; these are the
# paraphrases a model would obey and a parser would never see.
def _screen(text: str) -> str | None:
    """The offline planner's screen, then the model-specific one; either refuses before any model call."""
    from medrobot_llm.language.screen import screen_text

    return screen_text(text)


class LLMPlanner:
    """``--planner openai``: plans through a model, guarded by the screen, the validator and grounding.

    ``clock`` measures latencies for traces and benchmarks; ``breaker_clock`` decides when an open circuit
    may try again, and is the one a test drives by hand.
    """

    name = "openai"

    def __init__(self, config: LLMConfig | None = None, *, client: Any | None = None, audit: AuditSink | None = None,
                 fallback: Planner | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.perf_counter, notify: Callable[[str], None] = _stderr,
                 jitter: Callable[[], float] = random.random, breaker_clock: Clock = time.monotonic) -> None:
        self.config = (config or LLMConfig()).check()
        self._client = client
        self.audit = audit
        self.fallback = fallback
        self.sleep = sleep
        self.clock = clock
        self.notify = notify
        self.jitter = jitter
        self.breaker = CircuitBreaker(self.config.breaker_threshold, self.config.breaker_cooldown, breaker_clock)
        self._modes = list(_AUTO_ORDER) if self.config.mode == "auto" else [self.config.mode]
        self._model: str | None = self.config.model
        self._announced = False
        self._request_cache: dict[tuple[str, str], dict[str, Any]] = {}
        self.last = Trace()
        self.totals = Trace()
        self.commands = 0

    # -- public ---------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """The structured-output mode in use (auto mode settles on the first one the server accepts)."""
        return self._modes[0]

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        trace = Trace(domain=domain)
        self.last = trace
        start = self.clock()
        try:
            plan = self._plan(domain, text, world, trace)
        finally:
            trace.total_s = self.clock() - start
            self._account(trace)
        self._log("llm_plan", domain=domain, status=plan.status.value, model=self._model, mode=trace.mode,
                  calls=trace.http_attempts, repairs=trace.repairs, prompt_tokens=trace.prompt_tokens,
                  completion_tokens=trace.completion_tokens, model_ms=round(trace.model_s * 1000, 3),
                  overhead_ms=round(trace.overhead_s * 1000, 3), fallback=trace.fallback,
                  screened=trace.screened is not None, unavailable=trace.unavailable)
        return plan

    # -- steps ----------------------------------------------------------------------------------------
    def _plan(self, domain: str, text: str, world: WorldState | None, trace: Trace) -> Plan:
        if domain not in DOMAINS:
            return Plan.refused(str(domain)[:40], unknown_domain(str(domain)[:40]), Reason.UNKNOWN_DOMAIN)
        why = _screen(text)
        if why:
            trace.screened = why
            return Plan.refused(domain, why, Reason.INJECTION)
        try:
            return self._converse(domain, text, world, trace)
        except LLMUnavailable as exc:
            trace.unavailable = str(exc)
            return self._unavailable(domain, text, world, trace, str(exc))

    def _unavailable(self, domain: str, text: str, world: WorldState | None, trace: Trace, why: str) -> Plan:
        if self.fallback is not None:
            trace.fallback = True
            self.notify(f"medrobot: the language model is unavailable ({why}); this command was planned by the "
                        "offline rule planner instead")
            self._log("llm_fallback", domain=domain, reason=why, planner=getattr(self.fallback, "name", "rule"))
            return self.fallback.plan(domain, text, world)
        return Plan.refused(domain, f"the language model is unavailable ({why}); nothing was planned. Try again, "
                            "or use the offline planner (--planner rule)", Reason.MODEL_UNAVAILABLE)

    def _converse(self, domain: str, text: str, world: WorldState | None, trace: Trace) -> Plan:
        budget = self.config.repair_retries
        history: list[dict[str, Any]] = []
        last_issues: list[Issue] = []
        for repair in range(budget + 1):
            message, answer, error = self._ask(domain, text, world, history, trace)
            if error is not None:
                issues = [Issue(Reason.MALFORMED, f"the answer could not be read: {error}")]
            else:
                result = self._judge(domain, text, answer, world, trace)
                if isinstance(result, Plan):
                    return result
                issues = result
            last_issues = issues
            trace.issues.append([i.to_json() for i in issues])
            if repair == budget:
                break
            trace.repairs += 1
            history += self._repair_turn(message, issues, repair + 1, budget)
        rejected = PlanValidationError(last_issues)
        return Plan.refused(domain, f"the model's plan was rejected after {budget} "
                            f"repair{'s' if budget != 1 else ''}: {rejected.sentence()}", rejected.code)

    def _repair_turn(self, message: dict[str, Any], issues: list[Issue], attempt: int,
                     budget: int) -> list[dict[str, Any]]:
        feedback = repair_message(issues, attempt, budget)
        calls = message.get("tool_calls") or []
        if calls:
            turn: list[dict[str, Any]] = [message]
            for k, call in enumerate(calls):
                body = feedback if k == 0 else "See above."
                turn.append({"role": "tool", "tool_call_id": call["id"], "content": body})
            return turn
        return [message, {"role": "user", "content": feedback}]

    def _judge(self, domain: str, text: str, answer: Any, world: WorldState | None,
               trace: Trace) -> Plan | list[Issue]:
        if isinstance(answer, list):
            answer = {"status": "ok", "steps": answer}
        if not isinstance(answer, dict):
            return [Issue(Reason.MALFORMED, "the answer must be a JSON object with status and steps")]
        extra = sorted(str(k) for k in answer if k not in _ANSWER_KEYS)
        if extra:
            trace.stripped += extra
        status = answer.get("status")
        if status is None and isinstance(answer.get("steps"), list) and answer["steps"]:
            status = "ok"
        if status == PlanStatus.REFUSED.value:
            return Plan.refused(domain, _clean_text(answer.get("reason"), "the model refused the command"),
                                Reason.MODEL_REFUSED)
        if status == PlanStatus.CLARIFY.value:
            return Plan.clarify(domain, _clean_text(answer.get("question"), "Could you say that more precisely?"),
                                Reason.MODEL_QUESTION)
        if status == PlanStatus.CONTROL.value:
            try:
                intent = Control(str(answer.get("control")).strip().lower())
            except ValueError:
                return [Issue(Reason.MALFORMED, f"control {answer.get('control')!r} is not one of "
                              f"{', '.join(c.value for c in Control)}")]
            if _control_grounded(domain, _words(text), intent):
                return Plan.of_control(domain, intent)
            return [Issue(Reason.UNGROUNDED_CONTROL, f"the command does not say {intent.value!r}; a control "
                          "intent must be what the person said")]
        if status != PlanStatus.OK.value:
            return [Issue(Reason.MALFORMED, f"status {status!r} is not one of ok, refused, clarify, control")]
        raw_steps = answer.get("steps")
        if isinstance(raw_steps, list) and len(raw_steps) > self.config.max_steps:
            return [Issue(Reason.TOO_MANY_STEPS, f"the plan has {len(raw_steps)} steps, above the limit of "
                          f"{self.config.max_steps}")]
        if isinstance(raw_steps, list):
            for raw in raw_steps:
                if isinstance(raw, dict):
                    trace.stripped += sorted(f"steps.{k}" for k in raw if k not in ("skill", "args"))
        try:
            steps, confirm = check_steps(domain, raw_steps, world)
        except PlanValidationError as exc:
            if exc.needs_clarification:
                msg = exc.issues[0].message
                return Plan.clarify(domain, (msg[0].upper() + msg[1:]).rstrip(".?") + "?", exc.code)
            return exc.issues
        assert isinstance(raw_steps, list)
        issues = ground_plan(domain, text, raw_steps, steps)
        if issues:
            return issues
        return Plan(status=PlanStatus.OK, domain=domain, steps=steps, needs_confirmation=confirm)

    # -- one model call (with mode fallback) -----------------------------------------------------------
    def _ask(self, domain: str, text: str, world: WorldState | None, history: list[dict[str, Any]],
             trace: Trace) -> tuple[dict[str, Any], Any, str | None]:
        while True:
            mode = self._modes[0]
            trace.mode = mode
            if mode not in trace.modes_tried:
                trace.modes_tried.append(mode)
            messages = build_messages(domain, text, mode, self.config.tool_style, world) + history
            try:
                response = self._http(domain, mode, messages, trace, len(history) // 2)
            except _Rejected as exc:
                if len(self._modes) > 1:
                    old = self._modes.pop(0)
                    self.notify(f"medrobot: the server rejected {old} output ({exc}); falling back to "
                                f"{self._modes[0]} mode")
                    self._log("llm_mode_fallback", domain=domain, from_mode=old, to_mode=self._modes[0],
                              error=str(exc)[:200])
                    continue
                raise LLMUnavailable(f"the server rejected the request: {exc}") from exc
            break
        if not self._announced:
            self._announced = True
            self.notify(f"medrobot: LLM planner using model {self._model} at {self._base_url()}, "
                        f"structured output mode: {mode}")
        trace.model_calls += 1
        choice = response.choices[0] if response.choices else None
        msg = choice.message if choice is not None else None
        content = getattr(msg, "content", None)
        calls = [(c.function.name, c.function.arguments, c.id) for c in (getattr(msg, "tool_calls", None) or [])
                 if getattr(c, "function", None) is not None]
        record: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            record["tool_calls"] = [{"id": cid or f"call_{k}", "type": "function",
                                     "function": {"name": n, "arguments": a}} for k, (n, a, cid) in enumerate(calls)]
        try:
            if calls:
                answer = _answer_from_tools([(n, a) for n, a, _ in calls])
            elif isinstance(content, str) and content.strip():
                answer = _json_object(content)
            else:
                finish = getattr(choice, "finish_reason", None)
                return record, None, f"the answer was empty (finish reason {finish})"
        except ValueError as exc:
            return record, None, str(exc)
        return record, answer, None

    def _request(self, domain: str, mode: str) -> dict[str, Any]:
        key = (domain, mode)
        cached = self._request_cache.get(key)
        if cached is None:
            cached = {}
            if mode == "json_schema":
                cached["response_format"] = response_format(domain, self.config.max_steps)
            elif mode == "tools":
                if self.config.tool_style == "per_skill":
                    cached["tools"] = skill_tools(domain)
                else:
                    cached["tools"] = [submit_plan_tool(domain, self.config.max_steps)]
                cached["tool_choice"] = "required"
            self._request_cache[key] = cached
        return cached

    def _base_url(self) -> str:
        return self.config.base_url or "https://api.openai.com/v1"

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                key = self.config.resolved_key()
            except LLMConfigError as exc:
                raise LLMUnavailable(str(exc)) from exc
            import openai

            self._client = openai.OpenAI(base_url=self._base_url(), api_key=key, timeout=self.config.timeout,
                                         max_retries=0)
        return self._client

    def _resolve_model(self, client: Any) -> str:
        if self._model:
            return self._model
        if self.config.is_openai:
            raise LLMUnavailable("no model named: set --model or MEDROBOT_MODEL")
        import openai

        try:
            models = [m.id for m in client.models.list(timeout=self.config.timeout)]
        except openai.OpenAIError as exc:
            raise LLMUnavailable(f"no model named and the server did not list its models ({exc})") from exc
        if not models:
            raise LLMUnavailable("no model named and the server lists none: set --model or MEDROBOT_MODEL")
        self._model = models[0]
        return self._model

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.config.backoff_max)
        base = min(self.config.backoff_max, self.config.backoff_base * 2.0 ** attempt)
        return base * (0.5 + 0.5 * self.jitter())

    def _http(self, domain: str, mode: str, messages: list[dict[str, Any]], trace: Trace, repair: int) -> Any:
        import openai

        client = self._get_client()
        model = self._resolve_model(client)
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "temperature": self.config.temperature,
                                  "max_tokens": self.config.max_tokens, "timeout": self.config.timeout}
        kwargs.update(self._request(domain, mode))
        retries = self.config.max_retries
        for attempt in range(retries + 1):
            if not self.breaker.allow():
                raise LLMUnavailable(f"circuit open after {self.breaker.failures} failed requests; retrying in "
                                     f"{self.breaker.remaining():.0f} s")
            trace.http_attempts += 1
            t0 = self.clock()
            status = "ok"
            retry_after: float | None = None
            response: Any = None
            error: BaseException | None = None
            try:
                response = client.chat.completions.create(**kwargs)
            except openai.APITimeoutError as exc:
                status, error = "timeout", exc
            except openai.APIConnectionError as exc:
                status, error = "connection_error", exc
            except openai.APIStatusError as exc:
                status, error = f"http_{exc.status_code}", exc
                retry_after = _retry_after(exc)
            except openai.OpenAIError as exc:
                status, error = "bad_response", exc
            finally:
                latency = self.clock() - t0
                trace.model_s += latency
            if error is None and not isinstance(getattr(response, "choices", None), list):
                status, error = "bad_response", LLMUnavailable("the answer is not a chat completion")
                response = None
            usage = getattr(response, "usage", None)
            pt = int(getattr(usage, "prompt_tokens", 0) or 0)
            ct = int(getattr(usage, "completion_tokens", 0) or 0)
            trace.prompt_tokens += pt
            trace.completion_tokens += ct
            self._log("llm_call", domain=domain, model=model, mode=mode, latency_ms=round(latency * 1000, 3),
                      prompt_tokens=pt, completion_tokens=ct, attempt=trace.http_attempts, repair=repair,
                      status=status)
            if error is None:
                self.breaker.success()
                return response
            code = getattr(error, "status_code", None)
            if code in (400, 404, 405, 415, 422):
                self.breaker.success()
                raise _Rejected(_error_text(error)) from error
            if code in (401, 403):
                self.breaker.success()
                raise LLMUnavailable(f"the server refused the credentials (HTTP {code})") from error
            self.breaker.failure()
            if attempt < retries and (code is None or code == 408 or code == 409 or code == 429 or code >= 500):
                trace.transport_retries += 1
                self.sleep(self._backoff(attempt, retry_after))
                continue
            what = {"timeout": f"timed out (limit {self.config.timeout:g} s)", "connection_error": "could not connect",
                    "bad_response": "got an answer that is not a chat completion"}.get(
                        status, f"failed with HTTP {code}")
            raise LLMUnavailable(f"the model call {what}, {attempt + 1} attempt{'s' if attempt else ''}") from error
        raise LLMUnavailable("no attempt was made")

    # -- bookkeeping ----------------------------------------------------------------------------------
    def _log(self, kind: str, **fields: Any) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(kind, **fields)
        except Exception as exc:  # noqa: BLE001 - a broken log must be visible, not fatal to planning
            self.notify(f"medrobot: could not write {kind} to the audit log: {exc}")

    def _account(self, trace: Trace) -> None:
        self.commands += 1
        t = self.totals
        t.http_attempts += trace.http_attempts
        t.model_calls += trace.model_calls
        t.repairs += trace.repairs
        t.transport_retries += trace.transport_retries
        t.prompt_tokens += trace.prompt_tokens
        t.completion_tokens += trace.completion_tokens
        t.model_s += trace.model_s
        t.total_s += trace.total_s


def _retry_after(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return float(raw) * scale
        except ValueError:
            continue
    return None


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        msg = body.get("message") or body.get("error")
        if isinstance(msg, dict):
            msg = msg.get("message")
        if msg:
            return f"HTTP {getattr(exc, 'status_code', '?')}: {str(msg)[:200]}"
    return f"HTTP {getattr(exc, 'status_code', '?')}"


class HybridPlanner:
    """``--planner hybrid``: the offline planner first; the model only for text the offline planner could not
    read at all. Both screens run first, so a refusal for safety reasons is final and never reaches the model
    (the model-specific screen also guards what the offline planner would have read)."""

    name = "hybrid"

    def __init__(self, rule: ParsingPlanner, llm: LLMPlanner) -> None:
        self.rule = rule
        self.llm = llm
        self.llm_commands = 0

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        why = _screen(text)
        if why:
            return Plan.refused(domain, why, Reason.INJECTION)
        plan, understood = self.rule.parse(domain, text, world)
        if understood:
            return plan
        self.llm_commands += 1
        answer = self.llm.plan(domain, text, world)
        if self.llm.last.unavailable and not self.llm.last.fallback:
            reason = plan.reason or "the command was not understood"
            return Plan.refused(domain, f"{reason} (the language model could not be asked: "
                                f"{self.llm.last.unavailable})", Reason.MODEL_UNAVAILABLE)
        return answer


def planner_from_args(args: argparse.Namespace, audit: AuditSink | None = None) -> Planner:
    """Build the ``openai`` or ``hybrid`` planner from CLI flags, environment and config file; a setting that
    cannot work raises ``ValueError`` (the CLI turns it into a usage error, exit 2)."""
    from medrobot_llm.planning.rule.planner import RulePlanner

    cfg = config_from_args(args)
    cfg.resolved_key()
    if cfg.is_openai and not cfg.model:
        raise LLMConfigError("no model named: set --model or MEDROBOT_MODEL (or --base-url for a local server)")
    if audit is None and cfg.audit_log:
        try:
            from medrobot_llm.safety.audit import AuditLog
        except ImportError as exc:
            raise LLMConfigError("--llm-audit needs the audit log module (medrobot_llm.safety.audit)") from exc
        try:
            audit = AuditLog(cfg.audit_log)
        except (OSError, RuntimeError) as exc:
            raise LLMConfigError(f"cannot open the audit log {cfg.audit_log}: {exc}") from exc
    rule = RulePlanner()
    llm = LLMPlanner(cfg, audit=audit, fallback=rule if cfg.fallback == "rule" else None)
    name = getattr(args, "planner", "openai")
    if name == "hybrid":
        return HybridPlanner(rule, llm)
    return llm
