"""A halt the robot reports that the supervisor did not order latches ESTOP (issue 15: a press the skill server heard
and the supervisor did not left the supervisor IDLE over a halted robot). The watchdog's pass notices it; the manual
clock and ``tick`` stand in for the watchdog thread. Every state's answer is in tests/test_supervisor_table.py."""

from __future__ import annotations

import threading
from typing import Any

from medrobot_llm.backends.memory import ManualClock, MemoryBackend
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.audit import AuditLog, AuditLogError
from medrobot_llm.safety.machine import ROBOT_HALT
from medrobot_llm.safety.supervisor import Supervisor, SupervisorState

from conftest import Closing
from _helpers_supervisor import XRAY_MOTION, XRAY_SHOT_FIRST, check_log, make_rig

S = SupervisorState
PRESS = "e-stop on /medrobot/estop"


class ReportingRobot(MemoryBackend):
    """A robot the supervisor knows from its reports, as over ROS: ``report`` is what the robot last said of a halt
    (None: not halted), and may lag its latch either way, as a status in flight does; ``hold_release`` keeps
    ``clear_halt`` waiting, as the ROS backend waits for the robot to say it is clear."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__("xray", clock=clock)
        self.report: str | None = None
        self.hold_release: threading.Event | None = None
        self.releasing = threading.Event()

    @property
    def halted(self) -> bool:
        return self.report is not None or super().halted

    @property
    def halt_reason(self) -> str:
        return self.report if self.report is not None else super().halt_reason

    def clear_halt(self) -> None:
        super().clear_halt()
        hold = self.hold_release
        if hold is not None:
            self.releasing.set()
            assert hold.wait(10), "the test never let the release finish"


def _reporting(closing: Closing) -> tuple[Supervisor, ReportingRobot, ManualClock, AuditLog]:
    clock = ManualClock(1000.0)
    robot = ReportingRobot(clock)
    audit = AuditLog(None)
    sup = closing(Supervisor(robot, None, audit=audit, clock=clock, watchdog_period_s=None, heartbeat_timeout_s=1.0))
    return sup, robot, clock, audit


def _robot_estops(audit: AuditLog) -> list[dict[str, Any]]:
    return [r for r in audit.records if r["kind"] == "estop" and r.get("source") == "robot"]


# ------------------------------------------------------------------------------------------ latched, told, reset
def test_a_halt_the_robot_reports_while_idle_latches_estop_tells_consoles_and_a_reset_releases_it() -> None:
    rig = make_rig("xray")
    sup, robot = rig.sup, rig.backend
    seen: list[ev.SupervisorEvent] = []
    told = threading.Event()

    def console(event: ev.SupervisorEvent) -> None:
        seen.append(event)
        if isinstance(event, ev.StateEvent) and event.to == S.ESTOP.value:
            told.set()

    sup.subscribe(console)
    robot.halt(PRESS)  # the robot's own latch: the supervisor ordered nothing
    assert sup.state is S.IDLE
    sup.tick()
    assert sup.state is S.ESTOP, sup.reason
    assert sup.reason == f"{ROBOT_HALT} while IDLE: {PRESS}"
    assert sup.describe().startswith(f"ESTOP: {ROBOT_HALT}") and "reset" in sup.describe()
    change = sup.history[-1]
    assert (change.source, change.dest, change.trigger) == (S.IDLE, S.ESTOP, "estop")
    estop = [r for r in rig.audit.records if r["kind"] == "estop"]
    assert estop == _robot_estops(rig.audit) and len(estop) == 1 and estop[0]["halted"] is True
    state = [r for r in rig.audit.records if r["kind"] == "state"][-1]
    assert state["cause"] == "robot" and state["reason"] == sup.reason
    assert told.wait(5), "no console was told of the latch"
    assert any(isinstance(e, ev.EstopEvent) and e.source == "robot" for e in seen)
    assert robot.halts[-1].reason == PRESS, "the supervisor pressed again over the robot's own reason"

    sup.tick()  # a pass that finds the robot still halted: already latched, nothing more
    assert len(_robot_estops(rig.audit)) == 1 and sup.history[-1] == change
    assert "latched" in sup.command("go").message
    reply = sup.reset()
    assert reply.accepted and sup.state is S.IDLE and not robot.halted, reply
    assert robot.clear_halt_calls == 1
    sup.tick()
    assert sup.state is S.IDLE
    check_log(rig.audit.records, sup)


def test_a_halt_the_robot_reports_while_awaiting_confirmation_drops_the_plan_and_moves_nothing() -> None:
    rig = make_rig("xray", facts={"view_set": True})
    sup, robot = rig.sup, rig.backend
    assert sup.submit_plan(XRAY_SHOT_FIRST).accepted
    rig.settle()
    assert sup.state is S.AWAITING_CONFIRMATION
    robot.halt(PRESS)
    sup.tick()
    assert sup.state is S.ESTOP and sup.reason == f"{ROBOT_HALT} while AWAITING_CONFIRMATION: {PRESS}"
    assert sup.pending is None and sup.plan is None and robot.sent == []
    end = [r for r in rig.audit.records if r["kind"] == "run_end"]
    assert len(end) == 1 and end[0]["outcome"] == "estop"
    assert not sup.control("confirm").accepted and robot.sent == []
    assert sup.reset().accepted and sup.state is S.IDLE
    check_log(rig.audit.records, sup)


class _BlockingWorld(MemoryBackend):
    """Holds the executor before its next step (in ``world_state``, which it reads before each one) once armed: the
    supervisor is EXECUTING with no step running, as between two steps."""

    def __init__(self) -> None:
        super().__init__("xray", manual=False)
        self.armed = False
        self.entered = threading.Event()
        self.go = threading.Event()

    def world_state(self) -> Any:
        if self.armed and threading.current_thread().name.startswith("medrobot-executor"):
            self.entered.set()
            assert self.go.wait(10)
        return super().world_state()


def test_a_halt_the_robot_reports_between_two_steps_latches_estop_and_the_next_step_is_never_sent(
        closing: Closing) -> None:
    robot = _BlockingWorld()
    audit = AuditLog(None)
    sup = closing(Supervisor(robot, None, audit=audit, watchdog_period_s=None))
    robot.armed = True
    assert sup.submit_plan(XRAY_MOTION).accepted
    assert robot.entered.wait(5) and sup.state is S.EXECUTING and robot.sent == []
    robot.halt(PRESS)
    sup.tick()
    assert sup.state is S.ESTOP and sup.reason == f"{ROBOT_HALT} while EXECUTING: {PRESS}"
    robot.go.set()
    assert sup.wait_idle(5)
    assert robot.sent == [] and [r for r in audit.records if r["kind"] == "step_sent"] == []
    assert len(_robot_estops(audit)) == 1 and [c.trigger for c in sup.history].count("estop") == 1
    check_log(audit.records, sup)


def test_a_halt_during_a_step_is_told_by_the_steps_end_once_not_by_the_watchdog_as_well() -> None:
    rig = make_rig("xray", manual=False)
    sup, robot = rig.sup, rig.backend
    pressed: list[SupervisorState] = []

    def observe() -> SupervisorState:
        if robot.executing and not pressed:
            pressed.append(sup.state)
            robot.halt(PRESS)  # the robot halts mid-step, and the watchdog passes at that very moment
            sup.tick()
            pressed.append(sup.state)
        return sup.state

    robot.observer = observe
    assert sup.submit_plan(XRAY_MOTION).accepted
    assert sup.wait_idle(5) and sup.state is S.ESTOP
    assert pressed == [S.EXECUTING, S.EXECUTING], "the watchdog latched over a step still running"
    assert sup.reason.startswith(f"{ROBOT_HALT} during step 1 (move_to_view): ") and PRESS in sup.reason
    assert len(_robot_estops(rig.audit)) == 1 and [c.trigger for c in sup.history].count("estop") == 1
    assert [r["failure"] for r in rig.audit.records if r["kind"] == "step_result"] == ["halted"]
    sup.tick()
    assert len(sup.history) == len([r for r in rig.audit.records if r["kind"] == "state"])
    check_log(rig.audit.records, sup)


class _NoEstopRecords(AuditLog):
    def append(self, kind: str, **fields: Any) -> int:
        if kind == "estop":
            raise AuditLogError("disk full")
        return super().append(kind, **fields)


def test_a_halt_the_robot_reports_that_cannot_be_recorded_ends_in_fault_not_estop() -> None:
    rig = make_rig("xray", audit=_NoEstopRecords(None))
    rig.backend.halt(PRESS)
    rig.sup.tick()
    assert rig.sup.state is S.FAULT and "audit log" in rig.sup.reason and rig.backend.halted
    assert [c.trigger for c in rig.sup.history] == ["fault"]


# ------------------------------------------------------------------------------------------ halts it ordered
def test_a_stop_is_not_counted_twice_even_when_the_watchdog_passes_between_the_halt_and_the_latch() -> None:
    rig = make_rig("xray")
    sup, robot = rig.sup, rig.backend
    passes: list[SupervisorState] = []

    def observe() -> SupervisorState:
        if robot.halted and not passes:  # inside stop(): halted, not yet latched
            passes.append(sup.state)
            sup.tick()
            passes.append(sup.state)
        return sup.state

    robot.observer = observe
    assert sup.stop("operator stop").accepted
    assert passes == [S.IDLE, S.IDLE]
    assert sup.state is S.ESTOP and sup.reason == "operator stop"
    sup.tick()
    assert _robot_estops(rig.audit) == [] and [c.trigger for c in sup.history] == ["estop"]
    check_log(rig.audit.records, sup)


def test_after_a_reset_a_halt_of_the_robots_own_is_news_again() -> None:
    rig = make_rig("xray")
    sup, robot = rig.sup, rig.backend
    sup.stop("operator stop")
    assert sup.reset().accepted and sup.state is S.IDLE
    robot.halt(PRESS)  # after the reset, a halt of the robot's own is news again
    rig.clock.advance(1.0)
    sup.tick()
    assert sup.state is S.ESTOP and sup.reason == f"{ROBOT_HALT} while IDLE: {PRESS}"
    assert len(_robot_estops(rig.audit)) == 1


# ------------------------------------------------------------------------------------------ around a reset
def test_a_stale_halted_report_during_and_just_after_recovering_does_not_latch_again(closing: Closing) -> None:
    sup, robot, clock, audit = _reporting(closing)
    robot.report = PRESS
    sup.tick()
    assert sup.state is S.ESTOP and len(_robot_estops(audit)) == 1
    robot.hold_release = threading.Event()
    replies: list[Any] = []
    resetting = threading.Thread(target=lambda: replies.append(sup.reset()))
    resetting.start()
    try:
        assert robot.releasing.wait(5) and sup.state is S.RECOVERING
        for _ in range(3):  # the robot's last report still says halted while it is being released
            clock.advance(0.4)
            sup.tick()
            assert sup.state is S.RECOVERING
        robot.report = None  # the robot reports itself clear: the release ends
    finally:
        robot.hold_release.set()
        resetting.join(5)
    assert replies and replies[0].accepted and sup.state is S.IDLE, replies
    recovered = len(sup.history)

    robot.report = PRESS  # a report from before the release, overtaken on its way
    sup.tick()
    clock.advance(0.5)
    sup.tick()
    assert sup.state is S.IDLE
    robot.report = None  # the robot's next report: clear
    clock.advance(1.0)
    sup.tick()
    assert sup.state is S.IDLE and len(sup.history) == recovered and len(_robot_estops(audit)) == 1
    check_log(audit.records, sup)


def test_a_halt_still_reported_once_the_window_after_a_reset_has_passed_latches() -> None:
    """The window after a reset delays a halt, never hides it: a press right after a reset is latched once the
    robot's reports from before the release can no longer be in flight."""
    rig = make_rig("xray", heartbeat_timeout_s=1.0)
    sup, robot = rig.sup, rig.backend
    sup.stop("operator stop")
    assert sup.reset().accepted and sup.state is S.IDLE
    rig.clock.advance(0.2)
    robot.halt(PRESS)
    sup.tick()
    assert sup.state is S.IDLE
    rig.clock.advance(0.8)
    sup.tick()
    assert sup.state is S.ESTOP and sup.reason == f"{ROBOT_HALT} while IDLE: {PRESS}"
    check_log(rig.audit.records, sup)


# ------------------------------------------------------------------------------------------ the log
def test_log_replay_reproduces_a_latch_on_the_robots_report_between_steps_and_during_one() -> None:
    from medrobot_llm.cli.log import replay_records

    rig = make_rig("xray", manual=False)
    sup, robot = rig.sup, rig.backend
    robot.halt(PRESS)
    sup.tick()
    rig.clock.advance(5.0)
    assert sup.reset().accepted
    pressed: list[bool] = []

    def observe() -> SupervisorState:
        if robot.executing and not pressed:
            pressed.append(True)
            robot.halt(PRESS)
        return sup.state

    robot.observer = observe
    rig.clock.advance(5.0)
    assert sup.submit_plan(XRAY_MOTION).accepted
    assert sup.wait_idle(5) and sup.state is S.ESTOP
    rig.clock.advance(5.0)
    assert sup.reset().accepted
    rig.close()
    assert len(_robot_estops(rig.audit)) == 2
    report = replay_records(rig.audit.records, wait_s=2.0)
    assert report.identical, report.render()
    assert [t[2] for t in report.replayed].count("estop") == 2
