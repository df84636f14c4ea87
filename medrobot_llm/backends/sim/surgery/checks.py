"""Did a SuFIA task succeed, judged from the physics state of the surgery scene, not from the plan or the
skills' own reports. The asked values (height, distance, depth) are what the person asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from medrobot_llm.backends.sim.check_result import CheckResult
from medrobot_llm.backends.sim.surgery.arm import DIRECTIONS, MM

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.surgery.scene import SurgeryScene

__all__ = ["check_dilation", "check_handover", "check_needle_lift", "check_shunt_insertion", "check_task",
           "dropped_steps"]


def dropped_steps(scene: SurgeryScene, obj: str) -> int:
    """Control steps, from the object's first grasp on, in which no arm held it."""
    return sum(1 for _, who in scene.hold_log[obj] if not who)


def _held_by_jaws(scene: SurgeryScene, arm: str, obj: str) -> bool:
    """The arm's grip on the object stands and both its jaws press on it now (engine contact forces)."""
    a = scene.arms[arm]
    left, right = scene.jaw_contacts(a, obj)
    return a.held == obj and left > 0.0 and right > 0.0


def check_needle_lift(scene: SurgeryScene, arm: str, height_mm: float) -> CheckResult:
    """The needle is at least ``height_mm`` above where it lay (less the scene's stated tolerance), held
    by ``arm``'s jaws, and was not dropped since it was taken."""
    tol = float(scene.cfg["checks"]["lift_tolerance"])
    pos, _ = scene.object_frame("needle")
    rise = float(pos[2] - scene.rest["needle"][2]) / MM
    drops = dropped_steps(scene, "needle")
    metrics: dict[str, Any] = {"rise_mm": rise, "asked_mm": height_mm, "tolerance_mm": tol,
                               "holders": list(scene.holders("needle")), "dropped_steps": drops,
                               "max_force_n": scene.max_force_n}
    if not _held_by_jaws(scene, arm, "needle"):
        return CheckResult(False, f"the needle is not held by {arm}", metrics)
    if drops:
        return CheckResult(False, f"the needle was dropped for {drops} control steps", metrics)
    if rise < height_mm - tol:
        return CheckResult(False, f"the needle rose {rise:.1f} mm of the {height_mm:g} mm asked", metrics)
    return CheckResult(True, f"needle {rise:.1f} mm up (asked {height_mm:g} mm), held by {arm}", metrics)


def check_handover(scene: SurgeryScene, from_arm: str, to_arm: str, obj: str = "needle") -> CheckResult:
    """The object is held by the receiving arm only (the giver's jaws no longer touch it), it never went
    unheld from its first grasp on, and it is off the pad."""
    drops = dropped_steps(scene, obj)
    pos, _ = scene.object_frame(obj)
    height = float(pos[2] - scene.pad_top[2]) / MM
    giver_touch = sum(scene.jaw_contacts(scene.arms[from_arm], obj))
    metrics: dict[str, Any] = {"holders": list(scene.holders(obj)), "dropped_steps": drops,
                               "height_over_pad_mm": height, "giver_jaw_force_n": giver_touch,
                               "handovers": len(scene.handovers), "max_force_n": scene.max_force_n}
    if not scene.hold_log[obj]:
        return CheckResult(False, f"the {obj} was never grasped", metrics)
    if drops:
        return CheckResult(False, f"the {obj} was dropped for {drops} control steps", metrics)
    if not _held_by_jaws(scene, to_arm, obj):
        return CheckResult(False, f"{to_arm} does not hold the {obj}", metrics)
    if scene.arms[from_arm].held is not None or giver_touch > 0.0:
        return CheckResult(False, f"{from_arm} still holds the {obj}", metrics)
    if height < 5.0:
        return CheckResult(False, f"the {obj} is lying on the pad", metrics)
    return CheckResult(True, f"{to_arm} alone holds the {obj}, never dropped", metrics)


def check_dilation(scene: SurgeryScene, arm: str, distance_mm: float, direction: str = "backward") -> CheckResult:
    """The rim is displaced at least ``distance_mm`` (less the tolerance) in ``direction``, still held by
    ``arm``, and the tissue force stayed under the cap at every control step of the retraction."""
    tol = float(scene.cfg["checks"]["retract_tolerance"])
    cap = float(scene.limits["force_cap"])
    moved = float(scene.rim_displacement() @ np.asarray(DIRECTIONS[direction])) / MM
    forces = [r["force_n"] for r in scene.retract_log]
    peak = max(forces, default=0.0)
    metrics: dict[str, Any] = {"rim_moved_mm": moved, "asked_mm": distance_mm, "tolerance_mm": tol,
                               "force_now_n": scene.rim_force_n, "force_peak_n": peak, "force_cap_n": cap,
                               "samples": len(forces), "max_force_n": scene.max_force_n}
    if not forces:
        return CheckResult(False, "no retraction was made", metrics)
    if not _held_by_jaws(scene, arm, "vessel"):
        return CheckResult(False, f"the rim is not held by {arm}", metrics)
    if peak > cap or scene.max_force_n > cap:
        return CheckResult(False, f"the tissue force reached {max(peak, scene.max_force_n):.2f} N, above the "
                           f"{cap:g} N cap", metrics)
    if moved < distance_mm - tol:
        return CheckResult(False, f"the rim moved {moved:.1f} mm {direction} of the {distance_mm:g} mm asked", metrics)
    return CheckResult(True, f"rim {moved:.1f} mm {direction} (asked {distance_mm:g} mm) at {peak:.2f} N peak",
                       metrics)


def check_shunt_insertion(scene: SurgeryScene, depth_mm: float) -> CheckResult:
    """The shunt's front is inside the lumen, at least ``depth_mm`` (less the tolerance) past the opening
    and within the lumen's radius of its axis."""
    tol = float(scene.cfg["checks"]["depth_tolerance"])
    spec = scene.cfg["objects"]
    along, radial = scene.shunt_depth()
    room = (float(spec["vessel"]["lumen_radius"]) - float(spec["shunt"]["radius"])) * MM
    metrics: dict[str, Any] = {"depth_mm": along / MM, "asked_mm": depth_mm, "off_axis_mm": radial / MM,
                               "room_mm": room / MM, "tolerance_mm": tol, "max_force_n": scene.max_force_n}
    if radial > room + 0.0002:
        return CheckResult(False, f"the shunt's front is {radial / MM:.1f} mm off the lumen's axis: not in the lumen",
                           metrics)
    if along < depth_mm * MM - tol * MM:
        return CheckResult(False, f"the shunt is {along / MM:.1f} mm into the lumen of the {depth_mm:g} mm asked",
                           metrics)
    return CheckResult(True, f"shunt {along / MM:.1f} mm into the lumen (asked {depth_mm:g} mm)", metrics)


def check_task(scene: SurgeryScene, steps: list[Any]) -> CheckResult:
    """Judge a surgery plan by its last contact or motion task step (lift, handover, retract, insert)."""
    for step in reversed(steps):
        skill, args = (step.skill, step.args) if hasattr(step, "skill") else (step["skill"], step["args"])
        if skill == "lift":
            return check_needle_lift(scene, args["arm"], float(args["height_mm"]))
        if skill == "handover":
            return check_handover(scene, args["from_arm"], args["to_arm"], args["object"])
        if skill == "retract":
            return check_dilation(scene, args["arm"], float(args["distance_mm"]), args["direction"])
        if skill == "insert":
            return check_shunt_insertion(scene, float(args["depth_mm"]))
    return CheckResult(False, "the plan has no lift, handover, retract or insert step to judge", {})
