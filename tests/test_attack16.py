"""Every command of attack16.jsonl through the rule planner: none may still get the plan it got when the
attacker found it (``attack16_planned.json``, the 'planned' column as steps), and where 'should_be' states a
status (a question, a refusal) the planner gives it. The meaning rules themselves are tested over the words
the command set defines in test_attack16_rules.py; this file replays the attacker's sentences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medrobot_llm.core.plan import PlanStatus
from medrobot_llm.planning.rule.planner import RulePlanner

DATA = Path(__file__).parent / "data"
CASES: list[dict[str, Any]] = [json.loads(line) for line in (DATA / "attack16.jsonl").read_text().splitlines()
                               if line.strip()]
PLANNED: dict[str, list[dict[str, Any]]] = json.loads((DATA / "attack16_planned.json").read_text())["planned"]

#: the attacker's cases whose rule is not written yet (attack16.md); none is left. Strict: a case fixed by
#: another rule fails here until it is moved out.
OPEN: frozenset[str] = frozenset()

planner = RulePlanner()


def _stated(should_be: str) -> set[PlanStatus] | None:
    """The statuses 'should_be' allows when it names one ("a question ...", "refused ..."), else None."""
    text = should_be.lower()
    allowed = set()
    if text.startswith(("a question", "refused")):
        if "question" in text:
            allowed.add(PlanStatus.CLARIFY)
        if "refus" in text:
            allowed.add(PlanStatus.REFUSED)
    return allowed or None


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['domain']}:{case['text']}"


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason="rule not written yet"))
                                  if c["text"] in OPEN else c for c in CASES], ids=_case_id)
def test_the_attackers_command_no_longer_gets_the_unsafe_plan(case: dict[str, Any]) -> None:
    plan = planner.plan(case["domain"], case["text"])
    steps = [{"skill": s.skill, "args": s.args} for s in plan.steps]
    assert not (plan.status is PlanStatus.OK and steps == PLANNED[case["text"]]), (case["text"], case["why"])
    stated = _stated(case["should_be"])
    if stated is not None:
        assert plan.status in stated, (case["text"], case["should_be"], plan)


def test_every_case_has_its_recorded_plan() -> None:
    assert {c["text"] for c in CASES} == set(PLANNED)
    assert OPEN <= set(PLANNED)
