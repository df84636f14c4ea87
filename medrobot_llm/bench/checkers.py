"""Which function judges a task's outcome in its scene, found by name.

A scene's own checkers plug in by naming convention; the few that are not any one scene's (an observed
value, the world's facts, an X-ray view adjusted by an amount) are defined here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.base import Scene
    from medrobot_llm.backends.sim.check_result import CheckResult

__all__ = ["CHECKERS", "Checker", "check_adjusted", "check_observe", "check_world", "find_checker"]

#: checker name -> "module:function"; a name missing here is looked up as ``<domain>.<what>`` ->
#: ``medrobot_llm.backends.sim.<domain>.checks:check_<what>``, so a scene's checker module plugs in by name
CHECKERS: dict[str, str] = {
    "ultrasound.scan": "medrobot_llm.backends.sim.ultrasound.checks:check_scan",
    "xray.shot": "medrobot_llm.backends.sim.xray.checks:check_shot",
    "xray.exposures": "medrobot_llm.backends.sim.xray.checks:check_exposures",
    "xray.adjusted": "medrobot_llm.bench.checkers:check_adjusted",
    "observe": "medrobot_llm.bench.checkers:check_observe",
    "world": "medrobot_llm.bench.checkers:check_world",
}

Checker = Callable[..., "CheckResult"]


def find_checker(name: str) -> Checker:
    """The checker function registered under ``name`` (ImportError/AttributeError when it is not there)."""
    target = CHECKERS.get(name)
    if target is None:
        domain, _, what = name.partition(".")
        if not what:
            raise KeyError(f"unknown checker {name!r}")
        target = f"medrobot_llm.backends.sim.{domain}.checks:check_{what}"
    module, _, func = target.partition(":")
    fn: Checker = getattr(importlib.import_module(module), func)
    return fn


# ---------------------------------------------------------------------------------------------- bench checkers
def _dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise KeyError(dotted)
        obj = obj[part]
    return obj


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return bool(a == b)
    return abs(float(a) - float(b)) <= tol


def check_observe(scene: Scene, expect: dict[str, Any], tolerance: float = 1e-6) -> CheckResult:
    """Every dotted path of the scene's observation has the expected value (numbers within ``tolerance``)."""
    from medrobot_llm.backends.sim.check_result import CheckResult

    obs = scene.observation()
    got: dict[str, Any] = {}
    for path, want in expect.items():
        try:
            got[path] = _dig(obs, path)
        except KeyError:
            return CheckResult(False, f"the scene does not report {path}", {"observed": got})
        if not _close(got[path], want, tolerance):
            return CheckResult(False, f"{path} is {got[path]!r}, expected {want!r}", {"observed": got})
    return CheckResult(True, ", ".join(f"{k} = {v!r}" for k, v in got.items()), {"observed": got})


def check_world(scene: Scene, expect: dict[str, Any]) -> CheckResult:
    """The scene's facts (as the physics sees them) include the expected ones."""
    from medrobot_llm.backends.sim.check_result import CheckResult

    facts = scene.world_state().facts
    for key, want in expect.items():
        if facts.get(key) != want:
            return CheckResult(False, f"{key} is {facts.get(key)!r}, expected {want!r}", {"facts": dict(facts)})
    return CheckResult(True, ", ".join(f"{k} = {v!r}" for k, v in expect.items()), {"facts": dict(facts)})


def check_adjusted(scene: Any, anatomy: str, view: str, axis: str, amount: float, side: str | None = None,
                   level: str | None = None, tolerance: float = 1.0) -> CheckResult:
    """After a view and an adjustment the gantry axis sits at the view's target plus the amount, the other
    axes at the view's targets, and no exposure was made."""
    from medrobot_llm.backends.sim.check_result import CheckResult
    from medrobot_llm.backends.sim.xray import anatomy_key

    key = anatomy_key(anatomy, side, level)
    target = scene.targets_for_view(key, view)
    want = dict(target)
    want[axis] = target[axis] + float(amount)
    errors = {k: abs(float(scene.axes[k]) - float(v)) for k, v in want.items() if k != "detector"}
    worst = max(errors, key=lambda k: errors[k])
    metrics = {"axis": axis, "value": float(scene.axes[axis]), "wanted": want[axis], "errors": errors,
               "exposures": len(scene.exposures)}
    if scene.exposures:
        return CheckResult(False, f"{len(scene.exposures)} exposure(s) that nobody asked for", metrics)
    if errors[worst] > tolerance:
        return CheckResult(False, f"{worst} is {scene.axes[worst]:.1f}, wanted {want[worst]:.1f}", metrics)
    return CheckResult(True, f"{axis} at {scene.axes[axis]:.1f} (view target {target[axis]:.1f} + {amount:g})",
                       metrics)
