"""Attacks on the web console (issue 19) by a careless or hostile user, written without reading its code.

Each test here is a problem found on branch ``web``: it states what must hold and is marked
``xfail(strict=True, raises=AssertionError)``, so it passes while the problem is there, turns red (XPASS) once it
is fixed (then drop the mark), and cannot pass for the wrong reason: a missing browser or a crash is not an
AssertionError. The attacks that held are listed in the report of branch ``att19``, not here.
"""

from __future__ import annotations

import array
import http.cookiejar
import io
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("pybullet")

from starlette.testclient import TestClient  # noqa: E402

from _helpers_supervisor import until  # noqa: E402
from conftest import load_jsonl  # noqa: E402
import test_web  # noqa: E402
from test_web import BASE, SHOT, Rig, _say  # noqa: E402

rig = test_web.rig  # the same rigs as the web console's own tests

pytestmark = pytest.mark.sim


def _given(ok: bool, what: str) -> None:
    """A precondition of the attack: its failure is an error, never the expected AssertionError of the xfail."""
    if not ok:
        raise RuntimeError(f"the attack could not be set up: {what}")


def _exposure_question(r: Rig) -> dict[str, Any]:
    _given(r.post("/api/command", {"text": SHOT}).status_code == 200, SHOT)
    _given(until(lambda: bool(r.seen("question", hazard="radiation")), 20), "no exposure question")
    return r.seen("question", hazard="radiation")[-1]


def _exposures_sent(r: Rig) -> list[dict[str, Any]]:
    return [m["record"] for m in r.seen("audit")
            if m["record"]["kind"] == "step_sent" and m["record"]["skill"] == "take_shot"]


# ------------------------------------------------------------------ the command box
def test_no_typed_wording_confirms_an_exposure(rig: Callable[..., Rig]) -> None:
    r = rig("xray")
    question = _exposure_question(r)
    for typed in ("confirm exposure", "please confirm", "yes confirm", "confirm\tnow", "ｃｏｎｆｉｒｍ", "ｙｅｓ",
                  "con\u200bfirm"):
        resp = r.post("/api/command", {"text": typed})
        assert resp.status_code == 409 and "button" in resp.json()["error"], (typed, resp.text)
        assert r.state() == "AWAITING_CONFIRMATION" and not _exposures_sent(r), typed
    r.post("/api/confirm", {"question": question["id"], "accept": False, "via": "button"})


# ------------------------------------------------------------------ reset
@pytest.mark.parametrize("when", ["idle", "awaiting an exposure"])
def test_reset_without_a_stop_is_a_4xx_json_refusal(rig: Callable[..., Rig], when: str) -> None:
    r = rig("xray")
    http = TestClient(r.app, base_url=BASE, cookies=dict(r.http.cookies), raise_server_exceptions=False)
    if when != "idle":
        _exposure_question(r)
    before = r.state()
    resp = http.post("/api/reset")
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert resp.headers["content-type"] == "application/json" and resp.json()["error"], resp.text
    assert r.state() == before


# ------------------------------------------------------------------ confirm bodies
@pytest.mark.parametrize("body", [{"accept": "true", "via": "button"}, {"accept": 1, "via": "button"},
                                  {"accept": True}], ids=["string", "number", "no-via"])
def test_an_exposure_answer_must_be_a_strict_body(rig: Callable[..., Rig], body: dict[str, Any]) -> None:
    r = rig("xray")
    question = _exposure_question(r)
    resp = r.post("/api/confirm", {"question": question["id"], **body})
    assert resp.status_code == 422, resp.text
    assert r.state() == "AWAITING_CONFIRMATION" and not _exposures_sent(r)


# ------------------------------------------------------------------ real servers, as an operator starts them
@contextmanager
def _served(tmp: Path, domain: str = "xray") -> Iterator[tuple[str, Path]]:
    """``medrobot web`` as an operator starts it: yields the printed URL and its audit log."""
    log = tmp / f"{domain}-{len(list(tmp.iterdir()))}.jsonl"
    with (tmp / f"{log.stem}.stderr").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "medrobot_llm.cli", "web", "--domain", domain, "--log",
                                 str(log)], stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            _given(proc.stdout is not None, "no stdout")
            assert proc.stdout is not None  # for mypy
            first = proc.stdout.readline()
            if " open " not in first:
                raise RuntimeError(f"medrobot web printed {first!r}; see {err.name}")
            yield first.split(" open ", 1)[1].strip(), log
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _browser(url: str, jar: http.cookiejar.CookieJar | None = None) -> urllib.request.OpenerDirector:
    """An HTTP client with a cookie jar, logged in by the printed URL (its one-time token)."""
    cookies = http.cookiejar.CookieJar() if jar is None else jar  # an empty jar is falsy: no `jar or ...`
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    with opener.open(url, timeout=30) as resp:
        _given(resp.status == 200, f"logging in gave {resp.status}")
    return opener


def _status(opener: urllib.request.OpenerDirector, url: str) -> int:
    try:
        with opener.open(url.split("?")[0] + "api/status", timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


# ------------------------------------------------------------------ speech
def _noise_wav(seconds: float) -> bytes:
    """Loud-ish noise: the recogniser searches hard in it, as in a noisy room or a button held too long."""
    rng = random.Random(19)
    samples = array.array("h", (rng.randint(-3000, 3000) for _ in range(int(16000 * seconds))))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def _upload(browser: urllib.request.OpenerDirector, base: str, wav: bytes) -> int:
    speech = urllib.request.Request(base + "api/speech", data=wav, method="POST",
                                    headers={"Content-Type": "audio/wav"})
    try:
        with browser.open(speech, timeout=300) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.mark.voice
@pytest.mark.slow
def test_a_stop_does_not_wait_for_a_recording_being_transcribed(tmp_path: Path) -> None:
    """Once pocketsphinx decoded in the server's process and held the GIL: a long recording froze the server, the
    Stop included, for as long as the decode took. A recording as long as the server decodes (``MAX_SPEECH_S``)
    is heard while the Stop is answered at once; a second recording meanwhile is refused (429), a longer one
    is refused before decoding (413)."""
    pytest.importorskip("pocketsphinx")
    from medrobot_llm.consoles.web.speech import MAX_SPEECH_S

    wav = _noise_wav(min(8.0, MAX_SPEECH_S))
    with _served(tmp_path) as (url, _):
        browser = _browser(url)
        base = url.split("?")[0]
        answers: list[int] = []
        upload = threading.Thread(target=lambda: answers.append(_upload(browser, base, wav)))
        upload.start()
        waits: list[float] = []
        # Stop, again and again, for as long as the recording is being heard: each must be answered at once
        while upload.is_alive():
            began = time.monotonic()
            with browser.open(urllib.request.Request(base + "api/stop", method="POST"), timeout=300) as resp:
                assert resp.status == 200
            waits.append(time.monotonic() - began)
            if len(waits) == 3:
                answers.append(_upload(browser, base, wav))  # a second recording while the first is heard
            upload.join(0.05)
        too_long = _upload(browser, base, _noise_wav(MAX_SPEECH_S + 1))
    _given(len(waits) > 3, f"the recording was heard too fast to measure anything ({len(waits)} stops)")
    assert sorted(answers) == [200, 429], answers
    assert too_long == 413
    assert max(waits) < 1.0, f"a stop waited {max(waits):.1f} s behind the transcription ({len(waits)} stops)"


@pytest.mark.voice
def test_a_recording_does_not_take_the_place_of_an_open_exposure_question(rig: Callable[..., Rig],
                                                                            tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (the voice tests need it: apt-get install espeak-ng)")
    pytest.importorskip("pocketsphinx")
    r = rig("xray", speech=True)
    exposure = _exposure_question(r)
    spoken = r.http.post("/api/speech", content=_say(tmp_path, "lateral view of the sacrum"),
                         headers={"content-type": "audio/wav"})
    assert spoken.status_code < 500, spoken.text
    status = r.http.get("/api/status").json()
    assert status["state"] == "AWAITING_CONFIRMATION" and status["question"] == exposure["id"], status
    deny = r.post("/api/confirm", {"question": exposure["id"], "accept": False, "via": "button"})
    assert deny.status_code == 200, deny.text
    assert until(lambda: r.state() == "IDLE", 10) and not _exposures_sent(r)


# ------------------------------------------------------------------ two consoles, one browser
@pytest.mark.slow
def test_a_second_console_on_the_same_machine_does_not_log_the_first_out(tmp_path: Path) -> None:
    jar = http.cookiejar.CookieJar()  # one browser: RFC 6265 cookies, which ignore the port
    with _served(tmp_path, "xray") as (first, _), _served(tmp_path, "ultrasound") as (second, _):
        browser = _browser(first, jar)
        _given(_status(browser, first) == 200, "the first console refused its own session")
        _browser(second, jar)
        _given(_status(browser, second) == 200, "the second console refused its own session")
        assert _status(browser, first) == 200, "the first console's page lost its session"


# ------------------------------------------------------------------ the page in chromium
def _driver() -> Any:
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            pytest.fail(f"{exe} is not installed (the browser tests need it: apt-get install chromium "
                        "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A headless chromium on a freshly started xray console; yields the driver and the console's audit log."""
    with _served(tmp_path) as (url, log):
        driver = _driver()
        try:
            driver.get(url)
            _given(until(lambda: driver.find_element("id", "link").text == "live", 30), "the page never went live")
            yield driver, log
        finally:
            driver.quit()


def _type_command(driver: Any, text: str) -> str:
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("id", "command")
    box.click()
    box.send_keys(text, Keys.ENTER)
    question = driver.find_element("id", "question")
    confirm = driver.find_element("id", "confirm")
    answered = ""
    # `medrobot web` asks before each motion step too: those are confirmed with the mouse, as an operator would
    while True:
        def asked(skip: str = answered) -> bool:
            return question.get_attribute("data-question") not in ("", skip) and bool(confirm.is_enabled())

        _given(until(lambda: asked() or question.get_attribute("data-hazard") == "radiation", 30),
               f"no exposure for {text!r}")
        if question.get_attribute("data-hazard") == "radiation":
            return str(question.get_attribute("data-question"))
        answered = str(question.get_attribute("data-question"))
        confirm.click()


def _armed(driver: Any) -> None:
    """Wait out the exposure's arming delay (the page enables Confirm once the server takes it)."""
    confirm = driver.find_element("id", "confirm")
    _given(until(lambda: bool(confirm.is_enabled()), 10), "Confirm never armed")


def _finish_denying(driver: Any, log: Path) -> list[dict[str, Any]]:
    """Deny with the mouse whatever is still asked, wait for IDLE, and return the exposures the log sent."""
    deny = driver.find_element("id", "deny")
    state = driver.find_element("id", "state")

    def idle() -> bool:
        if deny.is_enabled():
            deny.click()
        return str(state.text) == "IDLE"

    _given(until(idle, 30), "the page never came back to IDLE")
    return [r for r in load_jsonl(log) if r["kind"] == "step_sent" and r["skill"] == "take_shot"]


@pytest.mark.slow
def test_an_exposure_is_not_confirmed_from_the_keyboard_alone(page: tuple[Any, Path]) -> None:
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver, log = page
    _type_command(driver, SHOT)
    _armed(driver)  # a disabled button is skipped by Tab: the attack starts once Confirm takes clicks
    keys = ActionChains(driver)
    for _ in range(20):  # every focusable element of the page, whichever had focus
        if driver.switch_to.active_element.get_attribute("id") == "confirm":
            break
        keys.send_keys(Keys.TAB).perform()
    _given(driver.switch_to.active_element.get_attribute("id") == "confirm", "Tab never reached Confirm")
    keys.send_keys(Keys.ENTER).perform()
    assert _finish_denying(driver, log) == []
    assert not driver.find_element("id", "radiograph").get_attribute("data-sha256")


@pytest.mark.slow
def test_a_click_landing_as_the_next_exposure_appears_fires_nothing(page: tuple[Any, Path]) -> None:
    driver, log = page
    first = _type_command(driver, "lateral of the sacrum and take two shots")
    confirm = driver.find_element("id", "confirm")
    question = driver.find_element("id", "question")
    _armed(driver)  # the first click is meant, for the first exposure
    confirm.click()
    _given(until(lambda: question.get_attribute("data-question") not in ("", first), 30), "no second exposure")
    confirm.click()  # the second click of the double click, right after the new question showed
    sent = _finish_denying(driver, log)
    assert len(sent) == 1, f"{len(sent)} exposures from one double click"


# ------------------------------------------------------------------ the typed-answer rule, over its wordings
def _fullwidth(text: str) -> str:
    """Full-width letters and digits (the planners fold them; full-width punctuation they read as punctuation)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


_VARIANTS: dict[str, Callable[[str], str]] = {
    "as listed": lambda t: t,
    "upper": str.upper,
    "title": str.title,
    "fullwidth": _fullwidth,
    "zero-width": lambda t: "\u200b".join(t),
    "joiners": lambda t: "\u200d".join(t),
    "spaced": lambda t: f"  {t.replace(' ', chr(9))}  ",
    "please": lambda t: f"please {t}",
    "shouted": lambda t: f"{t}!!",
}


def test_every_wording_of_an_answer_is_refused_from_the_command_box(rig: Callable[..., Rig]) -> None:
    """Every confirm / deny phrase the supervisor knows, however it is spelled, is an answer to ``line_intent``
    (the one recogniser the text console and the web hub share) and is refused by the box with an exposure open."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from medrobot_llm.consoles.core import line_intent
    from medrobot_llm.language.words import CONTROL_PHRASES

    r = rig("xray")
    question = _exposure_question(r)
    phrases = [(kind, p) for kind in ("confirm", "deny") for p in CONTROL_PHRASES[kind]]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(phrases), st.sampled_from(sorted(_VARIANTS)))
    def check(phrase: tuple[str, str], variant: str) -> None:
        kind, text = phrase
        typed = _VARIANTS[variant](text)
        assert line_intent(typed, "xray") == kind, (typed, variant)
        resp = r.post("/api/command", {"text": typed})
        assert resp.status_code == 409 and "button" in resp.json()["error"], (typed, resp.text)

    check()
    assert r.state() == "AWAITING_CONFIRMATION" and not _exposures_sent(r)
    r.post("/api/confirm", {"question": question["id"], "accept": False, "via": "button"})
