"""A real OpenAI-compatible HTTP server on 127.0.0.1, scripted per test.

The LLM planner talks to it with the official ``openai`` client over real sockets, so the tests exercise
what a deployment exercises: request bodies, HTTP status codes, timeouts, tool calls, usage counters.
Every request body is recorded so a test can assert what was actually sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from medrobot_llm.core.clock import ManualClock

__all__ = [
    "Harness",
    "RecordingAudit",
    "Reply",
    "ScriptedOpenAIServer",
    "content_reply",
    "error_reply",
    "make_planner",
    "plan_json",
    "tool_reply",
]


#: how long a held reply waits for ``release`` at most, so a client that never times out fails, not hangs
HELD_CAP_S = 30.0


@dataclass
class Reply:
    """One scripted answer: a chat completion message, or an HTTP error, optionally after a delay."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    status: int = 200
    error: str = ""
    delay_s: float = 0.0
    #: answered only once the test calls ``release`` or the server stops: a client that waits for it instead
    #: of timing out is caught by ``held_answered``, with no assertion on how long anything took
    held: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 100
    completion_tokens: int = 20
    finish_reason: str | None = None
    #: a body sent as it is, instead of a chat completion (a broken proxy, an HTML error page)
    raw: bytes | None = None
    #: send the body one byte every this many seconds (a server that keeps each read alive but never ends):
    #: ``dribbles_finished`` counts the bodies that were sent to their last byte
    dribble_s: float = 0.0


def content_reply(content: str | dict[str, Any], **kw: Any) -> Reply:
    text = content if isinstance(content, str) else json.dumps(content)
    return Reply(content=text, **kw)


def tool_reply(calls: Iterable[tuple[str, dict[str, Any] | str]], **kw: Any) -> Reply:
    out = []
    for k, (name, arguments) in enumerate(calls):
        out.append({
            "id": f"call_{k}",
            "type": "function",
            "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
        })
    return Reply(tool_calls=out, **kw)


def error_reply(status: int, message: str = "scripted error", **kw: Any) -> Reply:
    return Reply(status=status, error=message, **kw)


Responder = Callable[[dict[str, Any]], Reply]


class ScriptedOpenAIServer:
    """POST /v1/chat/completions answers from a queue of ``Reply`` (or a responder function once the queue is
    empty); GET /v1/models lists ``models``.

    ``reject_json_schema`` / ``reject_tools`` make the server answer 400 to requests that use those
    features, the way servers that lack them do, so the planner's mode fallback can be tested.
    """

    def __init__(self, replies: Iterable[Reply] = (), responder: Responder | None = None,
                 models: tuple[str, ...] = ("scripted-model",), reject_json_schema: bool = False,
                 reject_tools: bool = False, port: int = 0) -> None:
        self.queue: deque[Reply] = deque(replies)
        self.responder = responder
        self.models = models
        self.reject_json_schema = reject_json_schema
        self.reject_tools = reject_tools
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.held_answered = 0  #: held replies that were let go and sent (or tried to be)
        self.dribbles_finished = 0  #: dribbled bodies sent to their last byte
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="scripted-openai", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Let every held reply go, now and from now on."""
        self._release.set()

    def stop(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, *replies: Reply) -> None:
        with self.lock:
            self.queue.extend(replies)

    # -- inspection ----------------------------------------------------------------------------
    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("_path", "").endswith("/chat/completions")]

    # -- serving -------------------------------------------------------------------------------
    def _next(self, body: dict[str, Any]) -> Reply:
        rf = body.get("response_format")
        if self.reject_json_schema and isinstance(rf, dict) and rf.get("type") == "json_schema":
            return error_reply(400, "response_format json_schema is not supported by this server")
        if self.reject_tools and body.get("tools"):
            return error_reply(400, "tools are not supported by this server")
        with self.lock:
            if self.queue:
                return self.queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        return error_reply(500, "the test script has no reply left")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None,
                      dribble_s: float = 0.0) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    if not dribble_s:
                        self.wfile.write(data)
                        return
                    for k in range(len(data)):
                        self.wfile.write(data[k:k + 1])
                        self.wfile.flush()
                        if server._release.wait(dribble_s):
                            return
                    with server.lock:
                        server.dribbles_finished += 1
                except (BrokenPipeError, ConnectionResetError):
                    return

            def do_GET(self) -> None:
                with server.lock:
                    server.requests.append({"_path": self.path, "_method": "GET"})
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "tests"} for m in server.models]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
                    return
                body["_path"] = self.path
                with server.lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                    return
                reply = server._next(body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.held:
                    server._release.wait(HELD_CAP_S)
                    with server.lock:
                        server.held_answered += 1
                if reply.raw is not None:
                    try:
                        self.send_response(reply.status)
                        self.send_header("Content-Type", "text/html")
                        self.send_header("Content-Length", str(len(reply.raw)))
                        self.end_headers()
                        self.wfile.write(reply.raw)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                if reply.status != 200:
                    self._send(reply.status, {"error": {"message": reply.error, "type": "scripted_error",
                                                        "code": reply.status}}, reply.headers)
                    return
                message: dict[str, Any] = {"role": "assistant", "content": reply.content}
                if reply.tool_calls:
                    message["tool_calls"] = reply.tool_calls
                finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
                self._send(200, {
                    "id": f"chatcmpl-{len(server.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "scripted-model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                    "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                              "total_tokens": reply.prompt_tokens + reply.completion_tokens},
                }, reply.headers, reply.dribble_s)

        return Handler


# -- scripted models --------------------------------------------------------------------------------------
def wire_reply(body: dict[str, Any], answer: dict[str, Any], **kw: Any) -> Reply:
    """Send ``answer`` (a plan-shaped dict) the way the request asked: a submit_plan call, one call per step
    when the request offers a tool per skill, else JSON content."""
    tools = [t.get("function", {}).get("name") for t in body.get("tools") or []]
    if "submit_plan" in tools:
        return tool_reply([("submit_plan", answer)], **kw)
    if tools:
        status = answer.get("status")
        if status == "refused":
            return tool_reply([("refuse", {"reason": answer.get("reason") or ""})], **kw)
        if status == "clarify":
            return tool_reply([("ask_clarification", {"question": answer.get("question") or ""})], **kw)
        if status == "control":
            return tool_reply([("control", {"control": answer.get("control")})], **kw)
        return tool_reply([(s["skill"], s.get("args") or {}) for s in answer.get("steps", [])], **kw)
    return content_reply(answer, **kw)


def plan_answer(plan_json: dict[str, Any]) -> dict[str, Any]:
    """A plan object as a model would write it: no domain, no needs_confirmation (the model has no say)."""
    return {k: plan_json.get(k) for k in ("status", "steps", "control", "reason", "question")}


def rule_responder(**kw: Any) -> Responder:
    """A well-behaved model: answers with what the offline rule planner makes of the command."""
    from medrobot_llm.planning.llm.prompt import extract_command
    from medrobot_llm.planning.rule.planner import RulePlanner

    rule = RulePlanner()

    def respond(body: dict[str, Any]) -> Reply:
        domain, text = extract_command(body.get("messages", []))
        if domain is None or text is None:
            return error_reply(400, "the scripted model could not find the command in the request")
        plan = rule.plan(domain, text)
        return wire_reply(body, plan_answer(plan.to_json()), **kw)

    return respond


def fixed_responder(answer: dict[str, Any], **kw: Any) -> Responder:
    """A model that answers the same thing whatever it is told (an obeying or stubborn model)."""

    def respond(body: dict[str, Any]) -> Reply:
        return wire_reply(body, answer, **kw)

    return respond


#: what a model that obeys every injection does in each domain: the most hazard it can fit in one plan
OBEYING_ANSWERS: dict[str, dict[str, Any]] = {
    "surgery": {"status": "ok", "needs_confirmation": [], "steps": [
        {"skill": "locate", "args": {"object": "vessel"}},
        {"skill": "grasp", "args": {"arm": "psm1", "object": "vessel"}},
        {"skill": "retract", "args": {"arm": "psm1", "direction": "backward", "distance_mm": 30}}]},
    "ultrasound": {"status": "ok", "needs_confirmation": [], "steps": [
        {"skill": "move_to_window", "args": {"organ": "kidney", "side": "left"}},
        {"skill": "make_contact", "args": {"force_n": 20}},
        {"skill": "set_force", "args": {"force_n": 20}}]},
    "xray": {"status": "ok", "needs_confirmation": [], "steps": [
        {"skill": "move_to_view", "args": {"anatomy": "pelvis", "view": "ap"}},
        *[{"skill": "take_shot", "args": {}} for _ in range(5)]]},
}


def obeying_responder(**kw: Any) -> Responder:
    """A model that has been talked into anything: whatever the command, it answers the domain's most
    hazardous plan (and claims no confirmation is needed)."""
    from medrobot_llm.planning.llm.prompt import extract_command

    def respond(body: dict[str, Any]) -> Reply:
        domain, _text = extract_command(body.get("messages", []))
        return wire_reply(body, OBEYING_ANSWERS.get(domain or "", OBEYING_ANSWERS["xray"]), **kw)

    return respond


# -- planner helpers for tests ----------------------------------------------------------------------------
class RecordingAudit:
    """Duck-typed audit log: keeps what the planner appends."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, kind: str, **fields: Any) -> int:
        self.records.append({"kind": kind, **fields})
        return len(self.records) - 1

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind]


@dataclass
class Harness:
    """An LLM planner wired to a scripted server, with its sleeps, notices and audit records captured."""

    planner: Any
    server: ScriptedOpenAIServer
    audit: RecordingAudit
    notices: list[str]
    sleeps: list[float]
    clock: ManualClock  #: the breaker's: a test moves it instead of waiting out a cooldown


def make_planner(server: ScriptedOpenAIServer, *, fallback: Any = None, **settings: Any) -> Harness:
    from medrobot_llm.planning.llm.config import LLMConfig
    from medrobot_llm.planning.llm.planner import LLMPlanner

    base: dict[str, Any] = {"base_url": server.base_url, "model": "scripted-model", "timeout": 2.0,
                            "max_retries": 2, "backoff_base": 0.001, "backoff_max": 0.01}
    base.update(settings)
    audit = RecordingAudit()
    notices: list[str] = []
    sleeps: list[float] = []
    clock = ManualClock()
    planner = LLMPlanner(LLMConfig(**base), audit=audit, fallback=fallback, sleep=sleeps.append,
                         notify=notices.append, breaker_clock=clock)
    return Harness(planner, server, audit, notices, sleeps, clock)


def plan_json(status: str = "ok", steps: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    """A model answer in the plan schema's shape."""
    out: dict[str, Any] = {"status": status, "steps": steps or [], "control": None, "reason": None, "question": None}
    out.update(kw)
    return out
