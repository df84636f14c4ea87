"""UltrasoundScene-v0: each skill's physical effect, the limits, cancel, the checker and determinism."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pybullet")

from medrobot_llm import CancelToken, FailureKind, Feedback, Step, StepResult
from medrobot_llm.backends.sim import make
from medrobot_llm.backends.sim.ultrasound import UltrasoundScene
from medrobot_llm.backends.sim.ultrasound import skills as us_skills
from medrobot_llm.backends.sim.ultrasound.checks import check_capture, check_scan, check_sweep_force

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UltrasoundScene]:
    s = make("ultrasound", record_dir=tmp_path_factory.mktemp("us"))
    assert isinstance(s, UltrasoundScene)
    yield s
    s.close()


def run(scene: UltrasoundScene, skill: str, **args: Any) -> StepResult:
    return scene.execute(Step(skill=skill, args=args), CancelToken())


def ok(scene: UltrasoundScene, skill: str, **args: Any) -> StepResult:
    result = run(scene, skill, **args)
    assert result.success, f"{skill}: {result.failure.value} {result.message}"
    return result


def in_contact(scene: UltrasoundScene, organ: str = "kidney", side: str = "left", seed: int = 0,
               force_n: float = 8.0) -> None:
    scene.reset(seed=seed)
    ok(scene, "move_to_window", organ=organ, side=side)
    ok(scene, "make_contact", force_n=force_n)


def patient_local(scene: UltrasoundScene, v: np.ndarray) -> np.ndarray:
    out: np.ndarray = scene.patient.dir_to_local(v)
    return out


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b))))))


def test_registry_and_known_world_state(scene: UltrasoundScene) -> None:
    obs = scene.reset(seed=0)
    assert scene.scene_id == "UltrasoundScene-v0" and scene.domain == "ultrasound"
    state = scene.world_state()
    assert state.known and state.facts == {"probe": "away"}
    assert obs["probe"] == "away" and obs["force_n"] == 0.0
    json.dumps(obs)


def test_move_to_window_hovers_20_mm_over_the_window_aligned_with_it(scene: UltrasoundScene) -> None:
    scene.reset(seed=1)
    result = ok(scene, "move_to_window", organ="thyroid", side="left")
    window = scene.windows["thyroid/left"]
    assert scene.world_state().facts["probe"] == "hovering"
    assert abs(scene.clearance_mm() - 20.0) < 1.5                     # type: ignore[operator]
    assert float(np.linalg.norm(scene.tip - (window.skin - window.R[:, 2] * 0.02))) < 0.002
    assert angle_deg(scene.tip_R[:, 2], window.R[:, 2]) < 1.0
    assert result.outcome["imaging"]["depth_mm"] == window.depth_mm     # the exam preset came with it
    assert scene.force_n == 0.0


def test_make_contact_reaches_the_force_from_the_physics_contact(scene: UltrasoundScene) -> None:
    in_contact(scene, force_n=12.0)
    assert scene.world_state().facts["probe"] == "contact"
    assert abs(scene.force_n - 12.0) < 0.5
    assert abs(scene.penetration_mm - 12.0 / scene.stiffness) < 0.5    # force = skin stiffness x indentation


def test_set_force_changes_the_regulated_force(scene: UltrasoundScene) -> None:
    in_contact(scene, force_n=6.0)
    ok(scene, "set_force", force_n=15.0)
    assert abs(scene.force_n - 15.0) < 0.5
    ok(scene, "set_force", force_n=3.0)
    assert abs(scene.force_n - 3.0) < 0.5


def test_sweep_moves_along_the_patient_and_keeps_the_force(scene: UltrasoundScene) -> None:
    in_contact(scene, organ="liver", side="right")
    start = scene.tip.copy()
    result = ok(scene, "sweep", direction="caudal", distance_mm=30, speed_mm_s=10)
    moved = patient_local(scene, scene.tip - start) * 1000.0
    assert -31.5 < moved[0] < -28.5 and abs(moved[1]) < 2.0
    assert abs(result.outcome["distance_mm"] - 30.0) < 1.5
    assert check_sweep_force(scene).success
    start = scene.tip.copy()
    ok(scene, "sweep", direction="lateral", distance_mm=10, speed_mm_s=5)
    assert patient_local(scene, scene.tip - start)[1] * 1000.0 > 8.5     # the liver is on the right: +y


def test_fan_swings_the_image_plane_both_ways_and_comes_back(scene: UltrasoundScene) -> None:
    in_contact(scene, organ="liver", side="right")
    axis0 = scene.tip_R[:, 2].copy()
    array = scene.tip_R[:, 0].copy()
    signed: list[float] = []

    def watch(_: Feedback) -> None:
        signed.append(math.degrees(math.asin(float(np.cross(axis0, scene.tip_R[:, 2]) @ array))))

    result = scene.execute(Step(skill="fan", args={"angle_deg": 15}), CancelToken(), watch)
    assert result.success, result.message
    assert max(signed) > 13.5 and min(signed) < -13.5
    assert angle_deg(scene.tip_R[:, 2], axis0) < 1.0
    assert scene.in_contact and abs(result.outcome["force_mean_n"] - 8.0) < 1.5


def test_rotate_probe_turns_the_array_about_the_beam(scene: UltrasoundScene) -> None:
    in_contact(scene, organ="liver", side="right")
    array0 = scene.tip_R[:, 0].copy()
    axis0 = scene.tip_R[:, 2].copy()
    ok(scene, "rotate_probe", angle_deg=90)
    assert abs(angle_deg(scene.tip_R[:, 0], array0) - 90.0) < 2.0
    assert angle_deg(scene.tip_R[:, 2], axis0) < 1.5
    assert scene.in_contact


@pytest.mark.parametrize("axis", ["roll", "pitch"])
def test_tilt_probe_leans_the_beam_about_the_chosen_axis(scene: UltrasoundScene, axis: str) -> None:
    in_contact(scene, organ="gallbladder", side="right")
    R0 = scene.tip_R.copy()
    ok(scene, "tilt_probe", axis=axis, angle_deg=-20)
    assert abs(angle_deg(scene.tip_R[:, 2], R0[:, 2]) - 20.0) < 1.5
    pivot = R0[:, 0] if axis == "roll" else R0[:, 1]
    assert angle_deg(scene.tip_R @ np.linalg.inv(R0) @ pivot, pivot) < 1.5   # turned about that axis
    assert scene.in_contact


def test_tilt_beyond_the_skin_normal_limit_is_refused_without_moving(scene: UltrasoundScene) -> None:
    in_contact(scene, organ="liver", side="right")
    ok(scene, "tilt_probe", axis="roll", angle_deg=25)
    before = scene.tip_R.copy()
    result = run(scene, "tilt_probe", axis="roll", angle_deg=25)
    assert result.failure is FailureKind.WORKSPACE_LIMIT and "45" in result.message
    assert not scene.halted                                              # refused up front, nothing moved
    assert angle_deg(scene.tip_R[:, 2], before[:, 2]) < 0.5


def test_capture_shows_the_kidney_and_saves_a_png(scene: UltrasoundScene) -> None:
    in_contact(scene, organ="kidney", side="right")
    result = ok(scene, "capture", label="right kidney, transverse")
    out = result.outcome
    assert set(out) >= {"path", "organ_shares", "depth_mm", "gain_pct", "mode", "force_n", "window"}
    assert out["organ_shares"].get("kidney_right", 0.0) > 0.05
    assert "kidney_left" not in out["organ_shares"]
    from PIL import Image

    img = np.asarray(Image.open(out["path"]))
    assert img.shape == (scene.image_px, scene.image_px)
    assert Path(out["path"]).parent == Path(scene.record_dir)        # type: ignore[arg-type]
    assert check_capture(scene, "kidney", "right").success
    assert not check_capture(scene, "spleen", "left").success


def test_set_imaging_depth_gain_and_colour_doppler(scene: UltrasoundScene) -> None:
    from PIL import Image

    in_contact(scene, organ="carotid", side="right")
    ok(scene, "set_imaging", depth_mm=30, gain_pct=30)
    dark = ok(scene, "capture", label="dark").outcome
    ok(scene, "set_imaging", gain_pct=80)
    bright = ok(scene, "capture", label="bright").outcome
    assert dark["depth_mm"] == 30 and bright["gain_pct"] == 80
    assert np.asarray(Image.open(bright["path"])).mean() > np.asarray(Image.open(dark["path"])).mean() + 20
    ok(scene, "set_imaging", mode="color_doppler")
    flow = np.asarray(Image.open(ok(scene, "capture", label="flow").outcome["path"])).astype(int)
    assert flow.ndim == 3
    coloured = np.abs(flow[:, :, 0] - flow[:, :, 2]) > 60
    assert coloured.mean() > 0.03                                        # the carotid flow shows in colour
    ok(scene, "set_imaging", depth_mm=120)
    deep = ok(scene, "capture", label="deep").outcome
    assert deep["organ_shares"]["carotid_right"] < bright["organ_shares"]["carotid_right"]


def test_capture_without_contact_is_a_precondition_failure(scene: UltrasoundScene) -> None:
    scene.reset(seed=0)
    ok(scene, "move_to_window", organ="aorta", side="midline")
    result = run(scene, "capture", label="air")
    assert result.failure is FailureKind.PRECONDITION
    assert run(scene, "sweep").failure is FailureKind.PRECONDITION
    assert run(scene, "make_contact").success
    assert run(scene, "home").failure is FailureKind.PRECONDITION    # never home while touching


def test_lift_probe_then_home(scene: UltrasoundScene) -> None:
    in_contact(scene, organ="bladder", side="midline")
    ok(scene, "lift_probe", height_mm=30)
    assert not scene.in_contact and scene.world_state().facts["probe"] == "hovering"
    assert 27.0 < scene.clearance_mm() < 33.0                          # type: ignore[operator]
    ok(scene, "home")
    assert scene.world_state().facts["probe"] == "away"
    assert np.allclose(scene.q_meas, scene._home_q, atol=0.02)


def _held_still(scene: UltrasoundScene) -> float:
    before = scene.tip.copy()
    for _ in range(30):
        scene.advance()
    return float(np.linalg.norm(scene.tip - before)) * 1000.0


def test_force_cap_halts_and_holds(tmp_path: Path) -> None:
    s = UltrasoundScene(record_dir=tmp_path, force_cap_n=10.0)
    try:
        s.reset(seed=2)
        ok(s, "move_to_window", organ="spleen", side="left")
        result = run(s, "make_contact", force_n=15)
        assert result.failure is FailureKind.FORCE_LIMIT and "cap" in result.message
        assert s.halted and 10.0 < s.force_n < 13.5                       # tripped at 10 + 1.5 N, then held
        assert run(s, "lift_probe").failure is FailureKind.HALTED
        assert _held_still(s) < 0.3
        s.clear_halt()
        ok(s, "lift_probe")
        assert not s.in_contact
    finally:
        s.close()


def test_skin_penetration_limit_halts(tmp_path: Path) -> None:
    s = UltrasoundScene(record_dir=tmp_path, skin_stiffness_n_per_mm=2.0)
    try:
        s.reset(seed=2)
        ok(s, "move_to_window", organ="liver", side="right")
        result = run(s, "make_contact", force_n=14)
        assert result.failure is FailureKind.WORKSPACE_LIMIT and "indentation" in result.message
        assert s.halted and 5.0 < s.penetration_mm < 6.0
        assert _held_still(s) < 0.3
    finally:
        s.close()


def test_sweep_off_the_skin_halts_at_the_edge(scene: UltrasoundScene, monkeypatch: pytest.MonkeyPatch) -> None:
    # the plan keeps a sweep on the skin (test_sim_caps); blinded here, the monitor must still halt it
    monkeypatch.setattr(us_skills, "off_skin", lambda *a: None)
    in_contact(scene, organ="carotid", side="left")
    result = run(scene, "sweep", direction="caudal", distance_mm=100, speed_mm_s=20)
    assert result.failure is FailureKind.WORKSPACE_LIMIT and "edge of the skin" in result.message
    assert scene.halted
    local = scene.patient.to_local(scene.tip)
    assert local[0] > 0.31                                               # stopped on the neck, short of the chest
    assert _held_still(scene) < 0.3
    scene.clear_halt()


def test_cancel_mid_sweep_stops_within_one_control_step(scene: UltrasoundScene) -> None:
    in_contact(scene, organ="liver", side="right")
    token = CancelToken()
    at_cancel: list[np.ndarray] = []

    def cancel_halfway(fb: Feedback) -> None:
        if fb.progress >= 0.4 and not at_cancel:
            at_cancel.append(scene.ref_pos.copy())
            token.cancel("operator")

    result = scene.execute(Step(skill="sweep", args={"distance_mm": 40, "speed_mm_s": 20}), token, cancel_halfway)
    assert result.failure is FailureKind.CANCELLED
    step_mm = 20.0 * scene.control_period_s
    assert float(np.linalg.norm(scene.ref_pos - at_cancel[0])) * 1000.0 <= step_mm + 1e-6
    tip = scene.tip.copy()
    assert _held_still(scene) < 0.3 and float(np.linalg.norm(scene.tip - tip)) < 1e-3
    assert not scene.halted


def test_every_organ_and_side_scans_by_the_checker(scene: UltrasoundScene) -> None:
    failures = []
    for seed in (0, 1):
        for key in scene.cfg["windows"]:
            organ, side = key.split("/")
            scene.reset(seed=seed)
            for skill, args in (("move_to_window", {"organ": organ, "side": side}), ("make_contact", {}),
                                ("sweep", {}), ("capture", {"label": key})):
                result = run(scene, skill, **args)
                if not result.success:
                    failures.append(f"{seed} {key} {skill}: {result.message}")
                    break
            else:
                verdict = check_scan(scene, organ, side)
                if not verdict.success:
                    failures.append(f"{seed} {key}: {verdict.reason}")
    assert not failures, failures


def test_same_seed_same_rollout_and_image_bytes(tmp_path: Path) -> None:
    def rollout(seed: int, where: Path) -> tuple[str, str]:
        s = UltrasoundScene(record_dir=where)
        try:
            s.reset(seed=seed)
            for skill, args in (("move_to_window", {"organ": "gallbladder", "side": "right"}),
                                ("make_contact", {"force_n": 6}), ("sweep", {"distance_mm": 10}),
                                ("capture", {"label": "gb"})):
                ok(s, skill, **args)
            obs = json.dumps(s.observation(), sort_keys=True)
            return obs, hashlib.sha256(Path(s.captures[-1]["path"]).read_bytes()).hexdigest()
        finally:
            s.close()

    a = rollout(5, tmp_path / "a")
    b = rollout(5, tmp_path / "b")
    c = rollout(6, tmp_path / "c")
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]
