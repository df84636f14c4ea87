"""The command set, loaded from ``skills/*.yaml`` into typed models.

Everything else (validator, planners, LLM tools, voice grammar, docs) reads the command set through
these models, so a typo in a skill file must fail here, loudly, naming the file and the field, rather
than surface later as a planner that silently ignores a skill.
"""

from __future__ import annotations

import functools
import os
import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from medrobot_llm.core.paths import PACKAGE_DIR, data_dir

__all__ = [
    "DOMAINS",
    "Domain",
    "ArgSpec",
    "CommandSet",
    "Entity",
    "EntityValue",
    "Hazard",
    "SkillFileError",
    "SkillSpec",
    "Vocabulary",
    "load_command_set",
    "skills_dir",
]

#: the robots there is a skill file for; the type checks a skill file's `domain`, the tuple everything else
Domain = Literal["surgery", "ultrasound", "xray"]
DOMAINS: tuple[str, ...] = get_args(Domain)

_CONDITION = re.compile(r"^\s*(?P<key>[a-z_]+(\[[^\]]+\])?)\s*(?P<op>==|!=)\s*(?P<value>\S+)\s*$")
_EFFECT = re.compile(r"^\s*(?P<key>[a-z_]+(\[[^\]]+\])?)\s*=\s*(?P<value>\S+)\s*$")


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
        return self


class SkillSpec(_Strict):
    name: str = ""
    summary: str
    hazard: Hazard
    synonyms: tuple[str, ...] = ()
    args: dict[str, ArgSpec] = Field(default_factory=dict)
    preconditions: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    at_least_one: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    distinct: tuple[tuple[str, ...], ...] = ()
    #: phrases that imply argument values ("longitudinal view" -> angle_deg 90)
    implied: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("preconditions")
    @classmethod
    def _conditions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            if not _CONDITION.match(c):
                raise ValueError(f"precondition {c!r} is not of the form `fact == value` or `fact != value`")
        return v

    @field_validator("effects")
    @classmethod
    def _effects(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for e in v:
            if not _EFFECT.match(e):
                raise ValueError(f"effect {e!r} is not of the form `fact = value`")
        return v


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

    @property
    def hazardous_skills(self) -> frozenset[str]:
        return frozenset(n for n, s in self.skills.items() if s.hazard.needs_confirmation)

    @property
    def radiation_skills(self) -> frozenset[str]:
        return frozenset(n for n, s in self.skills.items() if s.hazard is Hazard.RADIATION)


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
        raise SkillFileError(f"unknown domain {domain!r}; choose one of: {', '.join(DOMAINS)}")
    path = skills_dir() / f"{domain}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SkillFileError(f"{path}: cannot read: {exc.strerror}") from exc
    cs = parse_command_set(text, str(path))
    if cs.domain != domain:
        raise SkillFileError(f"{path}: field `domain` says {cs.domain!r}, expected {domain!r}")
    return cs
