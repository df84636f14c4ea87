#!/usr/bin/env python3
"""Stop clicked in the web console during an ultrasound sweep -> the sim halted (issue 19).

    python3 benchmarks/web_stop.py [--trials 20] [--key space] [--json]

One ``medrobot web --domain ultrasound --port 0`` in headless chromium (the browser tests' harness,
tests/_web_helpers.py). The first trial asks for a slow sweep and confirms each question with a click (the
contact, and the motion steps too, as the page asks by default); the next ones, after Reset, ask for a sweep
alone. Once the sweep is running, Selenium clicks ``#stop`` (or presses
Space with ``--key space``).

Timed, on this machine's wall clock: from the press as chromium dispatched it (the first ``pointerdown`` or
``keydown`` on the page, its event time) to the ``estop`` record in the server's audit log, which the supervisor
writes after the scene's ``halt`` returned (halt latched, every actuator commanded to hold). Also printed: from
this process calling the WebDriver click to the same record (adds chromedriver's round trip). Every trial must
end with the sweep's step halted mid-way, or the run fails.

The in-process scene is not paced to real time (a sweep runs about 30 times faster than on a robot), so these
are wall-clock latencies of the page, the server and the supervisor; the motion a robot makes meanwhile is the
latency times its speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _web_helpers import Console, WebServer, make_driver, missing_browser, start_server, start_sweep  # noqa: E402

from medrobot_llm.backends.ros.bench import percentiles  # noqa: E402

# the page's first press after this script runs: an event time on the wall clock (ms since the epoch)
_PRESS_PROBE = """
window.__medrobotPress = null;
const mark = e => { if (window.__medrobotPress === null) window.__medrobotPress = performance.timeOrigin + e.timeStamp; };
window.addEventListener("pointerdown", mark, {capture: true});
window.addEventListener("keydown", mark, {capture: true});
"""


def press_stop(page: Console, key: str) -> tuple[float, float]:
    """Press Stop mid-sweep and wait for ESTOP: (when chromium dispatched the press, when this process asked for
    it), both wall clock in seconds, and the sweep's progress the page showed just before."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.driver.execute_script(_PRESS_PROBE)
    progress = float(page.driver.execute_script("return document.querySelector('#progress').value"))
    if key == "space":
        page.driver.execute_script("document.activeElement.blur()")
        called = time.time()
        ActionChains(page.driver).send_keys(Keys.SPACE).perform()
    else:
        stop = page.el("#stop")
        called = time.time()
        stop.click()
    page.wait(lambda: page.state() == "ESTOP", "the page never showed ESTOP")
    pressed = page.driver.execute_script("return window.__medrobotPress")
    if pressed is None:
        raise SystemExit("chromium dispatched no press event")
    return float(pressed) / 1000, called, progress


def halt_record(server: WebServer, sent_seq: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first e-stop after the sweep sent as ``sent_seq``, and that sweep's result (which must say halted)."""
    after = [r for r in server.audit() if r["seq"] > sent_seq]
    estop = next((r for r in after if r["kind"] == "estop"), None)
    result = next((r for r in after if r["kind"] == "step_result"), None)
    if estop is None or result is None:
        raise SystemExit(f"no e-stop or no result after the sweep (seq {sent_seq}): {after[-5:]}")
    if result["skill"] != "sweep" or result["success"] or result["failure"] != "halted":
        raise SystemExit(f"the sweep was not halted: {result}")
    return estop, result


def confirm_until_sent(page: Console, before: int) -> None:
    """Click Confirm on each question the sweep asks (the web console asks before a motion step, as "Take a
    shot!" does) until the sweep's goal is sent: the stop is timed on a moving probe, not on a question."""
    seen = ""
    while True:
        def next_question(n: int = before, skip: str = seen) -> str | bool:
            if len(page.server.records("step_sent", skill="sweep")) > n:
                return True
            q = page.question()
            return q if q and q != skip and page.el("#confirm").is_enabled() else False

        qid = page.wait(next_question, "neither the sweep nor its question")
        if qid is True:
            return
        page.el("#confirm").click()
        seen = str(qid)


def run(page: Console, trials: int, key: str) -> tuple[list[float], list[float], list[float]]:
    """The first sweep comes with its approach and contact; after each stop and Reset the probe is still on the
    skin, so the next trials are sweeps alone, alternately toward the head and the feet (each halted within a few
    per cent: the probe stays on the same patch of skin)."""
    server = page.server
    press: list[float] = []
    call: list[float] = []
    done: list[float] = []
    for i in range(trials):
        before = len(server.records("step_sent", skill="sweep"))
        if i == 0:
            start_sweep(page)
        else:
            page.send(f"sweep 60 mm toward the {('head', 'feet')[i % 2]} at 1 mm/s")
            confirm_until_sent(page, before)
            page.wait(lambda: page.state() == "EXECUTING"
                      and float(page.el("#progress").get_attribute("value") or 0) > 0, "the next sweep did not start")
        sent = server.records("step_sent", skill="sweep")[before]
        pressed, called, progress = press_stop(page, key)
        estop, _ = page.wait(lambda n=before, seq=sent["seq"]: halt_record(server, seq)
                             if server.records("step_result", skill="sweep")[n:] else None, "the sweep never ended")
        press.append((float(estop["t_wall"]) - pressed) * 1000)
        call.append((float(estop["t_wall"]) - called) * 1000)
        done.append(progress)
        page.el("#reset").click()
        page.wait(lambda: page.state() == "IDLE", "Reset did not bring the supervisor back to IDLE")
    return press, call, done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--key", choices=["click", "space"], default="click", help="press Stop by a click or by Space")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.trials < 1:
        ap.error("--trials must be >= 1")
    reason = missing_browser()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory(prefix="medrobot_web_stop_") as tmp:
        server = start_server("ultrasound", Path(tmp))
        try:
            driver = make_driver("laptop")
            try:
                press, call, done = run(Console(driver, server).open(), a.trials, a.key)
            finally:
                driver.quit()
        finally:
            server.close()
    command = shlex.join(["python3", "benchmarks/web_stop.py", *sys.argv[1:]])
    ps, cs = percentiles(press), percentiles(call)
    machine = f"{platform.machine()}, {platform.python_version()}"
    if a.json:
        print(json.dumps({"benchmark": "web_stop", "command": command, "how": a.key, "press_to_halt": ps,
                          "webdriver_call_to_halt": cs, "sweep_progress_at_press": [round(x, 3) for x in done],
                          "machine": machine}))
    else:
        print(f"web Stop ({a.key}) -> sim halted, {ps['n']} sweeps: p50 {ps['p50_ms']:.1f} ms, "
              f"p95 {ps['p95_ms']:.1f} ms, p99 {ps['p99_ms']:.1f} ms, max {ps['max_ms']:.1f} ms")
        print(f"WebDriver {a.key} call -> sim halted: p50 {cs['p50_ms']:.1f} ms, p95 {cs['p95_ms']:.1f} ms, "
              f"p99 {cs['p99_ms']:.1f} ms, max {cs['max_ms']:.1f} ms")
        print(f"every sweep halted mid-way (pressed at {min(done):.1%} to {max(done):.1%} of the sweep); "
              f"command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
