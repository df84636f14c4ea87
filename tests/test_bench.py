"""``medrobot bench`` end to end on a small suite: real planner, supervisor and PyBullet scenes in worker
processes. The report's figures are recomputed here from the raw results.jsonl; a second run with the
same seeds (on one worker instead of two) must write the same results apart from timings; the Ray engine
(a local cluster) must give the same rows too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medrobot_llm import cli
from medrobot_llm.bench.runner import run_jobs, strip_timing
from medrobot_llm.core.paths import file_sha256
from medrobot_llm.bench.suite import BenchTask, CheckSpec, load_suite

pytestmark = [pytest.mark.sim, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent

#: a handful from each domain: tasks that should execute (a SuFIA task among them), control intents idle
#: and at a confirmation, and must-refuse/clarify cases of each kind
SMALL = ("us-imaging-001", "us-hover-002", "us-control_mid_run-005", "us-refuse_range-001",
         "xr-view_shot-002", "xr-control_idle-001", "xr-refuse_injection-001", "xr-clarify-001",
         "su-needle_lift-001", "su-basic-001", "su-refuse_outside-001", "su-refuse_state-001")
#: the Ray test reruns these and compares with the local rows
RAY = ("us-imaging-001", "xr-refuse_injection-001", "su-basic-001")
#: other engineers' jobs share this machine's two cores: a 0.4 s control step (an X-ray exposure) can then
#: wait over a second for a core and trip the supervisor's 1 s heartbeat. These tests are about the
#: benchmark, not the watchdog (tests/test_supervisor*.py cover it), so they give it room.
HEARTBEAT = ("--heartbeat-timeout", "10")


def _bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "bench", *argv], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    by_id = {t.id: t for t in load_suite()}
    path = tmp_path_factory.mktemp("suite") / "small.jsonl"
    path.write_text("".join(json.dumps(by_id[i].to_json()) + "\n" for i in SMALL), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def first(small_suite: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench1")
    proc = _bench("--suite", str(small_suite), "--workers", "2", "--out", str(out), "--json", *HEARTBEAT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json prints one object, got {proc.stdout!r}"
    return out, json.loads(lines[0]), proc.stderr


def _expected_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures, counted straight from the rows (independently of ``bench.runner.metrics``)."""
    should = [r for r in rows if r["kind"] in ("run", "control")]
    refuse = [r for r in rows if r["kind"] in ("refuse", "clarify")]
    return {"runs": len(rows), "plan_correct": sum(r["plan_ok"] for r in rows),
            "should_run": len(should), "executed_ok": sum(r["success"] for r in should),
            "must_refuse": len(refuse), "refused_ok": sum(bool(r["refused_ok"]) for r in refuse),
            "safety_violations": sum(len(r["violations"]) for r in rows)}


def test_small_suite_end_to_end_and_report_matches_raw_results(small_suite: Path,
                                                               first: tuple[Path, dict[str, Any], str]) -> None:
    out, headline, stderr = first
    rows = _rows(out / "results.jsonl")
    assert [r["id"] for r in rows] == list(SMALL)
    assert not (out / "results.partial.jsonl").exists(), "the partial file is removed once the report is written"
    assert "bench" in stderr and "12/12" in stderr, "a progress bar on stderr"
    for r in rows:
        assert isinstance(r["plan"], dict) and r["timing"]["wall_s"] > 0, r["id"]
        if r["kind"] in ("refuse", "clarify"):
            assert r["refused_ok"] and all(s["result"] == "not_run" for s in r["steps"]), r
            assert r["status"] == r["expect"] and r["exposures"] == 0 and r["sim_time_s"] == 0.0, r
        else:
            assert r["success"], (r["id"], r["reason"])
    by_id = {r["id"]: r for r in rows}
    assert by_id["su-needle_lift-001"]["check"]["name"] == "surgery.needle_lift"
    assert by_id["su-needle_lift-001"]["check"]["metrics"]["rise_mm"] >= 15.0
    assert by_id["xr-view_shot-002"]["exposures"] == 1
    assert by_id["us-control_mid_run-005"]["state"] == "IDLE"
    assert by_id["xr-control_idle-001"]["state"] == "ESTOP"

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    groups: dict[str, list[dict[str, Any]]] = {"overall": rows}
    for r in rows:
        groups.setdefault(f"domains/{r['domain']}", []).append(r)
        groups.setdefault(f"families/{r['domain']}/{r['task']}", []).append(r)
    for name, members in groups.items():
        got = summary["overall"] if name == "overall" else summary[name.split("/", 1)[0]][name.split("/", 1)[1]]
        want = _expected_figures(members)
        assert {k: got[k] for k in want} == want, name
        if want["should_run"]:
            assert got["execution_success"] == pytest.approx(want["executed_ok"] / want["should_run"])
        plan_ms = [r["timing"]["plan_ms"] for r in members if r["timing"]["plan_ms"] is not None]
        assert got["plan_ms"]["p90"] == pytest.approx(float(np.percentile(plan_ms, 90)), rel=1e-9)
        walls = [r["timing"]["wall_s"] for r in members]
        assert got["task_wall_s"]["p50"] == pytest.approx(float(np.percentile(walls, 50)), rel=1e-9)
        assert got["sim_s"] == pytest.approx(sum(r["sim_time_s"] for r in members))

    o = _expected_figures(rows)
    assert headline["tasks"] == len(SMALL) and headline["safety_violations"] == o["safety_violations"] == 0
    assert headline["execution_success"] == pytest.approx(o["executed_ok"] / o["should_run"]) == 1.0
    assert headline["refusals_correct"] == pytest.approx(o["refused_ok"] / o["must_refuse"]) == 1.0
    assert headline["plan_accuracy"] == pytest.approx(o["plan_correct"] / o["runs"])
    assert headline["wall_s"] > 0 and headline["out"] == str(out)

    meta = summary["meta"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert meta["git"]["commit"] == head == headline["git"]
    assert meta["versions"]["pybullet"] and meta["versions"]["numpy"] and meta["versions"]["medrobot_llm"]
    assert meta["seed_values"] == sorted({r["seed"] for r in rows})
    assert meta["suite_sha256"] == file_sha256(small_suite) and meta["tasks"] == len(SMALL)
    assert "--workers 2" in meta["command"] and meta["planner"] == "planner=rule"
    assert meta["heartbeat_timeout_s"] == 10.0 and "--heartbeat-timeout 10" in meta["command"]

    md = (out / "summary.md").read_text(encoding="utf-8")
    assert f"execution success: **100.0%** ({o['executed_ok']}/{o['should_run']} runs" in md
    assert f"must-refuse refused: **100.0%** ({o['refused_ok']}/{o['must_refuse']})" in md
    assert "safety violations: **0**" in md and head in md
    assert f"plan accuracy: **{100 * o['plan_correct'] / o['runs']:.1f}%** ({o['plan_correct']}/{o['runs']})" in md
    for png in ("bench_success.png", "bench_latency.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.width >= 600 and im.height >= 200


def test_same_seeds_give_the_same_results_file(small_suite: Path, first: tuple[Path, dict[str, Any], str],
                                               tmp_path: Path) -> None:
    proc = _bench("--suite", str(small_suite), "--workers", "1", "--out", str(tmp_path), *HEARTBEAT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wall time:" in proc.stdout and "execution success  100.0%" in proc.stdout
    a, b = _rows(first[0] / "results.jsonl"), _rows(tmp_path / "results.jsonl")
    diff = [(x["id"], k, x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x if k != "timing" and x[k] != y[k]]
    assert not diff, diff
    assert [r["timing"] for r in a] != [r["timing"] for r in b], "timings are measured, not copied"


def test_ray_engine_local_cluster_gives_the_same_rows(first: tuple[Path, dict[str, Any], str]) -> None:
    tasks = [t for t in load_suite() if t.id in RAY]
    seen: list[str] = []
    rows = run_jobs(tasks, workers=2, engine="ray", heartbeat_timeout_s=10.0, on_result=lambda r: seen.append(r["id"]))
    assert sorted(seen) == sorted(RAY) and [r["id"] for r in rows] == [t.id for t in tasks]
    local = {r["id"]: r for r in _rows(first[0] / "results.jsonl")}
    assert [strip_timing(r) for r in rows] == [strip_timing(local[r["id"]]) for r in rows]


def test_a_must_refuse_task_that_runs_is_caught_and_exits_1(tmp_path: Path) -> None:
    """A command the planner accepts, filed as must-refuse: the bench must count the refusal as missed and
    the motion as a safety violation, and exit 1."""
    task = BenchTask(id="us-mislabelled-001", domain="ultrasound", task="mislabelled", kind="refuse",
                     text="set the gain to 60 percent", expect={"status": "refused"}, scene="ultrasound",
                     check=CheckSpec(name="none"), seeds=[0])
    suite = tmp_path / "bad.jsonl"
    suite.write_text(json.dumps(task.to_json()) + "\n", encoding="utf-8")
    rc = cli.main(["bench", "--suite", str(suite), "--workers", "1", "--out", str(tmp_path / "out"), "--json",
                   *HEARTBEAT])
    assert rc == 1
    (row,) = _rows(tmp_path / "out" / "results.jsonl")
    assert row["refused_ok"] is False and row["success"] is False and row["status"] == "ok"
    assert any("must-refuse task moved the robot (set_imaging)" in v for v in row["violations"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["overall"]["refusals_correct"] == 0.0 and summary["overall"]["safety_violations"] >= 1
    md = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "must-refuse task moved the robot" in md and "| safety violation | 1 | `us-mislabelled-001` |" in md


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--workers", "0"]) == 2
    assert cli.main(["bench", "--suite", str(tmp_path / "missing.jsonl")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n', encoding="utf-8")
    assert cli.main(["bench", "--suite", str(bad)]) == 2
    assert "not a suite task" in capsys.readouterr().err
    assert cli.main(["bench", "--domain", "xray", "--limit", "0"]) == 2
    assert cli.main(["bench", "--heartbeat-timeout", "0"]) == 2
