"""XrayScene-v0: each skill's physical effect, the limits, cancel, the checker and determinism."""

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

from PIL import Image

from medrobot_llm import CancelToken, FailureKind, Feedback, Step, StepResult, load_command_set
from medrobot_llm.backends.sim import make
from medrobot_llm.backends.sim.xray import AXES, XrayScene
from medrobot_llm.backends.sim.xray import imaging as xray_imaging
from medrobot_llm.backends.sim.xray import skills as xray_skills
from medrobot_llm.backends.sim.xray.checks import check_exposures, check_shot, check_view

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XrayScene]:
    s = make("xray", record_dir=tmp_path_factory.mktemp("xray"))
    assert isinstance(s, XrayScene)
    yield s
    s.close()


def run(scene: XrayScene, skill: str, **args: Any) -> StepResult:
    return scene.execute(Step(skill=skill, args=args), CancelToken())


def ok(scene: XrayScene, skill: str, **args: Any) -> StepResult:
    result = run(scene, skill, **args)
    assert result.success, f"{skill}: {result.failure.value} {result.message}"
    return result


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path))


def valid_tasks() -> list[tuple[str, str | None, str]]:
    """Every anatomy (each side) x view the command set allows."""
    cs = load_command_set("xray")
    out = []
    for anatomy, value in cs.entities["anatomy"].values.items():
        for side in value.attr("sides") or (None,):
            for view, v in cs.entities["view"].values.items():
                if v.only_for and anatomy not in v.only_for.get("anatomy", ()):
                    continue
                out.append((anatomy, side, view))
    return out


def test_registry_parked_and_known_world_state(scene: XrayScene) -> None:
    obs = scene.reset(seed=0)
    assert scene.scene_id == "XrayScene-v0" and scene.domain == "xray"
    assert scene.world_state().known and scene.world_state().facts == {"view_set": False, "image": False}
    assert obs["axes"]["cranial_caudal"] == scene.cfg["gantry"]["park"]["cranial_caudal"]
    assert obs["exposures"] == 0 and obs["dap_mgy_cm2"] == 0.0
    json.dumps(obs)


def test_move_to_view_puts_the_anatomy_on_the_central_ray(scene: XrayScene) -> None:
    scene.reset(seed=1)
    result = ok(scene, "move_to_view", anatomy="pelvis", view="ap")
    assert scene.world_state().facts["view_set"] is True
    geo = scene.geometry()
    center = scene.patient.to_world(scene.anatomy_center["pelvis"])
    assert float(np.linalg.norm(geo.iso - center)) < 0.02
    assert geo.beam @ np.array([0.0, 0.0, 1.0]) > 0.999                # AP: straight up through the table
    assert result.outcome["view"]["key"] == "pelvis"
    ok(scene, "move_to_view", anatomy="pelvis", view="inlet")
    beam = scene.geometry().beam
    assert abs(math.degrees(math.atan2(beam[0], beam[2])) - 25.0) < 0.5   # tilted toward the head
    ok(scene, "move_to_view", anatomy="knee", view="lateral", side="right")
    beam = scene.geometry().beam
    assert beam[1] > 0.99                                                # detector on the right knee's side


@pytest.mark.parametrize("axis,amount,expect", [
    ("cranial_caudal", 30.0, (0, +1)), ("left_right", 30.0, (1, -1)), ("up_down", 20.0, (2, +1)),
])
def test_adjust_moves_the_isocentre_by_the_signs_of_the_command_set(scene: XrayScene, axis: str, amount: float,
                                                                     expect: tuple[int, int]) -> None:
    scene.reset(seed=2)
    ok(scene, "move_to_view", anatomy="lumbar_spine", level="L3")
    before = scene.geometry().iso.copy()
    ok(scene, "adjust", axis=axis, amount=amount)
    delta = (scene.geometry().iso - before) * 1000.0
    index, sign = expect
    assert abs(delta[index] - sign * amount) < 0.5                     # head +x, patient's left -y, up +z
    assert float(np.linalg.norm(np.delete(delta, index))) < 0.5


def test_adjust_tilt_and_orbit_turn_the_beam(scene: XrayScene) -> None:
    scene.reset(seed=2)
    ok(scene, "move_to_view", anatomy="sacrum")
    ok(scene, "adjust", axis="tilt", amount=10)
    beam = scene.geometry().beam
    assert abs(math.degrees(math.atan2(beam[0], beam[2])) - 10.0) < 0.5    # tilt back +: detector to the head
    ok(scene, "adjust", axis="tilt", amount=-10)
    ok(scene, "adjust", axis="orbit", amount=30)
    beam = scene.geometry().beam
    assert abs(math.degrees(math.atan2(-beam[1], beam[2])) - 30.0) < 0.5   # clockwise from the feet: to the left


def test_take_shot_of_the_pelvis_shows_bone_in_the_centre(scene: XrayScene) -> None:
    scene.reset(seed=3)
    ok(scene, "move_to_view", anatomy="pelvis")
    out = ok(scene, "take_shot").outcome
    img = pixels(out["path"])
    n = scene.image_px
    assert img.shape == (n, n)
    assert out["anatomy_shares"]["pelvis"] > 0.2 and out["dap_mgy_cm2"] > 0
    geo = scene.geometry()
    soft, _ = scene.cast(geo.source, np.array([geo.detector]))
    assert out["center_line_integral"] > 0.0
    centre = img[n // 2 - 8:n // 2 + 8, n // 2 - 8:n // 2 + 8].astype(float)
    assert centre.mean() > np.median(img[img > 0])                     # bone (sacrum) is brighter than the rest
    mask = scene.anatomy_mask("sacrum")
    assert mask[n // 2, n // 2]
    assert soft[0] == pytest.approx(out["center_line_integral"], rel=0.2)
    assert scene.world_state().facts["image"] is True
    assert scene.observation()["exposures"] == 1


def test_collimate_to_a_size_blanks_outside_the_field(scene: XrayScene) -> None:
    scene.reset(seed=3)
    ok(scene, "move_to_view", anatomy="chest")
    result = ok(scene, "collimate", width_mm=100, height_mm=60)
    assert result.outcome["field_mm"] == pytest.approx([100.0, 60.0])
    out = ok(scene, "take_shot").outcome
    img = pixels(out["path"])
    n = scene.image_px
    px_mm = scene.cfg["gantry"]["detector_size"] / n / scene.geometry().magnification
    half_w, half_h = 50.0 / px_mm, 30.0 / px_mm
    cols, rows = np.meshgrid(np.arange(n) + 0.5 - n / 2, np.arange(n) + 0.5 - n / 2)
    outside = (np.abs(cols) > half_w + 1) | (np.abs(rows) > half_h + 1)
    inside = (np.abs(cols) < half_w - 1) & (np.abs(rows) < half_h - 1)
    assert (img[outside] == 0).all() and (img[inside] > 0).all()
    full = scene.full_field()
    assert out["dap_mgy_cm2"] < 0.1 * (full[1] - full[0]) * (full[3] - full[2]) * 1e4


def test_collimate_to_an_anatomy_fits_the_field_around_it(scene: XrayScene) -> None:
    scene.reset(seed=4)
    ok(scene, "move_to_view", anatomy="knee", side="left", view="ap")
    field = ok(scene, "collimate", anatomy="knee", side="left").outcome["field_mm"]
    full = (scene.full_field()[1] - scene.full_field()[0]) * 1000.0
    assert field[0] < 0.5 * full and field[1] < 0.95 * full             # narrow across the leg, long along it
    ok(scene, "take_shot")
    verdict = check_view(scene, "knee", "ap", side="left")
    assert verdict.success, verdict.reason
    assert verdict.metrics["inside_field"] > 0.99


def test_highlight_outlines_the_anatomy_on_the_last_image(scene: XrayScene) -> None:
    scene.reset(seed=5)
    ok(scene, "move_to_view", anatomy="hip", side="right")
    ok(scene, "take_shot")
    out = ok(scene, "highlight", anatomy="hip", side="right").outcome
    rgb = pixels(out["path"])
    yellow = (rgb[:, :, 0] == 255) & (rgb[:, :, 1] == 210) & (rgb[:, :, 2] == 0)
    mask = scene.anatomy_mask("hip/right")
    assert yellow.any() and mask[yellow].all()
    assert out["pixels"] == int(mask.sum())
    missing = run(scene, "highlight", anatomy="skull")
    assert missing.failure is FailureKind.PRECONDITION and "not in the last image" in missing.message


def test_acquire_3d_spins_counts_the_dose_and_reconstructs_a_slice(scene: XrayScene) -> None:
    scene.reset(seed=6)
    ok(scene, "move_to_view", anatomy="lumbar_spine", level="L2")
    before = dict(scene.axes)
    out = ok(scene, "acquire_3d").outcome
    assert out["projections"] == scene.cfg["imaging"]["spin_projections"] and out["dap_mgy_cm2"] > 0
    assert scene.axes == pytest.approx(before)                          # back where it started
    slice_ = pixels(out["path"])
    assert slice_.shape == (scene.cfg["imaging"]["spin_pixels"],) * 2
    bone = scene.anatomy_mask("lumbar_spine/L2")
    assert bone.any() and slice_[bone].mean() > slice_[~bone].mean() + 40   # the vertebra is the bright thing
    assert ok(scene, "highlight", anatomy="lumbar_spine", level="L2").success
    assert check_exposures(scene, ["acquire_3d"]).success
    assert scene.observation()["projections"] == out["projections"]


def test_park_clears_the_view(scene: XrayScene) -> None:
    scene.reset(seed=7)
    ok(scene, "move_to_view", anatomy="skull", view="lateral")
    ok(scene, "park")
    assert scene.world_state().facts["view_set"] is False
    park = scene.cfg["gantry"]["park"]
    assert all(abs(scene.axes[k] - float(park[k])) < 1e-6 for k in AXES)
    assert run(scene, "take_shot").failure is FailureKind.PRECONDITION
    assert check_exposures(scene, []).success                           # nothing was exposed


def test_gantry_table_collision_halts(scene: XrayScene, monkeypatch: pytest.MonkeyPatch) -> None:
    # the plan keeps the gantry clear (test_sim_caps); blinded here, the monitor must still halt it
    monkeypatch.setattr(xray_skills, "path_problem", lambda *a: None)
    scene.reset(seed=0)
    ok(scene, "move_to_view", anatomy="pelvis")
    ok(scene, "adjust", axis="left_right", amount=150)
    result = run(scene, "adjust", axis="left_right", amount=140)
    assert result.failure is FailureKind.COLLISION and "table" in result.message
    assert scene.halted
    stopped = dict(scene.axes)
    for _ in range(20):
        scene.advance()
    assert scene.axes == stopped
    assert scene.clearance_mm >= 0.0                                     # stopped before it touched
    assert run(scene, "adjust", axis="left_right", amount=-100).failure is FailureKind.HALTED
    scene.clear_halt()
    ok(scene, "adjust", axis="left_right", amount=-200)


def test_axis_range_refuses_before_moving(scene: XrayScene) -> None:
    scene.reset(seed=0)
    ok(scene, "move_to_view", anatomy="pelvis", view="inlet")
    before = dict(scene.axes)
    result = run(scene, "adjust", axis="tilt", amount=10)
    assert result.failure is FailureKind.JOINT_LIMIT and "tilt" in result.message
    assert scene.axes == before and not scene.halted


def test_cancel_mid_move_stops_within_one_control_step(scene: XrayScene) -> None:
    scene.reset(seed=0)
    token = CancelToken()
    seen: list[dict[str, float]] = []

    def cancel(fb: Feedback) -> None:
        if len(seen) == 0 and scene.axes["cranial_caudal"] < 900:
            seen.append(dict(scene.axes))
            token.cancel("operator")

    result = scene.execute(Step(skill="move_to_view", args={"anatomy": "femur", "side": "left"}), token, cancel)
    assert result.failure is FailureKind.CANCELLED
    step = scene.axis_cfg["cranial_caudal"]["speed"] * scene.control_period_s
    assert abs(scene.axes["cranial_caudal"] - seen[0]["cranial_caudal"]) <= step + 1e-6
    held = dict(scene.axes)
    for _ in range(20):
        scene.advance()
    assert scene.axes == held and scene.world_state().facts["view_set"] is False


def test_exposure_checker_counts_only_steps_that_ran(scene: XrayScene) -> None:
    scene.reset(seed=1)
    ok(scene, "move_to_view", anatomy="thoracic_spine", view="lateral")
    ok(scene, "take_shot")
    assert check_exposures(scene, ["take_shot"]).success
    assert not check_exposures(scene, []).success
    assert not check_shot(scene, "thoracic_spine", "lateral", expected=[]).success
    assert not check_view(scene, "thoracic_spine", "ap").success           # 90 degrees off
    assert not check_view(scene, "skull", "lateral").success                # the ray is nowhere near


def test_every_valid_anatomy_and_view_succeeds(tmp_path: Path) -> None:
    s = XrayScene(record_dir=tmp_path, image_px=64)
    try:
        s.reset(seed=11)
        failures = []
        tasks = valid_tasks()
        assert len(tasks) == 52
        for anatomy, side, view in tasks:
            args: dict[str, Any] = {"anatomy": anatomy, "view": view}
            if side:
                args["side"] = side
            expected = [e["skill"] for e in s.exposures] + ["take_shot"]
            moved = run(s, "move_to_view", **args)
            shot = run(s, "take_shot") if moved.success else moved
            verdict = check_shot(s, anatomy, view, side, expected=expected)
            if not (moved.success and shot.success and verdict.success):
                failures.append(f"{anatomy} {side} {view}: {moved.message} / {shot.message} / {verdict.reason}")
        for level in ("L1", "L5"):
            ok(s, "move_to_view", anatomy="lumbar_spine", level=level, view="lateral")
            ok(s, "take_shot")
            verdict = check_view(s, "lumbar_spine", "lateral", level=level)
            if not verdict.success:
                failures.append(f"lumbar {level}: {verdict.reason}")
        assert not failures, failures
    finally:
        s.close()


def test_same_seed_same_rollout_and_image_bytes(tmp_path: Path) -> None:
    def rollout(seed: int, where: Path) -> tuple[str, str]:
        s = XrayScene(record_dir=where, image_px=64)
        try:
            s.reset(seed=seed)
            ok(s, "move_to_view", anatomy="hip", side="left", view="oblique_left")
            ok(s, "collimate", anatomy="hip", side="left")
            path = ok(s, "take_shot").outcome["path"]
            return json.dumps(s.observation(), sort_keys=True), hashlib.sha256(Path(path).read_bytes()).hexdigest()
        finally:
            s.close()

    a = rollout(5, tmp_path / "a")
    b = rollout(5, tmp_path / "b")
    c = rollout(6, tmp_path / "c")
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


def _halt_at(scene: XrayScene, phase: str) -> list[dict[str, Any]]:
    """Records the scene's hazard log, and halts it as the record of ``phase`` is written: a stop pressed at that
    moment of an exposure, on another thread in the skill server."""
    records: list[dict[str, Any]] = []

    def log(kind: str, **fields: Any) -> None:
        records.append(fields)
        if fields["phase"] == phase:
            scene.halt("e-stop during the exposure")

    scene.hazard_log = log
    return records


def test_a_halt_before_the_beam_comes_on_gives_no_dose(scene: XrayScene) -> None:
    ok(scene, "move_to_view", anatomy="pelvis", view="ap")
    taken = len(scene.exposures)
    records = _halt_at(scene, "intended")
    try:
        result = run(scene, "take_shot")
    finally:
        scene.hazard_log = None
        scene.clear_halt()
    assert result.failure is FailureKind.HALTED and not result.outcome["beam_on"], result
    assert [r["phase"] for r in records] == ["intended", "not_done"] and records[-1]["beam_on"] is False
    assert len(scene.exposures) == taken


def test_a_halt_with_the_beam_on_cuts_the_exposure(scene: XrayScene) -> None:
    ok(scene, "move_to_view", anatomy="pelvis", view="ap")
    with pytest.raises(xray_imaging.BeamCut) as cut, scene.beam("take_shot", 7):
        scene.halt("e-stop during the exposure")
        scene.cast(scene.geometry().source, scene.pixel_grid(scene.geometry(), 8)[0], chunk=16)
    scene.clear_halt()
    assert cut.value.beam_on and cut.value.index == 7 and "beam on" in str(cut.value)


def test_an_image_made_as_the_halt_latched_is_kept_flagged_and_never_a_success(scene: XrayScene) -> None:
    ok(scene, "move_to_view", anatomy="pelvis", view="ap")
    records = _halt_at(scene, "done")
    try:
        result = run(scene, "take_shot")
    finally:
        scene.hazard_log = None
        scene.clear_halt()
    assert not result.success and result.failure is FailureKind.HALTED, result
    assert result.outcome["halted_during"] and Path(result.outcome["path"]).exists()
    assert records[-1]["phase"] == "done" and records[-1]["sha256"]
