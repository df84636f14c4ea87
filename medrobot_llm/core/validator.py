"""The validator: the one gate every plan passes, whoever wrote it (rule planner, LLM, a person).

It never clamps: a value outside its range refuses the plan and names the limit. It tracks the facts of
the skill files' pre/post columns through the plan, against a known world state (a scene, the
supervisor) or the unknown state, where only what the plan itself establishes can be held against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medrobot_llm.core.plan import Plan, PlanStatus, Step
from medrobot_llm.core.command_set import ArgSpec, CommandSet, SkillFileError, SkillSpec, load_command_set
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.units import UnitError, convert, parse_quantity

__all__ = ["MAX_PLAN_STEPS", "Issue", "PlanValidationError", "WorldState", "check_steps", "validate_plan"]

#: the longest plan any planner may hand the supervisor (command-set.md): "330 sweeps" in one command is a
#: typo or an attack, and a plan that long could not be confirmed step by step in any case
MAX_PLAN_STEPS = 20

_MISSING = object()


@dataclass(frozen=True)
class Issue:
    """One thing wrong with a plan: where (step, arg), what (code) and a sentence for people and models."""

    code: Reason
    message: str
    step: int | None = None
    skill: str | None = None
    arg: str | None = None
    limit: tuple[float, float] | None = None
    value: Any = None

    @property
    def needs_clarification(self) -> bool:
        return self.code is Reason.MISSING

    def sentence(self) -> str:
        if self.step is None:
            return self.message
        if self.skill is None:
            return f"step {self.step + 1}: {self.message}"
        return f"step {self.step + 1} ({self.skill}): {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "message": self.sentence(),
            "step": self.step,
            "skill": self.skill,
            "arg": self.arg,
            "limit": list(self.limit) if self.limit else None,
        }


class PlanValidationError(ValueError):
    """The only exception the validator raises; ``issues`` says which step, which argument, which limit."""

    def __init__(self, issues: Sequence[Issue]):
        self.issues = list(issues)
        super().__init__(self.sentence())

    @property
    def needs_clarification(self) -> bool:
        return all(i.needs_clarification for i in self.issues)

    @property
    def code(self) -> Reason:
        """The plan's code: the first issue's, as the sentence leads with the first issue."""
        return self.issues[0].code if self.issues else Reason.MALFORMED

    def sentence(self) -> str:
        if not self.issues:
            return "the plan is not valid"
        first = self.issues[0].sentence()
        first = first[0].upper() + first[1:]
        if len(self.issues) > 1:
            return f"{first} (and {len(self.issues) - 1} more problem{'s' if len(self.issues) > 2 else ''})."
        return first if first.endswith((".", "?")) else first + "."


@dataclass
class WorldState:
    """Facts about the world, keyed as in the skill files (``holding[psm1]``, ``probe``, ``view_set``).

    ``known=True``: a scene or supervisor reports them all, and a fact it does not list is not held.
    ``known=False``: the unknown state of ``medrobot plan``; facts the plan assumes are recorded, so a
    plan that contradicts itself is still caught.
    """

    facts: dict[str, Any] = field(default_factory=dict)
    known: bool = False
    excluded: dict[str, set[Any]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)

    @classmethod
    def unknown(cls, domain: str) -> WorldState:
        cs = load_command_set(domain)
        return cls(facts=dict(cs.always_known), known=False)

    def copy(self) -> WorldState:
        return WorldState(
            dict(self.facts), self.known, {k: set(v) for k, v in self.excluded.items()}, dict(self.origin)
        )

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "facts": dict(self.facts)}


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class _Checker:
    def __init__(self, cs: CommandSet):
        self.cs = cs

    # -- arguments ---------------------------------------------------------------------------
    def number(self, i: int, skill: SkillSpec, name: str, spec: ArgSpec, raw: Any, unit: str, lo: float, hi: float,
               issues: list[Issue]) -> Any:
        value: Any
        if isinstance(raw, bool):
            issues.append(Issue(Reason.WRONG_TYPE, f"{name} must be a number in {unit}, not {raw!r}", i, skill.name,
                                name))
            return _MISSING
        if isinstance(raw, (int, float)):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = parse_quantity(raw, unit)
            except UnitError as exc:
                issues.append(Issue(Reason.WRONG_TYPE, f"{name}: {exc}", i, skill.name, name))
                return _MISSING
        elif isinstance(raw, Mapping) and "value" in raw:
            try:
                v = raw["value"]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise UnitError(f"{v!r} is not a number")
                value = convert(float(v), raw.get("unit"), unit)
            except UnitError as exc:
                issues.append(Issue(Reason.WRONG_TYPE, f"{name}: {exc}", i, skill.name, name))
                return _MISSING
        else:
            issues.append(Issue(Reason.WRONG_TYPE, f"{name} must be a number in {unit}, not {type(raw).__name__}",
                                i, skill.name, name))
            return _MISSING
        if not math.isfinite(value):
            issues.append(Issue(Reason.WRONG_TYPE, f"{name} must be a finite number", i, skill.name, name))
            return _MISSING
        if value < lo or value > hi:
            side = "above the limit" if value > hi else "below the limit"
            bound = hi if value > hi else lo
            issues.append(Issue(
                Reason.OUT_OF_RANGE,
                f"{name} = {_show(round(value, 3))} {unit} is {side} of {_show(bound)} {unit} "
                f"(allowed {_show(lo)}..{_show(hi)} {unit})",
                i, skill.name, name, (lo, hi), value,
            ))
            return _MISSING
        return int(value) if value.is_integer() else round(value, 6)

    def arg(self, i: int, skill: SkillSpec, name: str, spec: ArgSpec, raw: Any, args: Mapping[str, Any],
            issues: list[Issue]) -> Any:
        cs = self.cs
        if spec.type == "enum":
            if not isinstance(raw, str):
                issues.append(Issue(Reason.WRONG_TYPE, f"{name} must be one of {', '.join(cs.allowed_values(spec))}",
                                    i, skill.name, name))
                return _MISSING
            allowed = cs.allowed_values(spec)
            value = next((a for a in allowed if a.lower() == raw.strip().lower()), None)
            if value is None:
                issues.append(Issue(Reason.NOT_ALLOWED, f"{name} {raw!r} is not in the command set "
                                    f"(allowed: {', '.join(allowed)})", i, skill.name, name, value=raw))
                return _MISSING
            if spec.values_from:
                other, attr = spec.values_from.split(".")
                other_value = args.get(other)
                other_spec = skill.args[other]
                ev = cs.entity_value(other_value, other_spec) if isinstance(other_value, str) else None
                if ev is not None:
                    choices = ev.attr(attr)
                    if not choices:
                        issues.append(Issue(Reason.NOT_ALLOWED, f"{other} {other_value} takes no {name}",
                                            i, skill.name, name, value=raw))
                        return _MISSING
                    if value not in choices:
                        issues.append(Issue(Reason.NOT_ALLOWED, f"{name} {value!r} is not allowed for {other_value} "
                                            f"(allowed: {', '.join(choices)})", i, skill.name, name, value=raw))
                        return _MISSING
            ev = cs.entity_value(value, spec)
            if ev is not None and ev.only_for:
                for other, permitted in ev.only_for.items():
                    ov = args.get(other)
                    if isinstance(ov, str) and ov.lower() not in permitted:
                        issues.append(Issue(Reason.NOT_ALLOWED, f"the {value} {name} is only for "
                                            f"{' and '.join(permitted)}, not {ov}", i, skill.name, name, value=raw))
                        return _MISSING
            return value
        if spec.type == "number":
            unit = spec.unit or ""
            lo, hi = spec.min, spec.max
            if spec.range_from:
                ref = args.get(spec.range_from)
                ev = cs.entity_value(ref, skill.args[spec.range_from]) if isinstance(ref, str) else None
                if ev is None or ev.min is None or ev.max is None:
                    return _MISSING if ref is None else raw
                lo, hi, unit = ev.min, ev.max, ev.unit or unit
            assert lo is not None and hi is not None
            return self.number(i, skill, name, spec, raw, unit, lo, hi, issues)
        if spec.type == "vector3":
            if not isinstance(raw, (list, tuple)) or len(raw) != 3:
                issues.append(Issue(Reason.WRONG_TYPE, f"{name} must be a list of three numbers [x, y, z] in "
                                    f"{spec.unit}", i, skill.name, name))
                return _MISSING
            out = []
            assert spec.min is not None and spec.max is not None
            for axis, component in zip("xyz", raw):
                v = self.number(i, skill, f"{name}.{axis}", spec, component, spec.unit or "", spec.min, spec.max,
                                issues)
                if v is _MISSING:
                    return _MISSING
                out.append(v)
            return out
        if not isinstance(raw, str):
            issues.append(Issue(Reason.WRONG_TYPE, f"{name} must be text", i, skill.name, name))
            return _MISSING
        text = raw.strip()
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            issues.append(Issue(Reason.WRONG_TYPE, f"{name} must not contain control characters", i, skill.name, name))
            return _MISSING
        assert spec.max_length is not None
        if len(text) > spec.max_length:
            issues.append(Issue(Reason.OUT_OF_RANGE, f"{name} is {len(text)} characters, above the limit of "
                                f"{spec.max_length}", i, skill.name, name, (0, spec.max_length)))
            return _MISSING
        return text

    def step(self, i: int, step: Any, issues: list[Issue]) -> tuple[SkillSpec, dict[str, Any]] | None:
        cs = self.cs
        name: Any
        raw_args: Any
        if isinstance(step, Step):
            name, raw_args = step.skill, step.args
        elif isinstance(step, Mapping):
            name, raw_args = step.get("skill"), step.get("args", {})
        else:
            issues.append(Issue(Reason.MALFORMED, f"a step must be an object with `skill` and `args`, not "
                                f"{type(step).__name__}", i))
            return None
        if raw_args is None:
            raw_args = {}
        if not isinstance(name, str):
            issues.append(Issue(Reason.MALFORMED, "the step has no skill name", i))
            return None
        skill = cs.skill(name)
        if skill is None:
            issues.append(Issue(Reason.UNKNOWN_SKILL, f"{name!r} is not in the {cs.domain} command set (its skills: "
                                f"{', '.join(cs.skills)})", i, name))
            return None
        if not isinstance(raw_args, Mapping):
            issues.append(Issue(Reason.MALFORMED, "`args` must be an object", i, name))
            return None
        before = len(issues)
        for a in raw_args:
            if a not in skill.args:
                allowed = ", ".join(skill.args) or "none"
                issues.append(Issue(Reason.UNKNOWN_ARG, f"{a!r} is not an argument of {name} (arguments: {allowed})",
                                    i, name, str(a)))
        if len(issues) > before:
            return None
        args: dict[str, Any] = {}
        # enums first: other arguments' ranges and choices depend on them
        order = sorted(skill.args.items(), key=lambda kv: (kv[1].type != "enum", kv[1].values_from is not None))
        for a, spec in order:
            raw = raw_args.get(a, _MISSING)
            if raw is None:
                raw = _MISSING
            if raw is _MISSING:
                continue
            value = self.arg(i, skill, a, spec, raw, {**raw_args, **args}, issues)
            if value is not _MISSING:
                args[a] = value
        if len(issues) > before:
            return None
        self.defaults_and_required(i, skill, args, issues)
        if len(issues) > before:
            return None
        return skill, {a: args[a] for a in skill.args if a in args}

    def defaults_and_required(self, i: int, skill: SkillSpec, args: dict[str, Any], issues: list[Issue]) -> None:
        cs = self.cs
        for a, spec in skill.args.items():
            if a in args:
                continue
            if spec.values_from:
                other, attr = spec.values_from.split(".")
                ov = args.get(other)
                ev = cs.entity_value(ov, skill.args[other]) if isinstance(ov, str) else None
                choices = ev.attr(attr) if ev else None
                if choices and len(choices) == 1:
                    args[a] = choices[0]
                    continue
                if choices and not spec.optional_attr:
                    issues.append(Issue(Reason.MISSING, f"which {a} of the {ov}: {' or '.join(choices)}?",
                                        i, skill.name, a))
                continue
            if spec.default is not None and not any(a in g for g in skill.one_of):
                args[a] = list(spec.default) if isinstance(spec.default, (list, tuple)) else spec.default
                continue
            if spec.required:
                issues.append(Issue(Reason.MISSING, f"what {a.replace('_', ' ')} for {skill.name}? "
                                    f"({spec.summary or a})", i, skill.name, a))
        if skill.at_least_one and not any(a in args for a in skill.at_least_one):
            issues.append(Issue(Reason.MISSING, f"say at least one of {', '.join(skill.at_least_one)}", i, skill.name))
        if skill.one_of:
            full = [g for g in skill.one_of if all(a in args for a in g)]
            partial = [g for g in skill.one_of if any(a in args for a in g) and g not in full]
            if len(full) > 1:
                issues.append(Issue(Reason.CONFLICT, "give either " + " or ".join("/".join(g) for g in skill.one_of)
                                    + ", not both", i, skill.name))
            elif partial:
                missing = [a for a in partial[0] if a not in args]
                issues.append(Issue(Reason.MISSING, f"{', '.join(missing)} is needed too", i, skill.name, missing[0]))
            elif not full:
                issues.append(Issue(Reason.MISSING, "say " + " or ".join(" and ".join(g) for g in skill.one_of),
                                    i, skill.name))
        for group in skill.distinct:
            vals = [args.get(a) for a in group]
            if None not in vals and len(set(vals)) < len(vals):
                issues.append(Issue(Reason.CONFLICT, f"{' and '.join(group)} must differ (both are {vals[0]})",
                                    i, skill.name))

    # -- facts -------------------------------------------------------------------------------
    def facts(self, i: int, skill: SkillSpec, args: Mapping[str, Any], world: WorldState, issues: list[Issue]) -> None:
        cs = self.cs
        for cond in skill.preconditions:
            for key, op, want in cond.instances(cs, skill, args):
                have = world.facts.get(key, _MISSING)
                if have is _MISSING:
                    if world.known:
                        issues.append(Issue(Reason.PRECONDITION, f"needs {key} {op} {_show(want)}, but the world state "
                                            "does not report it", i, skill.name))
                        continue
                    if op == "==":
                        if want in world.excluded.get(key, set()):
                            issues.append(Issue(Reason.PRECONDITION, f"needs {key} to be {_show(want)}, but an earlier "
                                                f"step needed it not to be", i, skill.name))
                            continue
                        world.facts[key] = want
                        world.origin[key] = f"as assumed by step {i + 1}, {skill.name}"
                    else:
                        world.excluded.setdefault(key, set()).add(want)
                    continue
                ok = (have == want) if op == "==" else (have != want)
                if not ok:
                    origin = world.origin.get(key, "in the current world state")
                    what = f"{key} to be {_show(want)}" if op == "==" else f"{key} not to be {_show(want)}"
                    issues.append(Issue(Reason.PRECONDITION, f"needs {what}, but it is {_show(have)} ({origin})",
                                        i, skill.name))
        for eff in skill.effects:
            for key, value in eff.instances(cs, skill, args):
                world.facts[key] = value
                world.excluded.pop(key, None)
                world.origin[key] = f"as set by step {i + 1}, {skill.name}"


def check_steps(domain: str, steps: Any, world: WorldState | None = None) -> tuple[list[Step], list[int]]:
    """Check and normalise steps; return them (defaults filled, units converted) and the indexes to confirm.

    Raises ``PlanValidationError`` and nothing else, whatever ``steps`` holds.
    """
    try:
        cs = load_command_set(domain)
    except SkillFileError as exc:
        raise PlanValidationError([Issue(Reason.UNKNOWN_DOMAIN, str(exc))]) from None
    try:
        return _check(cs, steps, world)
    except PlanValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract is one error type, whatever the input
        raise PlanValidationError([Issue(Reason.MALFORMED, f"the plan could not be read "
                                         f"({type(exc).__name__}: {exc})")]) from exc


def _check(cs: CommandSet, steps: Any, world: WorldState | None) -> tuple[list[Step], list[int]]:
    if not isinstance(steps, Sequence) or isinstance(steps, (str, bytes)):
        raise PlanValidationError([Issue(Reason.MALFORMED, "`steps` must be a list")])
    if not steps:
        raise PlanValidationError([Issue(Reason.EMPTY, "the plan has no steps")])
    if len(steps) > MAX_PLAN_STEPS:
        # refused before any step is read (a plan of a million steps costs nothing); too many exposures is
        # still the first reason given, as it is for a shorter plan
        too_long = [Issue(Reason.TOO_MANY_STEPS, f"the plan has {len(steps)} steps, above the limit of "
                                                 f"{MAX_PLAN_STEPS} in one plan", limit=(1, MAX_PLAN_STEPS),
                          value=len(steps))]
        shots = sum(1 for raw in steps if _raw_skill(raw) in cs.radiation_skills)
        if cs.max_exposures is not None and shots > cs.max_exposures:
            too_long.insert(0, Issue(Reason.EXPOSURE_LIMIT, f"the plan has {shots} exposures, above the limit of "
                                                            f"{cs.max_exposures} in one plan",
                                     limit=(0, cs.max_exposures), value=shots))
        raise PlanValidationError(too_long)
    checker = _Checker(cs)
    state = (world.copy() if world is not None else WorldState(dict(cs.always_known), known=False))
    issues: list[Issue] = []
    out: list[Step] = []
    tracking = True
    for i, raw in enumerate(steps):
        got = checker.step(i, raw, issues)
        if got is None:
            # past a step that cannot be read the world is unknowable: its effects would only be guessed,
            # and a later precondition "failure" would hide the real problem (e.g. a value to ask for)
            tracking = False
            continue
        skill, args = got
        if tracking:
            checker.facts(i, skill, args, state, issues)
        out.append(Step(skill=skill.name, args=args))
    if issues:
        # a missing value is only worth asking about when nothing else is wrong
        hard = [x for x in issues if not x.needs_clarification]
        raise PlanValidationError(hard or issues)
    if cs.max_exposures is not None:
        n = sum(1 for s in out if s.skill in cs.radiation_skills)
        if n > cs.max_exposures:
            raise PlanValidationError([Issue(
                Reason.EXPOSURE_LIMIT, f"the plan has {n} exposures, above the limit of {cs.max_exposures} in one plan",
                limit=(0, cs.max_exposures), value=n)])
    confirm = [k for k, s in enumerate(out) if s.skill in cs.hazardous_skills]
    return out, confirm


def _raw_skill(raw: Any) -> Any:
    return raw.get("skill") if isinstance(raw, Mapping) else getattr(raw, "skill", None)


def validate_plan(plan: Plan, world: WorldState | None = None) -> Plan:
    """An ``ok`` plan comes back normalised with ``needs_confirmation`` from the skill files (never trusted
    from the planner), or turned into a refusal / clarification that says why."""
    if plan.status is not PlanStatus.OK:
        return plan
    try:
        steps, confirm = check_steps(plan.domain, plan.steps, world)
    except PlanValidationError as exc:
        if exc.needs_clarification:
            return Plan.clarify(plan.domain, _question(exc), exc.code)
        return Plan.refused(plan.domain, exc.sentence(), exc.code)
    # check_steps keeps one step per step, so the words each argument was read from still belong to it
    return Plan(status=PlanStatus.OK, domain=plan.domain, steps=steps, needs_confirmation=confirm, words=plan.words)


def _question(exc: PlanValidationError) -> str:
    msg = exc.issues[0].message
    msg = msg[0].upper() + msg[1:]
    return msg if msg.endswith("?") else msg + "?"


def conditions_of(cs: CommandSet, skill: SkillSpec, args: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """A skill's preconditions with its arguments filled in: (fact, "==" | "!=", value)."""
    return [inst for cond in skill.preconditions for inst in cond.instances(cs, skill, args)]


def effect_templates(skill: SkillSpec) -> list[tuple[str, str]]:
    """A skill's effects as (fact template, value template), placeholders unfilled."""
    return [(eff.fact, eff.value) for eff in skill.effects]


def apply_step(cs: CommandSet, skill: SkillSpec, args: Mapping[str, Any], world: WorldState) -> list[Issue]:
    """Check a step's preconditions against ``world`` and apply its effects to it (in place)."""
    issues: list[Issue] = []
    _Checker(cs).facts(0, skill, args, world, issues)
    return issues
