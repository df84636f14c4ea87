"""SurgeryScene-v0: each skill's physical effect, physical grasping, every limit halting, cancel, the four
SuFIA checkers (and that they can fail), randomisation and determinism."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pybullet")

from medrobot_llm import CancelToken, FailureKind, Feedback, Step, StepResult
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.backends.sim import make
from medrobot_llm.backends.sim.surgery import MM, SurgeryScene, caps
from medrobot_llm.backends.sim.surgery.checks import (
    check_dilation,
    check_handover,
    check_needle_lift,
    check_shunt_insertion,
    check_task,
)

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def scene() -> Iterator[SurgeryScene]:
    s = make("surgery")
    assert isinstance(s, SurgeryScene)
    yield s
    s.close()


def run(scene: SurgeryScene, skill: str, **args: Any) -> StepResult:
    return scene.execute(Step(skill=skill, args=args), CancelToken())


def ok(scene: SurgeryScene, skill: str, **args: Any) -> StepResult:
    result = run(scene, skill, **args)
    assert result.success, f"{skill}: {result.failure.value} {result.message}"
    return result


def holding(scene: SurgeryScene, arm: str, obj: str, seed: int = 0) -> None:
    scene.reset(seed=seed)
    ok(scene, "locate", object=obj)
    ok(scene, "grasp", arm=arm, object=obj)


def blind_planner(monkeypatch: pytest.MonkeyPatch, **loose: Any) -> None:
    """Break the skills' view of the limits (the first line): they plan with the scene file's limits, or
    ``loose`` ones, and neither keep clear of tissue nor of the other arm. Only the monitor then stands
    between a motion and the limits a test tightened: these tests show that second line still holds."""
    monkeypatch.setattr(caps, "plan_limits", lambda s: {**s.cfg["limits"], **loose})
    monkeypatch.setattr(caps, "tissue_floor", lambda *a, **k: -1.0)
    monkeypatch.setattr(caps, "arm_problem", lambda *a, **k: None)


def held_still(scene: SurgeryScene) -> float:
    """How far (mm) any tool tip moves over 30 control steps with nothing commanding it."""
    before = {n: a.tcp.copy() for n, a in scene.arms.items()}
    for _ in range(30):
        scene.advance()
    return max(float(np.linalg.norm(a.tcp - before[n])) / MM for n, a in scene.arms.items())


def test_registry_world_state_and_observation(scene: SurgeryScene) -> None:
    obs = scene.reset(seed=0)
    assert scene.scene_id == "SurgeryScene-v0" and scene.domain == "surgery"
    state = scene.world_state()
    assert state.known
    assert state.facts["holding[psm1]"] == "none" and state.facts["holding[psm2]"] == "none"
    assert state.facts["located[needle]"] is False and state.facts["located[home]"] is True
    json.dumps(obs)
    assert set(obs["objects"]) == {"needle", "vessel", "shunt"} and obs["force_n"] == 0.0


def test_the_arms_are_remote_centre_of_motion_and_the_kinematics_match_the_urdf(scene: SurgeryScene) -> None:
    scene.reset(seed=0)
    c = scene.client
    rng = np.random.default_rng(3)
    for arm in scene.arms.values():
        for _ in range(5):
            goal = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04), rng.uniform(0.03, 0.08)])
            q = arm.kin.ik(goal, float(rng.uniform(-3, 3)), 0.0)
            for j, v in enumerate(q):
                c.resetJointState(arm.body, j, float(v))
            st = c.getLinkState(arm.body, 5, computeForwardKinematics=True)
            R = np.array(c.getMatrixFromQuaternion(st[5])).reshape(3, 3)
            tcp = np.asarray(st[4]) - R[:, 2] * arm.kin.tcp
            assert np.linalg.norm(tcp - goal) < 1e-6                        # numpy IK == the URDF's FK
            shaft = c.getLinkState(arm.body, 2, computeForwardKinematics=True)
            axis = np.array(c.getMatrixFromQuaternion(shaft[5])).reshape(3, 3)[:, 2]
            to_rcm = arm.kin.rcm - np.asarray(shaft[4])
            assert np.linalg.norm(to_rcm - axis * float(to_rcm @ axis)) < 1e-6   # the shaft runs through the RCM
            assert abs(R[2, 2] - 1.0) < 1e-9                               # the instrument points straight down


def test_reset_randomises_objects_within_the_stated_ranges(scene: SurgeryScene) -> None:
    cfg = scene.cfg["objects"]
    seen = []
    for seed in range(5):
        obs = scene.reset(seed=seed)
        for obj in ("needle", "shunt", "vessel"):
            pos = np.asarray(obs["objects"][obj]["pos"]) / MM
            off = pos[:2] - np.asarray(cfg[obj]["nominal"], dtype=float)
            assert np.all(np.abs(off) <= float(cfg[obj]["range"]["xy"]) + 1.0), (seed, obj, off)
        seen.append(tuple(np.round(obs["objects"]["needle"]["pos"], 5)))
    assert len(set(seen)) == 5


def test_locate_records_the_pose_and_is_needed_before_grasp(scene: SurgeryScene) -> None:
    scene.reset(seed=1)
    refused = run(scene, "grasp", arm="psm1", object="needle")
    assert refused.failure is FailureKind.PRECONDITION and "located" in refused.message
    result = ok(scene, "locate", object="needle")
    pos, _ = scene.object_frame("needle")
    assert np.allclose(np.asarray(result.outcome["pos_mm"]) * MM, pos, atol=1e-6)
    assert result.outcome["pixels"] > 3 and scene.world_state().facts["located[needle]"] is True


def test_locate_fails_when_the_camera_cannot_see_the_object(scene: SurgeryScene) -> None:
    scene.reset(seed=1)
    scene._place("shunt", np.array([1.5, 1.5]), 0.0, 0.01)      # far outside the endoscope's view
    result = run(scene, "locate", object="shunt")
    assert result.failure is FailureKind.LOST
    assert scene.world_state().facts["located[shunt]"] is False


def test_move_to_brings_the_tool_tip_to_the_target_with_its_offset(scene: SurgeryScene) -> None:
    scene.reset(seed=2)
    ok(scene, "move_to", arm="psm2", target="handover_point", offset_mm=[10, 15, 20])
    goal = (np.asarray(scene.cfg["places"]["handover_point"]) + [10, 15, 20]) * MM
    assert np.linalg.norm(scene.arms["psm2"].tcp - goal) < 1e-3
    ok(scene, "locate", object="needle")
    ok(scene, "move_to", arm="psm1", target="needle")
    point, _ = scene.grasp_target("needle")
    hover = point + np.array([0.0, 0.0, float(scene.cfg["motion"]["hover"]) * MM])
    assert np.linalg.norm(scene.arms["psm1"].tcp - hover) < 1e-3


def test_grasp_is_physical_both_jaws_press_and_nothing_teleports(scene: SurgeryScene) -> None:
    scene.reset(seed=3)
    ok(scene, "locate", object="needle")
    before, _ = scene.object_frame("needle")
    assert scene.client.getNumConstraints() == 0
    result = ok(scene, "grasp", arm="psm1", object="needle")
    left, right = result.outcome["jaw_forces_n"]
    assert left > 0.05 and right > 0.05                      # the engine's contact forces on both jaws
    after, _ = scene.object_frame("needle")
    assert np.linalg.norm(after - before) < 2e-3            # taken where it lay, not pulled to the jaws
    assert scene.world_state().facts["holding[psm1]"] == "needle"
    assert scene.client.getNumConstraints() == 1


def test_jaws_closing_on_nothing_do_not_grasp(scene: SurgeryScene, monkeypatch: pytest.MonkeyPatch) -> None:
    scene.reset(seed=3)
    ok(scene, "locate", object="needle")
    real = scene.grasp_target

    def beside(obj: str) -> tuple[np.ndarray, float]:
        point, psi = real(obj)
        return point + np.array([0.0, 0.0, 0.006]), psi     # 6 mm above the wire: the jaws close on air

    monkeypatch.setattr(scene, "grasp_target", beside)
    result = run(scene, "grasp", arm="psm1", object="needle")
    assert result.failure is FailureKind.LOST
    assert scene.arms["psm1"].held is None and scene.client.getNumConstraints() == 0


def test_the_grip_lapses_when_a_jaw_opens_and_the_needle_falls(scene: SurgeryScene) -> None:
    holding(scene, "psm1", "needle", seed=4)
    ok(scene, "lift", arm="psm1", height_mm=25)
    scene.arms["psm1"].jaw_cmd = float(scene.cfg["arms"]["jaw_open"]) * MM   # open without a release step
    for _ in range(90):
        scene.advance()
    assert scene.arms["psm1"].held is None and scene.client.getNumConstraints() == 0
    pos, _ = scene.object_frame("needle")
    assert abs(float(pos[2] - scene.rest["needle"][2])) < 1.5e-3            # back down on the pad
    assert not check_needle_lift(scene, "psm1", 25).success


def test_lift_raises_the_held_needle_and_the_checker_agrees(scene: SurgeryScene) -> None:
    holding(scene, "psm2", "needle", seed=5)
    result = ok(scene, "lift", arm="psm2", height_mm=30)
    pos, _ = scene.object_frame("needle")
    rise = float(pos[2] - scene.rest["needle"][2]) / MM
    assert 29.0 <= rise <= 31.0 and abs(result.outcome["rise_mm"] - 30.0) < 1.0
    assert check_needle_lift(scene, "psm2", 30).success
    assert not check_needle_lift(scene, "psm2", 40).success                 # the checker can say no
    assert not check_needle_lift(scene, "psm1", 30).success


def test_release_lets_go_and_home_returns_the_arms(scene: SurgeryScene) -> None:
    holding(scene, "psm1", "needle", seed=6)
    ok(scene, "lift", arm="psm1", height_mm=15)
    assert run(scene, "home", arm="psm1").failure is FailureKind.PRECONDITION   # never home holding something
    ok(scene, "release", arm="psm1")
    for _ in range(60):
        scene.advance()
    assert scene.world_state().facts["holding[psm1]"] == "none"
    assert float(scene.object_frame("needle")[0][2] - scene.rest["needle"][2]) < 1.5e-3   # it fell to the pad
    ok(scene, "home", arm="all")
    for arm in scene.arms.values():
        assert np.linalg.norm(arm.tcp - arm.home) < 1e-3


def test_handover_passes_the_needle_without_dropping_it(scene: SurgeryScene) -> None:
    holding(scene, "psm2", "needle", seed=7)
    assert not check_handover(scene, "psm2", "psm1").success
    result = ok(scene, "handover", from_arm="psm2", to_arm="psm1", object="needle")
    assert result.outcome["holders"] == ["psm1"]
    verdict = check_handover(scene, "psm2", "psm1")
    assert verdict.success, verdict.reason
    assert verdict.metrics["dropped_steps"] == 0
    facts = scene.world_state().facts
    assert facts["holding[psm1]"] == "needle" and facts["holding[psm2]"] == "none"


@pytest.mark.parametrize("seed,giver,taker", [(4, "psm1", "psm2"), (5, "psm2", "psm1")])
def test_handover_keeps_the_grip_through_the_giver_s_turn(scene: SurgeryScene, seed: int, giver: str,
                                                         taker: str) -> None:
    # seeds whose needle once slid out of the giver's jaws as it set off and turned toward the receiver
    holding(scene, giver, "needle", seed=seed)
    ok(scene, "handover", from_arm=giver, to_arm=taker, object="needle")
    verdict = check_handover(scene, giver, taker)
    assert verdict.success, verdict.reason
    assert [e["why"] for e in scene.events if "release" in e] == ["handed over"]   # no lapse on the way


def test_the_needle_is_taken_on_a_capsule_s_straight_side(scene: SurgeryScene) -> None:
    scene.reset(seed=2)
    point, _ = scene.grasp_target("needle")
    pos, R = scene.object_frame("needle")
    local = R.T @ (point - pos)
    com = np.asarray(scene.client.getDynamicsInfo(scene.bodies["needle"], -1)[3])
    centres = [np.asarray(d[5]) + com for d in scene.client.getCollisionShapeData(scene.bodies["needle"], -1)]
    assert len(centres) == int(scene.cfg["objects"]["needle"]["segments"])
    assert min(float(np.linalg.norm(local - c)) for c in centres) < 0.05 * MM   # the middle of a capsule's axis


def test_a_long_retraction_reaches_its_distance_though_the_servos_sag(scene: SurgeryScene) -> None:
    holding(scene, "psm2", "vessel", seed=4)
    arm = scene.arms["psm2"]
    start = arm.tcp.copy()
    ok(scene, "retract", arm="psm2", direction="backward", distance_mm=18)
    moved = -float(scene.rim_displacement()[0]) / MM
    assert 17.0 <= moved <= 19.0
    goal = start + np.array([-0.018, 0.0, 0.0])
    assert np.linalg.norm(arm.tcp - goal) < 0.8 * MM                          # measured, not the set-point
    lead = float(np.linalg.norm(arm.sp_pos - goal)) / MM
    assert 0.0 < lead <= float(scene.cfg["grasp"]["sag_max"])                 # the set-point leads by the sag
    assert check_dilation(scene, "psm2", 18, "backward").success


def test_moves_speed_up_and_slow_down_at_the_asked_cruise_speed() -> None:
    from medrobot_llm.backends.sim.surgery.arm import trapezoid as _trapezoid

    total, ramp, n = 1.5, 0.2, 1500
    f = [_trapezoid(total * i / n, total, ramp) for i in range(n + 1)]
    v = np.diff(f) * n / total
    assert f[0] == 0.0 and f[-1] == pytest.approx(1.0)
    assert np.all(v >= 0.0) and float(v.max()) == pytest.approx(1.0 / (total - ramp), rel=1e-3)
    assert float(v[0]) < 0.01 and float(v[-1]) < 0.01                         # no jump at either end


@pytest.mark.parametrize("direction,axis", [("backward", np.array([-1.0, 0, 0])), ("up", np.array([0, 0, 1.0]))])
def test_retract_displaces_the_rim_against_the_tissue_force(scene: SurgeryScene, direction: str,
                                                            axis: np.ndarray) -> None:
    holding(scene, "psm2", "vessel", seed=8)
    result = ok(scene, "retract", arm="psm2", direction=direction, distance_mm=12)
    moved = float(scene.rim_displacement() @ axis) / MM
    assert 11.0 <= moved <= 13.0
    k = float(scene.cfg["objects"]["vessel"]["rim_stiffness_n_per_mm"])
    assert abs(scene.rim_force_n - k * moved) < 0.1 * k * moved             # the elastic force of the tissue
    assert result.outcome["max_force_n"] < float(scene.limits["force_cap"])
    assert check_dilation(scene, "psm2", 12, direction).success
    assert not check_dilation(scene, "psm2", 20, direction).success


def test_insert_puts_the_shunt_into_the_lumen_to_the_depth(scene: SurgeryScene) -> None:
    holding(scene, "psm1", "shunt", seed=9)
    assert not check_shunt_insertion(scene, 5).success
    ok(scene, "locate", object="vessel")
    ok(scene, "insert", arm="psm1", object="shunt", target="vessel", depth_mm=10)
    depth, off_axis = scene.shunt_depth()
    assert 9.0 <= depth / MM <= 11.0 and off_axis / MM < 1.0
    assert check_shunt_insertion(scene, 10).success
    assert not check_shunt_insertion(scene, 14).success


def _halts(scene: SurgeryScene, result: StepResult, kind: FailureKind) -> None:
    assert result.failure is kind, result.message
    assert scene.halted
    assert run(scene, "locate", object="needle").failure is FailureKind.HALTED
    assert held_still(scene) < 0.3


def test_pressing_into_the_pad_trips_the_force_limit(scene: SurgeryScene, monkeypatch: pytest.MonkeyPatch) -> None:
    blind_planner(monkeypatch, force_cap=100.0, workspace={"lo": [-90, -80, -100], "hi": [90, 80, 120]})
    scene.reset(seed=0)
    ok(scene, "locate", object="needle")
    result = run(scene, "move_to", arm="psm1", target="needle", offset_mm=[0, 0, -25])
    _halts(scene, result, FailureKind.FORCE_LIMIT)
    cap = float(scene.limits["force_cap"])
    assert cap < scene.max_force_n < cap + 2.0                  # tripped in the control step it crossed the cap
    scene.clear_halt()


def test_pulling_the_rim_past_the_force_cap_halts(monkeypatch: pytest.MonkeyPatch) -> None:
    blind_planner(monkeypatch)
    s = SurgeryScene(limits={"force_cap": 1.0})
    try:
        holding(s, "psm2", "vessel", seed=1)
        result = run(s, "retract", arm="psm2", direction="backward", distance_mm=20)
        _halts(s, result, FailureKind.FORCE_LIMIT)
        assert 9.0 < float(-s.rim_displacement()[0]) / MM < 11.5     # stopped at 1 N of 0.1 N/mm
        assert s.arms["psm2"].held == "vessel"                         # a halt does not open the jaws
    finally:
        s.close()


def test_leaving_the_workspace_halts(monkeypatch: pytest.MonkeyPatch) -> None:
    blind_planner(monkeypatch)
    s = SurgeryScene(limits={"workspace": {"lo": [-90, -80, 18], "hi": [90, 80, 70]}})
    try:
        s.reset(seed=0)
        result = run(s, "move_to", arm="psm2", target="handover_point", offset_mm=[0, 0, 40])
        _halts(s, result, FailureKind.WORKSPACE_LIMIT)
        assert float(s.arms["psm2"].tcp[2]) < 0.0712
    finally:
        s.close()


def test_a_joint_limit_halts_before_the_joint_gets_there(monkeypatch: pytest.MonkeyPatch) -> None:
    blind_planner(monkeypatch)
    s = SurgeryScene(limits={"wrist_deg": 40})
    try:
        s.reset(seed=0)
        arm = s.arms["psm1"]
        goal = (np.asarray(s.cfg["places"]["handover_point"]) + [0, 50, -20]) * MM
        assert np.max(np.abs(arm.kin.ik(goal, 0.0, 0.0)[4:6])) > math.radians(40)   # the goal needs more wrist
        result = run(s, "move_to", arm="psm1", target="handover_point", offset_mm=[0, 50, -20])
        _halts(s, result, FailureKind.JOINT_LIMIT)
        assert np.max(np.abs(arm.q_meas[4:6])) <= math.radians(40)
    finally:
        s.close()


def test_moving_too_fast_halts(monkeypatch: pytest.MonkeyPatch) -> None:
    blind_planner(monkeypatch)
    s = SurgeryScene(limits={"free_speed": 25})
    try:
        s.reset(seed=0)
        result = run(s, "move_to", arm="psm1", target="handover_point")
        _halts(s, result, FailureKind.SPEED_LIMIT)
    finally:
        s.close()


def test_the_two_instruments_colliding_halts(scene: SurgeryScene, monkeypatch: pytest.MonkeyPatch) -> None:
    blind_planner(monkeypatch)
    scene.reset(seed=0)
    ok(scene, "move_to", arm="psm1", target="handover_point")
    result = run(scene, "move_to", arm="psm2", target="handover_point")
    _halts(scene, result, FailureKind.COLLISION)
    a1, a2 = scene.arms["psm1"], scene.arms["psm2"]
    gap = min((p[8] for p in scene.client.getClosestPoints(a1.body, a2.body, 0.05)), default=1.0)
    assert gap > 0.0                                            # stopped before they touched
    scene.clear_halt()


def test_cancel_mid_move_stops_within_one_control_step(scene: SurgeryScene) -> None:
    scene.reset(seed=0)
    token = CancelToken()
    at_cancel: list[np.ndarray] = []
    arm = scene.arms["psm2"]

    def cancel_halfway(fb: Feedback) -> None:
        if not at_cancel and float(np.linalg.norm(arm.sp_pos - arm.home)) > 0.015:
            at_cancel.append(arm.sp_pos.copy())
            token.cancel("operator")

    result = scene.execute(Step(skill="move_to", args={"arm": "psm2", "target": "handover_point"}), token,
                           cancel_halfway)
    assert result.failure is FailureKind.CANCELLED
    step = float(scene.cfg["motion"]["free_speed"]) * MM * scene.control_period_s
    assert float(np.linalg.norm(arm.sp_pos - at_cancel[0])) <= step + 1e-9
    assert held_still(scene) < 0.3 and not scene.halted


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_the_four_sufia_tasks_from_text_succeed_by_their_checkers(scene: SurgeryScene, seed: int) -> None:
    planner = RulePlanner()
    texts = ["pick up the needle with the right arm and lift it 3 cm",
             "pick up the needle with the left arm and hand it over to the right arm",
             "grasp the vessel with the left arm and dilate it 8 mm",
             "pick up the shunt with the right arm and insert it into the vessel 6 mm"]
    failures = []
    for text in texts:
        scene.reset(seed=seed)
        plan = planner.plan("surgery", text)
        assert plan.status.value == "ok", (text, plan.reason)
        for step in plan.steps:
            result = scene.execute(step, CancelToken())
            if not result.success:
                failures.append(f"{text}: {step.skill}: {result.message}")
                break
        else:
            verdict = check_task(scene, list(plan.steps))
            if not verdict.success:
                failures.append(f"{text}: {verdict.reason}")
        assert scene.max_force_n <= float(scene.limits["force_cap"])
    assert not failures, failures


def test_same_seed_same_rollout() -> None:
    def rollout(seed: int) -> str:
        s = SurgeryScene()
        try:
            s.reset(seed=seed)
            for skill, args in (("locate", {"object": "needle"}), ("grasp", {"arm": "psm1", "object": "needle"}),
                                ("lift", {"arm": "psm1", "height_mm": 10})):
                ok(s, skill, **args)
            return json.dumps(s.observation(), sort_keys=True)
        finally:
            s.close()

    a, b, c = rollout(11), rollout(11), rollout(12)
    assert a == b
    assert a != c
