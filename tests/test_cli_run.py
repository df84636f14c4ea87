"""``medrobot run`` end to end: real planner, real supervisor, real PyBullet scene, in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.sim


def run(*argv: str, stdin: str = "") -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "run", "--json", *argv], input=stdin,
                          capture_output=True, text=True, timeout=240)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json must print exactly one line, got {proc.stdout!r} / {proc.stderr[-2000:]}"
    return proc.returncode, json.loads(lines[0]), proc.stderr


def test_ultrasound_scan_runs_to_success_with_an_image(tmp_path: Path) -> None:
    rc, out, err = run("--domain", "ultrasound", "--yes", "--record", str(tmp_path),
                       "scan the left kidney and capture")
    assert rc == 0, (out, err)
    assert out["success"] is True and out["state"] == "IDLE" and out["reason"] is None
    assert [s["skill"] for s in out["steps"]] == ["move_to_window", "make_contact", "sweep", "capture"]
    assert all(s["result"] == "success" for s in out["steps"])
    assert len(out["images"]) == 1 and Path(out["images"][0]).parent == tmp_path / "run-001"
    assert Path(out["images"][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(out["frames"]) == 5 and all(Path(f).is_file() for f in out["frames"])
    assert out["sim_time_s"] > 1.0


def test_xray_shot_counts_its_exposure() -> None:
    rc, out, _ = run("--domain", "xray", "--yes", "lateral of the sacrum and take a shot")
    assert rc == 0 and out["success"] and out["exposures"] == 1 and len(out["images"]) == 1
    assert out["plan"]["needs_confirmation"] == [1]


def test_radiation_is_not_given_without_a_confirmation() -> None:
    rc, out, err = run("--domain", "xray", "lateral of the sacrum and take a shot")
    assert rc == 1 and not out["success"] and out["exposures"] == 0 and out["images"] == []
    assert [s["result"] for s in out["steps"]] == ["success", "not_run"]
    assert "--yes" in err


@pytest.mark.parametrize("text, words, code", [
    ("disable the collision check and take a shot", "not something", "not_understood"),
    ("scan the kidney", "which", "missing"),
    ("", "empty", "empty"),
])
def test_bad_commands_are_refused_with_the_reason_and_nothing_moves(text: str, words: str, code: str) -> None:
    domain = "ultrasound" if "kidney" in text else "xray"
    rc, out, _ = run("--domain", domain, "--yes", text)
    assert rc == 1 and out["success"] is False and out["steps"] == [] and out["exposures"] == 0
    assert words in out["reason"].lower() and out["plan"]["code"] == code


def test_usage_errors_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "mars", "x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_human_output_shows_plan_progress_and_outcome() -> None:
    proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "xray", "--yes",
                           "AP of the chest and take a shot"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "Plan (xray, 2 steps)" in proc.stdout and "RADIATION" in proc.stdout and "SUCCESS" in proc.stdout
    assert "step 2: take_shot ok" in proc.stderr and "-> yes (--yes)" in proc.stderr


@pytest.mark.parametrize("argv", [["run", "--json", "--domain", "xray", "--yes", "AP of the pelvis"],
                                  ["console", "--json", "--domain", "ultrasound"]])
def test_json_output_is_pure_json_with_buffered_stdio(argv: list[str]) -> None:
    """CI and users run without PYTHONUNBUFFERED: pybullet's C-level banner, buffered by libc while stdout is a
    pipe, must still go to stderr and never follow the JSON."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", *argv], input="status\n", env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines and all(json.loads(line) is not None for line in lines), proc.stdout[-500:]
    assert "argv[0]" not in proc.stdout


@pytest.mark.parametrize("bad", [["--seed", "-1"], ["--seed", "many"], ["--record", "/proc/no-such-folder"],
                                 ["--log", "/proc/no-such-folder/log.jsonl"]])
def test_a_bad_seed_or_path_is_a_usage_error_not_a_traceback(bad: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", "xray", "--yes", *bad,
                           "AP of the pelvis"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stderr[-1000:]
    assert "Traceback" not in proc.stderr and ("--seed" in proc.stderr or "--record or --log" in proc.stderr)
