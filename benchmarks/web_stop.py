#!/usr/bin/env python3
"""Stop clicked in the web console during an ultrasound sweep -> the sim halted (issue 19).

    python3 benchmarks/web_stop.py [--trials 20] [--key space] [--json]

Each trial starts ``medrobot web --domain ultrasound --port 0`` afresh (a fresh scene: a halted sweep leaves the
probe on the skin, where the next sweep's plan could not start), opens it in headless chromium (the browser
tests' harness, tests/_web_helpers.py), asks for a slow sweep and confirms the contact with clicks. Once the
page shows the sweep moving, Selenium clicks ``#stop`` (or presses Space with ``--key space``).

Timed, on this machine's wall clock: from the press as chromium dispatched it (the first ``pointerdown`` or
``keydown`` on the page, its event time) to the ``estop`` record in the server's audit log, which the supervisor
writes after the scene's ``halt`` returned (halt latched, every actuator commanded to hold). Also printed: from
this process calling the WebDriver click to the same record (adds chromedriver's round trip). Every trial must
end with the sweep's step halted mid-way, or the run fails.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _web_helpers import Console, make_driver, missing_browser, start_server, start_sweep  # noqa: E402

from medrobot_llm.backends.ros.bench import percentiles  # noqa: E402

# the page's first press after this script runs: an event time on the wall clock (ms since the epoch)
_PRESS_PROBE = """
window.__medrobotPress = null;
const mark = e => { if (window.__medrobotPress === null) window.__medrobotPress = performance.timeOrigin + e.timeStamp; };
window.addEventListener("pointerdown", mark, {capture: true});
window.addEventListener("keydown", mark, {capture: true});
"""


def trial(driver: object, workdir: Path, key: str) -> tuple[float, float, float]:
    """One sweep stopped: (press -> halt ms, WebDriver call -> halt ms, the sweep's progress the page showed)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server = start_server("ultrasound", workdir)
    try:
        page = Console(driver, server).open()
        start_sweep(page)
        page.driver.execute_script(_PRESS_PROBE)
        done = float(page.driver.execute_script("return document.querySelector('#progress').value"))
        if key == "space":
            page.driver.execute_script("document.activeElement.blur()")
            called = time.time()
            ActionChains(page.driver).send_keys(Keys.SPACE).perform()
        else:
            stop = page.el("#stop")
            called = time.time()
            stop.click()
        page.wait(lambda: page.state() == "ESTOP", "the page never showed ESTOP")
        estop = page.wait(lambda: server.records("estop"), "no estop record in the audit log")[0]
        swept = page.wait(lambda: server.records("step_result", skill="sweep"), "the sweep never ended")[0]
        if swept["success"] or swept["failure"] != "halted":
            raise SystemExit(f"the sweep was not halted: {swept}")
        pressed = page.driver.execute_script("return window.__medrobotPress")
        if pressed is None:
            raise SystemExit("chromium dispatched no press event")
        return float(estop["t_wall"]) * 1000 - float(pressed), (float(estop["t_wall"]) - called) * 1000, done
    finally:
        server.close()


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
    press: list[float] = []
    call: list[float] = []
    done: list[float] = []
    driver = make_driver("laptop")
    try:
        with tempfile.TemporaryDirectory(prefix="medrobot_web_stop_") as tmp:
            for i in range(a.trials):
                p, c, d = trial(driver, Path(tmp) / f"trial-{i:03d}", a.key)
                press.append(p)
                call.append(c)
                done.append(d)
    finally:
        driver.quit()
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
        print(f"every sweep halted mid-way (pressed at {min(done):.0%} to {max(done):.0%} of the sweep); "
              f"command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
