"""The web console's server: a Starlette app over one ``WebHub``, for one person at one local page.

Security model (README, "Web console"): the server binds 127.0.0.1 unless told otherwise; the URL printed at
start carries a one-time token, exchanged on first use for an HttpOnly, SameSite=Strict session cookie, and every
other request needs that cookie (401 without it). The Host header must name the bound address (a DNS-rebinding
page cannot reach the server under another name) and an Origin, when sent, must be this origin (403), so another
site open in the same browser can neither post commands nor open the WebSocket. JSON bodies must say so
(``application/json``: a cross-site form cannot) and are validated by ``messages`` with their size limits; a
refusal is a 4xx JSON ``{"error": ...}`` with the reason. Nothing typed reaches a shell.

The stop is taken on the event loop itself, straight to ``client.stop``: it never waits in the thread pool behind
a command being planned or a recording being transcribed. Everything that may wait for a lock of the hub's runs
in the thread pool, so the loop is free for the next stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from medrobot_llm.consoles.web.hub import IMAGE_KINDS, Answer, WebHub
from medrobot_llm.consoles.web.messages import AUDIO_LIMIT, JSON_LIMIT, CommandBody, ConfirmBody, WsIn
from medrobot_llm.consoles.web.speech import SpeechInput

__all__ = ["COOKIE", "Access", "create_app"]

#: the session cookie's name is this prefix and the port: cookies ignore the port (RFC 6265), so one name for
#: every console let a second console opened in the same browser overwrite the first one's session
COOKIE = "medrobot_session"
_M = TypeVar("_M", bound=BaseModel)
_LOG = logging.getLogger(__name__)
_STATIC = {"app.js": "text/javascript", "app.css": "text/css", "tap.js": "text/javascript"}
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Access:
    """Who may use the page: the one-time token, the sessions it opened, and the address the server is bound to."""

    host: str
    port: int
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    used: bool = False
    sessions: set[str] = field(default_factory=set)

    @property
    def cookie(self) -> str:
        """This console's cookie name: unique per port, so consoles on one machine keep their own sessions."""
        return f"{COOKIE}_{self.port}"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.netloc}"

    @property
    def url(self) -> str:
        return f"{self.origin}/?token={self.token}"

    def redeem(self, token: str) -> str | None:
        """A new session for the token's first use; None for a wrong or a used token."""
        if self.used or not hmac.compare_digest(token.encode(), self.token.encode()):
            return None
        self.used = True
        session = secrets.token_urlsafe(32)
        self.sessions.add(session)
        return session

    def signed_in(self, conn: HTTPConnection) -> bool:
        cookie = conn.cookies.get(self.cookie, "")
        return any(hmac.compare_digest(cookie.encode(), s.encode()) for s in self.sessions)

    def place_problem(self, conn: HTTPConnection) -> str | None:
        """Why a request from this Host / Origin is refused (403), or None."""
        if conn.headers.get("host", "") != self.netloc:
            return f"Host must be {self.netloc}"
        origin = conn.headers.get("origin")
        if conn.scope["type"] == "websocket" and origin is None:
            return "a WebSocket must come from this page (no Origin sent)"
        if origin is not None and origin != self.origin:
            return f"Origin {origin} is not this console's ({self.origin})"
        return None


def _json(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, headers=_HEADERS)


def _error(status: int, why: str) -> JSONResponse:
    return _json(Answer.refused(status, why))


async def _read(request: Request, limit: int) -> bytes | JSONResponse:
    """The body, refused with 413 past ``limit`` bytes whatever Content-Length claims."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return _error(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _error(413, f"the body is larger than {limit} bytes")
    return bytes(body)


async def _body(request: Request, model: type[_M]) -> _M | JSONResponse:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(415, "send the body as application/json")
    raw = await _read(request, JSON_LIMIT)
    if isinstance(raw, JSONResponse):
        return raw
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        return _error(422, f"invalid body: {why}")


def create_app(hub: WebHub, access: Access, speech: SpeechInput | None = None) -> Starlette:
    """The app for ``hub``, reachable at ``access.origin`` only."""
    page = resources.files("medrobot_llm.consoles.web") / "static"

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def check(request: Request) -> Response:
            problem = access.place_problem(request)
            if problem is not None:
                return _error(403, problem)
            if not access.signed_in(request):
                return _error(401, "no session: open the URL the server printed (its token works once)")
            return await handler(request)

        return check

    async def index(request: Request) -> Response:
        problem = access.place_problem(request)
        if problem is not None:
            return _error(403, problem)
        token = request.query_params.get("token")
        if token is not None:
            session = access.redeem(token)
            if session is None:
                return _error(401, "this token is wrong or was already used; restart `medrobot web` for a new one")
            response = RedirectResponse("/", status_code=303, headers=_HEADERS)
            response.set_cookie(access.cookie, session, httponly=True, samesite="strict", path="/")
            return response
        if not access.signed_in(request):
            return _error(401, "no session: open the URL the server printed (its token works once)")
        html = (page / "index.html").read_text(encoding="utf-8")
        csp = (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
               f"connect-src 'self' ws://{access.netloc}; media-src 'self' blob:; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'none'")
        return Response(html, media_type="text/html", headers={**_HEADERS, "Content-Security-Policy": csp})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return _error(404, f"no such file: {name}")
        return Response((page / name).read_bytes(), media_type=_STATIC[name], headers=_HEADERS)

    async def command(request: Request) -> Response:
        body = await _body(request, CommandBody)
        if isinstance(body, JSONResponse):
            return body
        return _json(await run_in_threadpool(hub.command, body.text))

    async def confirm(request: Request) -> Response:
        body = await _body(request, ConfirmBody)
        if isinstance(body, JSONResponse):
            return body
        return _json(await run_in_threadpool(hub.confirm, body.question, body.accept, body.via))

    async def stop(request: Request) -> Response:
        return _json(hub.stop("Stop pressed on the web console"))

    async def reset(request: Request) -> Response:
        return _json(await run_in_threadpool(hub.reset))

    async def speak(request: Request) -> Response:
        if speech is None:
            return _error(503, "no speech recogniser is loaded (see the server's stderr)")
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind not in ("audio/wav", "audio/x-wav", "audio/wave"):
            return _error(415, "send the recording as audio/wav")
        raw = await _read(request, AUDIO_LIMIT)
        if isinstance(raw, JSONResponse):
            return raw
        if not raw:
            return _error(400, "the recording is empty")
        return _json(await run_in_threadpool(speech.hear, raw))

    async def image(request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in IMAGE_KINDS:
            return _error(404, f"no image kind {kind!r}; one of {', '.join(IMAGE_KINDS)}")
        sha = request.query_params.get("sha256")
        img = await run_in_threadpool(hub.image, kind, sha)
        if img is None:
            return _error(404, f"no {kind} image yet" if sha is None else f"no recent {kind} image {sha[:64]}")
        return Response(img.data, media_type="image/png", headers={**_HEADERS, "X-Sha256": img.sha256})

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204, headers=_HEADERS)

    async def status(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(hub.status), headers=_HEADERS)

    async def ws(websocket: WebSocket) -> None:
        problem = access.place_problem(websocket)
        if problem is not None or not access.signed_in(websocket):
            await websocket.close(code=4403 if problem else 4401, reason=problem or "no session")
            return
        await websocket.accept()
        await _serve_socket(websocket, hub)

    routes = [
        Route("/", index),
        Route("/static/{name}", guarded(static)),
        Route("/api/command", guarded(command), methods=["POST"]),
        Route("/api/confirm", guarded(confirm), methods=["POST"]),
        Route("/api/stop", guarded(stop), methods=["POST"]),
        Route("/api/reset", guarded(reset), methods=["POST"]),
        Route("/api/speech", guarded(speak), methods=["POST"]),
        Route("/api/image/{kind}", guarded(image)),
        Route("/api/status", guarded(status)),
        Route("/favicon.ico", guarded(no_icon)),
        WebSocketRoute("/ws", ws),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        """No route (404, 405): said only to a signed-in page, so the routes cannot be probed without a session."""
        assert isinstance(exc, HTTPException)
        problem = access.place_problem(request)
        if problem is not None:
            return _error(403, problem)
        if not access.signed_in(request):
            return _error(401, "no session: open the URL the server printed (its token works once)")
        return _error(exc.status_code, exc.detail)

    async def crashed(request: Request, exc: Exception) -> Response:
        """A handler that raised: a JSON 500 with the reason (the page shows it), logged with its traceback,
        never the plain-text "Internal Server Error" the page cannot read."""
        _LOG.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"the server failed on this request ({type(exc).__name__}: {exc}); see its log")

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: crashed})


async def _serve_socket(websocket: WebSocket, hub: WebHub) -> None:
    """Push every view message; take a ``{"type": "stop"}`` from the page at once."""
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def push(message: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: this page is gone
            loop.call_soon_threadsafe(outbox.put_nowait, message)

    remove = hub.add_listener(push)
    for message in hub.snapshot():
        outbox.put_nowait(message)

    async def send() -> None:
        while True:
            await websocket.send_text(json.dumps(await outbox.get()))

    async def receive() -> None:
        while True:
            text = await websocket.receive_text()
            try:
                WsIn.model_validate_json(text)
            except ValidationError:
                push({"type": "reply", "ok": False, "message": 'the page may send only {"type": "stop"}',
                      "input": text[:80]})
                continue
            hub.stop("Stop pressed on the web console (WebSocket)")

    tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        remove()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
