"""The web console end to end in a real headless browser (issue 19's acceptance): ``medrobot web`` as a child
process, Debian's chromium through Selenium, the page driven by the contract's DOM ids the way an operator
would, and what happened read from the server's own record folder and audit log, not from the page alone.

Screenshots go to a temporary folder always, and to docs/img/web_*.png with MEDROBOT_SCREENSHOTS=1.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _web_helpers import Console, OtherOrigin, WebServer, make_driver, missing_browser, save_screenshot, \
    sha256, start_server, start_sweep

from conftest import Closing

pytestmark = [pytest.mark.browser, pytest.mark.sim, pytest.mark.slow, pytest.mark.timeout(90)]

XRAY_COMMAND = "lateral of the sacrum and take a shot"


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    reason = missing_browser()
    if reason:
        pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web_screenshots")


class _Browser:
    """A driver as a ``closing`` item: quitting it ends chromium and chromedriver."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def close(self) -> None:
        self.driver.quit()


Open = Callable[..., tuple[WebServer, Console]]


@pytest.fixture
def web(tmp_path: Path, closing: Closing) -> Iterator[Open]:
    """``web(domain, size=..., browser_args=...)``: a server of its own and chromium on its page, both closed
    after the test whatever happened (the browser first)."""
    def open_(domain: str, size: str = "laptop", browser_args: tuple[str, ...] = (), *server_args: str
              ) -> tuple[WebServer, Console]:
        server = closing(start_server(domain, tmp_path / domain, *server_args))
        driver = closing(_Browser(make_driver(size, browser_args))).driver
        return server, Console(driver, server).open()

    yield open_


def open_question(server: WebServer) -> dict[str, Any]:
    """The last question the supervisor asked, as its audit log has it (skill, hazard, step_index)."""
    asked = server.records("question")
    assert asked, "the audit log has no question"
    return asked[-1]


def status(page: Console) -> dict[str, Any]:
    reply = page.fetch("GET", "/api/status")
    assert reply["status"] == 200, reply
    body: dict[str, Any] = json.loads(reply["body"])
    return body


def in_viewport(page: Console, css: str) -> bool:
    """Whether the element is on screen without scrolling (Stop must always be)."""
    return bool(page.driver.execute_script(
        "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 &&"
        " r.bottom <= innerHeight && r.right <= innerWidth;", css))


def answer_until_exposure(server: WebServer, page: Console) -> str:
    """Click Confirm on every question before the exposure's (a view or plan question, if the page asks one),
    and return the exposure question's id, open."""
    seen = ""
    while True:
        qid = page.wait_question(other_than=seen)
        asked = page.wait(lambda: (q := open_question(server)) and q, "no question in the audit log")
        if asked.get("hazard") == "radiation":
            return qid
        page.el("#confirm").click()
        seen = qid


def asked_about(page: Console, index: int, skill: str, steps: int) -> None:
    """``#step`` and the plan's highlight show the step a question is about, the steps before it done."""
    page.wait(lambda: page.text("#step") == f"{index + 1}/{steps} {skill}",
              f"#step shows {page.text('#step')!r}, not the step asked about ({index + 1}/{steps} {skill})")
    rows = page.els("#plan li.step")
    current = [li.get_attribute("data-index") for li in rows if "current" in (li.get_attribute("class") or "")]
    done = [li.get_attribute("data-index") for li in rows if "done" in (li.get_attribute("class") or "")]
    assert current == [str(index)] and done == [str(i) for i in range(index)], (current, done)


def test_lateral_sacrum_plan_view_then_exposure_by_click_shows_the_radiograph(web: Open, shots_dir: Path) -> None:
    server, page = web("xray")
    page.send(XRAY_COMMAND)
    steps = page.plan_shown(2)
    assert [s["skill"] for s in steps] == ["move_to_view", "take_shot"]
    assert [s["hazard"] for s in steps] == ["motion", "radiation"]
    assert "sacrum" in steps[0]["args"]["anatomy"] and "lateral" in steps[0]["args"]["view"], steps[0]
    assert XRAY_COMMAND in page.text("#history")
    # the view first: asked before the gantry moves, in the page's words (buttons, not "say 'confirm'")
    view = page.wait_question()
    asked = page.wait(lambda: (q := open_question(server)) and q, "no question in the audit log")
    assert (asked["skill"], asked["hazard"], asked["step_index"]) == ("move_to_view", "motion", 0), asked
    assert not server.records("step_sent"), "the gantry moved before the view was confirmed"
    asked_about(page, 0, "move_to_view", 2)
    text = page.text("#question-text")
    assert "say" not in text and "Confirm" in text and "sacrum" in text and "lateral" in text, text
    assert "say 'confirm'" in (page.el("#question-text").get_attribute("title") or "")  # the supervisor's own
    page.el("#confirm").click()
    exposure = page.wait_question(other_than=view)
    asked = open_question(server)
    assert (asked["skill"], asked["hazard"], asked["step_index"]) == ("take_shot", "radiation", 1), asked
    # the view is set before the exposure is asked for: the gantry moved, nothing was exposed yet
    assert server.records("step_result", skill="move_to_view", success=True)
    assert server.records("step_sent", skill="move_to_view")[0]["confirmed"]
    assert not server.records("step_sent", skill="take_shot")
    asked_about(page, 1, "take_shot", 2)
    assert "Exposure" in page.text("#question-text") and "say" not in page.text("#question-text")
    assert in_viewport(page, "#stop") and in_viewport(page, "#confirm")
    clicked = time.time()
    page.el("#confirm").click()
    shot = page.wait(lambda: (r := server.records("step_result", skill="take_shot")) and r[0],
                     "the exposure did not run")
    assert shot["success"], shot
    sent = server.records("step_sent", skill="take_shot")
    assert sent[0]["confirmed"] and sent[0]["t_wall"] >= clicked
    pngs = page.wait(lambda: server.pngs("xray_*.png"), "no radiograph in the record folder")
    assert len(pngs) == 1, pngs
    want = sha256(pngs[0])
    page.wait(lambda: page.el("img#radiograph").get_attribute("data-sha256") == want,
              f"img#radiograph does not show {pngs[0].name} (sha256 {want[:12]})")
    page.wait(lambda: page.state() == "IDLE", "the run did not end IDLE")
    assert page.question() == "" and exposure
    assert not page.el("#confirm").is_enabled() and not page.el("#deny").is_enabled()
    assert page.driver.execute_script("return document.querySelector('img#radiograph').naturalWidth") > 0
    # the message names the file, not the record folder's temporary path; the path is its tooltip
    saved = page.wait(lambda: [li for li in page.els("#messages li") if pngs[0].name in li.text], "no saved message")
    assert str(pngs[0].parent) not in saved[0].text and str(pngs[0]) in (saved[0].get_attribute("title") or "")
    save_screenshot(page.driver, "laptop_xray_radiograph", shots_dir)


def test_keyboard_alone_cannot_confirm_an_exposure(web: Open) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server, page = web("xray")
    page.send(XRAY_COMMAND)
    page.plan_shown(2)
    exposure = answer_until_exposure(server, page)
    # Enter on the focused Confirm button (the browser turns it into a click event), Enter and y anywhere else
    page.driver.execute_script("document.querySelector('#confirm').focus()")
    ActionChains(page.driver).send_keys(Keys.ENTER).perform()
    page.el("#command").click()
    ActionChains(page.driver).send_keys(Keys.ENTER).perform()
    page.driver.execute_script("document.activeElement.blur()")
    ActionChains(page.driver).send_keys("y").send_keys(Keys.ENTER).perform()
    page.send("confirm")  # a typed "confirm" is the keyboard too
    # what the page would send for a key, sent from the page itself: refused by the server
    keyed = page.fetch("POST", "/api/confirm", {"question": exposure, "accept": True, "via": "key"})
    assert keyed["status"] == 409, keyed
    assert page.question() == exposure and page.el("#confirm").is_enabled()
    assert status(page).get("state") != "ESTOP"
    assert not server.records("step_sent", skill="take_shot"), "a key confirmed the exposure"
    assert not server.pngs("xray_*.png")
    page.el("#confirm").click()  # and the click still works: the keys did not spend the question
    page.wait(lambda: server.records("step_result", skill="take_shot", success=True), "the click did not expose")


def halted_mid_sweep(server: WebServer) -> dict[str, Any]:
    """The sweep's result, which must say halted, after the sweep was sent and the e-stop latched."""
    kinds = [(r["kind"], r.get("skill")) for r in server.audit()]
    sent, estop = kinds.index(("step_sent", "sweep")), kinds.index(("estop", None))
    result = server.records("step_result", skill="sweep")
    assert len(result) == 1, result
    assert not result[0]["success"] and result[0]["failure"] == "halted", result[0]
    assert sent < estop < kinds.index(("step_result", "sweep")), kinds
    assert not server.records("run_end", outcome="finish")
    return result[0]


@pytest.mark.parametrize("how", ["click", "space"])
def test_stop_during_a_sweep_halts_the_sim(web: Open, how: str, shots_dir: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server, page = web("ultrasound")
    start_sweep(page)
    if how == "click":
        page.el("#stop").click()
    else:
        page.driver.execute_script("document.activeElement.blur()")
        ActionChains(page.driver).send_keys(Keys.SPACE).perform()
    page.wait(lambda: page.state() == "ESTOP", f"Stop ({how}) did not latch the e-stop")
    page.wait(lambda: server.records("step_result", skill="sweep") and halted_mid_sweep(server),
              "the audit log does not say the sweep was halted")
    if how == "click":
        save_screenshot(page.driver, "laptop_ultrasound_estop", shots_dir)
    # latched: nothing new runs until Reset, and Reset brings it back
    page.send("scan the liver")
    assert page.state() == "ESTOP"
    page.el("#reset").click()
    page.wait(lambda: page.state() == "IDLE", "Reset did not clear the e-stop")


def test_space_in_the_command_box_types_and_escape_stops(web: Open) -> None:
    from selenium.webdriver.common.keys import Keys

    server, page = web("ultrasound")
    box = page.el("#command")
    box.send_keys("scan the")
    assert box.get_attribute("value") == "scan the"
    assert status(page)["state"] == "IDLE" and not server.records("estop"), "Space in the command box stopped"
    box.send_keys(Keys.ESCAPE)
    page.wait(lambda: page.state() == "ESTOP", "Escape in #command did not stop")


# Installed before the page's own script: while window.__wsPaused is true, what the server pushes is held back
# from the page's own listeners, and __wsResume() delivers it in order; meanwhile the page shows an old question,
# as a page that lags behind the server would
_PAUSABLE_SOCKET = """
(() => {
  const Native = window.WebSocket;
  const held = [];
  window.__wsPaused = false;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        if (window.__wsPaused) { e.stopImmediatePropagation(); held.push([this, e.data]); }
      });
    }
  };
  window.__wsResume = () => {
    window.__wsPaused = false;
    for (const [ws, data] of held.splice(0)) ws.dispatchEvent(new MessageEvent("message", {data}));
  };
})();
"""


def test_a_stale_confirm_does_nothing(web: Open) -> None:
    server, page = web("ultrasound")
    page.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _PAUSABLE_SOCKET})
    page.driver.refresh()
    page.send("scan the liver")
    page.plan_shown(3)
    old = page.wait_question()
    page.driver.execute_script("window.__wsPaused = true")
    # meanwhile (another tab, a double click): the question is denied and a new plan asks its own
    assert page.fetch("POST", "/api/confirm", {"question": old, "accept": False, "via": "button"})["status"] == 200
    assert page.fetch("POST", "/api/command", {"text": "scan the liver"})["status"] == 200
    new = page.wait(lambda: (q := status(page).get("question")) and q != old and q, "no new question opened")
    before = len(server.audit())
    # the page's old button, still showing the old question, clicked
    assert page.question() == old and page.el("#confirm").is_enabled()
    page.el("#confirm").click()
    # and the old id sent from the page's JS
    stale = page.fetch("POST", "/api/confirm", {"question": old, "accept": True, "via": "button"})
    assert stale["status"] == 409, stale
    page.driver.execute_script("window.__wsResume()")  # the page catches up, the refusals with it
    page.wait(lambda: page.text("#messages").count("not the open question") == 2, "the stale answers were not refused")
    assert status(page).get("question") == new
    assert not server.records("step_sent"), "a stale confirm moved the probe"
    assert [r for r in server.audit()[before:] if r.get("kind") == "confirmation"] == []
    assert page.wait_question() == new
    page.el("#confirm").click()
    page.wait(lambda: server.records("step_sent", skill="move_to_window"), "the open question's Confirm did nothing")


def _raw(server: WebServer, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, bytes]:
    host, port = server.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def test_requests_without_the_session_are_refused(web: Open, closing: Closing) -> None:
    server, page = web("xray")
    # plain urllib, no cookie: every API refuses with a JSON error
    for method, path, body in [("GET", "/api/status", None), ("POST", "/api/command", {"text": XRAY_COMMAND}),
                               ("POST", "/api/stop", None), ("POST", "/api/reset", None),
                               ("POST", "/api/confirm", {"question": "q", "accept": True, "via": "button"}),
                               ("GET", "/api/image/radiograph", None), ("GET", "/", None)]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(server.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401, (method, path)
        assert "error" in json.loads(refused.value.read()), (method, path)
    # the token was spent by the browser: a second use is refused
    code, _ = _raw(server, "GET", f"/?token={server.token}")
    assert code == 401
    # with the page's cookie but another Host, or a WebSocket from another Origin: 403
    cookie = {c["name"]: c["value"] for c in page.driver.get_cookies()}
    from medrobot_llm.consoles.web.app import COOKIE

    name = f"{COOKIE}_{server.base.rsplit(':', 1)[1]}"  # one name per port: consoles keep their own sessions
    assert name in cookie
    jar = f"{name}={cookie[name]}"
    assert _raw(server, "GET", "/api/status", {"Cookie": jar})[0] == 200
    assert _raw(server, "GET", "/api/status", {"Cookie": jar, "Host": "evil.example:80"})[0] == 403
    ws = {"Cookie": jar, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "http://evil.example"}
    assert _raw(server, "GET", "/ws", ws)[0] == 403
    # the browser, on another origin of the same host (so the SameSite cookie goes along): nothing it sends acts
    other = closing(OtherOrigin())
    page.driver.get(other.url)
    sent = page.driver.execute_async_script("""
        const [base, text, done] = arguments;
        const results = [];
        const tries = [["/api/command", JSON.stringify({text}), "text/plain"],
                       ["/api/command", JSON.stringify({text}), "application/json"],
                       ["/api/stop", "", "text/plain"]];
        Promise.all(tries.map(([path, body, type]) =>
            fetch(base + path, {method: "POST", mode: "no-cors", credentials: "include", body,
                                headers: {"Content-Type": type}})
              .then(r => results.push([path, r.type])).catch(e => results.push([path, String(e)]))))
          .then(() => done(results));
    """, server.base, XRAY_COMMAND)
    assert sent, "the cross-origin page sent nothing"
    assert _raw(server, "GET", "/api/status", {"Cookie": jar})[0] == 200  # a round trip after its requests
    assert not server.records("command"), "a page of another origin ran a command"
    assert not server.records("estop"), "a page of another origin latched the e-stop"


@pytest.mark.parametrize("size", ["laptop", "tablet"])
def test_the_page_fits_the_screen_with_stop_in_view(web: Open, size: str, shots_dir: Path) -> None:
    server, page = web("xray", size)
    page.send(XRAY_COMMAND)
    page.plan_shown(2)
    answer_until_exposure(server, page)
    assert in_viewport(page, "#stop"), f"Stop is off screen at {size}"
    overflow = page.driver.execute_script("return document.scrollingElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {size}"
    for box in ("#audit", "#messages"):  # long records wrap or are cut short: no box scrolls sideways either
        wide = page.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e.scrollWidth - e.clientWidth", box)
        assert wide <= 0, f"{box} scrolls sideways by {wide} px at {size}"
    assert page.els("#audit li") and all(len(li.text) < 400 for li in page.els("#audit li"))
    save_screenshot(page.driver, f"{size}_exposure_question", shots_dir)
    # scrolled to the audit log at the bottom, Stop is still on screen
    page.driver.execute_script("window.scrollTo(0, document.scrollingElement.scrollHeight)")
    page.wait(lambda: page.driver.execute_script("return scrollY") > 0 or
              page.driver.execute_script("return document.scrollingElement.scrollHeight <= innerHeight"),
              "the page did not scroll")
    assert in_viewport(page, "#stop"), f"Stop scrolls off screen at {size}"


@pytest.mark.voice
def test_push_to_talk_gives_a_read_back_question(web: Open, tmp_path: Path) -> None:
    """chromium's fake capture device plays an espeak-ng recording of the command into the page's microphone."""
    from selenium.webdriver.common.action_chains import ActionChains

    spoken, wav = tmp_path / "spoken.wav", tmp_path / "command.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(spoken), XRAY_COMMAND], check=True, timeout=60,
                   capture_output=True)
    # silence around the words (the fake device plays from when it opens, a moment before the page records), at
    # 48 kHz: chromium's own resampling of espeak-ng's 22.05 kHz made pocketsphinx mishear words
    subprocess.run(["sox", "-R", str(spoken), "-r", "48000", str(wav), "pad", "0.5", "1.0"], check=True, timeout=60,
                   capture_output=True)
    with wave.open(str(wav)) as w:
        seconds = w.getnframes() / w.getframerate()
    server, page = web("xray", "laptop", ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                          f"--use-file-for-fake-audio-capture={wav}%noloop"))
    talk = page.el("#talk")
    ActionChains(page.driver).click_and_hold(talk).perform()
    page.wait(lambda: "recording" in (talk.get_attribute("class") or ""), "holding #talk did not start recording")
    # audio is captured in real time: the button stays down while the file plays (no page condition says when
    # the words are over)
    ActionChains(page.driver).pause(seconds).release().perform()
    qid = page.wait_question(timeout=45)
    assert "sacrum" in page.text("#question-text").lower(), page.text("#question-text")
    assert not server.records("step_sent"), "a spoken command moved before its read-back was confirmed"
    page.el("#confirm").click()
    # the read-back confirmed, the supervisor asks for the view (the page's --confirm-motion) before it moves
    view = page.wait_question(other_than=qid)
    assert open_question(server)["skill"] == "move_to_view" and not server.records("step_sent")
    page.el("#confirm").click()
    moved = page.wait(lambda: server.records("step_sent", skill="move_to_view"), "confirming the view did nothing")
    assert moved[0]["args"] == {"anatomy": "sacrum", "view": "lateral"}, moved[0]
    assert page.question() not in (qid, view)


def test_sigterm_closes_the_scene_and_seals_the_log(web: Open) -> None:
    server, page = web("xray")
    page.send(XRAY_COMMAND)
    answer_until_exposure(server, page)  # a question open: the server stops mid-run
    server.close()
    assert server.exit_code == 0, server.stderr()[-2000:]
    last = server.audit()[-1]
    assert last["kind"] == "log_closed" and "seal" in last, last


def test_the_stop_benchmark_runs_as_the_readme_says() -> None:
    """``benchmarks/web_stop.py`` is how the README's Stop figure is made: two trials (the first sweep with its
    approach and contact, then a sweep alone, each behind its motion question) must each end halted."""
    out = subprocess.run(["python3", str(Path(__file__).resolve().parent.parent / "benchmarks" / "web_stop.py"),
                          "--trials", "2", "--json"], capture_output=True, text=True, timeout=85, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["press_to_halt"]["n"] == 2
    assert all(0.0 <= p < 1.0 for p in figures["sweep_progress_at_press"])
