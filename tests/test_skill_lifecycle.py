"""The skill lifecycle the framework owns: ``start`` once, ``update`` only while the skill has not failed,
``terminate`` exactly once however the skill ends (success, failure, cancel, halt, timeout, an exception),
and a backend's own fault failing the skill and latching a halt."""

from __future__ import annotations

import pytest

from medrobot_llm.backends.base import (
    BehaviourStatus,
    CancelToken,
    FailureKind,
    Feedback,
    FeedbackFn,
    LoopBackend,
    SkillBehaviour,
    StepResult,
)
from medrobot_llm.core.plan import Step
from medrobot_llm.core.validator import WorldState


class _Counting(SkillBehaviour):
    """Succeeds after ``steps`` updates; records every hook the framework calls."""

    def __init__(self, step: Step, steps: int = 3, fail_in_start: bool = False, raise_at: int = 0) -> None:
        super().__init__(step)
        self.steps, self.fail_in_start, self.raise_at = steps, fail_in_start, raise_at
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")
        if self.fail_in_start:
            self.fail(FailureKind.PRECONDITION, "nothing to hold")

    def update(self) -> BehaviourStatus:
        self.calls.append("update")
        if self.calls.count("update") == self.raise_at:
            raise RuntimeError("a bug in the skill")
        return BehaviourStatus.SUCCESS if self.calls.count("update") >= self.steps else BehaviourStatus.RUNNING

    def terminate(self, status: BehaviourStatus) -> None:
        self.calls.append(f"terminate:{status.value}")


class _Loop(LoopBackend):
    domain = "surgery"

    def __init__(self, behaviour: _Counting) -> None:
        super().__init__()
        self.behaviour = behaviour
        self.tripped: tuple[FailureKind, str] | None = None
        self.prepared = 0
        self.stops = 0

    def make_behaviour(self, step: Step) -> SkillBehaviour:
        return self.behaviour

    def prepare(self, behaviour: SkillBehaviour) -> None:
        self.prepared += 1

    def fault(self) -> tuple[FailureKind, str] | None:
        return self.tripped

    def advance(self) -> None:
        pass

    def stop_motion(self) -> None:
        self.stops += 1

    def world_state(self) -> WorldState:
        return WorldState(known=True)


def _run(loop: _Loop, token: CancelToken | None = None, on_feedback: FeedbackFn | None = None) -> StepResult:
    return loop.execute(Step(skill="home", args={"arm": "all"}), token or CancelToken(), on_feedback)


def test_a_skill_starts_once_updates_until_done_and_terminates_once() -> None:
    b = _Counting(Step(skill="home"), steps=3)
    loop = _Loop(b)
    assert _run(loop).success
    assert b.calls == ["start", "update", "update", "update", "terminate:success"]
    assert loop.prepared == 1


def test_a_skill_failing_in_start_is_never_updated() -> None:
    b = _Counting(Step(skill="home"), fail_in_start=True)
    result = _run(_Loop(b))
    assert result.failure is FailureKind.PRECONDITION and result.message == "nothing to hold"
    assert b.calls == ["start", "terminate:failure"]


@pytest.mark.parametrize("halt", [False, True])
def test_cancel_and_halt_stop_the_skill_at_the_next_control_step(halt: bool) -> None:
    b = _Counting(Step(skill="home"), steps=100)
    loop = _Loop(b)
    token = CancelToken()

    def stop(fb: Feedback) -> None:
        if halt:
            loop.halt("e-stop")
        else:
            token.cancel("operator")

    result = _run(loop, token, stop)
    assert result.failure is (FailureKind.HALTED if halt else FailureKind.CANCELLED)
    assert b.calls == ["start", "update", "terminate:preempted"]
    assert loop.halted is halt and loop.stops >= 1


def test_a_backend_fault_fails_the_skill_with_its_kind_and_latches_a_halt() -> None:
    b = _Counting(Step(skill="home"), steps=100)
    loop = _Loop(b)
    loop.tripped = (FailureKind.FORCE_LIMIT, "force 5 N above the 4 N cap")
    result = _run(loop)
    assert result.failure is FailureKind.FORCE_LIMIT and loop.halted
    assert b.calls == ["start", "terminate:failure"]


def test_an_exception_and_a_timeout_still_terminate_exactly_once() -> None:
    raising = _Counting(Step(skill="home"), steps=100, raise_at=2)
    result = _run(_Loop(raising))
    assert result.failure is FailureKind.ERROR and "a bug in the skill" in result.message
    assert raising.calls == ["start", "update", "update", "terminate:failure"]
    slow = _Counting(Step(skill="home"), steps=100)
    slow.max_steps = 4
    result = _run(_Loop(slow))
    assert result.failure is FailureKind.TIMEOUT
    assert slow.calls.count("update") == 4 and slow.calls[-1] == "terminate:failure"
    assert [c for c in slow.calls if c.startswith("terminate")] == ["terminate:failure"]
