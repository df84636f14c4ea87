"""The command set, loaded from ``skills/*.yaml`` into typed models.

Everything else (validator, planners, LLM tools, voice grammar, docs) reads the command set through
these models, so a typo in a skill file must fail here, loudly, naming the file and the field, rather
than surface later as a planner that silently ignores a skill.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Self, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError, core_schema
from medrobot_llm.core.paths import PACKAGE_DIR, data_dir

__all__ = [
    "ARM_ENTITY",
    "DOMAINS",
    "Domain",
    "hazards_named",
    "ArgSpec",
    "CommandSet",
    "Condition",
    "Effect",
    "Entity",
    "EntityValue",
    "Hazard",
    "SkillFileError",
    "SkillSpec",
    "Vocabulary",
    "load_command_set",
    "skills_dir",
    "unknown_domain",
]

#: the robots there is a skill file for; the type checks a skill file's `domain`, the tuple everything else
Domain = Literal["surgery", "ultrasound", "xray"]
DOMAINS: tuple[str, ...] = get_args(Domain)
#: the entity whose values are the robot's arms (a domain without it has one, unnamed, arm)
ARM_ENTITY = "arm"

_CONDITION = re.compile(r"^\s*(?P<key>[a-z_]+(\[[^\]]+\])?)\s*(?P<op>==|!=)\s*(?P<value>\S+)\s*$")
_EFFECT = re.compile(r"^\s*(?P<key>[a-z_]+(\[[^\]]+\])?)\s*=\s*(?P<value>\S+)\s*$")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def _literal(text: str) -> Any:
    return {"true": True, "false": False}.get(text, text)


def _fill(template: str, binding: Mapping[str, Any]) -> str:
    return template.format(**binding) if binding else template


@dataclass(frozen=True, kw_only=True)
class _FactRule:
    """``fact <op> value`` from a skill file, parsed once at load; either side may name arguments (``{arm}``)."""

    fact: str
    value: str
    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def arguments(self) -> tuple[str, ...]:
        """The arguments named in the rule, fact first, in order (a name used twice appears twice)."""
        return (*_PLACEHOLDER.findall(self.fact), *_PLACEHOLDER.findall(self.value))

    @property
    def fact_arguments(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.fact))

    @classmethod
    def parse(cls, text: str) -> Self:
        """Read the rule's text; each kind has its own form (a ValueError names the text when it is not)."""
        raise NotImplementedError

    @classmethod
    def _validate(cls, value: Any) -> Self:
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        raise PydanticCustomError("string_type", "Input should be a valid string")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """Skill files hold the rule as text; the model holds it parsed."""
        return core_schema.no_info_plain_validator_function(cls._validate)


@dataclass(frozen=True, kw_only=True)
class Condition(_FactRule):
    """A precondition: ``fact == value`` or ``fact != value``."""

    op: Literal["==", "!="]

    @classmethod
    def parse(cls, text: str) -> Self:
        m = _CONDITION.match(text)
        if m is None:
            raise ValueError(f"precondition {text!r} is not of the form `fact == value` or `fact != value`")
        return cls(fact=m["key"], value=m["value"], text=text, op="==" if m["op"] == "==" else "!=")

    def instances(self, cs: CommandSet, skill: SkillSpec, args: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
        """(fact, op, value) with the step's arguments filled in, one per arm an ``all`` stands for."""
        return [(_fill(self.fact, b), self.op, _literal(_fill(self.value, b)))
                for b in cs.bindings(skill, self.arguments, args)]


@dataclass(frozen=True, kw_only=True)
class Effect(_FactRule):
    """An effect: ``fact = value``, true once the skill succeeded."""

    @classmethod
    def parse(cls, text: str) -> Self:
        m = _EFFECT.match(text)
        if m is None:
            raise ValueError(f"effect {text!r} is not of the form `fact = value`")
        return cls(fact=m["key"], value=m["value"], text=text)

    def instances(self, cs: CommandSet, skill: SkillSpec, args: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """(fact, value) with the step's arguments filled in, one per arm an ``all`` stands for."""
        return [(_fill(self.fact, b), _literal(_fill(self.value, b))) for b in cs.bindings(skill, self.arguments, args)]


class SkillFileError(ValueError):
    """A skill file is malformed; the message names the file and the field."""


class Hazard(str, Enum):
    NONE = "none"
    MOTION = "motion"
    CONTACT = "contact"
    RADIATION = "radiation"

    @property
    def needs_confirmation(self) -> bool:
        return self in (Hazard.CONTACT, Hazard.RADIATION)

    @property
    def moves(self) -> bool:
        return self is not Hazard.NONE


def hazards_named(names: Iterable[str]) -> frozenset[Hazard]:
    """Hazard classes by their skill-file names; a name that is none of them is a ValueError that lists them, so a
    typo in an option (``motoin``) is refused rather than quietly asking nothing."""
    out: set[Hazard] = set()
    for name in names:
        try:
            out.add(Hazard(name))
        except ValueError:
            raise ValueError(f"{name!r} is not a hazard class; the skill files know "
                             f"{', '.join(h.value for h in Hazard)}") from None
    return frozenset(out)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntityValue(_Strict):
    synonyms: tuple[str, ...] = ()
    sides: tuple[str, ...] | None = None
    levels: tuple[str, ...] | None = None
    expands_to: tuple[str, ...] | None = None
    only_for: dict[str, tuple[str, ...]] | None = None
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    #: words that, said with this value, make an amount positive / negative (X-ray axis signs)
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    #: "a bit" along this value, in its unit
    small: float | None = None
    #: the value of the same entity that goes the other way (caudal for cranial): what "and back" returns along
    opposite: str | None = None

    def attr(self, name: str) -> tuple[str, ...] | None:
        value = getattr(self, name, None)
        return value if isinstance(value, tuple) else None


class Entity(_Strict):
    description: str = ""
    values: dict[str, EntityValue]

    @field_validator("values")
    @classmethod
    def _non_empty(cls, v: dict[str, EntityValue]) -> dict[str, EntityValue]:
        if not v:
            raise ValueError("an entity needs at least one value")
        return v


class ArgSpec(_Strict):
    type: Literal["enum", "number", "vector3", "text"]
    summary: str = ""
    required: bool = False
    default: Any = None
    entity: str | tuple[str, ...] | None = None
    values: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    values_from: str | None = Field(default=None, pattern=r"^[a-z_]+\.[a-z_]+$")
    optional_attr: bool = False
    unit: str | None = None
    unit_from: str | None = None
    range_from: str | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    #: words that tie a spoken number to this argument ("depth", "gain")
    keywords: tuple[str, ...] = ()
    #: the default holds only inside a task ("scan" sweeps caudally); where the person names the skill itself
    #: and leaves this out ("sweep 4 cm"), the command set has no default and the planner asks
    task_default_only: bool = False
    #: words that, said with this number, make it positive / negative ("clockwise" for a probe rotation)
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    #: for a vector3, each component's + and - direction in words (read-backs say them instead of a sign)
    axes: tuple[tuple[str, str], ...] = ()

    @property
    def entities(self) -> tuple[str, ...]:
        if self.entity is None:
            return ()
        return (self.entity,) if isinstance(self.entity, str) else self.entity

    @model_validator(mode="after")
    def _consistent(self) -> ArgSpec:
        if self.type == "enum" and not self.entities and not self.values:
            raise ValueError("an enum argument needs `entity` or `values`")
        if self.type in ("number", "vector3") and self.range_from is None:
            if self.min is None or self.max is None:
                raise ValueError("a numeric argument needs `min` and `max` (or `range_from`)")
            if self.min > self.max:
                raise ValueError(f"min {self.min} is above max {self.max}")
        if self.type == "text" and self.max_length is None:
            raise ValueError("a text argument needs `max_length`")
        if self.axes and (self.type != "vector3" or len(self.axes) != 3):
            raise ValueError("`axes` names the three components of a vector3")
        return self


class SkillSpec(_Strict):
    name: str = ""
    summary: str
    hazard: Hazard
    synonyms: tuple[str, ...] = ()
    args: dict[str, ArgSpec] = Field(default_factory=dict)
    preconditions: tuple[Condition, ...] = ()
    effects: tuple[Effect, ...] = ()
    at_least_one: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    distinct: tuple[tuple[str, ...], ...] = ()
    #: phrases that imply argument values ("longitudinal view" -> angle_deg 90)
    implied: dict[str, dict[str, Any]] = Field(default_factory=dict)

    # parsed here, over the whole list, so an error names the field as it always has (not the item's index)
    @field_validator("preconditions", mode="before")
    @classmethod
    def _conditions(cls, v: Any) -> Any:
        return tuple(Condition.parse(c) if isinstance(c, str) else c for c in v) if isinstance(v, (list, tuple)) else v

    @field_validator("effects", mode="before")
    @classmethod
    def _effects(cls, v: Any) -> Any:
        return tuple(Effect.parse(e) if isinstance(e, str) else e for e in v) if isinstance(v, (list, tuple)) else v


class TaskSpec(_Strict):
    """A spoken task that stands for several skills ("scan the kidney" = window, contact, sweep)."""

    summary: str
    synonyms: tuple[str, ...]
    steps: tuple[str, ...]


class FactSpec(_Strict):
    description: str = ""
    values: tuple[Any, ...]


class Vocabulary(_Strict):
    """Words of the domain that name no skill or entity: how its acquisitions are counted, and the settings,
    views and modes a person may ask for that the command set does not have. A planner refuses those by
    name, in every domain (a "dose" is refused in surgery too), rather than plan the rest of the command."""

    #: nouns that count acquisitions ("3 shots", "two scans"); plural forms are listed, not derived
    count_nouns: tuple[str, ...] = ()
    #: machine settings no skill sets (tube voltage, transducer frequency)
    unsupported_settings: tuple[str, ...] = ()
    #: views no skill takes ("PA" is not "AP": reading one as the other exposes a view nobody asked for)
    unsupported_views: tuple[str, ...] = ()
    #: imaging modes and procedures no skill has
    unsupported_modes: tuple[str, ...] = ()
    #: words that name the robot or a part of it: a question about one asks for the robot's status
    robot: tuple[str, ...] = ()
    #: body landmarks a command may name to say where a step starts ("starting below the ribs"): known
    #: detail of the step, never its target
    landmarks: tuple[str, ...] = ()


class CommandSet(_Strict):
    """One domain's command set."""

    domain: Domain
    version: int
    title: str
    description: str = ""
    max_exposures: int | None = None
    entities: dict[str, Entity]
    facts: dict[str, FactSpec] = Field(default_factory=dict)
    always_known: dict[str, Any] = Field(default_factory=dict)
    skills: dict[str, SkillSpec]
    tasks: dict[str, TaskSpec] = Field(default_factory=dict)
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)

    @model_validator(mode="after")
    def _cross_references(self) -> CommandSet:
        for ename, entity in self.entities.items():
            for vname, ev in entity.values.items():
                back = entity.values.get(ev.opposite) if ev.opposite is not None else None
                if ev.opposite is not None and (back is None or back.opposite != vname):
                    raise ValueError(f"entities.{ename}.values.{vname}: opposite {ev.opposite!r} is not a value of "
                                     f"{ename} whose opposite is {vname!r}")
        for tname, task in self.tasks.items():
            for step in task.steps:
                if step not in self.skills:
                    raise ValueError(f"tasks.{tname}.steps: unknown skill {step!r}")
        for sname, skill in self.skills.items():
            for aname, arg in skill.args.items():
                where = f"skills.{sname}.args.{aname}"
                for ent in arg.entities:
                    if ent not in self.entities:
                        raise ValueError(f"{where}: unknown entity {ent!r}")
                allowed = self._enum_universe(arg)
                for v in (arg.values or ()) + arg.exclude:
                    if allowed and v not in allowed:
                        raise ValueError(f"{where}: value {v!r} is not a value of {arg.entities}")
                if arg.values_from:
                    other, _attr = arg.values_from.split(".")
                    if other not in skill.args:
                        raise ValueError(f"{where}: values_from names unknown argument {other!r}")
                for ref in (arg.unit_from, arg.range_from):
                    if ref and ref not in skill.args:
                        raise ValueError(f"{where}: names unknown argument {ref!r}")
                if arg.type == "enum" and arg.default is not None and arg.default not in allowed:
                    raise ValueError(f"{where}: default {arg.default!r} is not an allowed value")
                if arg.type == "number" and arg.default is not None and arg.min is not None:
                    if not (arg.min <= arg.default <= (arg.max or arg.default)):
                        raise ValueError(f"{where}: default {arg.default} is outside {arg.min}..{arg.max}")
            for group in (skill.at_least_one, *skill.one_of, *skill.distinct):
                for aname in group:
                    if aname not in skill.args:
                        raise ValueError(f"skills.{sname}: names unknown argument {aname!r}")
        return self

    def _enum_universe(self, arg: ArgSpec) -> tuple[str, ...]:
        names: list[str] = []
        for ent in arg.entities:
            names.extend(self.entities[ent].values)
        return tuple(names)

    def allowed_values(self, arg: ArgSpec) -> tuple[str, ...]:
        """Every value an enum argument may take, before any dependency on other arguments."""
        base = arg.values if arg.values else self._enum_universe(arg)
        return tuple(v for v in base if v not in arg.exclude)

    def entity_value(self, value: str, arg: ArgSpec) -> EntityValue | None:
        for ent in arg.entities:
            found = self.entities[ent].values.get(value)
            if found is not None:
                return found
        return None

    def skill(self, name: str) -> SkillSpec | None:
        return self.skills.get(name)

    def bindings(self, skill: SkillSpec, names: tuple[str, ...], args: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Values for the arguments ``names`` a condition or effect names: one binding, or one per arm when
        a value stands for several (``all`` expands to each arm)."""
        options: list[dict[str, Any]] = [{}]
        for name in names:
            value = args.get(name)
            spec = skill.args.get(name)
            expanded: tuple[Any, ...] = (value,)
            if spec is not None and isinstance(value, str):
                ev = self.entity_value(value, spec)
                if ev is not None and ev.expands_to:
                    expanded = ev.expands_to
            options = [dict(o, **{name: e}) for o in options for e in expanded]
        return options

    @property
    def arms(self) -> tuple[str, ...]:
        """The robot's named arms: the arm entity's values that stand for one arm (``all`` stands for several)."""
        entity = self.entities.get(ARM_ENTITY)
        if entity is None:
            return ()
        return tuple(name for name, value in entity.values.items() if not value.expands_to)

    def arms_named(self, skill: SkillSpec, args: Mapping[str, Any]) -> frozenset[str]:
        """The arms a step's arguments name, ``all`` expanded to each arm it stands for."""
        out: set[str] = set()
        for name, spec in skill.args.items():
            value = args.get(name)
            if ARM_ENTITY in spec.entities and isinstance(value, str):
                ev = self.entity_value(value, spec)
                out.update(ev.expands_to if ev is not None and ev.expands_to else (value,))
        return frozenset(out)

    @property
    def hazardous_skills(self) -> frozenset[str]:
        return frozenset(n for n, s in self.skills.items() if s.hazard.needs_confirmation)

    @property
    def radiation_skills(self) -> frozenset[str]:
        return frozenset(n for n, s in self.skills.items() if s.hazard is Hazard.RADIATION)


def unknown_domain(domain: str) -> str:
    """The sentence every refusal of an unknown domain uses (planners, CLI, loader), naming the known ones."""
    return f"unknown domain {domain!r}; choose one of: {', '.join(DOMAINS)}"


def skills_dir() -> Path:
    """Where the skill files live: ``$MEDROBOT_SKILLS_DIR``, the source tree, or the copy in the wheel."""
    env = os.environ.get("MEDROBOT_SKILLS_DIR")
    if env:
        return Path(env)
    found = data_dir("skills", marker="surgery.yaml")
    if found is not None:
        return found
    raise SkillFileError(
        f"no skill files found next to {PACKAGE_DIR} (looked for skills/ and _data/skills/); "
        "set MEDROBOT_SKILLS_DIR to the folder holding surgery.yaml, ultrasound.yaml and xray.yaml"
    )


def _error_location(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)


def parse_command_set(text: str, source: str) -> CommandSet:
    """Parse one skill file's text; ``source`` names it in errors."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SkillFileError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SkillFileError(f"{source}: expected a mapping at the top level")
    skills = raw.get("skills")
    if isinstance(skills, dict):
        for name, body in skills.items():
            if isinstance(body, dict):
                body.setdefault("name", name)
                if body.get("args") is None:
                    body["args"] = {}
    try:
        return CommandSet.model_validate(raw)
    except ValidationError as exc:
        raise SkillFileError(f"{source}: {_error_location(exc)}") from exc


@functools.cache
def load_command_set(domain: str) -> CommandSet:
    """Load and check one domain's skill file (cached: the files are read once per process)."""
    if domain not in DOMAINS:
        raise SkillFileError(unknown_domain(domain))
    path = skills_dir() / f"{domain}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SkillFileError(f"{path}: cannot read: {exc.strerror}") from exc
    cs = parse_command_set(text, str(path))
    if cs.domain != domain:
        raise SkillFileError(f"{path}: field `domain` says {cs.domain!r}, expected {domain!r}")
    return cs
