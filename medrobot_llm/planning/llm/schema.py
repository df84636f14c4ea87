"""The model's output format, generated from the command set: one JSON schema, many wire shapes.

A hand-written schema would drift from ``skills/`` the day someone adds an organ; generating it means the
model is offered exactly the skills, enums and ranges the validator will enforce. The schemas follow the
subset OpenAI's strict structured outputs accept (every property required, optional ones nullable,
``additionalProperties: false``), which local servers with grammar-constrained decoding accept too.
The plan schema has no ``needs_confirmation``: confirmations come from the skill files, never the model.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from medrobot_llm.core.plan import Control
from medrobot_llm.core.command_set import ArgSpec, CommandSet, SkillSpec, load_command_set
from medrobot_llm.core.schema import arg_schema as core_arg_schema
from medrobot_llm.core.schema import number_bounds

__all__ = [
    "CLARIFY_TOOL",
    "CONTROL_TOOL",
    "PLAN_TOOL",
    "REFUSE_TOOL",
    "arg_schema",
    "args_schema",
    "plan_schema",
    "response_format",
    "skill_tools",
    "submit_plan_tool",
]

PLAN_TOOL = "submit_plan"
REFUSE_TOOL = "refuse"
CLARIFY_TOOL = "ask_clarification"
CONTROL_TOOL = "control"
STATUSES: tuple[str, ...] = ("ok", "refused", "clarify", "control")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    t = out.get("type")
    if isinstance(t, str):
        out["type"] = [t, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def _range_text(cs: CommandSet, skill: SkillSpec, spec: ArgSpec) -> str:
    """The range in words; a range that depends on another argument (the X-ray axis) is given per value here,
    the union as the bounds, and enforced by the validator."""
    if spec.range_from:
        ref = skill.args[spec.range_from]
        per = "; ".join(
            f"{name}: {_num(ev.min)}..{_num(ev.max)} {ev.unit or ''}".rstrip()
            for name in cs.allowed_values(ref)
            if (ev := cs.entity_value(name, ref)) is not None and ev.min is not None and ev.max is not None
        )
        return f"range per {spec.range_from}: {per}"
    assert spec.min is not None and spec.max is not None
    return f"{_num(spec.min)}..{_num(spec.max)} {spec.unit or ''}".rstrip()


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def _describe(spec: ArgSpec, extra: str = "") -> str:
    parts = [spec.summary] if spec.summary else []
    if extra:
        parts.append(extra)
    if spec.default is not None:
        parts.append(f"default {spec.default!r} (send null to use it)")
    elif spec.required:
        parts.append("required")
    else:
        parts.append("optional (null when not said)")
    return "; ".join(parts)


#: the keys of the core schema a strict structured-output request carries, in the order it sends them
_WIRE_KEYS = ("type", "enum", "items", "minimum", "maximum", "minItems", "maxItems", "maxLength")


def _wire_numbers(schema: dict[str, Any]) -> dict[str, Any]:
    out = {k: (_num(v) if k in ("minimum", "maximum") and v is not None else v) for k, v in schema.items()}
    items = out.get("items")
    if isinstance(items, dict):
        out["items"] = _wire_numbers(items)
    return out


def arg_schema(cs: CommandSet, skill: SkillSpec, name: str) -> dict[str, Any]:
    """One argument's wire schema, derived from the core schema (``core.schema.arg_schema``): its enum,
    bounds and lengths; a description for the model instead of the unit and default (the validator fills
    defaults: the model sends null); a number whose range depends on another argument bounded by the union of
    its ranges, the narrowest bound the strict subset can state; and nullable."""
    spec = skill.args[name]
    core = core_arg_schema(cs, spec)
    if spec.type == "number" and spec.range_from:
        core["minimum"], core["maximum"] = number_bounds(cs, skill, spec)
    schema = _wire_numbers({k: core[k] for k in _WIRE_KEYS if k in core})
    extra = ""
    if spec.type == "enum" and spec.values_from:
        other, attr = spec.values_from.split(".")
        ref = skill.args[other]
        per = [f"{v}: {'/'.join(choices)}" for v in cs.allowed_values(ref)
               if (ev := cs.entity_value(v, ref)) is not None and (choices := ev.attr(attr))]
        extra = f"allowed per {other}: {', '.join(per)}" if per else ""
    elif spec.type == "number":
        extra = _range_text(cs, skill, spec)
    elif spec.type == "vector3":
        extra = f"[x, y, z], each {_num(schema['items']['minimum'])}..{_num(schema['items']['maximum'])} {spec.unit}"
    elif spec.type == "text":
        extra = f"at most {spec.max_length} characters"
    schema["description"] = _describe(spec, extra)
    return _nullable(schema)


def args_schema(cs: CommandSet, skill: SkillSpec) -> dict[str, Any]:
    """A skill's arguments as a strict object: every key present, null meaning "not said"."""
    props = {name: arg_schema(cs, skill, name) for name in skill.args}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def _step_schema(cs: CommandSet, skill: SkillSpec) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{skill.name} [{skill.hazard.value}]: {skill.summary}",
        "properties": {"skill": {"type": "string", "enum": [skill.name]}, "args": args_schema(cs, skill)},
        "required": ["skill", "args"],
        "additionalProperties": False,
    }


@functools.cache
def _plan_schema(domain: str, max_steps: int) -> dict[str, Any]:
    cs = load_command_set(domain)
    return {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": list(STATUSES),
                       "description": "ok: a plan; refused: cannot or must not be done; clarify: a value is "
                       "missing; control: a control intent, not a plan"},
            "steps": {"type": "array", "maxItems": max_steps,
                      "items": {"anyOf": [_step_schema(cs, s) for s in cs.skills.values()]},
                      "description": "the plan's steps in order (empty unless status is ok)"},
            "control": {"type": ["string", "null"], "enum": [c.value for c in Control] + [None],
                        "description": "the control intent when status is control, else null"},
            "reason": {"type": ["string", "null"], "description": "why, when status is refused, else null"},
            "question": {"type": ["string", "null"], "description": "the question, when status is clarify"},
        },
        "required": ["status", "steps", "control", "reason", "question"],
        "additionalProperties": False,
    }


def plan_schema(domain: str, max_steps: int = 16) -> dict[str, Any]:
    """The whole answer's schema (a fresh copy: callers may embed it in a request)."""
    return copy.deepcopy(_plan_schema(domain, max_steps))


def response_format(domain: str, max_steps: int = 16) -> dict[str, Any]:
    """``response_format`` for strict JSON-schema mode."""
    return {"type": "json_schema",
            "json_schema": {"name": f"{domain}_plan", "strict": True, "schema": plan_schema(domain, max_steps)}}


def _function(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function",
            "function": {"name": name, "description": description, "parameters": parameters, "strict": True}}


def submit_plan_tool(domain: str, max_steps: int = 16) -> dict[str, Any]:
    """One tool whose arguments are the whole answer; the most portable tool-calling shape."""
    return _function(PLAN_TOOL, "Submit the answer to the person's command: a plan, a refusal, a clarification "
                     "question or a control intent.", plan_schema(domain, max_steps))


@functools.cache
def _skill_tools(domain: str) -> tuple[dict[str, Any], ...]:
    cs = load_command_set(domain)
    tools = [
        _function(name, f"[{s.hazard.value}] {s.summary}", args_schema(cs, s)) for name, s in cs.skills.items()
    ]
    tools.append(_function(REFUSE_TOOL, "Refuse the command; say why.", {
        "type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"],
        "additionalProperties": False}))
    tools.append(_function(CLARIFY_TOOL, "Ask the person for a missing value.", {
        "type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"],
        "additionalProperties": False}))
    tools.append(_function(CONTROL_TOOL, "The command is a control intent, not a plan.", {
        "type": "object", "properties": {"control": {"type": "string", "enum": [c.value for c in Control]}},
        "required": ["control"], "additionalProperties": False}))
    return tuple(tools)


def skill_tools(domain: str) -> list[dict[str, Any]]:
    """A tool per skill (called in order, one call per step) plus refuse / ask_clarification / control."""
    return copy.deepcopy(list(_skill_tools(domain)))
