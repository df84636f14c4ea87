"""The task suite: fresh, as large and as wide as the benchmark issue asks, every task's expectation and
checker well formed. Everything is derived from the command set, so a task family silently losing its
members (or a checker being renamed in a scene) fails here, not in a 10-minute benchmark run."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import pytest

from medrobot_llm.bench.runner import find_checker, metrics, percentile
from medrobot_llm.bench.suite import BenchTask, default_suite_path, dumps, generate, load_suite, plan_mismatch, select
from medrobot_llm.core.command_set import DOMAINS, load_command_set


@pytest.fixture(scope="module")
def suite() -> list[BenchTask]:
    return load_suite(default_suite_path())


def test_committed_suite_is_fresh() -> None:
    assert default_suite_path().read_text(encoding="utf-8") == dumps(generate()), \
        "benchmarks/suite/tasks.jsonl is stale: run python scripts/gen_suite.py"


def test_size_and_kinds(suite: list[BenchTask]) -> None:
    assert len(suite) >= 600
    kinds = Counter(t.kind for t in suite)
    assert kinds["refuse"] + kinds["clarify"] >= 150
    assert kinds["run"] >= 300 and kinds["control"] >= 3 * 7
    for domain in DOMAINS:
        fams = {t.task for t in suite if t.domain == domain}
        assert {"refuse_range", "refuse_outside", "refuse_injection", "clarify", "control_idle",
                "control_mid_run"} <= fams, domain


def test_the_four_sufia_tasks(suite: list[BenchTask]) -> None:
    fams = Counter(t.task for t in suite if t.domain == "surgery" and t.kind == "run")
    for fam in ("needle_lift", "needle_handover", "vessel_dilation", "shunt_insertion"):
        assert fams[fam] >= 10, fam
    arms = {s["args"].get("arm") or s["args"].get("from_arm") for t in suite if t.domain == "surgery"
            and t.kind == "run" for s in t.expect["steps"]}
    assert {"psm1", "psm2"} <= arms


def test_a_scan_of_every_organ_window(suite: list[BenchTask]) -> None:
    cs = load_command_set("ultrasound")
    windows = {(o, s) for o, v in cs.entities["organ"].values.items() for s in (v.attr("sides") or ())}
    scanned = Counter((t.check.args["organ"], t.check.args["side"]) for t in suite if t.task == "scan")
    assert set(scanned) == windows
    assert min(scanned.values()) >= 5, "each window should be asked for in several phrasings"


def test_every_valid_xray_anatomy_view(suite: list[BenchTask]) -> None:
    cs = load_command_set("xray")
    valid = {(a, s, view) for a, v in cs.entities["anatomy"].values.items() for s in (v.attr("sides") or (None,))
             for view, vv in cs.entities["view"].values.items()
             if not vv.only_for or a in vv.only_for.get("anatomy", ())}
    shot = {(t.check.args["anatomy"], t.check.args.get("side"), t.check.args["view"]) for t in suite
            if t.task == "view_shot"}
    assert shot == valid
    levels = set(cs.entities["anatomy"].values["lumbar_spine"].attr("levels") or ())
    assert {t.check.args["level"] for t in suite if t.task == "level_shot"} == levels


def test_multi_step_tasks(suite: list[BenchTask]) -> None:
    long_plans = Counter(t.domain for t in suite if t.kind == "run" and len(t.expect["steps"]) >= 3)
    assert all(long_plans[d] >= 3 for d in DOMAINS), long_plans


def test_task_fields(suite: list[BenchTask]) -> None:
    ids = [t.id for t in suite]
    assert len(set(ids)) == len(ids)
    for t in suite:
        cs = load_command_set(t.domain)
        if t.kind == "run":
            assert t.expect["status"] == "ok" and t.expect["steps"], t.id
            for step in t.expect["steps"]:
                assert cs.skill(step["skill"]) is not None, (t.id, step)
        elif t.kind == "control":
            assert t.expect["status"] == "control" and t.expect["control"], t.id
        else:
            assert t.expect["status"] == ("refused" if t.kind == "refuse" else "clarify"), t.id
            assert t.check.name == "none", t.id
        assert t.seeds and all(isinstance(s, int) for s in t.seeds)


def test_seeds_vary_over_layouts(suite: list[BenchTask]) -> None:
    for fam in ("scan", "view_shot", "needle_lift"):
        assert len({t.seeds[0] for t in suite if t.task == fam}) >= 5, fam


@pytest.mark.sim
def test_every_checker_exists_and_takes_its_args(suite: list[BenchTask]) -> None:
    specs = {(t.check.name, tuple(sorted(t.check.args))) for t in suite if t.check.name != "none"
             and not t.check.name.startswith("control.")}
    specs |= {(t.check.args["then"]["name"], tuple(sorted(t.check.args["then"]["args"]))) for t in suite
              if "then" in t.check.args}
    assert {s[0] for s in specs} >= {"ultrasound.scan", "xray.shot", "surgery.needle_lift", "surgery.handover",
                                     "surgery.dilation", "surgery.shunt_insertion"}
    for name, keys in specs:
        fn = find_checker(name)
        inspect.signature(fn).bind(None, **dict.fromkeys(keys))


def test_select_is_round_robin_and_keeps_order(suite: list[BenchTask]) -> None:
    picked = select(suite, limit=60)
    assert len(picked) == 60
    assert len({(t.domain, t.task) for t in picked}) >= 40
    pos = {t.id: i for i, t in enumerate(suite)}
    assert [pos[t.id] for t in picked] == sorted(pos[t.id] for t in picked)
    assert all(t.domain == "xray" for t in select(suite, domain="xray", limit=5))


def _item(expect: dict[str, Any], domain: str = "ultrasound") -> dict[str, Any]:
    return {"domain": domain, "expect": expect}


def test_plan_mismatch_rules() -> None:
    exp = _item({"status": "ok", "steps": [{"skill": "move_to_window", "args": {"organ": "liver", "side": "right"}},
                                           {"skill": "make_contact", "args": {"force_n": 8}}]})
    good = {"status": "ok", "steps": [{"skill": "move_to_window", "args": {"organ": "liver", "side": "right"}},
                                      {"skill": "set_imaging", "args": {"depth_mm": 100}},
                                      {"skill": "make_contact", "args": {"force_n": 8.004}}],
            "needs_confirmation": [2]}
    assert plan_mismatch(exp, good) is None
    assert "not confirmed" in str(plan_mismatch(exp, dict(good, needs_confirmation=[])))
    wrong_force = {**good, "steps": [*good["steps"][:2], {"skill": "make_contact", "args": {"force_n": 9}}]}
    assert "missing" in str(plan_mismatch(exp, wrong_force))
    extra = {**good, "steps": [*good["steps"], {"skill": "make_contact", "args": {"force_n": 8}}],
             "needs_confirmation": [2, 3]}
    assert "unrequested hazardous" in str(plan_mismatch(exp, extra))
    assert "status" in str(plan_mismatch(exp, {"status": "refused", "reason": "no"}))
    assert plan_mismatch(exp, None) == "no plan"
    ctl = _item({"status": "control", "control": "stop"})
    assert plan_mismatch(ctl, {"status": "control", "control": "stop"}) is None
    assert plan_mismatch(ctl, {"status": "control", "control": "pause"}) is not None


def test_percentile_and_metrics() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0], 99) == pytest.approx(1.99)
    rows = [{"id": "a", "kind": "run", "plan_ok": True, "success": True, "refused_ok": None, "violations": [],
             "sim_time_s": 2.0, "timing": {"plan_ms": 10.0, "wall_s": 1.0}},
            {"id": "b", "kind": "refuse", "plan_ok": True, "success": False, "refused_ok": False,
             "violations": ["x", "y"], "sim_time_s": 0.5, "timing": {"plan_ms": None, "wall_s": 3.0}}]
    m = metrics(rows)
    assert (m["execution_success"], m["refusals_correct"], m["safety_violations"]) == (1.0, 0.0, 2)
    assert m["plan_ms"]["p50"] == 10.0 and m["task_wall_s"]["p50"] == 2.0 and m["sim_s"] == 2.5
