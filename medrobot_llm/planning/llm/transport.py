"""The transport: one model call to an OpenAI-compatible endpoint, bounded in time and in cost.

Every request has a wall-clock deadline (the config's ``timeout``, connect to last byte): the HTTP client's own
timeout bounds each read, so a server that sends a byte every few seconds would hold it for as long as it
likes; the deadline here is kept by waiting for the request on a worker thread and abandoning it (closing
the client under it) when the time is up. Timeouts, 429s,
5xx and connection errors are retried with exponential backoff and jitter (a server's ``Retry-After`` wins);
a request shape the server rejects is raised as ``RequestRejected`` so the planner can try a simpler
structured-output mode; and a circuit breaker stops calling an endpoint that keeps failing. Every HTTP
attempt is written to the audit log. ``openai`` is imported only when a call is made, so planning commands
that never reach a model start fast.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medrobot_llm.core.clock import Clock
from medrobot_llm.planning.llm.config import DEFAULT_OPENAI_URL, LLMConfig, LLMConfigError
from medrobot_llm.planning.llm.schema import response_format, skill_tools, submit_plan_tool

__all__ = ["CircuitBreaker", "LLMUnavailable", "RequestRejected", "Trace", "Transport"]


class LLMUnavailable(RuntimeError):
    """The endpoint cannot answer (timeouts, 5xx after retries, circuit open, auth, no model)."""


class RequestRejected(RuntimeError):
    """The server refused the request's shape (400/404/422): a feature it lacks, so try a simpler mode."""


class _DeadlinePassed(RuntimeError):
    """A request still unanswered at its wall-clock deadline (kept here, not by the HTTP client)."""


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


class Transport:
    """The endpoint as the planner sees it: ``call`` sends one chat request in a structured-output mode and
    returns the completion, or raises ``RequestRejected`` (try another mode) or ``LLMUnavailable``.

    ``clock`` measures latencies for traces; ``breaker_clock`` decides when an open circuit may try again.
    ``log`` writes one audit record and must not raise.
    """

    def __init__(self, config: LLMConfig, *, client: Any | None, log: Callable[..., None],
                 sleep: Callable[[float], None], clock: Callable[[], float], jitter: Callable[[], float],
                 breaker_clock: Clock) -> None:
        self.config = config
        self._client = client
        #: the client this transport made itself (never one handed in): the only one it may close
        self._owned: Any = None
        self._log = log
        self.sleep = sleep
        self.clock = clock
        self.jitter = jitter
        self.breaker = CircuitBreaker(self.config.breaker_threshold, self.config.breaker_cooldown, breaker_clock)
        self.model: str | None = self.config.model
        self._request_cache: dict[tuple[str, str], dict[str, Any]] = {}

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

    def base_url(self) -> str:
        """The endpoint named in notices and passed to the client: OpenAI's unless one is set."""
        return self.config.base_url or DEFAULT_OPENAI_URL

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                key = self.config.resolved_key()
            except LLMConfigError as exc:
                raise LLMUnavailable(str(exc)) from exc
            import openai

            self._client = self._owned = openai.OpenAI(base_url=self.base_url(), api_key=key,
                                                       timeout=self.config.timeout, max_retries=0)
        return self._client

    def _resolve_model(self, client: Any) -> str:
        if self.model:
            return self.model
        if self.config.is_openai:
            raise LLMUnavailable("no model named: set --model or MEDROBOT_MODEL")
        import openai

        try:
            listing = self._within_deadline(client, functools.partial(client.models.list, timeout=self.config.timeout))
            models = [m.id for m in listing]
        except (openai.OpenAIError, _DeadlinePassed) as exc:
            raise LLMUnavailable(f"no model named and the server did not list its models ({exc})") from exc
        if not models:
            raise LLMUnavailable("no model named and the server lists none: set --model or MEDROBOT_MODEL")
        self.model = models[0]
        return self.model

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.config.backoff_max)
        base = min(self.config.backoff_max, self.config.backoff_base * 2.0 ** attempt)
        return base * (0.5 + 0.5 * self.jitter())

    def _within_deadline(self, client: Any, request: Callable[[], Any]) -> Any:
        """One request that returns or raises within ``timeout`` seconds of wall-clock time, however
        the server paces its bytes. A request past its deadline is abandoned: a client this transport made
        is closed (its socket with it, so the worker ends) and made anew for the next request."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["response"] = request()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as it is
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="medrobot-llm-call", daemon=True).start()
        if not done.wait(self.config.timeout):
            if client is self._owned:
                self._client = self._owned = None
                with contextlib.suppress(Exception):  # the request is abandoned either way
                    client.close()
            raise _DeadlinePassed(f"no complete answer within {self.config.timeout:g} s")
        if "error" in box:
            raise box["error"]
        return box["response"]

    def call(self, domain: str, mode: str, messages: list[dict[str, Any]], trace: Trace, repair: int) -> Any:
        """One chat completion, retried while the failure may pass; ``repair`` (the round of validator
        feedback the messages carry) only labels the audit records."""
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
            client = self._get_client()  # a new one after a request abandoned at its deadline
            trace.http_attempts += 1
            t0 = self.clock()
            status = "ok"
            retry_after: float | None = None
            response: Any = None
            error: BaseException | None = None
            try:
                response = self._within_deadline(client, functools.partial(client.chat.completions.create, **kwargs))
            except (openai.APITimeoutError, _DeadlinePassed) as exc:
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
                raise RequestRejected(_error_text(error)) from error
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
