"""The skill server's goal checks (``safety.gate``), without ROS: every refusal names its reason.

One ``ManualClock`` drives the supervisor's side (a ``CapabilityMinter`` and a ``HeartbeatSigner`` holding the
graph secret) and the robot's side (the core, its verifier and its watchdog), so expiry, the heartbeat window
and the order of halts and releases are tested without sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest

from medrobot_llm.backends.base import FailureKind, SkillBackend
from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.core.clock import ManualClock
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.audit import AuditLog
from medrobot_llm.safety.capability import DEFAULT_TTL_S, CapabilityMinter, CapabilityVerifier
from medrobot_llm.safety.gate import (
    Admitted,
    FollowedState,
    GoalRequest,
    Refusal,
    SkillServerCore,
    halts_on_state,
    parse_goal,
)
from medrobot_llm.safety.heartbeat import HeartbeatSigner, Watchdog
from medrobot_llm.safety.signing import Untrusted, millis

pytestmark = [pytest.mark.sim]

SECRET = bytes(range(32))
T0 = 1_800_000_000.0  # a wall-clock-like start: stamps are ms since the epoch
SWEEP = json.dumps({"direction": "caudal", "distance_mm": 10, "speed_mm_s": 20})
ROTATE = json.dumps({"angle_deg": 30})


def goal(plan_id: str = "s:1", step: int = 0, skill: str = "sweep", args: str = SWEEP,
         domain: str = "ultrasound", goal_id: str = "g1", capability: str = "") -> GoalRequest:
    return GoalRequest(plan_id, step, skill, args, domain, goal_id, capability)


@dataclass
class Rig:
    """A core with the supervisor's two signing halves beside it, all on one manual clock."""

    backend: SkillBackend
    clock: ManualClock = field(default_factory=lambda: ManualClock(T0))
    audit: AuditLog = field(default_factory=AuditLog)

    def __post_init__(self) -> None:
        self.minter = CapabilityMinter(SECRET, clock=self.clock)
        self.signer = HeartbeatSigner(SECRET, clock=self.clock)
        self.core = SkillServerCore(self.backend, verifier=CapabilityVerifier(SECRET, clock=self.clock),
                                    watchdog=Watchdog(SECRET, clock=self.clock), audit=self.audit, clock=self.clock)

    def beat(self) -> bool:
        """One beat of the supervisor; whether it released the robot."""
        return self.core.on_heartbeat(self.signer.beat().to_wire())[1]

    def reset(self) -> bool:
        """The supervisor's reset: its release, sent at once."""
        return self.core.on_heartbeat(self.signer.release().to_wire())[1]

    def signed(self, g: GoalRequest, **minted_for: object) -> GoalRequest:
        """``g`` with the capability the supervisor mints for it (or, with ``minted_for``, for another goal)."""
        fields: dict[str, object] = {"plan_id": g.plan_id, "step_index": g.step_index, "skill": g.skill,
                                     "args": g.args_json, "domain": g.domain, "goal_id": g.goal_id, **minted_for}
        return replace(g, capability=self.minter.mint(**fields).to_wire())  # type: ignore[arg-type]

    def admit(self, g: GoalRequest) -> Admitted:
        return self.core.admit(g, self.core.check_form(g))

    def refused(self, g: GoalRequest) -> Refusal:
        with pytest.raises(Refusal) as e:
            self.admit(g)
        return e.value


def memory_rig(domain: str = "ultrasound") -> Rig:
    clock = ManualClock(T0)
    rig = Rig(MemoryBackend(domain, clock=clock), clock)
    rig.beat()
    return rig


def rotate(plan_id: str = "s:1", step: int = 0, goal_id: str = "g1") -> GoalRequest:
    return goal(plan_id, step, "rotate_probe", ROTATE, goal_id=goal_id)


# ---------------------------------------------------------------- check 1: the goal's form
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


# ---------------------------------------------------------------- checks 2-3: heartbeat and capability
def test_a_genuine_goal_is_admitted_exactly_once() -> None:
    rig = memory_rig()
    g = rig.signed(rotate())
    admitted = rig.admit(g)
    assert admitted.issued_ms == millis(T0)
    assert rig.core.run(admitted).success
    r = rig.refused(g)  # the same capability, sent again
    assert (r.kind, r.code) == (FailureKind.INVALID, Reason.REPLAYED)


def forged(rig: Rig, g: GoalRequest) -> GoalRequest:
    other = CapabilityMinter(bytes(32), clock=rig.clock)  # another graph's secret
    return replace(g, capability=other.mint(plan_id=g.plan_id, step_index=g.step_index, skill=g.skill,
                                            args=g.args_json, domain=g.domain, goal_id=g.goal_id).to_wire())


def altered(rig: Rig, g: GoalRequest) -> GoalRequest:
    cap = json.loads(rig.signed(g).capability)
    cap["expires_ms"] += 60_000
    return replace(g, capability=json.dumps(cap))


@pytest.mark.parametrize("make, code, words", [
    (lambda rig, g: g, Reason.NO_CAPABILITY, "carries no capability"),
    (lambda rig, g: replace(g, capability="{not json"), Reason.MALFORMED, "not JSON"),
    (forged, Reason.BAD_SIGNATURE, "does not verify"),
    (altered, Reason.BAD_SIGNATURE, "does not verify"),
    (lambda rig, g: rig.signed(g, step_index=1), Reason.CAPABILITY_MISMATCH, "another step_index"),
    (lambda rig, g: rig.signed(g, plan_id="s:0"), Reason.CAPABILITY_MISMATCH, "another plan_id"),
    (lambda rig, g: rig.signed(g, skill="move_to_window"), Reason.CAPABILITY_MISMATCH, "another skill"),
    (lambda rig, g: rig.signed(g, args={"angle_deg": 90}), Reason.CAPABILITY_MISMATCH, "another args"),
    (lambda rig, g: rig.signed(g, goal_id="g2"), Reason.CAPABILITY_MISMATCH, "another goal_id"),
    (lambda rig, g: rig.signed(g, domain="xray"), Reason.CAPABILITY_MISMATCH, "another domain"),
])
def test_a_goal_without_its_own_genuine_capability_is_refused_and_audited(make: object, code: Reason,
                                                                          words: str) -> None:
    rig = memory_rig()
    g = make(rig, rotate())  # type: ignore[operator]
    r = rig.refused(g)
    assert (r.kind, r.code) == (FailureKind.INVALID, code) and words in r.message, r.message
    assert not rig.core.active and rig.core.refusals == 1
    [record] = rig.audit.records
    assert record["kind"] == "goal_refused"
    assert (record["code"], record["goal"], record["goal_id"], record["skill"]) == \
        (code.value, "plan s:1 step 1 (rotate_probe)", "g1", "rotate_probe")
    assert record["reason"] == r.message


def test_an_expired_capability_is_refused() -> None:
    rig = memory_rig()
    g = rig.signed(rotate())
    rig.clock.advance(DEFAULT_TTL_S + 0.001)
    rig.beat()
    r = rig.refused(g)
    assert r.code is Reason.EXPIRED, r.message


def test_args_spelled_differently_are_the_same_args() -> None:
    """The MAC covers canonical args: the supervisor's spelling of the JSON does not have to be the goal's."""
    rig = memory_rig()
    g = rig.signed(rotate())
    assert rig.admit(replace(g, args_json='{ "angle_deg" : 30 }')).step.args == {"angle_deg": 30}


def test_no_goal_before_the_first_heartbeat_nor_after_the_window() -> None:
    clock = ManualClock(T0)
    rig = Rig(MemoryBackend("ultrasound", clock=clock), clock)
    r = rig.refused(rig.signed(rotate()))  # a genuine capability, but no supervisor heard yet
    assert (r.kind, r.code) == (FailureKind.HALTED, Reason.NO_HEARTBEAT)
    assert "no valid supervisor heartbeat yet" in r.message
    assert r.message.startswith("refused plan ")  # ExecuteSkill.action: every refusal's message says so first
    assert rig.refused(rotate()).code is Reason.NO_HEARTBEAT  # checked before the capability
    rig.beat()
    rig.clock.advance(1.5)
    r = rig.refused(rig.signed(rotate(goal_id="g2")))
    assert r.code is Reason.NO_HEARTBEAT and "1.50 s old" in r.message
    assert rig.core.status()["supervisor"]["alive"] is False
    rig.beat()  # a supervisor holding the secret is back
    assert rig.admit(rig.signed(rotate(goal_id="g3")))
    assert rig.core.status()["supervisor"] == {"alive": True, "instance": rig.signer.instance,
                                               "message": f"supervisor {rig.signer.instance} alive"}
    assert [rec["code"] for rec in rig.audit.records] == ["no_heartbeat"] * 3


def test_a_forged_or_replayed_beat_keeps_nobody_alive() -> None:
    rig = memory_rig()
    old = rig.signer.beat()
    rig.beat()
    rig.clock.advance(1.5)
    with pytest.raises(Untrusted) as e:
        rig.core.on_heartbeat(HeartbeatSigner(bytes(32), clock=rig.clock).beat().to_wire())
    assert e.value.code is Reason.BAD_SIGNATURE
    with pytest.raises(Untrusted):
        rig.core.on_heartbeat(old.to_wire())
    assert rig.refused(rig.signed(rotate())).code is Reason.NO_HEARTBEAT


def test_losing_the_heartbeat_mid_goal_cancels_it_without_latching_the_estop() -> None:
    rig = memory_rig()
    admitted = rig.admit(rig.signed(rotate()))
    first = rig.core.watch()
    assert first is not None and not first.halted  # the first verdict is reported too
    rig.clock.advance(0.9)
    assert rig.core.watch() is None and not admitted.token.cancelled  # inside the window
    rig.clock.advance(0.2)
    change = rig.core.watch()
    assert change is not None and change.halted and change.code is Reason.NO_HEARTBEAT
    assert admitted.token.cancelled and admitted.token.reason.startswith("supervisor lost: halted:")
    assert rig.core.run(admitted).failure is FailureKind.CANCELLED
    assert not rig.core.backend.halted and not rig.core.status()["halted"]
    assert rig.core.watch() is None  # said once
    rig.beat()
    back = rig.core.watch()
    assert back is not None and not back.halted
    assert rig.core.run(rig.admit(rig.signed(rotate("s:2")))).success  # no reset needed


def test_a_halted_robot_refuses_after_the_capability_is_checked() -> None:
    rig = memory_rig()
    rig.core.halt("test e-stop")
    assert rig.refused(rotate()).code is Reason.NO_CAPABILITY  # the capability comes first
    r = rig.refused(rig.signed(rotate(goal_id="g2")))
    assert (r.kind, r.code) == (FailureKind.HALTED, Reason.HALTED) and "test e-stop" in r.message


# ---------------------------------------------------------------- checks 4-6 on a real scene
@pytest.fixture(scope="module")
def scene_rig() -> Iterator[Rig]:
    from medrobot_llm.backends.sim import make

    scene = make("ultrasound")
    scene.reset(seed=3)
    clock = ManualClock(T0)
    rig = Rig(scene, clock)
    rig.beat()
    yield rig
    scene.close()


def test_core_revalidates_against_the_robot_and_runs_a_step_once(scene_rig: Rig) -> None:
    rig = scene_rig
    rig.beat()
    with pytest.raises(Refusal) as e:  # sweeping needs contact; the probe is away
        rig.admit(rig.signed(goal()))
    assert (e.value.kind, e.value.code) == (FailureKind.PRECONDITION, Reason.PRECONDITION)
    assert "probe" in e.value.message
    mv = goal(skill="move_to_window", args=json.dumps({"organ": "liver", "side": "right"}))
    admitted = rig.admit(rig.signed(mv))
    with pytest.raises(Refusal, match="busy with plan s:1 step 1") as e:  # the sentence names who holds the arm
        rig.admit(rig.signed(replace(mv, goal_id="g2")))
    assert e.value.code is Reason.ARM_BUSY
    assert rig.core.run(admitted).success
    with pytest.raises(Refusal) as e:
        rig.admit(rig.signed(replace(mv, goal_id="g3")))
    assert e.value.code is Reason.ALREADY_DONE


def test_a_step_whose_skill_ends_in_its_first_cycle_runs_where_it_was_admitted(scene_rig: Rig) -> None:
    """The skill's own ``max_steps`` decides; the step holds the robot like any other, the halt latch still
    stops it before its cycle, and nothing of it is paced or reported as feedback."""
    rig = scene_rig
    rig.beat()
    imaging = goal("s:30", skill="set_imaging", args=json.dumps({"gain_pct": 40}), goal_id="g30")
    admitted = rig.admit(rig.signed(imaging))
    assert rig.core.ends_in_first_cycle(admitted)
    with pytest.raises(Refusal) as e:
        rig.admit(rig.signed(replace(imaging, plan_id="s:31", goal_id="g31")))
    assert e.value.code is Reason.ARM_BUSY
    seen: list[object] = []
    assert rig.core.run(admitted, seen.append, paced=False).success and len(seen) == 1
    mv = rig.admit(rig.signed(goal("s:32", skill="lift_probe", args="{}", goal_id="g32")))
    assert not rig.core.ends_in_first_cycle(mv)
    rig.core.halt("test stop")
    assert rig.core.run(mv).failure is FailureKind.HALTED
    rig.clock.advance(0.01)
    assert rig.reset() and not rig.core.backend.halted


def test_a_backend_that_cannot_say_how_long_a_step_takes_never_runs_it_in_place() -> None:
    rig = memory_rig()
    assert not rig.core.ends_in_first_cycle(rig.admit(rig.signed(rotate("s:40"))))


def test_one_goal_at_a_time_and_never_without_a_world_state() -> None:
    """Steps on different arms still share one control loop; a robot that cannot say where it is never moves."""
    rig = memory_rig("surgery")
    right, left = (GoalRequest("s:1", 0, "home", json.dumps({"arm": arm}), "surgery", f"g-{arm}")
                   for arm in ("psm1", "psm2"))
    admitted = rig.admit(rig.signed(right))
    with pytest.raises(Refusal) as e:
        rig.admit(rig.signed(left))
    assert e.value.code is Reason.ROBOT_BUSY
    rig.core.run(admitted)

    def broken() -> None:
        raise RuntimeError("encoder lost")

    rig.backend.world_state = broken  # type: ignore[method-assign]
    with pytest.raises(Refusal) as e:
        rig.admit(rig.signed(replace(left, goal_id="g3")))
    assert (e.value.kind, e.value.code) == (FailureKind.ERROR, Reason.NO_WORLD_STATE)


def test_status_counts_the_loop_age_from_the_goals_admission() -> None:
    """A robot idle for minutes is not a stalled loop the moment a goal is admitted, before its first cycle."""
    rig = memory_rig()
    rig.clock.advance(600.0)  # the last cycle: ten minutes ago
    rig.beat()
    admitted = rig.admit(rig.signed(rotate("s:20")))
    rig.clock.advance(0.5)
    status = rig.core.status()
    assert status["busy"] and status["loop_age_s"] == 0.5, status["loop_age_s"]
    assert rig.core.run(admitted).success
    assert rig.core.status()["loop_age_s"] == 0.0


# ---------------------------------------------------------------- /medrobot/state: information only
def state(name: str, plan_id: str = "s:1", step: int = 0, stamp_ms: int = 0, session: str = "s") -> FollowedState:
    return FollowedState(name, plan_id, step, session, stamp_ms, "because")


def test_a_state_never_authorises_a_goal() -> None:
    """Attack 5: an EXECUTING state naming the goal grants nothing without a capability."""
    rig = memory_rig()
    rig.core.on_state(state("EXECUTING", stamp_ms=millis(T0)))
    assert rig.refused(rotate()).code is Reason.NO_CAPABILITY


def test_a_state_older_than_the_goals_capability_does_not_cancel_it_a_newer_one_does() -> None:
    rig = memory_rig()
    admitted = rig.admit(rig.signed(rotate()))
    older = state("IDLE", "", -1, stamp_ms=admitted.issued_ms - 1)  # sent before the step was released
    assert rig.core.on_state(older).cancel == [] and not admitted.token.cancelled
    assert rig.core.on_state(state("EXECUTING", stamp_ms=admitted.issued_ms + 5)).cancel == []  # this very step
    assert rig.core.on_state(state("EXECUTING", step=1, stamp_ms=admitted.issued_ms - 1)).cancel == []
    newer = state("PAUSED", stamp_ms=admitted.issued_ms)  # at or after the mint
    effect = rig.core.on_state(newer)
    assert effect.cancel == [admitted] and not effect.halted


@pytest.mark.parametrize(("previous", "name", "session", "stamp_ms", "released_ms", "halts"), [
    (None, "ESTOP", "s1", 10, 0, True),  # the first state a server hears is a latched supervisor
    (state("EXECUTING", session="s1"), "ESTOP", "s1", 10, 0, True),  # entering ESTOP
    (state("EXECUTING", session="s1"), "FAULT", "s1", 10, 0, True),  # entering FAULT
    (state("ESTOP", session="s1"), "ESTOP", "s1", 20, 0, False),  # a periodic repeat is not news
    (state("ESTOP", session="s1"), "ESTOP", "s2", 20, 0, True),  # a restarted supervisor, latched
    (state("ESTOP", session="s1"), "FAULT", "s1", 20, 0, True),
    # sent before the supervisor's reset released the robot, delivered after it: must not re-halt
    (state("RECOVERING", session="s1"), "ESTOP", "s1", 10, 15, False),
    (state("IDLE", "", -1, session="s1"), "ESTOP", "s1", 20, 15, True),  # a new e-stop after the release
    (state("ESTOP", session="s1"), "IDLE", "s1", 20, 0, False),
    (state("EXECUTING", session="s1"), "PAUSED", "s1", 20, 0, False),
])
def test_a_state_halts_when_the_supervisor_enters_estop_or_fault_after_the_last_release(
        previous: FollowedState | None, name: str, session: str, stamp_ms: int, released_ms: int,
        halts: bool) -> None:
    assert halts_on_state(previous, name, session, stamp_ms, released_ms) is halts


# ---------------------------------------------------------------- halts and releases
def test_only_a_release_later_than_the_halt_frees_the_robot() -> None:
    rig = memory_rig()
    rig.clock.advance(0.1)
    rig.core.halt("e-stop on /medrobot/estop")
    assert not rig.beat() and rig.core.backend.halted  # beats without a release
    rig.clock.advance(0.1)
    assert rig.reset() and not rig.core.backend.halted
    assert (rig.core.halt_reason, rig.core.halted_at) == ("", None)
    assert rig.core.run(rig.admit(rig.signed(rotate()))).success


def test_a_release_from_before_the_halt_does_not_free_the_robot() -> None:
    """A reset, then a press, delivered in the other order (or the press arriving first): the beats that carry
    the earlier reset keep coming, and none of them may undo the later press."""
    rig = memory_rig()
    rig.reset()  # released at T0
    rig.clock.advance(0.05)
    rig.core.halt("e-stop on /medrobot/estop")
    rig.clock.advance(0.05)
    assert not rig.beat() and rig.core.backend.halted
    # latched, a second press stamped after a release the robot has not heard yet: that release is not enough
    rig.clock.advance(0.05)
    late_release = rig.signer.release()
    rig.clock.advance(0.01)
    rig.core.halt("a second press")
    assert not rig.core.on_heartbeat(late_release.to_wire())[1] and rig.core.backend.halted
    assert rig.core.halt_reason == "e-stop on /medrobot/estop"  # the latch keeps when and why it engaged
    rig.clock.advance(0.01)
    assert rig.reset() and not rig.core.backend.halted


def test_an_estop_state_halts_and_the_supervisors_reset_releases() -> None:
    rig = memory_rig()
    admitted = rig.admit(rig.signed(rotate()))
    rig.clock.advance(0.02)
    effect = rig.core.on_state(state("ESTOP", stamp_ms=millis(rig.clock())))
    assert effect.halted and rig.core.backend.halted and admitted.token.cancelled
    assert rig.core.halt_reason == "the supervisor is ESTOP: because"
    assert not rig.core.on_state(state("ESTOP", stamp_ms=millis(rig.clock()) + 200)).halted  # a repeat
    assert rig.core.run(admitted).failure is FailureKind.HALTED
    rig.clock.advance(0.3)
    assert rig.reset() and not rig.core.backend.halted
    # the ESTOP state the reset overtook, delivered late, does not halt again
    assert not rig.core.on_state(state("ESTOP", stamp_ms=millis(rig.clock()) - 100, session="s2")).halted
    assert not rig.core.backend.halted


def test_a_stop_dated_ahead_holds_the_latch_only_until_the_next_reset() -> None:
    """Anyone may stop the robot, but the time of an unsigned stop is the robot's own at receipt: an ESTOP state
    stamped a day ahead (forged) halts it, and the supervisor's next reset frees it."""
    rig = memory_rig()
    rig.clock.advance(0.02)
    assert rig.core.on_state(state("ESTOP", stamp_ms=millis(rig.clock()) + 86_400_000)).halted
    assert rig.core.halt_ms == millis(rig.clock())
    rig.clock.advance(0.1)
    assert not rig.beat() and rig.core.backend.halted  # beats without a new release
    assert rig.reset() and not rig.core.backend.halted


def test_a_second_stop_while_latched_keeps_when_and_why_the_robot_stopped() -> None:
    rig = memory_rig()
    rig.core.halt("e-stop on /medrobot/estop")
    rig.clock.advance(0.2)
    rig.core.halt("the supervisor's echo of the same stop")
    assert rig.core.backend.halted
    assert (rig.core.halted_at, rig.core.halt_reason) == (T0, "e-stop on /medrobot/estop")
    status = rig.core.status()
    assert status["halted"] and status["halted_at"] == T0
    rig.clock.advance(0.1)
    assert rig.reset()
    rig.clock.advance(1.0)
    rig.core.halt("a new stop after the reset")
    assert (rig.core.halted_at, rig.core.halt_reason) == (pytest.approx(T0 + 1.3), "a new stop after the reset")
