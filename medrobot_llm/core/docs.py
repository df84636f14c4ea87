"""Documentation generated from ``skills/``: JSON Schema for scripts, tables for people and the README.

Nothing here restates a skill, range or hazard: it is all read from the command set, so the docs cannot
drift from what the validator enforces.
"""

from __future__ import annotations

from typing import Any

from medrobot_llm.core.command_set import ArgSpec, CommandSet, SkillSpec, load_command_set

__all__ = ["arg_schema", "command_table", "json_schema", "readme_tables"]


def arg_schema(cs: CommandSet, spec: ArgSpec) -> dict[str, Any]:
    """JSON Schema of one argument, with its enum or range and its unit."""
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


def _skill_schema(cs: CommandSet, skill: SkillSpec) -> dict[str, Any]:
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
        "$defs": {name: _skill_schema(cs, s) for name, s in cs.skills.items()},
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"oneOf": [{"$ref": f"#/$defs/{n}"} for n in cs.skills]}}},
    }


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_num(x) for x in v) + "]"
    return str(v)


def _describe_arg(cs: CommandSet, name: str, spec: ArgSpec) -> str:
    if spec.type == "enum":
        if spec.values_from:
            owner, attr = spec.values_from.split(".")
            detail = f"one of the {owner}'s {attr}"
        else:
            detail = ", ".join(cs.allowed_values(spec))
    elif spec.type == "number" and spec.range_from:
        entity = skill_entity(cs, spec.range_from)
        ent = cs.entities[entity] if entity else None
        parts = [f"{v} {_num(ev.min)}..{_num(ev.max)} {ev.unit}" for v, ev in (ent.values.items() if ent else [])]
        detail = "; ".join(parts)
    elif spec.type in ("number", "vector3"):
        each = "each " if spec.type == "vector3" else ""
        detail = f"{each}{_num(spec.min)}..{_num(spec.max)} {spec.unit}"
    else:
        detail = f"text ≤ {spec.max_length} chars"
    default = f", default {_num(spec.default)}" if spec.default not in (None, "") else ""
    req = "" if (spec.required or spec.default is not None) else " (optional)"
    return f"`{name}` {detail}{default}{req}"


def skill_entity(cs: CommandSet, arg_name: str) -> str | None:
    for skill in cs.skills.values():
        spec = skill.args.get(arg_name)
        if spec is not None and spec.entities:
            return spec.entities[0]
    return None


def command_table(domain: str, markdown: bool = False) -> str:
    cs = load_command_set(domain)
    rows = []
    for name, skill in cs.skills.items():
        args = "; ".join(_describe_arg(cs, a, s) for a, s in skill.args.items()) or "—"
        pre = ", ".join(map(str, skill.preconditions)) or "—"
        post = ", ".join(map(str, skill.effects)) or "—"
        rows.append((name, args, skill.hazard.value, pre, post))
    if markdown:
        lines = [f"**{cs.title}** — {cs.description}", "",
                 "| skill | args (range, default) | hazard | pre | post |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in rows]
        if cs.tasks:
            lines.append("")
            for tname, task in cs.tasks.items():
                lines.append(f"Task `{tname}` = {' → '.join(task.steps)} ({task.summary})")
        if cs.max_exposures:
            lines.append("")
            lines.append(f"At most {cs.max_exposures} exposures in one plan; each needs its own confirmation.")
        return "\n".join(lines)
    out = [f"{cs.title} (command set v{cs.version})", ""]
    for r in rows:
        mark = {"contact": "  [CONTACT: needs confirmation]", "radiation": "  [RADIATION: needs confirmation]"}
        out.append(f"{r[0]}  ({r[2]}){mark.get(r[2], '')}")
        out.append(f"    args: {r[1].replace('`', '')}")
        if r[3] != "—":
            out.append(f"    needs: {r[3]}")
        if r[4] != "—":
            out.append(f"    then:  {r[4]}")
    for tname, task in cs.tasks.items():
        out.append(f"task {tname} = {' -> '.join(task.steps)}")
    return "\n".join(out)


def readme_tables() -> str:
    from medrobot_llm.core.command_set import DOMAINS

    return "\n\n".join(command_table(d, markdown=True) for d in DOMAINS)
