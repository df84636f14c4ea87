"""Did an ultrasound scan succeed, judged from what the scene measured rather than what the skills reported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medrobot_llm.backends.sim.check_result import CheckResult

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.ultrasound.scene import UltrasoundScene

__all__ = ["check_capture", "check_scan", "check_sweep_force"]


def check_sweep_force(scene: UltrasoundScene, force_n: float | None = None, *, tolerance_n: float = 1.5) -> CheckResult:
    """The last sweep stayed in contact within ``tolerance_n`` of the target force at every control step.

    ``force_n`` defaults to the force the scene was regulating when the sweep started.
    """
    log = scene.sweep_log
    target = force_n if force_n is not None else scene.sweep_target_n
    if not log or target is None:
        return CheckResult(False, "no sweep was made in contact", {"samples": 0})
    forces = [r["force_n"] for r in log]
    worst = max(abs(f - target) for f in forces)
    lost = sum(1 for r in log if not r["contact"])
    metrics: dict[str, Any] = {"samples": len(forces), "target_n": target, "force_min_n": min(forces),
                               "force_max_n": max(forces), "force_mean_n": sum(forces) / len(forces),
                               "max_error_n": worst, "contact_lost_steps": lost}
    if lost:
        return CheckResult(False, f"contact was lost for {lost} control steps of the sweep", metrics)
    if worst > tolerance_n:
        return CheckResult(False, f"the force strayed {worst:.2f} N from {target:g} N (allowed {tolerance_n:g} N)",
                           metrics)
    return CheckResult(True, f"force held within {worst:.2f} N of {target:g} N over {len(forces)} steps", metrics)


def check_capture(scene: UltrasoundScene, organ: str, side: str, *, min_share: float = 0.05) -> CheckResult:
    """The last capture shows the organ (on that side) in at least ``min_share`` of its pixels."""
    if not scene.captures:
        return CheckResult(False, "no image was captured", {})
    shot = scene.captures[-1]
    key = f"{organ}/{side}"
    if key not in scene.windows:
        return CheckResult(False, f"no {organ} on the {side} side in this scene", {})
    labels = scene.windows[key].labels
    share = sum(float(shot["organ_shares"].get(name, 0.0)) for name in labels)
    metrics = {"share": share, "labels": list(labels), "path": shot["path"], "shares": dict(shot["organ_shares"])}
    if share < min_share:
        return CheckResult(False, f"the {side} {organ} fills {share:.1%} of the image (needs {min_share:.0%})",
                           metrics)
    return CheckResult(True, f"the {side} {organ} fills {share:.1%} of the image", metrics)


def check_scan(scene: UltrasoundScene, organ: str, side: str, force_n: float | None = None, *,
               tolerance_n: float = 1.5, min_share: float = 0.05) -> CheckResult:
    """A scan: the sweep held its force and the capture after it shows the organ."""
    force = check_sweep_force(scene, force_n, tolerance_n=tolerance_n)
    image = check_capture(scene, organ, side, min_share=min_share)
    metrics = {**{f"force_{k}": v for k, v in force.metrics.items()}, **image.metrics}
    if (force.success and image.success and scene.sweep_log and scene.captures
            and scene.captures[-1]["sim_time"] < scene.sweep_log[-1]["t"]):
        return CheckResult(False, "the image was captured before the sweep", metrics)
    if not force.success:
        return CheckResult(False, force.reason, metrics)
    if not image.success:
        return CheckResult(False, image.reason, metrics)
    return CheckResult(True, f"{force.reason}; {image.reason}", metrics)
