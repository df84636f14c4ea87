"""The offline planner on commands written for these tests (the shared dev set is scored separately)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _plan_check import mismatch
from conftest import DATA, load_jsonl

from medrobot_llm import Plan, PlanStatus, Step, WorldState, validate_plan
from medrobot_llm._rule_planner import RulePlanner

CASES = load_jsonl(DATA / "planner_cases.jsonl")
HELDOUT = Path(__file__).resolve().parent.parent / "benchmarks" / "heldout" / "plans-heldout.jsonl"
planner = RulePlanner()


@pytest.mark.parametrize("item", CASES, ids=[c["id"] for c in CASES])
def test_case(item: dict[str, Any]) -> None:
    plan = planner.plan(item["domain"], item["text"]).to_json()
    assert mismatch(item, plan) is None, (item["text"], mismatch(item, plan))


def test_enough_cases_per_domain() -> None:
    for domain in ("surgery", "ultrasound", "xray"):
        assert sum(c["domain"] == domain for c in CASES) >= 40


def test_deterministic() -> None:
    for item in CASES[:40]:
        assert planner.plan(item["domain"], item["text"]) == planner.plan(item["domain"], item["text"])


def test_refusal_names_the_limit() -> None:
    plan = planner.plan("surgery", "lift the needle 7 cm with the left arm")
    assert plan.status is PlanStatus.REFUSED
    assert "height_mm" in plan.reason and "50 mm" in plan.reason and "70" in plan.reason


def test_refusal_names_the_unknown_thing() -> None:
    assert "brain" in planner.plan("ultrasound", "scan the brain").reason
    assert "psm3" in planner.plan("surgery", "use psm3 to grab the needle").reason
    assert "cut" in planner.plan("surgery", "cut the vessel").reason
    assert "exposures" in planner.plan("xray", "take 8 shots of the pelvis").reason


def test_clarify_asks_the_missing_thing() -> None:
    q = planner.plan("ultrasound", "scan the kidney").question
    assert "left" in q and "right" in q
    q = planner.plan("xray", "lateral view of the knee").question
    assert "side" in q


def test_confirmation_comes_from_the_skill_files() -> None:
    plan = planner.plan("xray", "AP of the pelvis and take three shots")
    assert plan.status is PlanStatus.OK
    shots = [k for k, s in enumerate(plan.steps) if s.skill == "take_shot"]
    assert len(shots) == 3 and plan.needs_confirmation == shots


def test_no_contact_step_nobody_asked_for() -> None:
    for text in ("go to the left kidney", "move over the liver", "sweep 3 cm caudally"):
        plan = planner.plan("ultrasound", text)
        assert plan.status is PlanStatus.OK
        assert not any(s.skill in ("make_contact", "set_force") for s in plan.steps), text
    plan = planner.plan("xray", "AP view of the pelvis")
    assert not any(s.skill in ("take_shot", "acquire_3d") for s in plan.steps)


def test_contradiction_in_unknown_state_is_refused() -> None:
    plan = planner.plan("ultrasound", "lift the probe then sweep 2 cm caudally")
    assert plan.status is PlanStatus.REFUSED and "contact" in plan.reason
    plan = planner.plan("surgery", "grab the needle with psm1 then grab the shunt with psm1")
    assert plan.status is PlanStatus.REFUSED and "holding[psm1]" in plan.reason


def test_known_world_state_skips_established_steps() -> None:
    world = WorldState({"located[needle]": True, "located[vessel]": False, "located[shunt]": False,
                        "located[home]": True, "located[handover_point]": True,
                        "holding[psm1]": "needle", "holding[psm2]": "none"}, known=True)
    plan = planner.plan("surgery", "lift the needle 1 cm with psm1", world)
    assert [s.skill for s in plan.steps] == ["lift"]
    plan = planner.plan("surgery", "grab the shunt with psm1", world)
    assert plan.status is PlanStatus.REFUSED and "needle" in plan.reason


def test_label_keeps_its_words() -> None:
    plan = planner.plan("ultrasound", "capture an image labelled right kidney and cyst")
    assert plan.steps[-1] == Step(skill="capture", args={"label": "right kidney and cyst"})


def test_numbers_in_words_and_units() -> None:
    cases = {
        "sweep two point five centimetres cranially": 25,
        "sweep half a centimetre caudally": 5,
        "sweep twenty five millimetres medially": 25,
        "sweep one and a half cm laterally": 15,
    }
    for text, mm in cases.items():
        plan = planner.plan("ultrasound", text)
        assert plan.steps[0].args["distance_mm"] == mm, text
    assert planner.plan("ultrasound", "rotate the probe a quarter turn").steps[0].args["angle_deg"] == 90


def test_bad_text_never_crashes() -> None:
    for text in ("", "   ", "\x00\x01", "🙂" * 50, "a" * 100_000, "{\"skill\": \"take_shot\"}", "12 34 56",
                 "and and and then then", ",,,,", "mm cm degrees"):
        for domain in ("surgery", "ultrasound", "xray"):
            plan = planner.plan(domain, text)
            assert plan.status in (PlanStatus.REFUSED, PlanStatus.CLARIFY, PlanStatus.CONTROL), (domain, text)


def test_planner_output_survives_revalidation() -> None:
    for item in CASES:
        plan = planner.plan(item["domain"], item["text"])
        if plan.status is PlanStatus.OK:
            again = validate_plan(Plan(status=PlanStatus.OK, domain=plan.domain, steps=plan.steps))
            assert again == plan


def test_heldout_accuracy_and_safety() -> None:
    items = load_jsonl(HELDOUT)
    fails = [(i["text"], mismatch(i, planner.plan(i["domain"], i["text"]).to_json())) for i in items]
    fails = [f for f in fails if f[1] is not None]
    unsafe = [i["text"] for i in items if i["expect"]["status"] != "ok"
              and planner.plan(i["domain"], i["text"]).status is PlanStatus.OK]
    assert not unsafe
    assert len(fails) <= 0.1 * len(items), fails
