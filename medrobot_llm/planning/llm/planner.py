"""The LLM planner: any OpenAI-compatible endpoint behind the same validator as the offline planner.

A model is a fallible, persuadable text generator, so nothing it says is trusted on its own. The person's
text is screened before any call; the answer goes through ``check_steps`` (which recomputes the
confirmations from ``skills/``) and through grounding checks (``grounding``) that hold the plan to what the
person actually said. Rejections go back to the model as the validator's structured issues for a bounded
number of repairs; then the command is refused with the reason. When the endpoint cannot answer (see
``transport``), the planner refuses or hands over to the offline planner with a visible notice.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from medrobot_llm.core.clock import Clock
from medrobot_llm.core.command_set import DOMAINS, unknown_domain
from medrobot_llm.core.plan import Control, Plan, PlanStatus
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.validator import Issue, PlanValidationError, WorldState, check_steps
from medrobot_llm.language.screen import screen_text
from medrobot_llm.planning.llm.config import LLMConfig
from medrobot_llm.planning.llm.grounding import control_grounded, ground_plan, words_of
from medrobot_llm.planning.llm.prompt import build_messages, repair_message
from medrobot_llm.planning.llm.reading import Reading, read
from medrobot_llm.planning.llm.schema import CLARIFY_TOOL, CONTROL_TOOL, PLAN_TOOL, REFUSE_TOOL
from medrobot_llm.planning.llm.transport import CircuitBreaker, LLMUnavailable, RequestRejected, Trace, Transport

if TYPE_CHECKING:
    from medrobot_llm.planning.base import Planner

__all__ = ["AuditSink", "LLMPlanner"]

_AUTO_ORDER: tuple[str, ...] = ("json_schema", "tools", "json")
_MAX_TEXT = 300


class AuditSink(Protocol):
    def append(self, kind: str, **fields: Any) -> Any: ...


# -- reading the model's answer ---------------------------------------------------------------------------
def _json_object(text: str) -> Any:
    """The first JSON value in a model's text, tolerating code fences and prose around it."""
    s = text.strip()
    if s.startswith("```"):
        s = re.sub(r"^```[a-zA-Z]*\s*", "", s)
        s = re.sub(r"\s*```\s*$", "", s)
    try:
        return json.loads(s)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[{\[]", s):
        try:
            value, _end = decoder.raw_decode(s, m.start())
        except ValueError:
            continue
        if isinstance(value, dict | list):
            return value
    raise ValueError("no JSON object in the answer")


def _tool_args(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise ValueError("tool arguments are neither a JSON string nor an object")
    return json.loads(raw) if raw.strip() else {}


def _answer_from_tools(calls: list[tuple[str, Any]]) -> dict[str, Any]:
    """A submit_plan call is the whole answer; calls named after skills are the steps, in order."""
    for name, raw in calls:
        if name == PLAN_TOOL:
            got = _tool_args(raw)
            if not isinstance(got, dict):
                raise ValueError(f"{PLAN_TOOL} arguments are not an object")
            return got
    steps: list[dict[str, Any]] = []
    for name, raw in calls:
        got = _tool_args(raw)
        if name == REFUSE_TOOL:
            return {"status": "refused", "reason": got.get("reason") if isinstance(got, dict) else None}
        if name == CLARIFY_TOOL:
            return {"status": "clarify", "question": got.get("question") if isinstance(got, dict) else None}
        if name == CONTROL_TOOL:
            return {"status": "control", "control": got.get("control") if isinstance(got, dict) else None}
        steps.append({"skill": name, "args": got})
    return {"status": "ok", "steps": steps}


def _clean_text(value: Any, fallback: str) -> str:
    if not isinstance(value, str) or not value.strip():
        return fallback
    text = "".join(c if c.isprintable() else " " for c in value)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


_ANSWER_KEYS = frozenset({"status", "steps", "control", "reason", "question"})


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LLMPlanner:
    """``--planner openai``: plans through a model, guarded by the screen, the validator and grounding.

    ``clock`` measures latencies for traces and benchmarks; ``breaker_clock`` decides when an open circuit
    may try again, and is the one a test drives by hand.
    """

    name = "openai"

    def __init__(self, config: LLMConfig | None = None, *, client: Any | None = None, audit: AuditSink | None = None,
                 fallback: Planner | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.perf_counter, notify: Callable[[str], None] = _stderr,
                 jitter: Callable[[], float] = random.random, breaker_clock: Clock = time.monotonic) -> None:
        self.config = (config or LLMConfig()).check()
        self.audit = audit
        self.fallback = fallback
        self.clock = clock
        self.notify = notify
        self.transport = Transport(self.config, client=client, log=self._log, sleep=sleep, clock=clock,
                                   jitter=jitter, breaker_clock=breaker_clock)
        self._modes = list(_AUTO_ORDER) if self.config.mode == "auto" else [self.config.mode]
        self._announced = False
        self.last = Trace()
        self.totals = Trace()
        self.commands = 0
        #: set by whoever opened ``audit`` for this planner alone (``--llm-audit``): ``close`` calls it once
        self.close_audit: Callable[[], None] | None = None

    def close(self) -> None:
        """Close the audit log this planner was given to own; a log shared with others is theirs to close."""
        close, self.close_audit = self.close_audit, None
        if close is not None:
            close()

    # -- public ---------------------------------------------------------------------------------------
    @property
    def breaker(self) -> CircuitBreaker:
        """The transport's circuit breaker: what a status line or a test reads to see the endpoint's health."""
        return self.transport.breaker

    @property
    def mode(self) -> str:
        """The structured-output mode in use (auto mode settles on the first one the server accepts)."""
        return self._modes[0]

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        trace = Trace(domain=domain)
        self.last = trace
        start = self.clock()
        try:
            plan = self._plan(domain, text, world, trace)
        finally:
            trace.total_s = self.clock() - start
            self._account(trace)
        self._log("llm_plan", domain=domain, status=plan.status.value, model=self.transport.model, mode=trace.mode,
                  calls=trace.http_attempts, repairs=trace.repairs, prompt_tokens=trace.prompt_tokens,
                  completion_tokens=trace.completion_tokens, model_ms=round(trace.model_s * 1000, 3),
                  overhead_ms=round(trace.overhead_s * 1000, 3), fallback=trace.fallback,
                  screened=trace.screened is not None, unavailable=trace.unavailable)
        return plan

    # -- steps ----------------------------------------------------------------------------------------
    def _plan(self, domain: str, text: str, world: WorldState | None, trace: Trace) -> Plan:
        if domain not in DOMAINS:
            return Plan.refused(str(domain)[:40], unknown_domain(str(domain)[:40]), Reason.UNKNOWN_DOMAIN)
        why = screen_text(text)
        if why:
            trace.screened = why
            return Plan.refused(domain, why, Reason.INJECTION)
        try:
            return self._converse(domain, text, world, trace)
        except LLMUnavailable as exc:
            trace.unavailable = str(exc)
            return self._unavailable(domain, text, world, trace, str(exc))

    def _unavailable(self, domain: str, text: str, world: WorldState | None, trace: Trace, why: str) -> Plan:
        if self.fallback is not None:
            trace.fallback = True
            self.notify(f"medrobot: the language model is unavailable ({why}); this command was planned by the "
                        "offline rule planner instead")
            self._log("llm_fallback", domain=domain, reason=why, planner=getattr(self.fallback, "name", "rule"))
            return self.fallback.plan(domain, text, world)
        return Plan.refused(domain, f"the language model is unavailable ({why}); nothing was planned. Try again, "
                            "or use the offline planner (--planner rule)", Reason.MODEL_UNAVAILABLE)

    def _converse(self, domain: str, text: str, world: WorldState | None, trace: Trace) -> Plan:
        budget = self.config.repair_retries
        history: list[dict[str, Any]] = []
        last_issues: list[Issue] = []
        reading: Reading | None = None
        for repair in range(budget + 1):
            message, answer, error = self._ask(domain, text, world, history, trace)
            if error is not None:
                issues = [Issue(Reason.MALFORMED, f"the answer could not be read: {error}")]
            else:
                reading = reading or read(domain, text, world)
                result = self._judge(domain, text, answer, world, trace, reading)
                if isinstance(result, Plan):
                    return result
                issues = result
            last_issues = issues
            trace.issues.append([i.to_json() for i in issues])
            if repair == budget:
                break
            trace.repairs += 1
            history += self._repair_turn(message, issues, repair + 1, budget)
        rejected = PlanValidationError(last_issues)
        return Plan.refused(domain, f"the model's plan was rejected after {budget} "
                            f"repair{'s' if budget != 1 else ''}: {rejected.sentence()}", rejected.code)

    def _repair_turn(self, message: dict[str, Any], issues: list[Issue], attempt: int,
                     budget: int) -> list[dict[str, Any]]:
        feedback = repair_message(issues, attempt, budget)
        calls = message.get("tool_calls") or []
        if calls:
            turn: list[dict[str, Any]] = [message]
            for k, call in enumerate(calls):
                body = feedback if k == 0 else "See above."
                turn.append({"role": "tool", "tool_call_id": call["id"], "content": body})
            return turn
        return [message, {"role": "user", "content": feedback}]

    def _judge(self, domain: str, text: str, answer: Any, world: WorldState | None, trace: Trace,
               reading: Reading) -> Plan | list[Issue]:
        if isinstance(answer, list):
            answer = {"status": "ok", "steps": answer}
        if not isinstance(answer, dict):
            return [Issue(Reason.MALFORMED, "the answer must be a JSON object with status and steps")]
        extra = sorted(str(k) for k in answer if k not in _ANSWER_KEYS)
        if extra:
            trace.stripped += extra
        status = answer.get("status")
        if status is None and isinstance(answer.get("steps"), list) and answer["steps"]:
            status = "ok"
        if status == PlanStatus.REFUSED.value:
            return Plan.refused(domain, _clean_text(answer.get("reason"), "the model refused the command"),
                                Reason.MODEL_REFUSED)
        if status == PlanStatus.CLARIFY.value:
            return Plan.clarify(domain, _clean_text(answer.get("question"), "Could you say that more precisely?"),
                                Reason.MODEL_QUESTION)
        if status == PlanStatus.CONTROL.value:
            try:
                intent = Control(str(answer.get("control")).strip().lower())
            except ValueError:
                return [Issue(Reason.MALFORMED, f"control {answer.get('control')!r} is not one of "
                              f"{', '.join(c.value for c in Control)}")]
            if control_grounded(domain, words_of(text), intent):
                return Plan.of_control(domain, intent)
            return [Issue(Reason.UNGROUNDED_CONTROL, f"the command does not say {intent.value!r}; a control "
                          "intent must be what the person said")]
        if status != PlanStatus.OK.value:
            return [Issue(Reason.MALFORMED, f"status {status!r} is not one of ok, refused, clarify, control")]
        raw_steps = answer.get("steps")
        if isinstance(raw_steps, list) and len(raw_steps) > self.config.max_steps:
            return [Issue(Reason.TOO_MANY_STEPS, f"the plan has {len(raw_steps)} steps, above the limit of "
                          f"{self.config.max_steps}")]
        if isinstance(raw_steps, list):
            for raw in raw_steps:
                if isinstance(raw, dict):
                    trace.stripped += sorted(f"steps.{k}" for k in raw if k not in ("skill", "args"))
        try:
            steps, confirm = check_steps(domain, raw_steps, world)
        except PlanValidationError as exc:
            if exc.needs_clarification:
                msg = exc.issues[0].message
                return Plan.clarify(domain, (msg[0].upper() + msg[1:]).rstrip(".?") + "?", exc.code)
            return exc.issues
        assert isinstance(raw_steps, list)
        issues = ground_plan(domain, text, raw_steps, steps, world, reading)
        if issues:
            return issues
        return Plan(status=PlanStatus.OK, domain=domain, steps=steps, needs_confirmation=confirm)

    # -- one model call (with mode fallback) -----------------------------------------------------------
    def _ask(self, domain: str, text: str, world: WorldState | None, history: list[dict[str, Any]],
             trace: Trace) -> tuple[dict[str, Any], Any, str | None]:
        while True:
            mode = self._modes[0]
            trace.mode = mode
            if mode not in trace.modes_tried:
                trace.modes_tried.append(mode)
            messages = build_messages(domain, text, mode, self.config.tool_style, world) + history
            try:
                response = self.transport.call(domain, mode, messages, trace, len(history) // 2)
            except RequestRejected as exc:
                if len(self._modes) > 1:
                    old = self._modes.pop(0)
                    self.notify(f"medrobot: the server rejected {old} output ({exc}); falling back to "
                                f"{self._modes[0]} mode")
                    self._log("llm_mode_fallback", domain=domain, from_mode=old, to_mode=self._modes[0],
                              error=str(exc)[:200])
                    continue
                raise LLMUnavailable(f"the server rejected the request: {exc}") from exc
            break
        if not self._announced:
            self._announced = True
            self.notify(f"medrobot: LLM planner using model {self.transport.model} at {self.transport.base_url()}, "
                        f"structured output mode: {mode}")
        trace.model_calls += 1
        choice = response.choices[0] if response.choices else None
        msg = choice.message if choice is not None else None
        content = getattr(msg, "content", None)
        calls = [(c.function.name, c.function.arguments, c.id) for c in (getattr(msg, "tool_calls", None) or [])
                 if getattr(c, "function", None) is not None]
        record: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            record["tool_calls"] = [{"id": cid or f"call_{k}", "type": "function",
                                     "function": {"name": n, "arguments": a}} for k, (n, a, cid) in enumerate(calls)]
        try:
            if calls:
                answer = _answer_from_tools([(n, a) for n, a, _ in calls])
            elif isinstance(content, str) and content.strip():
                answer = _json_object(content)
            else:
                finish = getattr(choice, "finish_reason", None)
                return record, None, f"the answer was empty (finish reason {finish})"
        except ValueError as exc:
            return record, None, str(exc)
        return record, answer, None

    # -- bookkeeping ----------------------------------------------------------------------------------
    def _log(self, kind: str, **fields: Any) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(kind, **fields)
        except Exception as exc:  # noqa: BLE001 - a broken log must be visible, not fatal to planning
            self.notify(f"medrobot: could not write {kind} to the audit log: {exc}")

    def _account(self, trace: Trace) -> None:
        self.commands += 1
        t = self.totals
        t.http_attempts += trace.http_attempts
        t.model_calls += trace.model_calls
        t.repairs += trace.repairs
        t.transport_retries += trace.transport_retries
        t.prompt_tokens += trace.prompt_tokens
        t.completion_tokens += trace.completion_tokens
        t.model_s += trace.model_s
        t.total_s += trace.total_s
