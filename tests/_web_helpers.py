"""Shared by the browser tests and ``benchmarks/web_stop.py``: ``medrobot web`` as the user starts it (a child
process with its own record folder and audit log), Debian's chromium driven by Selenium, and the page's DOM ids
(the web console contract) read and written the way an operator would.

Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver (``scripts/setup.sh`` installs both): Selenium
Manager never runs, so nothing is downloaded. Every wait is a ``WebDriverWait`` on a condition of the page or a
blocking read of the server's output; none is a fixed sleep.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "apt-get install chromium chromium-driver (bash scripts/setup.sh does it) and pip install -e '.[test]'"
# the contract's first stdout line, exactly
URL_LINE = re.compile(r"^medrobot web: open (?P<url>(?P<base>http://(?P<host>[^/:\s]+):(?P<port>\d+))/\?token=(?P<token>\S+))$")
SIZES: dict[str, tuple[int, int]] = {"laptop": (1366, 900), "tablet": (820, 1180)}
SCREENSHOTS_ENV = "MEDROBOT_SCREENSHOTS"
DOCS_IMG = ROOT / "docs" / "img"
START_TIMEOUT_S = 60.0
# slow and long, so that a stop lands mid-sweep whatever the scene's pace
SWEEP_COMMAND = "make contact over the liver and sweep 60 mm toward the feet at 1 mm/s"

T = TypeVar("T")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None; callers fail with it (a skip would count as a pass)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing: {INSTALL_HINT}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed: {INSTALL_HINT}"
    return None


@dataclass
class WebServer:
    """One ``medrobot web`` child process; ``close`` ends it like Ctrl-C would (SIGTERM, then SIGKILL)."""

    proc: subprocess.Popen[bytes]
    url: str
    base: str
    token: str
    record_dir: Path
    log_path: Path
    stderr_path: Path
    rest: list[str] = field(default_factory=list)  # stdout after the first line, drained so the pipe never fills
    exit_code: int | None = None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.exit_code = self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        else:
            self.exit_code = self.proc.returncode

    def audit(self) -> list[dict[str, Any]]:
        """The audit log's complete records so far (the writer may be mid-line at the end)."""
        if not self.log_path.exists():
            return []
        out: list[dict[str, Any]] = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def records(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """The audit records of one kind whose fields equal ``match``."""
        return [r for r in self.audit() if r.get("kind") == kind and all(r.get(k) == v for k, v in match.items())]

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace") if self.stderr_path.exists() else ""

    def pngs(self, pattern: str = "*.png") -> list[Path]:
        return sorted(self.record_dir.rglob(pattern))


def start_server(domain: str, workdir: Path, *extra: str) -> WebServer:
    """Start ``medrobot web --domain D --port 0`` with its record folder and log in ``workdir``, and read the URL
    from its first stdout line (the contract: exactly that line, flushed, before anything else)."""
    workdir.mkdir(parents=True, exist_ok=True)
    record, log, err = workdir / "record", workdir / "audit.jsonl", workdir / f"web-{domain}.stderr"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "medrobot_llm.cli", "web", "--domain", domain, "--port", "0",
           "--record", str(record), "--log", str(log), *extra]
    with err.open("wb") as err_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, stdin=subprocess.DEVNULL, env=env,
                                cwd=workdir, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    rest: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        first = True
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if first:
                lines.put(line)
                first = False
            else:
                rest.append(line)
        if first:
            lines.put(None)

    threading.Thread(target=drain, name=f"web-{domain}-stdout", daemon=True).start()
    try:
        first_line = lines.get(timeout=START_TIMEOUT_S)
    except queue.Empty:
        first_line = None
    match = URL_LINE.match(first_line or "")
    if match is None:
        _stop(proc)
        raise RuntimeError(f"medrobot web did not print its URL first (got {first_line!r}); stderr:\n"
                           f"{err.read_text(errors='replace')[-3000:]}")
    return WebServer(proc, match["url"], match["base"], match["token"], record, log, err, rest)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


def make_driver(size: str = "laptop", extra_args: Sequence[str] = ()) -> Any:
    """Headless chromium at one of ``SIZES``; ``--no-sandbox`` because CI runs as root."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    width, height = SIZES[size]
    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--no-first-run", "--hide-scrollbars", f"--window-size={width},{height}",
                *extra_args):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    try:
        # the window size includes chromium's frame: the page (and so the screenshot) gets exactly the size asked
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "tablet"})
        if size == "tablet":
            driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
        driver.set_script_timeout(20)
    except Exception:
        driver.quit()
        raise
    return driver


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_screenshot(driver: Any, name: str, shots_dir: Path) -> Path:
    """Always into ``shots_dir``; also into docs/img/web_NAME.png when MEDROBOT_SCREENSHOTS=1 (for the README)."""
    shots_dir.mkdir(parents=True, exist_ok=True)
    path = shots_dir / f"web_{name}.png"
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"chromium made no screenshot {path}")
    if os.environ.get(SCREENSHOTS_ENV) == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / path.name)
    return path


class Console:
    """The page as an operator sees it: the contract's DOM ids, and fetches made from the page itself (same
    origin, its cookie)."""

    def __init__(self, driver: Any, server: WebServer, timeout: float = 30.0) -> None:
        self.driver = driver
        self.server = server
        self.timeout = timeout

    def open(self) -> Console:
        self.driver.get(self.server.url)
        self.wait(lambda: self.text("#state") != "", "the page shows no supervisor state")
        return self

    def wait(self, cond: Callable[[], T], message: str, timeout: float | None = None) -> T:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        def check(_: Any) -> T:
            return cond()

        wait = WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,))
        return wait.until(check, message=f"{message}; page state {self.text('#state')!r}, "
                                         f"messages {self.text('#messages')[:300]!r}")

    def el(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def els(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str) -> str:
        found = self.els(css)
        return str(found[0].text).strip() if found else ""

    def state(self) -> str:
        return self.text("#state")

    def question(self) -> str:
        return str(self.el("#question").get_attribute("data-question") or "")

    def send(self, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.el("#command")
        box.clear()
        box.send_keys(text + Keys.ENTER)

    def steps(self) -> list[dict[str, Any]]:
        """``#plan``'s steps as the page shows them: index, skill, hazard, and each argument's words."""
        out = []
        for li in self.els("#plan li.step"):
            args = {}
            for span in li.find_elements("css selector", "span.arg[data-name]"):
                words = span.find_elements("css selector", ".words")
                args[span.get_attribute("data-name")] = words[0].text.strip() if words else ""
            out.append({"index": li.get_attribute("data-index"), "skill": li.get_attribute("data-skill"),
                        "hazard": li.get_attribute("data-hazard"), "args": args})
        return out

    def plan_shown(self, n: int) -> list[dict[str, Any]]:
        return self.wait(lambda: (s := self.steps()) and len(s) == n and s, f"#plan does not show {n} steps")

    def wait_question(self, other_than: str = "", timeout: float | None = None) -> str:
        """The open question's id, once there is one (and it is not ``other_than``) and Confirm is enabled."""
        def ready() -> str:
            q = self.question()
            return q if q and q != other_than and self.el("#confirm").is_enabled() else ""

        return self.wait(ready, f"no question (other than {other_than!r}) opened", timeout)

    def fetch(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        """A request from the page's own JS (same origin, with its cookie): ``{"status", "body"}``."""
        script = """
            const [method, path, body, type, done] = arguments;
            const init = {method, credentials: "same-origin", headers: {}};
            if (body !== null) { init.body = typeof body === "string" ? body : JSON.stringify(body);
                                 init.headers["Content-Type"] = type; }
            fetch(path, init).then(async r => done({status: r.status, body: await r.text()}))
                             .catch(e => done({status: -1, body: String(e)}));
        """
        result: dict[str, Any] = self.driver.execute_async_script(script, method, path, body, content_type)
        return result


def start_sweep(page: Console) -> None:
    """Ask for the slow sweep, click Confirm on each question (the contact's), and return once the page shows the
    sweep moving."""
    page.send(SWEEP_COMMAND)
    steps = page.plan_shown(3)
    assert [s["skill"] for s in steps] == ["move_to_window", "make_contact", "sweep"], steps
    seen = ""
    while True:
        def next_question(skip: str = seen) -> str | bool:
            if page.server.records("step_sent", skill="sweep"):
                return True
            q = page.question()
            return q if q and q != skip and page.el("#confirm").is_enabled() else False

        qid = page.wait(next_question, f"neither the sweep nor a question after {seen or 'the plan'}")
        if qid is True:
            break
        page.el("#confirm").click()
        seen = str(qid)
    page.wait(lambda: page.state() == "EXECUTING" and "sweep" in page.text("#step")
              and float(page.el("#progress").get_attribute("value") or 0) > 0, "the sweep is not shown moving")


class OtherOrigin:
    """A blank page on another port of the same host: another origin (but the same site, so a SameSite=Strict
    cookie still goes with its requests: the server itself must refuse what such a page sends)."""

    def __init__(self) -> None:
        class Blank(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server spelling
                body = b"<!doctype html><title>elsewhere</title><p>another origin</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Blank)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
