"""A plan as people read it, the same on every front end (``medrobot plan``, ``run``, the consoles, voice)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medrobot_llm.core.command_set import CommandSet
    from medrobot_llm.core.plan import Plan, Step

__all__ = ["directions", "render_plan"]


def directions(cs: CommandSet, step: Step) -> list[str]:
    """Each signed amount of ``step`` said with the direction word the command set gives its sign ("right 50
    mm" for ``amount=-50`` on the left/right axis): a minus sign is what an operator misses in a read-back, so
    a side heard wrong would be confirmed. The words come from the skill file (the argument's own
    ``positive``/``negative``, those of the axis value chosen in the same step, the first of each list, or a
    vector's ``axes``)."""
    spec = cs.skill(step.skill)
    if spec is None:
        return []
    out: list[str] = []
    for name, arg in spec.args.items():
        value = step.args.get(name)
        if arg.axes and isinstance(value, list):
            out.extend(f"{words[0 if v > 0 else 1]} {_amount(v)} {arg.unit or ''}".strip()
                       for words, v in zip(arg.axes, value, strict=False) if isinstance(v, int | float) and v)
            continue
        if arg.type != "number" or not isinstance(value, int | float) or isinstance(value, bool) or value == 0:
            continue
        signs, unit = (arg.positive, arg.negative), arg.unit
        for other, other_arg in spec.args.items():
            chosen = step.args.get(other)
            if signs[0] or other_arg.type != "enum" or not isinstance(chosen, str):
                continue
            for entity in other_arg.entities:
                ev = cs.entities[entity].values.get(chosen) if entity in cs.entities else None
                if ev is not None and ev.positive and ev.negative:
                    signs, unit = (ev.positive, ev.negative), unit or ev.unit
        if signs[0] and signs[1]:
            out.append(" ".join(w for w in (signs[0 if value > 0 else 1][0], _amount(value), unit or "") if w))
    return out


def _amount(value: float) -> str:
    amount = abs(value)
    return str(int(amount)) if float(amount).is_integer() else str(amount)


def render_plan(plan: Plan) -> str:
    """The plan as people read it: numbered steps, hazards marked, or the reason / question."""
    from medrobot_llm.core.command_set import load_command_set

    if plan.status.value == "refused":
        return f"REFUSED: {plan.reason}"
    if plan.status.value == "clarify":
        return f"QUESTION: {plan.question}"
    if plan.status.value == "control":
        return f"CONTROL: {plan.control.value if plan.control else '?'}"
    cs = load_command_set(plan.domain)
    lines = [f"Plan ({plan.domain}, {len(plan.steps)} step{'s' if len(plan.steps) != 1 else ''}):"]
    for k, step in enumerate(plan.steps):
        spec = cs.skill(step.skill)
        hazard = spec.hazard.value if spec else "?"
        mark = {"contact": "  [CONTACT - needs confirmation]", "radiation": "  [RADIATION - needs confirmation]",
                "motion": "  [motion]"}.get(hazard, "")
        said = "; ".join(directions(cs, step))
        lines.append(f"  {k + 1}. {step.describe()}{f' ({said})' if said else ''}{mark}")
    return "\n".join(lines)
