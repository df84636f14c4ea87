"""The in-memory robot: world state from the skill files, scripted outcomes, lockstep control steps."""

from __future__ import annotations

import threading

import pytest

from medrobot_llm.backends.base import CancelToken, FailureKind, Feedback, StepResult
from medrobot_llm.backends.memory import (
    ManualClock,
    MemoryBackend,
    Outcome,
    StepFault,
    apply_effects,
    initial_facts,
)
from medrobot_llm.core.plan import Step
from medrobot_llm.core.command_set import DOMAINS, load_command_set
from medrobot_llm.core.validator import WorldState, check_steps

from _helpers_supervisor import SURGERY_LIFT, US_SCAN, XRAY_TWO_SHOTS, until


@pytest.mark.parametrize("domain", DOMAINS)
def test_initial_facts_cover_every_precondition_of_the_skill_files(domain: str) -> None:
    facts = initial_facts(domain)
    cs = load_command_set(domain)
    for key, value in cs.always_known.items():
        assert facts[key] == value
    # every fact key the validator could ask about is reported: a plan is judged, never "unknown"
    for key in facts:
        assert key.split("[")[0] in {k.split("[")[0] for k in cs.facts}


def test_resting_values() -> None:
    assert initial_facts("ultrasound") == {"probe": "away"}
    assert initial_facts("xray") == {"view_set": False, "image": False}
    surgery = initial_facts("surgery")
    assert surgery["holding[psm1]"] == "none" and surgery["located[needle]"] is False
    assert surgery["located[home]"] is True


@pytest.mark.parametrize("plan", [XRAY_TWO_SHOTS, US_SCAN, SURGERY_LIFT], ids=lambda p: p.domain)
def test_a_plan_run_step_by_step_keeps_the_world_consistent_with_the_validator(plan: object) -> None:
    from medrobot_llm.core.plan import Plan

    assert isinstance(plan, Plan)
    backend = MemoryBackend(plan.domain)
    steps, _ = check_steps(plan.domain, plan.steps, backend.world_state())
    for step in steps:
        check_steps(plan.domain, [step], backend.world_state())  # each step holds against the world it meets
        result = backend.execute(step, CancelToken())
        assert result.success, result.message
    assert len(backend.sent) == len(steps)


def test_effects_expand_all_like_the_validator() -> None:
    world = WorldState(initial_facts("surgery"), known=True)
    world.facts["holding[psm1]"] = "needle"
    after = apply_effects("surgery", Step(skill="release", args={"arm": "psm1"}), world)
    assert after.facts["holding[psm1]"] == "none" and world.facts["holding[psm1]"] == "needle"


def test_a_step_takes_the_scripted_number_of_control_steps_and_streams_feedback() -> None:
    backend = MemoryBackend("xray", steps_per_skill=4)
    seen: list[Feedback] = []
    result = backend.execute(Step(skill="park"), CancelToken(), seen.append)
    assert result.success and [round(f.progress, 2) for f in seen] == [0.25, 0.5, 0.75, 1.0]
    assert len(backend.motion) == 4 and backend.world_state().facts["view_set"] is False


@pytest.mark.parametrize("failure", [FailureKind.FORCE_LIMIT, FailureKind.WORKSPACE_LIMIT, FailureKind.COLLISION])
def test_a_limit_violation_at_step_k_fails_the_step_and_stops_motion(failure: FailureKind) -> None:
    backend = MemoryBackend("xray", steps_per_skill=10)
    backend.script(Outcome.limit(failure, at=3))
    result = backend.execute(Step(skill="park"), CancelToken())
    assert not result.success and result.failure is failure
    assert len(backend.motion) == 3 and backend.stop_motion_calls >= 1


def test_error_in_the_skill_and_a_raising_driver() -> None:
    backend = MemoryBackend("xray")
    backend.script(Outcome.error(at=2), Outcome.raises("link down"))
    result = backend.execute(Step(skill="park"), CancelToken())
    assert result.failure is FailureKind.ERROR and "scripted skill error" in result.message
    with pytest.raises(RuntimeError, match="link down"):
        backend.execute(Step(skill="park"), CancelToken())
    assert len(backend.sent) == 2


def test_outcomes_can_target_a_skill() -> None:
    backend = MemoryBackend("xray")
    backend.script(Outcome.limit(FailureKind.COLLISION, skill="park"))
    assert backend.execute(Step(skill="move_to_view", args={"anatomy": "pelvis", "view": "ap"}),
                           CancelToken()).success
    assert backend.execute(Step(skill="park"), CancelToken()).failure is FailureKind.COLLISION


def _in_thread(backend: MemoryBackend, step: Step, token: CancelToken) -> tuple[threading.Thread, list[StepResult]]:
    out: list[StepResult] = []
    t = threading.Thread(target=lambda: out.append(backend.execute(step, token)))
    t.start()
    return t, out


def test_a_hung_step_runs_until_halted_then_reports_halted() -> None:
    backend = MemoryBackend("xray")
    backend.script(Outcome.hang())
    t, out = _in_thread(backend, Step(skill="park"), CancelToken())
    assert until(lambda: len(backend.motion) > 3)
    backend.halt("test")
    t.join(5)
    assert out[0].failure is FailureKind.HALTED and backend.halted
    backend.clear_halt()
    assert not backend.halted and backend.execute(Step(skill="park"), CancelToken()).success


def test_a_stalled_loop_stops_its_heartbeat_until_cancelled() -> None:
    clock = ManualClock()
    backend = MemoryBackend("xray", clock=clock)
    backend.script(Outcome.stall(at=2))
    token = CancelToken()
    t, out = _in_thread(backend, Step(skill="park"), token)
    assert until(lambda: backend.parked == "stall")
    beat = backend.last_heartbeat
    clock.advance(10)
    assert backend.last_heartbeat == beat
    token.cancel("test")
    t.join(5)
    assert out[0].failure is FailureKind.CANCELLED and backend.parked is None


def test_hold_waits_for_release_with_the_given_result() -> None:
    backend = MemoryBackend("xray", default=Outcome.hold())
    t, out = _in_thread(backend, Step(skill="park"), CancelToken())
    assert backend.wait_holding(5)
    backend.release(StepResult.failed(FailureKind.WORKSPACE_LIMIT, "edge"))
    t.join(5)
    assert out[0].failure is FailureKind.WORKSPACE_LIMIT and out[0].message == "edge"


def test_manual_mode_runs_exactly_the_permitted_control_steps() -> None:
    backend = MemoryBackend("xray", manual=True, steps_per_skill=3)
    states = iter(range(100))
    backend.observer = lambda: next(states)
    t, out = _in_thread(backend, Step(skill="park"), CancelToken())
    assert backend.wait_parked(5) and backend.parked == "gate"
    assert backend.motion == [] and backend.sent[0].state == 0
    backend.permit(2)
    assert until(lambda: len(backend.motion) == 2 and backend.parked == "gate")
    backend.permit(1)
    t.join(5)
    assert out[0].success and [m.control_step for m in backend.motion] == [1, 2, 3]
    assert [m.state for m in backend.motion] == [1, 2, 3]


def test_manual_mode_wakes_on_halt_without_a_permit() -> None:
    backend = MemoryBackend("xray", manual=True)
    t, out = _in_thread(backend, Step(skill="park"), CancelToken())
    assert backend.wait_parked(5)
    backend.halt("stop")
    t.join(5)
    assert out[0].failure is FailureKind.HALTED and backend.motion == []
    assert backend.halts[0].reason == "stop"


def test_unknown_skill_is_invalid_not_a_crash() -> None:
    backend = MemoryBackend("xray")
    result = backend.execute(Step(skill="grasp", args={}), CancelToken())
    assert result.failure is FailureKind.INVALID


def test_outcome_constructors() -> None:
    assert Outcome.ok().fault is None and Outcome.hang().fault is StepFault.HANG
    assert Outcome.stall(at=4).at == 4 and Outcome.hold().fault is StepFault.HOLD


def test_a_cancel_wakes_whoever_waits_on_the_token_until_they_stop_listening() -> None:
    token, wake, late = CancelToken(), threading.Event(), threading.Event()
    stop = token.wake_on_cancel(wake)
    assert not wake.is_set()
    token.cancel("operator cancel")
    assert wake.is_set() and token.reason == "operator cancel"
    stop()
    wake.clear()
    token.cancel("again")
    assert not wake.is_set() and token.reason == "operator cancel"  # the first reason stays
    token.wake_on_cancel(late)  # already cancelled: woken at once
    assert late.is_set()

