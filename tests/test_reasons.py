"""Refusal and question codes: defined once, documented, and carried by every plan that refuses or asks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA, load_jsonl

from medrobot_llm import Plan, PlanStatus, Reason, RulePlanner, check_steps
from medrobot_llm.core.reasons import GROUPS, SUMMARY
from medrobot_llm.core.validator import PlanValidationError

ROOT = Path(__file__).resolve().parent.parent
SUITES = [DATA / "planner_cases.jsonl", DATA / "injections.jsonl", *sorted((ROOT / "benchmarks" / "heldout").glob("*.jsonl"))]


def test_every_code_is_explained_and_listed_once() -> None:
    assert set(SUMMARY) == set(Reason)
    listed = [r for _, members in GROUPS for r in members]
    assert sorted(listed) == sorted(Reason) and len(listed) == len(set(listed))


def test_codes_are_their_own_spelling() -> None:
    """The wire form is the value: a member renamed by accident would change what scripts match on."""
    for r in Reason:
        assert r.value == r.name.lower()


@pytest.mark.parametrize("suite", SUITES, ids=[p.name for p in SUITES])
def test_a_plan_has_a_code_exactly_when_it_refuses_or_asks(suite: Path) -> None:
    planner = RulePlanner()
    for row in load_jsonl(suite):
        plan = planner.plan(row["domain"], row["text"])
        needs = plan.status in (PlanStatus.REFUSED, PlanStatus.CLARIFY)
        assert (plan.code is not None) is needs, (row["text"], plan)


def test_the_code_survives_json_and_older_plans_still_read() -> None:
    plan = RulePlanner().plan("surgery", "lift the needle 8 cm with psm1")
    wire = json.loads(json.dumps(plan.to_json()))
    assert wire["code"] == "out_of_range" and Plan.model_validate(wire) == plan
    logged = {k: v for k, v in wire.items() if k != "code"}  # a plan logged before codes existed
    assert Plan.model_validate(logged).code is None


def test_a_validator_issue_sends_its_code_as_text() -> None:
    with pytest.raises(PlanValidationError) as err:
        check_steps("surgery", [{"skill": "lift", "args": {"arm": "psm1", "height_mm": 80}}])
    assert err.value.code is Reason.OUT_OF_RANGE
    assert json.dumps(err.value.issues[0].to_json()["code"]) == '"out_of_range"'
