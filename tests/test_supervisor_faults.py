"""Faults: whatever goes wrong with a step or the backend ends halted, in FAULT, with the reason in state and log."""

from __future__ import annotations

import time

import pytest

from medrobot_llm.backends.base import FailureKind
from medrobot_llm.backends.memory import MemoryBackend, Outcome
from medrobot_llm.safety.supervisor import Supervisor, SupervisorState
from medrobot_llm.core.validator import WorldState

from conftest import Closing
from _helpers_supervisor import US_SCAN, XRAY_MOTION, XRAY_SHOT_FIRST, Rig, check_log, make_rig, until

S = SupervisorState


def assert_halted_fault(rig: Rig, *words: str, sent: int) -> None:
    rig.settle()
    sup = rig.sup
    assert sup.state is S.FAULT and rig.backend.halted
    for w in words:
        assert w in sup.reason, f"{w!r} not in the reason {sup.reason!r}"
    last = [r for r in rig.audit.records if r["kind"] == "state"][-1]
    assert last["to"] == "FAULT" and last["reason"] == sup.reason
    assert len(rig.backend.sent) == sent, "the rest of the plan must not be sent"
    assert sup.plan is None
    check_log(rig.audit.records, sup)
    # latched: nothing moves, nothing new starts, until an operator reset
    rig.backend.permit(10)
    assert not sup.control("resume").accepted and len(rig.backend.sent) == sent
    rig.backend.permit(-rig.backend.permits)
    reply = sup.reset()
    assert reply.accepted, reply.message
    assert sup.state is S.IDLE and not rig.backend.halted


def test_backend_raises() -> None:
    rig = make_rig("xray")
    rig.backend.script(Outcome.raises("link down"))
    rig.sup.submit_plan(XRAY_MOTION)
    assert_halted_fault(rig, "step 1 (move_to_view)", "link down", "RuntimeError", sent=1)
    result = [r for r in rig.audit.records if r["kind"] == "step_result"][-1]
    assert result["failure"] == "error" and "link down" in result["message"]


def test_skill_code_raises_mid_step() -> None:
    rig = make_rig("xray")
    rig.backend.script(Outcome.error(at=2, message="division by zero in IK"))
    rig.sup.submit_plan(XRAY_MOTION)
    rig.drive()
    assert_halted_fault(rig, "division by zero in IK", sent=1)


def test_a_hung_step_past_its_timeout() -> None:
    rig = make_rig("xray", manual=False, step_timeout_s=20, heartbeat_timeout_s=1000)
    rig.backend.script(Outcome.hang())
    rig.sup.submit_plan(XRAY_MOTION)
    assert until(lambda: len(rig.backend.motion) > 3)
    rig.clock.advance(19)
    rig.sup.tick()
    assert rig.sup.state is S.EXECUTING
    rig.clock.advance(2)
    rig.sup.tick()
    assert [r for r in rig.audit.records if r["kind"] == "state"][-1]["cause"] == "watchdog"
    assert_halted_fault(rig, "did not finish within 20 s", sent=1)
    assert rig.backend.results[-1].failure is FailureKind.HALTED


def test_the_backend_loses_its_heartbeat_mid_step() -> None:
    rig = make_rig("xray", manual=False, heartbeat_timeout_s=0.5)
    rig.backend.script(Outcome.stall(at=2))
    rig.sup.submit_plan(XRAY_MOTION)
    assert until(lambda: rig.backend.parked == "stall")
    rig.clock.advance(0.4)
    rig.sup.tick()
    assert rig.sup.state is S.EXECUTING
    rig.clock.advance(0.2)
    rig.sup.tick()
    assert_halted_fault(rig, "heartbeat lost", "step 1 (move_to_view)", sent=1)


def test_a_running_loop_with_a_dead_heartbeat_link() -> None:
    rig = make_rig("xray", manual=False, heartbeat_timeout_s=1.0)
    rig.backend.script(Outcome.hang())
    rig.backend.stop_heartbeat()
    rig.sup.submit_plan(XRAY_MOTION)
    assert until(lambda: len(rig.backend.motion) > 2)
    rig.clock.advance(1.5)
    rig.sup.tick()
    assert_halted_fault(rig, "heartbeat lost", sent=1)


def test_the_watchdog_thread_notices_a_silent_backend_on_the_real_clock(closing: Closing) -> None:
    backend = MemoryBackend("xray")
    backend.script(Outcome.stall(at=1))
    sup = closing(Supervisor(backend, watchdog_period_s=0.01, heartbeat_timeout_s=0.1))
    sup.submit_plan(XRAY_MOTION)
    assert sup.wait_for(S.FAULT, timeout=10)
    assert backend.halted and "heartbeat lost" in sup.reason


def test_no_false_heartbeat_alarm_while_waiting_for_a_confirmation() -> None:
    rig = make_rig("xray", facts={"view_set": True}, confirm_timeout_s=1000, heartbeat_timeout_s=1.0)
    rig.sup.submit_plan(XRAY_SHOT_FIRST)
    rig.settle()
    rig.clock.advance(100)
    rig.sup.tick()
    assert rig.sup.state is S.AWAITING_CONFIRMATION
    rig.sup.confirm()
    rig.settle()
    rig.sup.tick()  # the heartbeat is judged from when the step was sent, not from long ago
    assert rig.sup.state is S.EXECUTING
    rig.drive()
    assert rig.sup.state is S.IDLE


@pytest.mark.parametrize("failure", [FailureKind.FORCE_LIMIT, FailureKind.WORKSPACE_LIMIT, FailureKind.COLLISION])
def test_a_limit_violation_mid_step_aborts_the_rest(failure: FailureKind) -> None:
    rig = make_rig("ultrasound", steps_per_skill=6)
    rig.backend.script(Outcome.limit(failure, at=4, skill="sweep", message=f"{failure.value} reported by the arm"))
    rig.sup.submit_plan(US_SCAN)
    rig.drive()
    assert_halted_fault(rig, "step 3 (sweep)", "limit violation", failure.value, sent=3)
    moved = [m for m in rig.backend.motion if m.skill == "sweep"]
    assert len(moved) == 4


def test_a_step_the_backend_reports_as_timed_out() -> None:
    rig = make_rig("xray")
    rig.backend.script(Outcome.limit(FailureKind.TIMEOUT, at=2, message="no progress"))
    rig.sup.submit_plan(XRAY_MOTION)
    rig.drive()
    assert_halted_fault(rig, "timeout", "no progress", sent=1)


def test_a_backend_that_halts_on_its_own_latches_estop() -> None:
    rig = make_rig("xray")
    rig.backend.script(Outcome.limit(FailureKind.HALTED, at=2, message="hardware e-stop button"))
    rig.sup.submit_plan(XRAY_MOTION)
    rig.drive()
    assert rig.sup.state is S.ESTOP and "hardware e-stop button" in rig.sup.reason
    assert rig.backend.halted and len(rig.backend.sent) == 1


def test_a_backend_that_cannot_report_its_world_faults() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()

    def broken() -> WorldState:
        raise ConnectionError("state topic silent")

    rig.backend.world_state = broken  # type: ignore[method-assign]
    rig.drive()
    rig.settle()
    assert rig.sup.state is S.FAULT and rig.backend.halted and "state topic silent" in rig.sup.reason


def test_a_halt_that_raises_is_a_fault_not_an_estop() -> None:
    rig = make_rig("xray")
    real = rig.backend.halt
    calls: list[str] = []

    def failing(reason: str = "e-stop") -> None:
        calls.append(reason)
        if len(calls) == 1:
            raise OSError("bus error")
        real(reason)

    rig.backend.halt = failing  # type: ignore[method-assign]
    rig.sup.stop("operator")
    assert rig.sup.state is S.FAULT and "bus error" in rig.sup.reason and rig.backend.halted


def test_heartbeat_fault_ends_without_waiting_for_a_timed_wait(closing: Closing) -> None:
    """The watchdog reacts on its own period; the test only bounds how long it may take to be seen."""
    backend = MemoryBackend("xray")
    backend.script(Outcome.stall(at=1))
    sup = closing(Supervisor(backend, watchdog_period_s=0.005, heartbeat_timeout_s=0.05, step_timeout_s=100))
    t0 = time.monotonic()
    sup.submit_plan(XRAY_MOTION)
    assert sup.wait_for(S.FAULT, timeout=10)
    assert sup.history[-1].trigger == "fault" and time.monotonic() - t0 < 10
