"""Second attack on the web console (issue 19): what a careless or hostile user still gets through.

Each test is the attack as a user makes it, against ``medrobot web`` started as a user starts it (a child process,
its own record folder and audit log), over plain HTTP or headless chromium. Each was written as a strict xfail
by an attacker who had not read the code, failed on the code it was written against, and lost its marker when
the fix landed. A broken precondition raises ``RuntimeError``, so it is never mistaken for the attack's failure.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _openai_server import Reply, ScriptedOpenAIServer, rule_responder  # noqa: E402
from _web_helpers import ROOT, URL_LINE, WebServer, start_server  # noqa: E402

from medrobot_llm.planning.llm.prompt import extract_command  # noqa: E402

SHOT = "lateral of the sacrum and take a shot"
WAIT_S = 30.0


def _given(ok: bool, what: str) -> None:
    """A precondition of the attack: its failure is an error, never the expected AssertionError of the xfail."""
    if not ok:
        raise RuntimeError(f"precondition failed: {what}")


class Session:
    """The operator's browser after opening the printed URL: the session cookie, and requests with it."""

    def __init__(self, server: WebServer) -> None:
        self.port = int(server.base.rsplit(":", 1)[1])
        jar = http.cookiejar.CookieJar()
        urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)).open(server.url).read()
        cookies = [f"{c.name}={c.value}" for c in jar]
        _given(len(cookies) == 1, f"opening the URL sets one session cookie (got {cookies})")
        self.cookie = cookies[0]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT_S)
        headers = {"Cookie": self.cookie}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, data, headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read().decode("utf-8"))
        finally:
            conn.close()

    def state(self) -> str:
        return str(self.call("GET", "/api/status")[1]["state"])

    def until(self, cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not cond():
            _given(time.monotonic() < deadline, what)
            time.sleep(0.02)


@contextmanager
def _held_planner() -> Iterator[tuple[ScriptedOpenAIServer, threading.Event]]:
    """An OpenAI-compatible endpoint that answers the sacrum command only once the test lets it go (a slow or
    hung model), and any other command at once, as the rule planner would."""
    let_go = threading.Event()
    rule = rule_responder()

    def respond(body: dict[str, Any]) -> Reply:
        _, text = extract_command(body.get("messages", []))
        if text is not None and "sacrum" in text:
            let_go.wait(WAIT_S)
        return rule(body)

    server = ScriptedOpenAIServer(responder=respond).start()
    try:
        yield server, let_go
    finally:
        let_go.set()
        server.stop()


def test_a_command_after_stop_and_reset_is_not_blocked_by_the_abandoned_planning(tmp_path: Path) -> None:
    with _held_planner() as (llm, let_go):
        server = start_server("xray", tmp_path, "--planner", "openai", "--base-url", llm.base_url,
                              "--model", "scripted-model", "--llm-timeout", "60")
        try:
            page = Session(server)
            first: dict[str, Any] = {}
            sender = threading.Thread(target=lambda: first.update(answer=page.call("POST", "/api/command",
                                                                                     {"text": SHOT})))
            sender.start()
            page.until(lambda: page.state() == "PLANNING", "the held command is being planned")
            _given(page.call("POST", "/api/stop")[0] == 200, "Stop is taken")
            _given(page.call("POST", "/api/reset")[0] == 200, "Reset after the stop is taken")
            _given(page.state() == "IDLE", "the console is idle after the reset")
            status, body = page.call("POST", "/api/command", {"text": "AP of the pelvis"})
            let_go.set()
            sender.join(WAIT_S)
            assert status == 200, (f"after Stop and Reset a new command is refused ({status} {body}) because of "
                                   "the command the Stop abandoned")
        finally:
            server.close()


def _starts_serving(tmp: Path, *extra: str) -> tuple[bool, str]:
    """Whether ``medrobot web`` with these arguments gets as far as printing its URL (then it is stopped), and
    what it printed on stderr otherwise."""
    err = tmp / "stderr"
    cmd = [sys.executable, "-m", "medrobot_llm.cli", "web", "--domain", "xray", "--port", "0",
           "--record", str(tmp / "record"), "--log", str(tmp / "audit.jsonl"), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with err.open("wb") as err_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, stdin=subprocess.DEVNULL,
                                env=env, cwd=tmp)
    lines: queue.Queue[str] = queue.Queue()

    def first_line() -> None:
        assert proc.stdout is not None
        lines.put(proc.stdout.readline().decode("utf-8", errors="replace").rstrip("\n"))

    threading.Thread(target=first_line, daemon=True).start()
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        line = ""
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return URL_LINE.match(line) is not None, err.read_text(errors="replace")


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "0.3"])
def test_a_confirm_timeout_that_defeats_the_questions_is_refused_at_start(tmp_path: Path, timeout: str) -> None:
    serving, stderr = _starts_serving(tmp_path, "--confirm-timeout", timeout)
    assert not serving, f"medrobot web --confirm-timeout {timeout} started serving (stderr: {stderr[-500:]!r})"


def _held_key(driver: Any, key: str) -> None:
    """One auto-repeated keydown, the way the browser reports a key the operator keeps holding down."""
    code = f"Key{key.upper()}"
    driver.execute_cdp_cmd("Input.dispatchKeyEvent", {"type": "keyDown", "key": key, "code": code, "text": key,
                                                      "autoRepeat": True,
                                                      "windowsVirtualKeyCode": ord(key.upper())})
    driver.execute_cdp_cmd("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code,
                                                      "windowsVirtualKeyCode": ord(key.upper())})


def test_a_held_y_does_not_confirm_the_next_motion_step(tmp_path: Path) -> None:
    from _web_helpers import Console, make_driver, missing_browser
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains

    _given(missing_browser() is None, str(missing_browser()))
    server = start_server("xray", tmp_path)
    driver = make_driver()
    try:
        page = Console(driver, server).open()
        page.send("AP of the pelvis, then lateral of the sacrum")
        first = page.wait_question()
        driver.find_element("css selector", "body").click()

        def press_y() -> str | bool:
            # a keyboard Confirm is taken once its question has been shown for the arming delay: press until it is
            ActionChains(driver).send_keys("y").perform()
            now = page.question()
            return now if now and now != first else False

        second = page.wait(press_y, "y never answered the first motion question")
        _given(page.state() == "AWAITING_CONFIRMATION", "the second motion step is asked about")
        _held_key(driver, "y")
        try:
            page.wait(lambda: page.state() != "AWAITING_CONFIRMATION", "the held y answered nothing", timeout=3)
        except TimeoutException:
            answered = False
        else:
            answered = True
        assert not answered, (f"an auto-repeated y confirmed motion question {second} "
                                    f"(state now {page.state()!r}, messages {page.text('#messages')[:200]!r})")
    finally:
        driver.quit()
        server.close()


#: typed stops the supervisor takes as a stop when no question is open (checked first, as a precondition)
STOP_WORDINGS = ("please stop", "stop please", "could you stop", "no, stop", "stopp")


def test_every_typed_stop_latches_the_estop_while_a_question_is_open(tmp_path: Path) -> None:
    server = start_server("xray", tmp_path)
    try:
        page = Session(server)

        def back_to_idle() -> None:
            if page.state() != "IDLE":
                page.call("POST", "/api/stop")
                page.call("POST", "/api/reset")
            _given(page.state() == "IDLE", "the console is idle again")

        for wording in STOP_WORDINGS:
            back_to_idle()
            _given(page.call("POST", "/api/command", {"text": wording})[0] == 200 and page.state() == "ESTOP",
                   f"{wording!r} latches the e-stop when no question is open")
        missed: dict[str, tuple[int, dict[str, Any]]] = {}
        for wording in STOP_WORDINGS:
            back_to_idle()
            page.call("POST", "/api/command", {"text": SHOT})
            page.until(lambda: page.call("GET", "/api/status")[1]["open_question"] is not None,
                       "the plan asks its first question")
            answer = page.call("POST", "/api/command", {"text": wording})
            if page.state() != "ESTOP":
                missed[wording] = answer
        assert not missed, f"typed stops that left the e-stop unlatched while a question was open: {missed}"
    finally:
        server.close()
