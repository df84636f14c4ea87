"""Did an X-ray task succeed, judged from the scene's own exposure log and geometry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medrobot_llm.backends.sim.check_result import CheckResult
from medrobot_llm.backends.sim.imaging import rot
from medrobot_llm.backends.sim.xray.geometry import anatomy_key, spoken
from medrobot_llm.backends.sim.xray.scene import XrayScene

__all__ = ["check_exposures", "check_shot", "check_view", "view_direction"]


def view_direction(scene: XrayScene, view: str, key: str) -> np.ndarray:
    """The beam direction a view asks for (world frame): the view's gantry angles taken in the patient's frame,
    so a patient lying 3 degrees askew on the table asks for a beam 3 degrees askew."""
    tilt, orbit = scene.view_angles(view, key)
    local = rot("y", math.radians(tilt)) @ rot("x", math.radians(orbit)) @ np.array([0.0, 0.0, 1.0])
    out: np.ndarray = scene.patient.R @ local
    return out


def check_view(scene: XrayScene, anatomy: str, view: str = "ap", side: str | None = None, level: str | None = None,
               *, angle_tol_deg: float = 5.0, center_tol_mm: float = 20.0, min_inside: float = 0.95,
               exposure: int = -1) -> CheckResult:
    """An exposure (the last by default) imaged the anatomy in the asked view.

    The central ray passes within ``center_tol_mm`` of the anatomy's true centre (the patient's, jitter
    included), the beam line is within ``angle_tol_deg`` of the view's (either direction: AP and PA are
    the same line), and at least ``min_inside`` of the anatomy's projection lies in the collimated field.
    """
    key = anatomy_key(anatomy, side, level)
    if key not in scene.anatomy_parts:
        return CheckResult(False, f"no {spoken(key)} in this scene", {})
    shots = [e for e in scene.exposures if e["kind"] == "2d"]
    if not shots:
        return CheckResult(False, "no radiograph was taken", {})
    shot = shots[exposure]
    geo = shot["geometry"]
    source = np.asarray(geo["source"])
    beam = np.asarray(geo["beam"])
    center = scene.patient.to_world(scene.anatomy_center[key])
    w = center - source
    miss = float(np.linalg.norm(w - beam * float(w @ beam))) * 1000.0
    want = view_direction(scene, view, key)
    angle = math.degrees(math.acos(min(1.0, abs(float(beam @ want)))))
    inside = _inside_share(scene, key, shot)
    metrics: dict[str, Any] = {"anatomy": key, "view": view, "central_ray_miss_mm": miss, "angle_error_deg": angle,
                               "inside_field": inside, "field_mm": shot["field_mm"], "path": shot["path"]}
    if angle > angle_tol_deg:
        return CheckResult(False, f"the beam is {angle:.1f} deg off the {view} view (allowed {angle_tol_deg:g})",
                           metrics)
    if miss > center_tol_mm:
        return CheckResult(False, f"the central ray misses the {spoken(key)} centre by {miss:.0f} mm "
                           f"(allowed {center_tol_mm:g})", metrics)
    if inside < min_inside:
        return CheckResult(False, f"only {inside:.0%} of the {spoken(key)} is inside the field "
                           f"(needs {min_inside:.0%})", metrics)
    return CheckResult(True, f"{view} of the {spoken(key)}: ray {miss:.0f} mm from centre, "
                       f"{angle:.1f} deg off, {inside:.0%} in the field", metrics)


def _inside_share(scene: XrayScene, key: str, shot: dict[str, Any]) -> float:
    """Share of the anatomy's voxels whose projection falls inside the shot's collimated field."""
    geo = scene.geometry(shot["axes"])
    uv = scene.project(scene.anatomy_points(scene.anatomy_ids(key)), geo)
    w, h = (v / 1000.0 for v in shot["field_mm"])
    cu, cv = (v / 1000.0 for v in shot["field_offset_mm"])
    inside = (np.abs(uv[:, 0] - cu) <= w / 2.0) & (np.abs(uv[:, 1] - cv) <= h / 2.0)
    return float(inside.mean()) if len(inside) else 0.0


def check_exposures(scene: XrayScene, expected: Sequence[str]) -> CheckResult:
    """Every exposure in the scene's log came from a radiation step that ran, one for one, in order.

    ``expected``: the radiation skills (``take_shot``, ``acquire_3d``) of the steps that ran.
    """
    got = [e["skill"] for e in scene.exposures]
    metrics = {"exposures": len(got), "expected": len(expected), "skills": got,
               "dap_mgy_cm2": float(sum(e["dap_mgy_cm2"] for e in scene.exposures)),
               "projections": int(sum(e["projections"] for e in scene.exposures))}
    if got != list(expected):
        return CheckResult(False, f"exposures {got} do not match the radiation steps that ran {list(expected)}",
                           metrics)
    return CheckResult(True, f"{len(got)} exposure(s), each from a confirmed step", metrics)


def check_shot(scene: XrayScene, anatomy: str, view: str = "ap", side: str | None = None, level: str | None = None,
               expected: Sequence[str] = ("take_shot",), **tolerances: Any) -> CheckResult:
    """The usual X-ray task (move_to_view, take_shot): the view is right and nothing else was exposed."""
    dose = check_exposures(scene, expected)
    image = check_view(scene, anatomy, view, side, level, **tolerances)
    metrics = {**image.metrics, **dose.metrics}
    if not dose.success:
        return CheckResult(False, dose.reason, metrics)
    if not image.success:
        return CheckResult(False, image.reason, metrics)
    return CheckResult(True, f"{image.reason}; {dose.reason}", metrics)
