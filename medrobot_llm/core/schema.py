"""The command set as JSON Schema: one builder for every consumer of the skill files' shapes.

``medrobot skills --json`` prints it as it is; the LLM planner's strict wire shapes (``planning.llm.schema``)
are derived from it. Two builders for the same skill files had drifted apart (one bounded an argument whose
range depends on another, one did not), so the bounds, enums and lengths now come from here only.
"""

from __future__ import annotations

from typing import Any

from medrobot_llm.core.command_set import ArgSpec, CommandSet, SkillSpec, load_command_set

__all__ = ["arg_schema", "json_schema", "number_bounds", "skill_schema"]


def arg_schema(cs: CommandSet, spec: ArgSpec) -> dict[str, Any]:
    """JSON Schema of one argument, with its enum or range and its unit.

    A number whose range depends on another argument (``range_from``: the X-ray axis) has no bounds here:
    JSON Schema cannot say "the range of the axis given", and the validator enforces it; ``number_bounds``
    gives the widest range it can take, for consumers that want one."""
    out: dict[str, Any] = {"description": spec.summary} if spec.summary else {}
    if spec.type == "enum":
        out.update(type="string", enum=list(cs.allowed_values(spec)))
    elif spec.type == "number":
        out["type"] = "number"
        if spec.range_from is None:
            out.update(minimum=spec.min, maximum=spec.max)
        if spec.unit:
            out["x-unit"] = spec.unit
    elif spec.type == "vector3":
        out.update(type="array", minItems=3, maxItems=3,
                   items={"type": "number", "minimum": spec.min, "maximum": spec.max})
        out["x-unit"] = spec.unit
    else:
        out.update(type="string", maxLength=spec.max_length)
    if spec.default is not None:
        out["default"] = list(spec.default) if isinstance(spec.default, tuple) else spec.default
    return out


def number_bounds(cs: CommandSet, skill: SkillSpec, spec: ArgSpec) -> tuple[float, float]:
    """The widest range a number can take: its own, or the union of the ranges of the values of the argument
    it takes its range from (every value the validator accepts lies inside)."""
    if spec.range_from:
        ref = skill.args[spec.range_from]
        values = [cs.entity_value(v, ref) for v in cs.allowed_values(ref)]
        lows = [ev.min for ev in values if ev is not None and ev.min is not None]
        highs = [ev.max for ev in values if ev is not None and ev.max is not None]
        return min(lows), max(highs)
    assert spec.min is not None and spec.max is not None
    return spec.min, spec.max


def skill_schema(cs: CommandSet, skill: SkillSpec) -> dict[str, Any]:
    """One plan step of this skill: its arguments, hazard, and the facts it needs and sets."""
    props = {a: arg_schema(cs, s) for a, s in skill.args.items()}
    required = [a for a, s in skill.args.items() if s.required and s.default is None and not s.values_from]
    return {
        "type": "object",
        "description": skill.summary,
        "x-hazard": skill.hazard.value,
        "x-needs-confirmation": skill.hazard.needs_confirmation,
        "x-preconditions": [str(c) for c in skill.preconditions],
        "x-effects": [str(e) for e in skill.effects],
        "properties": {
            "skill": {"const": skill.name},
            "args": {"type": "object", "properties": props, "required": required, "additionalProperties": False},
        },
        "required": ["skill", "args"],
        "additionalProperties": False,
    }


def json_schema(domain: str) -> dict[str, Any]:
    """The domain's plan steps as JSON Schema (one ``oneOf`` branch per skill)."""
    cs = load_command_set(domain)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"medrobot_llm {cs.domain} command set v{cs.version}",
        "description": cs.description,
        "x-max-exposures": cs.max_exposures,
        "$defs": {name: skill_schema(cs, s) for name, s in cs.skills.items()},
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"oneOf": [{"$ref": f"#/$defs/{n}"} for n in cs.skills]}}},
    }
