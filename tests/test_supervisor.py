"""The supervisor's rules, one scenario each: validation, confirmations, pause/resume, cancel, stop, control."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from medrobot_llm.safety import events as ev
from medrobot_llm.safety.audit import CHAIN_FIELDS, AuditLog, AuditLogError
from medrobot_llm.backends.base import BackendNotReady, CancelToken, FailureKind, FeedbackFn, SkillBackend, StepResult
from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.core.plan import Control, Plan, PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.command_set import Hazard
from medrobot_llm.safety.supervisor import InvalidTransition, Supervisor, SupervisorError, SupervisorState
from medrobot_llm.core.validator import WorldState

from conftest import Closing
from _helpers_supervisor import (
    SURGERY_LIFT,
    US_SCAN,
    XRAY_MOTION,
    XRAY_SHOT_FIRST,
    XRAY_TWO_SHOTS,
    check_confirmations,
    check_log,
    make_rig,
    ok,
    until,
)

S = SupervisorState


# ------------------------------------------------------------------------------------------ validation
def test_a_plan_runs_only_after_validation_against_the_current_world() -> None:
    rig = make_rig("xray")  # view_set is false: a shot needs a view first
    reply = rig.sup.submit_plan(XRAY_SHOT_FIRST)
    assert not reply.accepted and rig.sup.state is S.IDLE and "view_set" in reply.message
    assert rig.backend.sent == []
    val = [r for r in rig.audit.records if r["kind"] == "validation"]
    assert val and val[-1]["ok"] is False and val[-1]["world"]["facts"]["view_set"] is False
    assert [c.trigger for c in rig.sup.history] == ["plan", "reject"]
    check_log(rig.audit.records, rig.sup)


def test_the_same_plan_passes_when_the_world_allows_it() -> None:
    rig = make_rig("xray", facts={"view_set": True})
    assert rig.sup.submit_plan(XRAY_SHOT_FIRST).accepted
    rig.settle()
    assert rig.sup.state is S.AWAITING_CONFIRMATION


def test_a_plan_for_another_robot_or_out_of_range_is_refused() -> None:
    rig = make_rig("xray")
    assert not rig.sup.submit_plan(US_SCAN).accepted
    bad = ok("xray", ("move_to_view", {"anatomy": "pelvis"}), ("adjust", {"axis": "tilt", "amount": 90}))
    reply = rig.sup.submit_plan(bad)
    assert not reply.accepted and "amount" in reply.message and "30" in reply.message
    assert rig.sup.state is S.IDLE and rig.backend.sent == []


@pytest.mark.parametrize("plan", [Plan.refused("xray", "cut the vessel is not a skill", Reason.UNKNOWN_SKILL),
                                  Plan.clarify("xray", "which side?", Reason.MISSING)])
def test_refusals_and_questions_from_the_planner_never_reach_the_robot(plan: Plan) -> None:
    rig = make_rig("xray", answers={"do it": plan})
    reply = rig.sup.command("do it")
    assert not reply.accepted and reply.plan == plan and rig.sup.state is S.IDLE
    assert str(plan.reason or plan.question) in reply.message and rig.backend.sent == []


def test_a_planner_that_raises_refuses_and_moves_nothing() -> None:
    rig = make_rig("xray")

    def broken(domain: str, text: str, world: WorldState | None = None) -> Plan:
        raise RuntimeError("model offline")

    rig.planner.plan = broken  # type: ignore[method-assign]
    reply = rig.sup.command("park")
    assert not reply.accepted and "model offline" in reply.message and rig.sup.state is S.IDLE


def test_needs_confirmation_comes_from_the_skill_files_not_the_planner() -> None:
    rig = make_rig("xray", facts={"view_set": True})
    sneaky = XRAY_SHOT_FIRST.model_copy(update={"needs_confirmation": []})
    rig.sup.submit_plan(sneaky)
    rig.settle()
    assert rig.sup.state is S.AWAITING_CONFIRMATION and rig.backend.sent == []


# ------------------------------------------------------------------------------------------ confirmations
def test_each_exposure_needs_its_own_confirmation() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_TWO_SHOTS)
    rig.drive(confirm=False)
    q = rig.sup.pending
    assert rig.sup.state is S.AWAITING_CONFIRMATION and q is not None
    assert (q.step_index, q.skill, q.hazard) == (1, "take_shot", Hazard.RADIATION)
    assert q.text == "Confirm exposure 1 of 2: take_shot — say 'confirm'"
    assert rig.sent() == [(0, "move_to_view")]
    assert rig.sup.confirm(1).accepted
    rig.drive(confirm=False)
    q2 = rig.sup.pending
    assert q2 is not None and q2.step_index == 3 and q2.text.startswith("Confirm exposure 2 of 2")
    assert rig.sent() == [(0, "move_to_view"), (1, "take_shot"), (2, "adjust")]
    assert rig.sup.confirm().accepted
    rig.drive(confirm=False)
    assert rig.sup.state is S.IDLE and rig.backend.world_state().facts["image"] is True
    check_confirmations(rig.audit.records)
    check_log(rig.audit.records, rig.sup)


def test_a_confirmation_for_another_step_is_refused() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_TWO_SHOTS)
    rig.drive(confirm=False)
    reply = rig.sup.confirm(3)  # the second exposure, while the first is asked about
    assert not reply.accepted and "step 4" in reply.message and "step 2" in reply.message
    assert rig.sup.state is S.AWAITING_CONFIRMATION and rig.sent() == [(0, "move_to_view")]
    refused = [r for r in rig.audit.records if r["kind"] == "confirmation"]
    assert refused[-1]["accepted"] is False and refused[-1]["given"] == 3


def test_contact_steps_wait_for_confirmation_others_do_not() -> None:
    rig = make_rig("ultrasound")
    rig.sup.submit_plan(US_SCAN)
    rig.drive(confirm=False)
    q = rig.sup.pending
    assert q is not None and q.text == "Confirm contact step 2 of 5: make_contact(force_n=8) — say 'confirm'"
    assert rig.sent() == [(0, "move_to_window")]
    rig.sup.confirm()
    rig.drive(confirm=False)
    assert rig.sup.state is S.IDLE
    assert [s for _, s in rig.sent()] == ["move_to_window", "make_contact", "sweep", "capture", "lift_probe"]
    check_confirmations(rig.audit.records)


def test_confirm_without_a_question_is_refused() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()
    with pytest.raises(InvalidTransition):
        rig.sup.confirm()
    reply = rig.sup.control(Control.CONFIRM)
    assert not reply.accepted and "nothing to confirm" in reply.message


def test_an_unanswered_question_expires_and_drops_the_plan() -> None:
    rig = make_rig("xray", facts={"view_set": True}, confirm_timeout_s=30)
    rig.sup.submit_plan(XRAY_SHOT_FIRST)
    rig.settle()
    rig.clock.advance(29)
    rig.sup.tick()
    assert rig.sup.state is S.AWAITING_CONFIRMATION
    rig.clock.advance(2)
    rig.sup.tick()
    rig.settle()
    assert rig.sup.state is S.IDLE and rig.sup.history[-1].trigger == "expire"
    assert "30 s" in rig.sup.reason and rig.backend.sent == []


def test_a_late_confirmation_is_refused_and_drops_the_plan() -> None:
    rig = make_rig("xray", facts={"view_set": True}, confirm_timeout_s=5)
    rig.sup.submit_plan(XRAY_SHOT_FIRST)
    rig.settle()
    rig.clock.advance(6)
    reply = rig.sup.confirm(0)
    rig.settle()
    assert not reply.accepted and "expired" in reply.message and "dropped" in reply.message
    assert rig.sup.state is S.IDLE and rig.backend.sent == []


def test_deny_drops_the_plan_and_nothing_hazardous_runs() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_TWO_SHOTS)
    rig.drive(confirm=False)
    assert rig.sup.control("deny").accepted
    rig.settle()
    assert rig.sup.state is S.IDLE and rig.sent() == [(0, "move_to_view")]
    assert rig.sup.plan is None and rig.sup.pending is None


# ------------------------------------------------------------------------------------------ pause, resume, cancel
def test_pause_stops_the_step_at_once_and_resume_resends_it_from_the_same_position() -> None:
    rig = make_rig("xray", steps_per_skill=4)
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()
    rig.run_steps(1)  # step 1 is one control step in
    assert len(rig.backend.motion) == 1
    assert rig.sup.pause().accepted
    rig.settle()
    assert rig.sup.state is S.PAUSED and rig.backend.results[-1].failure is FailureKind.CANCELLED
    assert not rig.backend.halted and rig.sup.step_index == 0
    rig.backend.permit(5)  # nothing may move while paused, whatever the robot is allowed to do
    rig.settle()
    assert len(rig.backend.motion) == 1
    rig.backend.permit(-5)
    assert rig.sup.resume().accepted
    rig.drive()
    assert rig.sup.state is S.IDLE
    assert rig.sent() == [(0, "move_to_view"), (0, "move_to_view"), (1, "adjust"), (2, "park")]
    assert all(m.state is S.EXECUTING for m in rig.backend.motion)


def test_pause_while_asking_and_resume_asks_again() -> None:
    rig = make_rig("xray", facts={"view_set": True})
    rig.sup.submit_plan(XRAY_SHOT_FIRST)
    rig.settle()
    first = rig.sup.pending
    rig.sup.pause()
    rig.settle()
    assert rig.sup.state is S.PAUSED and rig.sup.pending is None
    with pytest.raises(InvalidTransition):
        rig.sup.confirm()
    rig.sup.resume()
    rig.settle()
    second = rig.sup.pending
    assert rig.sup.state is S.AWAITING_CONFIRMATION and second is not None and first is not None
    assert second.step_index == first.step_index == 0 and rig.backend.sent == []


def test_a_hazardous_step_interrupted_by_pause_needs_a_new_confirmation() -> None:
    rig = make_rig("xray", facts={"view_set": True}, steps_per_skill=5)
    rig.sup.submit_plan(XRAY_SHOT_FIRST)
    rig.settle()
    rig.sup.confirm()
    rig.run_steps(2)
    rig.sup.pause()
    rig.settle()
    rig.sup.resume()
    rig.settle()
    assert rig.sup.state is S.AWAITING_CONFIRMATION and len(rig.backend.sent) == 1
    rig.sup.confirm()
    rig.drive()
    assert len(rig.backend.sent) == 2 and rig.sup.state is S.IDLE
    check_confirmations(rig.audit.records)


def test_cancel_drops_the_plan_and_stops_motion_without_latching() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()
    rig.run_steps(1)
    assert rig.sup.cancel().accepted
    rig.settle()
    assert rig.sup.state is S.IDLE and rig.backend.results[-1].failure is FailureKind.CANCELLED
    assert not rig.backend.halted and rig.sup.plan is None
    rig.backend.permit(10)
    assert len(rig.backend.motion) == 1
    rig.backend.permit(-10)
    assert rig.sup.submit_plan(XRAY_MOTION).accepted  # ready for the next one at once
    rig.drive()
    assert rig.sup.state is S.IDLE


# ------------------------------------------------------------------------------------------ stop
@pytest.mark.parametrize("where", ["executing", "awaiting", "paused", "idle"])
def test_stop_halts_now_and_latches_until_reset(where: str) -> None:
    rig = make_rig("xray")
    sup, backend = rig.sup, rig.backend
    if where != "idle":
        sup.submit_plan(XRAY_TWO_SHOTS)
        rig.settle()
        if where in ("awaiting", "paused"):
            rig.drive(confirm=False)
        if where == "paused":
            sup.pause()
            rig.settle()
    moved = len(backend.motion)
    reply = sup.stop("test stop")
    rig.settle()
    assert reply.accepted and sup.state is S.ESTOP and backend.halted and sup.reason == "test stop"
    assert backend.halts[0].reason == "test stop"
    backend.permit(20)
    rig.settle()
    assert len(backend.motion) == moved
    with pytest.raises(InvalidTransition):
        sup.submit_plan(XRAY_MOTION)
    for intent in ("resume", "confirm", "pause", "cancel"):
        assert not sup.control(intent).accepted
    assert "latched" in sup.command("go home").message
    assert sup.state is S.ESTOP and backend.halted and len(backend.motion) == moved
    backend.permit(-backend.permits)
    assert sup.reset().accepted and sup.state is S.IDLE and not backend.halted
    assert [c.trigger for c in sup.history[-2:]] == ["reset", "recovered"]
    estops = [r for r in rig.audit.records if r["kind"] == "estop"]
    assert estops and estops[0]["reason"] == "test stop" and estops[0]["halted"] is True
    check_log(rig.audit.records, sup)


def test_stop_halts_the_backend_without_waiting_for_the_supervisor_lock() -> None:
    rig = make_rig("xray")
    held, release = threading.Event(), threading.Event()

    def hog() -> None:
        with rig.sup._lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=hog)
    t.start()
    assert held.wait(5)
    stopper = threading.Thread(target=rig.sup.stop, args=("while busy",))
    stopper.start()
    assert until(lambda: rig.backend.halted)  # halted while another thread holds the lock
    assert rig.sup.state is S.IDLE
    release.set()
    t.join(5)
    stopper.join(5)
    assert rig.sup.state is S.ESTOP


def _race_stop_and_reset() -> None:
    rig = make_rig("xray")
    rig.sup.stop("first")
    go = threading.Barrier(2)

    def reset() -> None:
        go.wait()
        try:
            rig.sup.reset()
        except SupervisorError:
            pass

    def stop() -> None:
        go.wait()
        rig.sup.stop("second")

    threads = [threading.Thread(target=reset), threading.Thread(target=stop)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    st = rig.sup.state
    assert st in (S.ESTOP, S.FAULT, S.IDLE)
    assert (st in (S.ESTOP, S.FAULT)) == rig.backend.halted
    check_log(rig.audit.records, rig.sup)


def test_stop_racing_reset_never_leaves_estop_without_a_halt() -> None:
    for _ in range(30):
        _race_stop_and_reset()



def test_reset_releases_the_robot_without_holding_the_supervisor_lock() -> None:
    # A ROS backend's "I am clear" arrives on the node's executor, whose other callbacks (state publishing)
    # take the supervisor's lock: a release waited for under the lock stalls until it times out.
    rig = make_rig("xray")
    rig.sup.stop("before the reset")
    seen: list[str] = []
    clear = rig.backend.clear_halt

    def clear_after_a_status_from_another_thread() -> None:
        other = threading.Thread(target=lambda: seen.append(rig.sup.status()["state"]))
        other.start()
        other.join(5)
        assert not other.is_alive(), "the status call from another thread waited on the reset's lock"
        clear()

    rig.backend.clear_halt = clear_after_a_status_from_another_thread  # type: ignore[method-assign]
    reply = rig.sup.reset()
    assert reply.accepted and rig.sup.state is S.IDLE and not rig.backend.halted
    assert seen == ["RECOVERING"]


def test_a_stop_while_the_robot_is_being_released_keeps_it_halted() -> None:
    rig = make_rig("xray")
    rig.sup.stop("first")
    clear = rig.backend.clear_halt

    def stop_then_clear() -> None:
        rig.sup.stop("second, during the release")  # lands before the release reaches the robot
        clear()

    rig.backend.clear_halt = stop_then_clear  # type: ignore[method-assign]
    reply = rig.sup.reset()
    assert not reply.accepted and "interrupted" in reply.message and "say 'reset' again" in reply.message
    assert rig.sup.state is S.ESTOP and rig.backend.halted
    rig.backend.clear_halt = clear  # type: ignore[method-assign]
    assert rig.sup.reset().accepted and rig.sup.state is S.IDLE and not rig.backend.halted
    check_log(rig.audit.records, rig.sup)


def test_a_backend_that_cannot_be_released_sends_the_reset_to_fault() -> None:
    rig = make_rig("xray")
    rig.sup.stop("first")

    def broken() -> None:
        raise OSError("the drive did not answer")

    rig.backend.clear_halt = broken  # type: ignore[method-assign]
    reply = rig.sup.reset()
    assert not reply.accepted and "OSError: the drive did not answer" in reply.message
    assert rig.sup.state is S.FAULT and rig.backend.halted
    assert "could not release the backend" in rig.sup.reason


# ------------------------------------------------------------------------------------------ control intents
def test_control_intents_in_text_bypass_planning_and_act_at_once() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()
    before = len(rig.sup.history)
    assert rig.sup.command("pause").accepted and rig.sup.state is S.PAUSED
    assert rig.sup.command("resume").accepted
    rig.settle()
    assert rig.sup.command("status").accepted
    assert rig.sup.command("stop").accepted and rig.sup.state is S.ESTOP
    triggers = [c.trigger for c in rig.sup.history[before:]]
    assert triggers == ["pause", "resume", "estop"] and "plan" not in triggers


def test_a_new_command_while_a_plan_runs_is_refused() -> None:
    rig = make_rig("xray", answers={"park": ok("xray", "park")})
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()
    reply = rig.sup.command("park")
    assert not reply.accepted and "cancel" in reply.message and rig.sup.state is S.EXECUTING
    assert rig.sup.plan is not None and rig.sup.plan.steps[0].skill == "move_to_view"


def test_control_intent_in_idle_passes_through_planning_and_answers() -> None:
    rig = make_rig("xray")
    reply = rig.sup.command("status")
    assert reply.accepted and "idle" in reply.message and rig.sup.state is S.IDLE
    assert [c.trigger for c in rig.sup.history] == ["plan", "reject"]
    assert not rig.sup.command("resume").accepted


def test_a_plan_that_arrives_after_a_stop_is_discarded() -> None:
    rig = make_rig("xray", answers={"go": XRAY_MOTION})
    gate = threading.Event()
    rig.planner.block = gate
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(rig.sup.command("go")))
    t.start()
    assert rig.planner.entered.wait(5) and rig.sup.state is S.PLANNING
    rig.sup.stop("changed my mind")
    gate.set()
    t.join(5)
    assert not out[0].accepted and "too late" in out[0].message
    assert rig.sup.state is S.ESTOP and rig.backend.sent == []
    assert any(r["kind"] == "plan_discarded" for r in rig.audit.records)


def test_cancel_while_planning_discards_the_plan() -> None:
    rig = make_rig("xray", answers={"go": XRAY_MOTION})
    gate = threading.Event()
    rig.planner.block = gate
    t = threading.Thread(target=rig.sup.command, args=("go",))
    t.start()
    assert rig.planner.entered.wait(5)
    assert rig.sup.cancel().accepted and rig.sup.state is S.IDLE
    gate.set()
    t.join(5)
    assert rig.sup.state is S.IDLE and rig.backend.sent == []


# ------------------------------------------------------------------------------------------ world drift
def test_a_step_whose_preconditions_no_longer_hold_aborts_the_rest() -> None:
    rig = make_rig("xray", facts={"view_set": True})
    two_adjusts = ok("xray", ("adjust", {"axis": "tilt", "amount": 5}), ("adjust", {"axis": "orbit", "amount": 9}))
    rig.sup.submit_plan(two_adjusts)
    rig.settle()  # the first adjust is on its way
    rig.backend.set_fact("view_set", False)  # someone moved the gantry by hand
    rig.drive()
    assert rig.sup.state is S.IDLE and rig.sup.history[-1].trigger == "abort"
    assert "view_set" in rig.sup.reason and rig.sent() == [(0, "adjust")]
    assert not rig.backend.halted
    rejected = [r for r in rig.audit.records if r["kind"] == "step_rejected"]
    assert rejected and rejected[0]["step"] == 1 and rejected[0]["fault"] is False


def test_surgery_world_follows_the_skill_file_effects() -> None:
    rig = make_rig("surgery")
    rig.sup.submit_plan(SURGERY_LIFT)
    rig.drive()
    facts = rig.backend.world_state().facts
    assert rig.sup.state is S.IDLE and facts["holding[psm1]"] == "needle" and facts["located[needle]"] is True
    assert not rig.sup.submit_plan(SURGERY_LIFT).accepted  # grasping again with a full gripper


# ------------------------------------------------------------------------------------------ faults in the machine
def test_an_exception_in_a_callback_lands_in_fault_with_the_robot_halted() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()

    def broken(event: Any) -> None:
        raise ZeroDivisionError("bug in pause")

    rig.sup._effect_pause = broken  # type: ignore[method-assign]
    reply = rig.sup.pause()
    rig.settle()
    assert not reply.accepted and rig.sup.state is S.FAULT and rig.backend.halted
    assert "ZeroDivisionError" in rig.sup.reason and "bug in pause" in rig.sup.reason
    last = [r for r in rig.audit.records if r["kind"] == "state"][-1]
    assert last["to"] == "FAULT" and last["cause"] == "exception"
    check_log(rig.audit.records, rig.sup)


class _StartingBackend(MemoryBackend):
    """A robot whose first report has not come yet (a skill server still starting), then one that went quiet."""

    def __init__(self) -> None:
        super().__init__("xray", {"view_set": True}, manual=True)
        self.problem: Exception | None = BackendNotReady("nothing received yet")

    def world_state(self) -> WorldState:
        if self.problem is not None:
            raise self.problem
        return super().world_state()


def test_a_robot_that_has_not_reported_yet_refuses_the_command_without_latching() -> None:
    backend = _StartingBackend()
    sup = Supervisor(backend, None, audit=AuditLog(None), watchdog_period_s=None, reset_wait_s=2.0)
    try:
        reply = sup.submit_plan(XRAY_MOTION)
        assert not reply.accepted and sup.state is S.IDLE and "not ready yet" in reply.message
        assert "nothing received yet" in reply.message and backend.sent == [] and not backend.halted
        backend.problem = None
        assert sup.submit_plan(XRAY_MOTION).accepted  # no reset needed: nothing was latched
        assert backend.wait_sent(1)
    finally:
        sup.close()


def test_a_robot_that_cannot_report_for_another_reason_faults() -> None:
    backend = _StartingBackend()
    backend.problem = RuntimeError("the skill server is silent: no status for 3.0 s")
    sup = Supervisor(backend, None, audit=AuditLog(None), watchdog_period_s=None, reset_wait_s=2.0)
    try:
        reply = sup.submit_plan(XRAY_MOTION)
        assert not reply.accepted and sup.state is S.FAULT and backend.halted and "silent" in sup.reason
        assert backend.sent == []
    finally:
        sup.close()


class _FailingAudit(AuditLog):
    def __init__(self, fail_on: str) -> None:
        super().__init__(None)
        self.fail_on = fail_on

    def append(self, kind: str, **fields: Any) -> int:
        if kind == self.fail_on:
            raise AuditLogError("disk full")
        return super().append(kind, **fields)


def test_an_audit_log_that_cannot_be_written_faults_and_halts() -> None:
    rig = make_rig("xray", audit=_FailingAudit("step_sent"))
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()
    assert rig.sup.state is S.FAULT and rig.backend.halted and "audit log" in rig.sup.reason
    assert rig.backend.sent == []  # the step whose release could not be recorded was never sent


class _StuckBackend(SkillBackend):
    """A driver whose execute ignores halt until the test lets it go: reset must wait for it."""

    domain = "xray"

    def __init__(self) -> None:
        self.let_go = threading.Event()
        self.entered = threading.Event()
        self._halted = False

    def world_state(self) -> WorldState:
        return WorldState({"view_set": False, "image": False}, known=True)

    def execute(self, step: Step, token: CancelToken, on_feedback: FeedbackFn | None = None) -> StepResult:
        self.entered.set()
        self.let_go.wait(10)
        return StepResult.failed(FailureKind.HALTED, "halted")

    def halt(self, reason: str = "e-stop") -> None:
        self._halted = True

    def clear_halt(self) -> None:
        self._halted = False

    @property
    def halted(self) -> bool:
        return self._halted


def test_reset_is_refused_while_the_last_step_has_not_returned(closing: Closing) -> None:
    backend = _StuckBackend()
    sup = closing(Supervisor(backend, watchdog_period_s=None, reset_wait_s=0.05))
    sup.submit_plan(XRAY_MOTION)
    assert backend.entered.wait(5)
    sup.stop()
    reply = sup.reset()
    assert not reply.accepted and "has not ended" in reply.message and sup.state is S.ESTOP and backend.halted
    backend.let_go.set()
    assert sup.executor.wait_idle(5)
    assert sup.reset().accepted and sup.state is S.IDLE


# ------------------------------------------------------------------------------------------ listeners, status, close
def test_listeners_get_every_record_and_may_answer_questions() -> None:
    rig = make_rig("xray", manual=False)
    seen: list[ev.SupervisorEvent] = []
    done = threading.Event()

    def console(event: ev.SupervisorEvent) -> None:
        seen.append(event)
        if isinstance(event, ev.QuestionEvent):
            rig.sup.confirm(event.step_index, source="console --yes")
        if isinstance(event, ev.StateEvent) and event.to == "IDLE" and event.trigger == "finish":
            done.set()

    rig.sup.subscribe(console)
    rig.sup.submit_plan(XRAY_TWO_SHOTS)
    assert done.wait(10)
    kinds = {type(e) for e in seen}
    assert {ev.StateEvent, ev.QuestionEvent, ev.StepSentEvent, ev.StepResultEvent, ev.FeedbackEvent,
            ev.ConfirmationEvent} <= kinds
    # what listeners get is what the log has: same records, same numbers, same fields in the same order
    logged = [e.record() for e in seen if not isinstance(e, ev.FeedbackEvent)]
    on_file = {r["seq"]: {k: v for k, v in r.items() if k not in ("t_wall", "t_mono", *CHAIN_FIELDS)}
               for r in rig.audit.records}
    assert len(logged) > 10
    assert [json.dumps(r) for r in logged] == [json.dumps(on_file[r["seq"]]) for r in logged]
    assert rig.sup.state is S.IDLE and len(rig.backend.sent) == 4
    check_confirmations(rig.audit.records)


def test_status_describes_where_the_supervisor_is() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_TWO_SHOTS)
    rig.settle()
    st = rig.sup.status()
    assert st["state"] == "EXECUTING" and st["step_index"] == 0 and st["steps"] == 4
    assert "step 1 of 4: move_to_view" in st["message"]
    rig.drive(confirm=False)
    assert rig.sup.status()["question"]["step_index"] == 1
    assert rig.sup.control("status").message.startswith("Confirm exposure 1 of 2")


def test_close_cancels_a_running_plan() -> None:
    rig = make_rig("xray")
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()
    rig.sup.close()
    assert rig.sup.state is S.IDLE and rig.backend.results[-1].failure is FailureKind.CANCELLED


def test_command_needs_a_planner(closing: Closing) -> None:
    sup = closing(Supervisor(MemoryBackend("xray"), watchdog_period_s=None))
    with pytest.raises(SupervisorError):
        sup.command("park")


def test_a_control_plan_submitted_directly_acts_at_once() -> None:
    rig = make_rig("xray")
    reply = rig.sup.submit_plan(Plan.of_control("xray", Control.STOP))
    assert reply.accepted and rig.sup.state is S.ESTOP and rig.backend.halted


def test_with_the_rule_planner_if_present(closing: Closing) -> None:
    rule = pytest.importorskip("medrobot_llm.planning.rule.planner")
    backend = MemoryBackend("xray")
    sup = closing(Supervisor(backend, rule.RulePlanner(), watchdog_period_s=None))
    sup.subscribe(lambda event: sup.confirm(event.step_index) if isinstance(event, ev.QuestionEvent) else None)
    reply = sup.command("take an AP of the pelvis and take a shot")
    assert reply.plan is not None
    if reply.plan.status is PlanStatus.OK:
        assert sup.wait_for(S.IDLE, timeout=10) and sup.executor.wait_idle(10)
        assert [s.step for s in backend.sent] == reply.plan.steps and sup.history[-1].trigger == "finish"
    assert sup.command("stop").accepted and sup.state is S.ESTOP


def test_stop_still_halts_and_answers_when_the_log_is_broken() -> None:
    rig = make_rig("xray", audit=_FailingAudit("command"))
    reply = rig.sup.stop("log is gone")
    assert reply.accepted and rig.backend.halted and rig.sup.state in (S.ESTOP, S.FAULT)
    with pytest.raises(AuditLogError):
        rig.sup.pause()  # a command that cannot be recorded is not carried out
