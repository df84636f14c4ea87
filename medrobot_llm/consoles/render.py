"""A plan as people read it, the same on every front end (``medrobot plan``, ``run``, the consoles, voice)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medrobot_llm.core.plan import Plan

__all__ = ["render_plan"]


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
        lines.append(f"  {k + 1}. {step.describe()}{mark}")
    return "\n".join(lines)
