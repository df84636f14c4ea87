"""The web console (issue 19) without a browser: Starlette's TestClient over the real app, a real in-process
Session on the PyBullet xray and ultrasound scenes, real speech made by espeak-ng through pocketsphinx.

What is pinned here is what the browser tests rely on: the one-time token and the cookie, Host and Origin, the
messages pushed on /ws, questions bound by id (a stale id and an exposure by key are 409 and move nothing),
the stop from a request and from the WebSocket, reset, the read-back of a spoken command, refused bodies.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("pybullet")

from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from medrobot_llm.consoles.web.app import Access, create_app  # noqa: E402
from medrobot_llm.consoles.web.hub import WebHub  # noqa: E402
from medrobot_llm.consoles.web.messages import AUDIO_LIMIT, JSON_LIMIT, TEXT_LIMIT  # noqa: E402
from medrobot_llm.consoles.web.speech import SpeechInput  # noqa: E402
from medrobot_llm.planning.rule.planner import RulePlanner  # noqa: E402
from medrobot_llm.safety.audit import seal_holds  # noqa: E402
from medrobot_llm.session import Session  # noqa: E402

from _helpers_supervisor import until  # noqa: E402
from _planners import ThinkingPlanner  # noqa: E402

pytestmark = pytest.mark.sim

HOST, PORT = "127.0.0.1", 8765
BASE = f"http://{HOST}:{PORT}"
WS = f"ws://{HOST}:{PORT}/ws"
SHOT = "lateral of the sacrum and take a shot"
LONG_SWEEP = "scan the left kidney at 1 mm/s over 100 mm"


class Rig:
    """One page's server over one real session; ``messages`` is everything the hub pushed, in order."""

    def __init__(self, domain: str, tmp: Path, speech: bool = False, confirm_hazards: tuple[str, ...] = (),
                 arming_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.session = Session(domain, RulePlanner(), record_dir=tmp, confirm_timeout_s=30,
                               confirm_hazards=confirm_hazards)
        assert self.session.record_dir is not None
        # no arming delay unless a test is about it: the others answer an exposure the moment it is asked
        self.hub = WebHub(self.session.supervisor, domain, session=self.session,
                          frames_dir=self.session.record_dir / "frames", arming_s=arming_s, clock=clock)
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.hub.add_listener(self._keep)
        self.hub.start()
        self.access = Access(HOST, PORT)
        recognizer = None
        if speech:
            from medrobot_llm.consoles.voice.asr import PocketSphinxRecognizer

            recognizer = SpeechInput(self.hub, PocketSphinxRecognizer(domain).load())
        self.app = create_app(self.hub, self.access, recognizer)
        self.http = TestClient(self.app, base_url=BASE)
        r = self.http.get(f"/?token={self.access.token}", follow_redirects=False)
        assert r.status_code == 303 and self.access.cookie in r.cookies, r.text

    def _keep(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append(message)

    def seen(self, type_: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m["type"] == type_ and all(m.get(k) == v for k, v in fields.items())]

    def wait(self, type_: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        assert until(lambda: bool(self.seen(type_, **fields)), timeout), (type_, fields, self.messages[-10:])
        return self.seen(type_, **fields)[-1]

    def state(self) -> str:
        return str(self.http.get("/api/status").json()["state"])

    def post(self, path: str, body: Any = None) -> Any:
        return self.http.post(path, json=body) if body is not None else self.http.post(path)

    def close(self) -> None:
        self.http.close()
        self.hub.close()
        self.session.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(domain: str, speech: bool = False, confirm_hazards: tuple[str, ...] = (), arming_s: float = 0.0,
             clock: Callable[[], float] = time.monotonic) -> Rig:
        made.append(Rig(domain, tmp_path / f"rec-{len(made)}", speech, confirm_hazards, arming_s, clock))
        return made[-1]

    yield make
    for r in made:
        r.close()


# ------------------------------------------------------------------ who may use the page
def test_the_token_works_once_and_gives_an_httponly_strict_cookie(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    page = r.http.get("/")
    assert page.status_code == 200 and 'id="stop"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    fresh = TestClient(r.app, base_url=BASE)
    again = fresh.get(f"/?token={r.access.token}", follow_redirects=False)
    assert again.status_code == 401 and "already used" in again.json()["error"]
    assert r.access.cookie not in again.cookies
    # the cookie the first use sets is HttpOnly and SameSite=Strict
    other = Access(HOST, PORT)
    first = TestClient(create_app(r.hub, other), base_url=BASE)
    assert first.get("/?token=wrong", follow_redirects=False).status_code == 401
    header = first.get(f"/?token={other.token}", follow_redirects=False).headers["set-cookie"]
    assert "HttpOnly" in header and "samesite=strict" in header.lower() and "Path=/" in header


#: the DOM ids the browser tests find things by (the contract fixed by the lead)
PAGE_IDS = ("command", "send", "history", "talk", "state", "step", "progress", "plan", "question", "question-text",
            "confirm", "deny", "stop", "reset", "telemetry", "frame", "bmode", "radiograph", "audit", "messages")


def test_the_page_has_every_id_of_the_contract_and_its_script(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    page = r.http.get("/").text
    missing = [i for i in PAGE_IDS if f'id="{i}"' not in page]
    assert not missing, missing
    for img in ("frame", "bmode", "radiograph"):
        assert f'<img id="{img}"' in page
    assert '<progress id="progress"' in page and '<ol id="plan"' in page and '<ol id="audit"' in page
    script = r.http.get("/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    for hook in ('"/api/confirm"', '"/api/speech"', '{ type: "stop" }', "li.dataset.hazard", "img.dataset.sha256",
                 "span.dataset.name"):
        assert hook in script.text, hook
    assert r.http.get("/static/app.css").headers["content-type"].startswith("text/css")


def test_without_the_cookie_everything_is_401(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    anon = TestClient(r.app, base_url=BASE)
    for method, path in (("GET", "/"), ("GET", "/api/status"), ("GET", "/static/app.js"), ("POST", "/api/stop"),
                         ("POST", "/api/command"), ("GET", "/api/image/frame"), ("GET", "/nowhere"),
                         ("GET", "/api/command")):
        resp = anon.request(method, path, json={"text": "stop"} if method == "POST" else None)
        assert resp.status_code == 401 and "error" in resp.json(), (path, resp.text)
    with pytest.raises(WebSocketDisconnect):
        with anon.websocket_connect(WS, headers={"origin": BASE}) as ws:
            ws.receive_json()
    assert r.state() == "IDLE" and not r.seen("reply")


def test_a_wrong_origin_or_host_is_403(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    resp = r.http.post("/api/command", json={"text": SHOT}, headers={"origin": "http://evil.example"})
    assert resp.status_code == 403 and "Origin" in resp.json()["error"]
    with pytest.raises(WebSocketDisconnect):
        with r.http.websocket_connect(WS, headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()
    with pytest.raises(WebSocketDisconnect):
        with r.http.websocket_connect(WS) as ws:  # no Origin at all: not a page of ours
            ws.receive_json()
    rebound = TestClient(r.app, base_url="http://attacker.example:8765", cookies=dict(r.http.cookies))
    resp = rebound.get("/api/status")
    assert resp.status_code == 403 and "Host" in resp.json()["error"]
    assert r.state() == "IDLE" and not r.seen("plan")


# ------------------------------------------------------------------ the X-ray run, over the WebSocket
def test_command_plan_question_confirm_radiograph(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    with r.http.websocket_connect(WS, headers={"origin": BASE}) as ws:
        first = ws.receive_json()
        assert first["type"] in ("audit", "state")
        resp = r.post("/api/command", {"text": SHOT})
        assert resp.status_code == 200 and resp.json()["ok"], resp.text
        pushed: list[dict[str, Any]] = []

        def receive_until(pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            while True:
                m = ws.receive_json()
                pushed.append(m)
                if pred(m):
                    return m

        plan = receive_until(lambda m: m["type"] == "plan")
        assert [(s["skill"], s["hazard"]) for s in plan["steps"]] == [("move_to_view", "motion"),
                                                                   ("take_shot", "radiation")]
        assert plan["steps"][0]["args"] == {"anatomy": "sacrum", "view": "lateral"}
        question = receive_until(lambda m: m["type"] == "question" and m["id"])
        assert question["hazard"] == "radiation" and question["step"] == 1 and question["skill"] == "take_shot"
        # the keyboard shortcut alone cannot fire the tube
        key = r.post("/api/confirm", {"question": question["id"], "accept": True, "via": "key"})
        assert key.status_code == 409 and "button" in key.json()["error"]
        assert r.state() == "AWAITING_CONFIRMATION"
        ok = r.post("/api/confirm", {"question": question["id"], "accept": True, "via": "button"})
        assert ok.status_code == 200, ok.text
        image = receive_until(lambda m: m["type"] == "image" and m["kind"] == "radiograph")
        ws.send_json({"type": "noise"})
        refused = receive_until(lambda m: m["type"] == "reply" and not m["ok"])
        assert "stop" in refused["message"]
    assert r.session.record_dir is not None
    saved = r.session.record_dir / image["name"]
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == image["sha256"]
    served = r.http.get(image["url"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert hashlib.sha256(served.content).hexdigest() == image["sha256"] == served.headers["x-sha256"]
    assert r.http.get("/api/image/radiograph").content == served.content
    assert r.http.get("/api/image/radiograph?sha256=" + "0" * 64).status_code == 404
    assert r.http.get(image["url"].replace("radiograph", "frame")).status_code == 404
    assert any(m["type"] == "image" and m["kind"] == "frame" for m in pushed)
    assert any(m["type"] == "audit" and m["record"]["kind"] == "question" for m in pushed)
    assert until(lambda: r.state() == "IDLE", 10)
    # the answered question is closed: answering it again is stale
    late = r.post("/api/confirm", {"question": question["id"], "accept": True, "via": "button"})
    assert late.status_code == 409


def test_confirm_motion_asks_for_the_view_and_the_page_follows_the_step_asked(rig: Callable[..., Rig]) -> None:
    """``--confirm-motion`` (the page's default): the view is a question of its own before the gantry moves; a deny
    moves nothing; while a question is open the state names the step it is about."""
    r = rig("xray", confirm_hazards=("motion",))

    def sent() -> list[str]:
        return [m["record"]["skill"] for m in r.seen("audit") if m["record"]["kind"] == "step_sent"]

    assert r.post("/api/command", {"text": SHOT}).status_code == 200
    view = r.wait("question", hazard="motion", step=0, skill="move_to_view")
    assert "say 'confirm'" in view["text"]  # the supervisor's words; the page words its own from the fields
    assert r.seen("state", question=view["id"])[-1]["step"] == 0 and sent() == []
    assert r.post("/api/confirm", {"question": view["id"], "accept": False, "via": "button"}).status_code == 200
    assert until(lambda: r.state() == "IDLE", 10) and sent() == []
    assert r.session.supervisor.backend.world_state().facts["view_set"] is False

    assert r.post("/api/command", {"text": SHOT}).status_code == 200
    assert until(lambda: len(r.seen("question", hazard="motion")) == 2, 20), r.messages[-10:]
    view = r.seen("question", hazard="motion")[-1]
    assert view["step"] == 0
    # a motion step is no exposure: the keyboard shortcut may confirm it
    assert r.post("/api/confirm", {"question": view["id"], "accept": True, "via": "key"}).status_code == 200
    shot = r.wait("question", hazard="radiation", step=1, skill="take_shot")
    assert sent() == ["move_to_view"]
    state = r.seen("state", question=shot["id"])[-1]
    assert (state["step"], state["skill"], state["progress"]) == (1, "take_shot", 0.0), state
    assert r.post("/api/confirm", {"question": shot["id"], "accept": True, "via": "button"}).status_code == 200
    image = r.wait("image", kind="radiograph")
    assert r.session.record_dir is not None
    saved = [m for m in r.seen("log") if image["name"] in m["message"]]
    assert saved and str(r.session.record_dir) not in saved[0]["message"], saved
    assert str(r.session.record_dir / image["name"]) in saved[0]["title"]


def test_a_stale_question_id_is_409_and_nothing_moves(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    assert r.post("/api/command", {"text": SHOT}).status_code == 200
    question = r.wait("question", hazard="radiation")
    for stale in ("q0", "q999", question["id"] + "0"):
        resp = r.post("/api/confirm", {"question": stale, "accept": True, "via": "button"})
        assert resp.status_code == 409 and question["id"] in resp.json()["error"], resp.text
    deny_stale = r.post("/api/confirm", {"question": "q0", "accept": False, "via": "button"})
    assert deny_stale.status_code == 409
    assert r.state() == "AWAITING_CONFIRMATION"
    assert not r.seen("image", kind="radiograph")
    sent = [m["record"]["skill"] for m in r.seen("audit") if m["record"]["kind"] == "step_sent"]
    assert sent == ["move_to_view"]
    # a typed yes is not bound to a question: refused, and the question stays open
    typed = r.post("/api/command", {"text": "yes"})
    assert typed.status_code == 409 and r.state() == "AWAITING_CONFIRMATION"
    assert r.post("/api/confirm", {"question": question["id"], "accept": False, "via": "button"}).status_code == 200
    assert until(lambda: r.state() == "IDLE", 10)
    assert not r.seen("image", kind="radiograph")


class _Clock:
    """A clock the test moves by hand (the hub reads it for the arming delay and the feedback rate)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_exposure_confirm_is_refused_until_the_question_is_armed(rig: Callable[..., Rig]) -> None:
    clock = _Clock()
    r = rig("xray", arming_s=0.6, clock=clock)
    assert r.post("/api/command", {"text": SHOT}).status_code == 200
    question = r.wait("question", hazard="radiation")
    assert question["arm_ms"] == 600
    for dt in (0.0, 0.3, 0.599):
        clock.now = 1000.0 + dt
        early = r.post("/api/confirm", {"question": question["id"], "accept": True, "via": "button"})
        assert early.status_code == 409 and "too soon" in early.json()["error"], (dt, early.text)
        assert r.state() == "AWAITING_CONFIRMATION" and not r.seen("image", kind="radiograph")
    clock.now = 1000.0 + 0.6
    ok = r.post("/api/confirm", {"question": question["id"], "accept": True, "via": "button"})
    assert ok.status_code == 200, ok.text
    r.wait("image", kind="radiograph")


def test_a_deny_and_a_motion_question_are_not_armed(rig: Callable[..., Rig]) -> None:
    """Only an exposure's Confirm waits: a Deny never does, and a motion step's question has no delay."""
    clock = _Clock()
    r = rig("xray", arming_s=0.6, clock=clock, confirm_hazards=("motion",))
    assert r.post("/api/command", {"text": SHOT}).status_code == 200
    view = r.wait("question", hazard="motion")
    assert view["arm_ms"] == 0
    assert r.post("/api/confirm", {"question": view["id"], "accept": True, "via": "button"}).status_code == 200
    shot = r.wait("question", hazard="radiation")
    assert r.post("/api/confirm", {"question": shot["id"], "accept": False, "via": "button"}).status_code == 200
    assert until(lambda: r.state() == "IDLE", 10) and not r.seen("image", kind="radiograph")


def test_a_keyboard_confirm_waits_for_the_arming_delay_on_every_question(rig: Callable[..., Rig]) -> None:
    """A held or repeated key must not answer the question that appears next: a keyboard Confirm of a motion
    step is refused until the arming delay has passed, a click is not."""
    clock = _Clock()
    r = rig("xray", arming_s=0.6, clock=clock, confirm_hazards=("motion",))
    assert r.post("/api/command", {"text": SHOT}).status_code == 200
    view = r.wait("question", hazard="motion")
    for dt in (0.0, 0.3, 0.599):
        clock.now = 1000.0 + dt
        early = r.post("/api/confirm", {"question": view["id"], "accept": True, "via": "key"})
        assert early.status_code == 409 and "too soon" in early.json()["error"], (dt, early.text)
        assert r.state() == "AWAITING_CONFIRMATION"
    clock.now = 1000.0 + 0.6
    assert r.post("/api/confirm", {"question": view["id"], "accept": True, "via": "key"}).status_code == 200
    r.wait("question", hazard="radiation")


@pytest.mark.parametrize("text", ["please stop", "stop now please", "Stop the robot!", "ｓｔｏｐ", "emergency stop"])
def test_a_typed_stop_in_any_wording_stops_while_a_question_is_open(rig: Callable[..., Rig], text: str) -> None:
    """While a question is open the box refuses commands, but a stop is a stop in every wording the supervisor
    would take as one, never refused as a typed answer."""
    r = rig("xray", confirm_hazards=("motion",))
    assert r.post("/api/command", {"text": SHOT}).status_code == 200
    r.wait("question", hazard="motion")
    stopped = r.post("/api/command", {"text": text})
    assert stopped.status_code == 200, stopped.text
    assert until(lambda: r.state() == "ESTOP", 10), r.state()


# ------------------------------------------------------------------ stop and reset
@pytest.mark.parametrize("path", ["request", "websocket"])
def test_stop_during_a_sweep_latches_the_estop_and_reset_recovers(rig: Callable[..., Rig], path: str) -> None:
    r = rig("ultrasound")
    assert r.post("/api/command", {"text": LONG_SWEEP}).status_code == 200
    plan = r.wait("plan")
    # each argument with the words it was read from
    assert plan["steps"][2]["words"] == {"distance_mm": "100 mm", "speed_mm_s": "1 mm / s"}, plan
    contact = r.wait("question", skill="make_contact")
    assert r.post("/api/confirm", {"question": contact["id"], "accept": True, "via": "key"}).status_code == 200
    assert until(lambda: any(m["record"]["kind"] == "step_sent" and m["record"]["skill"] == "sweep"
                             for m in r.seen("audit")), 20)
    if path == "request":
        resp = r.post("/api/stop")
        assert resp.status_code == 200 and resp.json()["state"] == "ESTOP", resp.text
    else:
        with r.http.websocket_connect(WS, headers={"origin": BASE}) as ws:
            ws.send_json({"type": "stop"})
            assert until(lambda: r.state() == "ESTOP", 5)
    assert r.state() == "ESTOP"
    r.wait("log", level="alarm")
    results = [m["record"] for m in r.seen("audit") if m["record"]["kind"] == "step_result"]
    assert until(lambda: any(m["record"]["kind"] == "step_result" and m["record"]["skill"] == "sweep"
                             for m in r.seen("audit")), 10)
    results = [m["record"] for m in r.seen("audit") if m["record"]["kind"] == "step_result"]
    assert results[-1]["skill"] == "sweep" and not results[-1]["success"], results[-1]
    refused = r.post("/api/command", {"text": "scan the liver"})
    assert refused.status_code == 409 and r.state() == "ESTOP", refused.text
    reset = r.post("/api/reset")
    assert reset.status_code == 200 and reset.json()["state"] == "IDLE", reset.text
    assert r.state() == "IDLE"


def test_the_end_of_a_run_clears_the_current_step(rig: Callable[..., Rig]) -> None:
    """The page's #step and plan highlight follow the last state message: after the run it names no step."""
    r = rig("xray")
    assert r.post("/api/command", {"text": SHOT}).status_code == 200
    shot = r.wait("question", hazard="radiation")
    assert r.post("/api/confirm", {"question": shot["id"], "accept": True, "via": "button"}).status_code == 200
    r.wait("log", message="done: all 2 step(s) finished")
    assert until(lambda: r.seen("state")[-1]["step"] is None, 10), r.seen("state")[-1]
    assert r.http.get("/api/status").json()["step"] is None


def test_a_handler_that_fails_answers_json_500_with_the_reason(rig: Callable[..., Rig],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    r = rig("xray")

    def broken() -> dict[str, Any]:
        raise KeyError("no such thing")

    monkeypatch.setattr(r.hub, "status", broken)
    http = TestClient(r.app, base_url=BASE, cookies=dict(r.http.cookies), raise_server_exceptions=False)
    resp = http.get("/api/status")
    assert resp.status_code == 500 and resp.headers["content-type"] == "application/json", resp.text
    assert "KeyError" in resp.json()["error"]


def test_an_ultrasound_scan_shows_force_and_the_b_mode_capture(rig: Callable[..., Rig]) -> None:
    r = rig("ultrasound")
    assert r.post("/api/command", {"text": "scan the left kidney and capture an image"}).status_code == 200
    contact = r.wait("question", skill="make_contact")
    assert contact["hazard"] == "contact"
    assert r.post("/api/confirm", {"question": contact["id"], "accept": True, "via": "button"}).status_code == 200
    bmode = r.wait("image", kind="bmode")
    assert r.session.record_dir is not None
    assert hashlib.sha256((r.session.record_dir / bmode["name"]).read_bytes()).hexdigest() == bmode["sha256"]
    telemetry = r.seen("telemetry")
    assert any("force" in t["text"] for t in telemetry), telemetry[-1:]
    assert until(lambda: r.state() == "IDLE", 10)


def test_typed_control_words_take_the_console_paths(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    assert r.post("/api/command", {"text": "quit"}).status_code == 400
    help_ = r.post("/api/command", {"text": "help"})
    assert help_.status_code == 200 and "take_shot" in help_.json()["message"]
    status = r.post("/api/command", {"text": "status"})
    assert status.status_code == 200 and status.json()["message"].startswith("IDLE")
    stop = r.post("/api/command", {"text": "emergency stop"})
    assert stop.status_code == 200 and r.state() == "ESTOP"
    assert r.post("/api/command", {"text": "reset"}).status_code == 200 and r.state() == "IDLE"
    refused = r.post("/api/command", {"text": "make me a sandwich"})
    assert refused.status_code in (409, 422) and r.state() == "IDLE", refused.text
    assert r.seen("reply", ok=False)


# ------------------------------------------------------------------ bodies
def test_malformed_and_oversized_bodies_are_4xx_with_a_reason(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    cases = [
        (r.http.post("/api/command", json={"text": "x" * (TEXT_LIMIT + 1)}), 422),
        (r.http.post("/api/command", json={"text": ""}), 422),
        (r.http.post("/api/command", json={"text": SHOT, "extra": 1}), 422),
        (r.http.post("/api/command", json={"words": SHOT}), 422),
        (r.http.post("/api/command", content=b"{not json", headers={"content-type": "application/json"}), 422),
        (r.http.post("/api/command", content=SHOT.encode(), headers={"content-type": "text/plain"}), 415),
        (r.http.post("/api/command", content=b"{" + b" " * JSON_LIMIT + b"}",
                     headers={"content-type": "application/json"}), 413),
        (r.http.post("/api/confirm", json={"question": "q1", "accept": "maybe"}), 422),
        (r.http.post("/api/confirm", json={"question": "q1", "accept": True, "via": "voice"}), 422),
        (r.http.post("/api/speech", content=b"RIFF", headers={"content-type": "audio/wav"}), 503),
        (r.http.get("/api/command"), 405),
        (r.http.get("/nowhere"), 404),
        (r.http.get("/api/image/xray"), 404),
        (r.http.get("/api/image/radiograph"), 404),
        (r.http.get("/static/../hub.py"), 404),
    ]
    for resp, status in cases:
        assert resp.status_code == status and resp.json()["error"], (resp.request.url, status, resp.text)
    assert r.state() == "IDLE" and not r.seen("plan")


def test_oversized_or_broken_audio_is_refused(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    r.app = create_app(r.hub, r.access, SpeechInput(r.hub, _NeverCalled()))
    http = TestClient(r.app, base_url=BASE, cookies=dict(r.http.cookies))
    big = http.post("/api/speech", content=b"\0" * (AUDIO_LIMIT + 1), headers={"content-type": "audio/wav"})
    assert big.status_code == 413
    broken = http.post("/api/speech", content=b"RIFF0000WAVEjunk" * 10, headers={"content-type": "audio/wav"})
    assert broken.status_code == 422 and "WAV" in broken.json()["error"]
    assert "/tmp" not in broken.json()["error"]
    assert http.post("/api/speech", content=b"", headers={"content-type": "audio/wav"}).status_code == 400
    assert http.post("/api/speech", content=b"RIFF", headers={"content-type": "text/plain"}).status_code == 415


class _NeverCalled:
    name = "never"

    def transcribe(self, audio: Any) -> Any:
        raise AssertionError("a refused upload must not reach the recogniser")


# ------------------------------------------------------------------ speech
def _say(tmp: Path, text: str) -> bytes:
    path = tmp / "said.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, timeout=30)
    return path.read_bytes()


@pytest.mark.voice
def test_a_spoken_command_is_read_back_and_moves_only_after_confirm(rig: Callable[..., Rig], tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (the voice tests need it: apt-get install espeak-ng)")
    pytest.importorskip("pocketsphinx")
    r = rig("xray", speech=True)
    wav = _say(tmp_path, "lateral view of the sacrum")
    resp = r.http.post("/api/speech", content=wav, headers={"content-type": "audio/wav"})
    body = resp.json()
    assert resp.status_code == 200 and body["action"] == "readback", body
    assert "sacrum" in body["transcript"] and body["question"]["kind"] == "readback"
    plan = r.wait("plan", readback=True)
    assert [s["skill"] for s in plan["steps"]] == ["move_to_view"]
    assert r.state() == "IDLE" and not any(m["record"]["kind"] == "step_sent" for m in r.seen("audit"))
    assert r.seen("transcript", action="readback")
    # a new recording replaces the read-back: its question id is stale from then on
    second = r.http.post("/api/speech", content=wav, headers={"content-type": "audio/wav"}).json()
    stale = r.post("/api/confirm", {"question": body["question"]["id"], "accept": True, "via": "button"})
    assert stale.status_code == 409 and r.state() == "IDLE"
    ok = r.post("/api/confirm", {"question": second["question"]["id"], "accept": True, "via": "key"})
    assert ok.status_code == 200, ok.text
    r.wait("log", message="done: all 1 step(s) finished")
    sent = [m["record"] for m in r.seen("audit") if m["record"]["kind"] == "step_sent"]
    assert [s["skill"] for s in sent] == ["move_to_view"] and sent[0]["args"] == plan["steps"][0]["args"]
    # spoken stop latches at once
    stop = r.http.post("/api/speech", content=_say(tmp_path, "stop"), headers={"content-type": "audio/wav"})
    assert stop.status_code == 200 and stop.json()["action"] == "stop" and r.state() == "ESTOP"


# ------------------------------------------------------------------ the command line
def _medrobot(*argv: str) -> list[str]:
    return [sys.executable, "-m", "medrobot_llm.cli", *argv]


def test_web_help_and_remote_host_refusal() -> None:
    helped = subprocess.run(_medrobot("web", "--help"), capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--allow-remote" in helped.stdout and "one-time token" in helped.stdout
    remote = subprocess.run(_medrobot("web", "--domain", "xray", "--host", "0.0.0.0"), capture_output=True,
                            text=True, timeout=60)
    assert remote.returncode == 2 and "--allow-remote" in remote.stderr and not remote.stdout


@pytest.mark.slow
def test_the_first_stdout_line_is_the_url_and_sigterm_seals_the_log(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    proc = subprocess.Popen(_medrobot("web", "--domain", "xray", "--log", str(log), "--asr", "openai"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MEDROBOT_ASR_BASE_URL": "http://127.0.0.1:9/v1"})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("medrobot web: open http://127.0.0.1:") and "/?token=" in first, first
        url = first.split(" open ", 1)[1].strip()
        # the standard library as a browser would: the token's redirect sets the session cookie
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with browser.open(url, timeout=30) as page:
            assert page.status == 200 and 'id="plan"' in page.read().decode()
        with browser.open(url.split("?")[0] + "api/status", timeout=30) as status:
            assert json.loads(status.read())["state"] == "IDLE"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert records[0]["kind"] == "session" and seal_holds(log.read_bytes().splitlines()[-1]), records[-1]


# ------------------------------------------------------------------ the stop waits for nothing
def test_a_stop_does_not_wait_for_a_command_being_planned() -> None:
    from medrobot_llm.backends.memory import MemoryBackend

    planner = ThinkingPlanner()
    backend = MemoryBackend("xray", control_period_s=0.002)
    session = Session("xray", planner, backend=backend)
    hub = WebHub(session.supervisor, "xray", session=session)
    hub.start()
    access = Access(HOST, PORT)
    answers: list[Any] = []
    try:
        # one event loop for every request, as under uvicorn: the stop must get through it while the command
        # request is still waiting for the planner
        with TestClient(create_app(hub, access), base_url=BASE) as http:
            assert http.get(f"/?token={access.token}", follow_redirects=False).status_code == 303
            thread = threading.Thread(target=lambda: answers.append(http.post("/api/command", json={"text": SHOT})))
            thread.start()
            assert planner.started.wait(10)
            busy = http.post("/api/command", json={"text": "AP of the pelvis"})
            assert busy.status_code == 409 and "still working" in busy.json()["error"]
            stop = http.post("/api/stop")
            assert stop.status_code == 200 and stop.json()["state"] == "ESTOP"
            # the planner is still thinking, but the command is abandoned: the next one is not refused behind it
            assert thread.is_alive() and hub.working is None
            planner.answer.set()
            thread.join(30)
        assert answers and answers[0].status_code == 409, answers
        assert backend.sent == [] and session.supervisor.state.value == "ESTOP"
    finally:
        planner.answer.set()
        hub.close()
        session.close()
