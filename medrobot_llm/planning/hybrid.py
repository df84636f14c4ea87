"""The hybrid planner and the factory for the planners that need a model.

``--planner hybrid`` puts the offline planner first and asks the model only for what it could not read, so
it lives beside both rather than inside either; ``planner_from_args`` builds it, or the plain LLM planner,
from the CLI flags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from medrobot_llm.core.plan import Plan
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.validator import WorldState
from medrobot_llm.language.screen import screen_text
from medrobot_llm.planning.llm.config import LLMConfigError, config_from_args
from medrobot_llm.planning.llm.planner import AuditSink, LLMPlanner

if TYPE_CHECKING:
    import argparse

    from medrobot_llm.planning.base import Planner

__all__ = ["HybridPlanner", "ParsingPlanner", "planner_from_args"]


class ParsingPlanner(Protocol):
    """The offline planner as the hybrid uses it: ``parse`` also says whether the text was understood."""

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan: ...

    def parse(self, domain: str, text: str, world: WorldState | None = None) -> tuple[Plan, bool]: ...


class HybridPlanner:
    """``--planner hybrid``: the offline planner first; the model only for text the offline planner could not
    read at all. Both screens run first, so a refusal for safety reasons is final and never reaches the model
    (the model-specific screen also guards what the offline planner would have read)."""

    name = "hybrid"

    def __init__(self, rule: ParsingPlanner, llm: LLMPlanner) -> None:
        self.rule = rule
        self.llm = llm
        self.llm_commands = 0

    def close(self) -> None:
        self.llm.close()

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        why = screen_text(text)
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
    owned = None
    if audit is None and cfg.audit_log:
        try:
            from medrobot_llm.safety.audit import AuditLog
        except ImportError as exc:
            raise LLMConfigError("--llm-audit needs the audit log module (medrobot_llm.safety.audit)") from exc
        try:
            audit = owned = AuditLog(cfg.audit_log)
        except (OSError, RuntimeError) as exc:
            raise LLMConfigError(f"cannot open the audit log {cfg.audit_log}: {exc}") from exc
    rule = RulePlanner()
    try:
        llm = LLMPlanner(cfg, audit=audit, fallback=rule if cfg.fallback == "rule" else None)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    if owned is not None:
        llm.close_audit = owned.close
    name = getattr(args, "planner", "openai")
    if name == "hybrid":
        return HybridPlanner(rule, llm)
    return llm
