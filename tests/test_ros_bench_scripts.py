"""The two ROS benchmark scripts still run end to end and report what they measured.

Their figures are for the README, never asserted here (timing belongs in benchmarks, not tests); what is
checked is that each script measures the number of samples asked for over real DDS and says so in JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests._ros_helpers import ROOT, require_ros

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]


def _run(script: str, *args: str) -> dict[str, object]:
    require_ros()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--json", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_round_trip_benchmark_measures_the_floor_and_the_supervised_step() -> None:
    # two rounds, not the script's ten: every floor round starts an echo server process of its own, and two
    # alternations already show each round timing its share (5 + 5 of the 10 samples asked for)
    out = _run("ros_roundtrip.py", "--steps", "10", "--rounds", "2")
    assert out["benchmark"] == "ros_roundtrip" and out["n"] == 10
    floor = out["plain_action"]
    assert isinstance(floor, dict) and floor["n"] == 10
    assert 0 < float(floor["p50_ms"]) <= float(floor["max_ms"])
    assert 0 < float(str(out["p50_ms"])) <= float(str(out["max_ms"]))


def test_estop_benchmark_halts_and_resets_every_trial() -> None:
    out = _run("ros_estop.py", "--trials", "3")
    assert out["benchmark"] == "ros_estop"
    halted = out["publish_to_halted"]
    assert isinstance(halted, dict) and halted["n"] == 3
