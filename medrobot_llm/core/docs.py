"""Documentation generated from ``skills/``: tables for people and the README (JSON Schema: ``core.schema``).

Nothing here restates a skill, range or hazard: it is all read from the command set, so the docs cannot
drift from what the validator enforces.
"""

from __future__ import annotations

from typing import Any

from medrobot_llm.core.command_set import ArgSpec, CommandSet, load_command_set
from medrobot_llm.core.schema import arg_schema, json_schema

__all__ = ["arg_schema", "command_table", "json_schema", "readme_tables"]


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
