"""The LLM planner: any OpenAI-compatible endpoint behind the same validator as the offline planner.

A model is a fallible, persuadable text generator, so nothing it says is trusted on its own. The person's
text is screened before any call; the answer goes through ``check_steps`` (which recomputes the
confirmations from ``skills/``) and through grounding checks that hold the plan to what the person
actually said: no contact or radiation step, no exposure count, no number and no control intent that the
text does not ask for. Rejections go back to the model as the validator's structured issues for a bounded
number of repairs; then the command is refused with the reason. The transport retries with backoff,
trips a circuit breaker when the endpoint keeps failing, and can hand over to the offline planner with a
visible notice. Every HTTP attempt is written to the audit log.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from medrobot_llm.planning.llm.config import LLMConfig, LLMConfigError, config_from_args
from medrobot_llm.planning.llm.grounding import control_grounded, ground_plan, words_of
from medrobot_llm.planning.llm.prompt import build_messages, repair_message
from medrobot_llm.planning.llm.schema import (
    CLARIFY_TOOL,
    CONTROL_TOOL,
    PLAN_TOOL,
    REFUSE_TOOL,
    response_format,
    skill_tools,
    submit_plan_tool,
)
from medrobot_llm.core.clock import Clock
from medrobot_llm.core.plan import Control, Plan, PlanStatus
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.command_set import DOMAINS
from medrobot_llm.core.validator import Issue, PlanValidationError, WorldState, check_steps

if TYPE_CHECKING:
    import argparse

    from medrobot_llm.planning.base import Planner

__all__ = [
    "CircuitBreaker",
    "HybridPlanner",
    "LLMPlanner",
    "LLMUnavailable",
    "Trace",
    "planner_from_args",
]

_AUTO_ORDER: tuple[str, ...] = ("json_schema", "tools", "json")
_MAX_TEXT = 300


class AuditSink(Protocol):
    def append(self, kind: str, **fields: Any) -> Any: ...


class ParsingPlanner(Protocol):
    """The offline planner as the hybrid uses it: ``parse`` also says whether the text was understood."""

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan: ...

    def parse(self, domain: str, text: str, world: WorldState | None = None) -> tuple[Plan, bool]: ...


class LLMUnavailable(RuntimeError):
    """The endpoint cannot answer (timeouts, 5xx after retries, circuit open, auth, no model)."""


class _Rejected(RuntimeError):
    """The server refused the request's shape (400/404/422): a feature it lacks, so try a simpler mode."""


# -- circuit breaker -------------------------------------------------------------------------------------
class CircuitBreaker:
    """Stops calling an endpoint that keeps failing, so a dead server costs one fast refusal, not a timeout
    per command; after ``cooldown`` seconds one trial request decides whether it closes again."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0, clock: Clock = time.monotonic):
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def remaining(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self.opened_at))

    def allow(self) -> bool:
        return self.state != "open"

    def success(self) -> None:
        with self._lock:
            self.failures = 0
            self.opened_at = None

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold or self.opened_at is not None:
                self.opened_at = self.clock()


# -- per-command trace ----------------------------------------------------------------------------------
@dataclass
class Trace:
    """What one command cost and why it ended as it did; read by tests, benchmarks and the audit log."""

    domain: str = ""
    http_attempts: int = 0
    model_calls: int = 0
    repairs: int = 0
    transport_retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_s: float = 0.0
    total_s: float = 0.0
    mode: str = ""
    modes_tried: list[str] = field(default_factory=list)
    issues: list[list[dict[str, Any]]] = field(default_factory=list)
    stripped: list[str] = field(default_factory=list)
    screened: str | None = None
    unavailable: str | None = None
    fallback: bool = False

    @property
    def overhead_s(self) -> float:
        return max(0.0, self.total_s - self.model_s)


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


# -- the planner ------------------------------------------------------------------------------------------
def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# What only a text written for a language model says: notes addressed to the model, approvals claimed in
# advance, steps to hide, answers dictated. The offline screen catches the common forms; these are the
# paraphrases a model would obey and a parser would never see.
def _screen(text: str) -> str | None:
    """The offline planner's screen, then the model-specific one; either refuses before any model call."""
    from medrobot_llm.language.screen import screen_text

    return screen_text(text)


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
        self._client = client
        self.audit = audit
        self.fallback = fallback
        self.sleep = sleep
        self.clock = clock
        self.notify = notify
        self.jitter = jitter
        self.breaker = CircuitBreaker(self.config.breaker_threshold, self.config.breaker_cooldown, breaker_clock)
        self._modes = list(_AUTO_ORDER) if self.config.mode == "auto" else [self.config.mode]
        self._model: str | None = self.config.model
        self._announced = False
        self._request_cache: dict[tuple[str, str], dict[str, Any]] = {}
        self.last = Trace()
        self.totals = Trace()
        self.commands = 0

    # -- public ---------------------------------------------------------------------------------------
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
        self._log("llm_plan", domain=domain, status=plan.status.value, model=self._model, mode=trace.mode,
                  calls=trace.http_attempts, repairs=trace.repairs, prompt_tokens=trace.prompt_tokens,
                  completion_tokens=trace.completion_tokens, model_ms=round(trace.model_s * 1000, 3),
                  overhead_ms=round(trace.overhead_s * 1000, 3), fallback=trace.fallback,
                  screened=trace.screened is not None, unavailable=trace.unavailable)
        return plan

    # -- steps ----------------------------------------------------------------------------------------
    def _plan(self, domain: str, text: str, world: WorldState | None, trace: Trace) -> Plan:
        if domain not in DOMAINS:
            return Plan.refused(str(domain)[:40], f"unknown domain {str(domain)[:40]!r}; choose one of: "
                                f"{', '.join(DOMAINS)}", Reason.UNKNOWN_DOMAIN)
        why = _screen(text)
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
        for repair in range(budget + 1):
            message, answer, error = self._ask(domain, text, world, history, trace)
            if error is not None:
                issues = [Issue(Reason.MALFORMED, f"the answer could not be read: {error}")]
            else:
                result = self._judge(domain, text, answer, world, trace)
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

    def _judge(self, domain: str, text: str, answer: Any, world: WorldState | None,
               trace: Trace) -> Plan | list[Issue]:
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
        issues = ground_plan(domain, text, raw_steps, steps)
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
                response = self._http(domain, mode, messages, trace, len(history) // 2)
            except _Rejected as exc:
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
            self.notify(f"medrobot: LLM planner using model {self._model} at {self._base_url()}, "
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

    def _request(self, domain: str, mode: str) -> dict[str, Any]:
        key = (domain, mode)
        cached = self._request_cache.get(key)
        if cached is None:
            cached = {}
            if mode == "json_schema":
                cached["response_format"] = response_format(domain, self.config.max_steps)
            elif mode == "tools":
                if self.config.tool_style == "per_skill":
                    cached["tools"] = skill_tools(domain)
                else:
                    cached["tools"] = [submit_plan_tool(domain, self.config.max_steps)]
                cached["tool_choice"] = "required"
            self._request_cache[key] = cached
        return cached

    def _base_url(self) -> str:
        return self.config.base_url or "https://api.openai.com/v1"

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                key = self.config.resolved_key()
            except LLMConfigError as exc:
                raise LLMUnavailable(str(exc)) from exc
            import openai

            self._client = openai.OpenAI(base_url=self._base_url(), api_key=key, timeout=self.config.timeout,
                                         max_retries=0)
        return self._client

    def _resolve_model(self, client: Any) -> str:
        if self._model:
            return self._model
        if self.config.is_openai:
            raise LLMUnavailable("no model named: set --model or MEDROBOT_MODEL")
        import openai

        try:
            models = [m.id for m in client.models.list(timeout=self.config.timeout)]
        except openai.OpenAIError as exc:
            raise LLMUnavailable(f"no model named and the server did not list its models ({exc})") from exc
        if not models:
            raise LLMUnavailable("no model named and the server lists none: set --model or MEDROBOT_MODEL")
        self._model = models[0]
        return self._model

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.config.backoff_max)
        base = min(self.config.backoff_max, self.config.backoff_base * 2.0 ** attempt)
        return base * (0.5 + 0.5 * self.jitter())

    def _http(self, domain: str, mode: str, messages: list[dict[str, Any]], trace: Trace, repair: int) -> Any:
        import openai

        client = self._get_client()
        model = self._resolve_model(client)
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "temperature": self.config.temperature,
                                  "max_tokens": self.config.max_tokens, "timeout": self.config.timeout}
        kwargs.update(self._request(domain, mode))
        retries = self.config.max_retries
        for attempt in range(retries + 1):
            if not self.breaker.allow():
                raise LLMUnavailable(f"circuit open after {self.breaker.failures} failed requests; retrying in "
                                     f"{self.breaker.remaining():.0f} s")
            trace.http_attempts += 1
            t0 = self.clock()
            status = "ok"
            retry_after: float | None = None
            response: Any = None
            error: BaseException | None = None
            try:
                response = client.chat.completions.create(**kwargs)
            except openai.APITimeoutError as exc:
                status, error = "timeout", exc
            except openai.APIConnectionError as exc:
                status, error = "connection_error", exc
            except openai.APIStatusError as exc:
                status, error = f"http_{exc.status_code}", exc
                retry_after = _retry_after(exc)
            except openai.OpenAIError as exc:
                status, error = "bad_response", exc
            finally:
                latency = self.clock() - t0
                trace.model_s += latency
            if error is None and not isinstance(getattr(response, "choices", None), list):
                status, error = "bad_response", LLMUnavailable("the answer is not a chat completion")
                response = None
            usage = getattr(response, "usage", None)
            pt = int(getattr(usage, "prompt_tokens", 0) or 0)
            ct = int(getattr(usage, "completion_tokens", 0) or 0)
            trace.prompt_tokens += pt
            trace.completion_tokens += ct
            self._log("llm_call", domain=domain, model=model, mode=mode, latency_ms=round(latency * 1000, 3),
                      prompt_tokens=pt, completion_tokens=ct, attempt=trace.http_attempts, repair=repair,
                      status=status)
            if error is None:
                self.breaker.success()
                return response
            code = getattr(error, "status_code", None)
            if code in (400, 404, 405, 415, 422):
                self.breaker.success()
                raise _Rejected(_error_text(error)) from error
            if code in (401, 403):
                self.breaker.success()
                raise LLMUnavailable(f"the server refused the credentials (HTTP {code})") from error
            self.breaker.failure()
            if attempt < retries and (code is None or code == 408 or code == 409 or code == 429 or code >= 500):
                trace.transport_retries += 1
                self.sleep(self._backoff(attempt, retry_after))
                continue
            what = {"timeout": f"timed out (limit {self.config.timeout:g} s)", "connection_error": "could not connect",
                    "bad_response": "got an answer that is not a chat completion"}.get(
                        status, f"failed with HTTP {code}")
            raise LLMUnavailable(f"the model call {what}, {attempt + 1} attempt{'s' if attempt else ''}") from error
        raise LLMUnavailable("no attempt was made")

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


def _retry_after(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return float(raw) * scale
        except ValueError:
            continue
    return None


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        msg = body.get("message") or body.get("error")
        if isinstance(msg, dict):
            msg = msg.get("message")
        if msg:
            return f"HTTP {getattr(exc, 'status_code', '?')}: {str(msg)[:200]}"
    return f"HTTP {getattr(exc, 'status_code', '?')}"


class HybridPlanner:
    """``--planner hybrid``: the offline planner first; the model only for text the offline planner could not
    read at all. Both screens run first, so a refusal for safety reasons is final and never reaches the model
    (the model-specific screen also guards what the offline planner would have read)."""

    name = "hybrid"

    def __init__(self, rule: ParsingPlanner, llm: LLMPlanner) -> None:
        self.rule = rule
        self.llm = llm
        self.llm_commands = 0

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        why = _screen(text)
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
    if audit is None and cfg.audit_log:
        try:
            from medrobot_llm.safety.audit import AuditLog
        except ImportError as exc:
            raise LLMConfigError("--llm-audit needs the audit log module (medrobot_llm.safety.audit)") from exc
        try:
            audit = AuditLog(cfg.audit_log)
        except (OSError, RuntimeError) as exc:
            raise LLMConfigError(f"cannot open the audit log {cfg.audit_log}: {exc}") from exc
    rule = RulePlanner()
    llm = LLMPlanner(cfg, audit=audit, fallback=rule if cfg.fallback == "rule" else None)
    name = getattr(args, "planner", "openai")
    if name == "hybrid":
        return HybridPlanner(rule, llm)
    return llm
