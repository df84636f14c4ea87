"""The skill server's goal checks (``safety.gate``), without ROS: every refusal names its reason."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from medrobot_llm.backends.base import FailureKind
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.gate import (
    FollowedState,
    GoalRequest,
    Refusal,
    SkillServerCore,
    authorise,
    halts_on_state,
    parse_goal,
)

pytestmark = [pytest.mark.sim]

SWEEP = json.dumps({"direction": "caudal", "distance_mm": 10, "speed_mm_s": 20})


def goal(plan_id: str = "s:1", step: int = 0, skill: str = "sweep", args: str = SWEEP,
         domain: str = "ultrasound", goal_id: str = "g1") -> GoalRequest:
    return GoalRequest(plan_id, step, skill, args, domain, goal_id)


def executing(plan_id: str = "s:1", step: int = 0, at: float = 100.0, goal_id: str = "g1") -> FollowedState:
    return FollowedState("EXECUTING", plan_id, step, "s", at, goal_id)


@pytest.mark.parametrize("args, code", [
    ("{oops", Reason.MALFORMED), ("[]", Reason.MALFORMED), ('{"a": Infinity}', Reason.MALFORMED),
    ("x" * 20000, Reason.TOO_LONG), ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", Reason.MALFORMED),
])
def test_malformed_args_are_refused(args: str, code: Reason) -> None:
    with pytest.raises(Refusal) as e:
        parse_goal(goal(args=args), "ultrasound")
    assert (e.value.kind, e.value.code) == (FailureKind.INVALID, code)


def test_wrong_domain_and_missing_skill_are_refused() -> None:
    with pytest.raises(Refusal, match="xray") as e:
        parse_goal(goal(domain="xray"), "ultrasound")
    assert e.value.code is Reason.WRONG_DOMAIN
    with pytest.raises(Refusal) as e:
        parse_goal(goal(skill=""), "ultrasound")
    assert e.value.code is Reason.MALFORMED


@pytest.mark.parametrize("followed, publishers, code", [
    (None, 1, Reason.NO_SUPERVISOR),
    (FollowedState("IDLE", "", -1, "s", 100.0), 1, Reason.NOT_EXECUTING),
    (executing(step=1), 1, Reason.NOT_CURRENT_STEP),
    (executing(plan_id="s:2"), 1, Reason.NOT_CURRENT_STEP),
    (executing(at=90.0), 1, Reason.STALE_STATE),
    (executing(), 2, Reason.SEVERAL_SUPERVISORS),
    (executing(goal_id="g2"), 1, Reason.NOT_ANNOUNCED),
    (executing(goal_id=""), 1, Reason.NOT_ANNOUNCED),
])
def test_only_the_followed_supervisor_executing_this_step_authorises(followed: FollowedState | None, publishers: int,
                                                                   code: Reason) -> None:
    with pytest.raises(Refusal) as e:
        authorise(goal(), followed, 100.5, max_age_s=1.0, state_publishers=publishers)
    assert e.value.code is code
    authorise(goal(), executing(), 100.5, max_age_s=1.0, state_publishers=1)


@pytest.fixture(scope="module")
def core() -> Iterator[SkillServerCore]:
    from medrobot_llm.backends.sim import make

    scene = make("ultrasound")
    scene.reset(seed=3)
    c = SkillServerCore(scene, max_state_age_s=1e9)
    yield c
    scene.close()


def test_core_revalidates_against_the_robot_and_runs_a_step_once(core: SkillServerCore) -> None:
    core.on_state(executing())
    step = core.check_form(goal())
    with pytest.raises(Refusal) as e:  # sweeping needs contact; the probe is away
        core.admit(goal(), step, 1)
    assert (e.value.kind, e.value.code) == (FailureKind.PRECONDITION, Reason.PRECONDITION)
    assert "probe" in e.value.message
    mv = goal(skill="move_to_window", args=json.dumps({"organ": "liver", "side": "right"}))
    admitted = core.admit(mv, core.check_form(mv), 1)
    with pytest.raises(Refusal, match="busy with plan s:1 step 1") as e:  # the sentence names who holds the arm
        core.admit(mv, core.check_form(mv), 1)
    assert e.value.code is Reason.ARM_BUSY
    assert core.run(admitted).success
    with pytest.raises(Refusal) as e:
        core.admit(mv, core.check_form(mv), 1)
    assert e.value.code is Reason.ALREADY_DONE


def test_core_halt_refuses_and_a_new_state_cancels_what_it_no_longer_authorises(core: SkillServerCore) -> None:
    core.on_state(executing("s:9", 0))
    lift = goal("s:9", 0, "rotate_probe", json.dumps({"angle_deg": 90}))
    admitted = core.admit(lift, core.check_form(lift), 1)
    assert core.on_state(FollowedState("PAUSED", "s:9", 0, "s", 100.0)) == [admitted]
    admitted.token.cancel("paused")
    assert core.run(admitted).failure is FailureKind.CANCELLED
    core.on_state(executing("s:9", 0))
    core.halt("test e-stop")
    with pytest.raises(Refusal) as e:
        core.admit(lift, core.check_form(lift), 1)
    assert (e.value.kind, e.value.code) == (FailureKind.HALTED, Reason.HALTED)
    assert core.status()["halted"]
    core.clear_halt()
    assert not core.status()["halted"]


@pytest.mark.parametrize("followed, final", [
    (FollowedState("ESTOP", "s:1", 0, "s", 100.0), True),
    (FollowedState("FAULT", "s:1", 2, "s", 100.0), True),
    (FollowedState("ESTOP", "s:0", 3, "s", 100.0), False),  # an older plan's stop: this goal's state may follow
    (FollowedState("AWAITING_CONFIRMATION", "s:1", 0, "s", 100.0), False),  # the confirm may come
    (FollowedState("IDLE", "", -1, "s", 100.0), False),
    (None, False),
])
def test_a_goal_of_a_plan_the_supervisor_latched_is_refused_without_waiting(
        followed: FollowedState | None, final: bool) -> None:
    """The node waits a little for the state that authorises a goal; never for one a latch rules out."""
    from medrobot_llm.backends.memory import MemoryBackend

    c = SkillServerCore(MemoryBackend("ultrasound"), max_state_age_s=1e9)
    if followed is not None:
        c.on_state(followed)
    assert c.never_authorised(goal()) is final


def test_status_counts_the_loop_age_from_the_goals_admission() -> None:
    """A robot idle for minutes is not a stalled loop the moment a goal is admitted, before its first cycle."""
    from medrobot_llm.backends.memory import ManualClock, MemoryBackend

    clock = ManualClock(1000.0)
    backend = MemoryBackend("ultrasound", clock=clock)
    c = SkillServerCore(backend, max_state_age_s=1e9, clock=clock)
    clock.advance(600.0)  # the last cycle: ten minutes ago
    c.on_state(executing("s:20", 0, at=clock()))
    rot = goal("s:20", 0, "rotate_probe", json.dumps({"angle_deg": 10}))
    admitted = c.admit(rot, c.check_form(rot), 1)
    clock.advance(2.0)
    status = c.status()
    assert status["busy"] and status["loop_age_s"] == 2.0, status["loop_age_s"]
    assert c.run(admitted).success
    assert c.status()["loop_age_s"] == 0.0


@pytest.mark.parametrize(("previous", "state", "session", "stamp_ns", "released_ns", "halts"), [
    (None, "ESTOP", "s1", 10, 0, True),  # the first state a server hears is a latched supervisor
    (FollowedState("EXECUTING", "s1:1", 0, "s1"), "ESTOP", "s1", 10, 0, True),  # entering ESTOP
    (FollowedState("EXECUTING", "s1:1", 0, "s1"), "FAULT", "s1", 10, 0, True),  # entering FAULT
    (FollowedState("ESTOP", "s1:1", 0, "s1"), "ESTOP", "s1", 20, 0, False),  # a periodic repeat is not news
    (FollowedState("ESTOP", "s1:1", 0, "s1"), "ESTOP", "s2", 20, 0, True),  # a restarted supervisor, latched
    (FollowedState("ESTOP", "s1:1", 0, "s1"), "FAULT", "s1", 20, 0, True),
    # sent before the supervisor's reset released the robot, delivered after it: must not re-halt
    (FollowedState("RECOVERING", "s1:1", 0, "s1"), "ESTOP", "s1", 10, 15, False),
    (FollowedState("IDLE", "", -1, "s1"), "ESTOP", "s1", 20, 15, True),  # a new e-stop after the release
    (FollowedState("ESTOP", "s1:1", 0, "s1"), "IDLE", "s1", 20, 0, False),
    (FollowedState("EXECUTING", "s1:1", 0, "s1"), "PAUSED", "s1", 20, 0, False),
])
def test_a_state_halts_when_the_supervisor_enters_estop_or_fault_after_the_last_release(
        previous: FollowedState | None, state: str, session: str, stamp_ns: int, released_ns: int,
        halts: bool) -> None:
    assert halts_on_state(previous, state, session, stamp_ns, released_ns) is halts


def test_one_goal_at_a_time_and_never_without_a_world_state() -> None:
    """Steps on different arms still share one control loop; a robot that cannot say where it is never moves."""
    from medrobot_llm.backends.memory import MemoryBackend

    backend = MemoryBackend("surgery")
    c = SkillServerCore(backend, max_state_age_s=1e9, clock=lambda: 100.0)
    c.on_state(FollowedState("EXECUTING", "s:1", 0, "s", 100.0, "g1"))
    right, left = (GoalRequest("s:1", 0, "home", json.dumps({"arm": arm}), "surgery", "g1") for arm in ("psm1", "psm2"))
    admitted = c.admit(right, c.check_form(right), 1)
    with pytest.raises(Refusal) as e:
        c.admit(left, c.check_form(left), 1)
    assert e.value.code is Reason.ROBOT_BUSY
    c.run(admitted)

    def broken() -> None:
        raise RuntimeError("encoder lost")

    backend.world_state = broken  # type: ignore[method-assign]
    with pytest.raises(Refusal) as e:
        c.admit(left, c.check_form(left), 1)
    assert (e.value.kind, e.value.code) == (FailureKind.ERROR, Reason.NO_WORLD_STATE)
