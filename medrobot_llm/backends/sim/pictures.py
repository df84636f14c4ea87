"""Pictures for the README: each scene rendered headless, plus what the imaging scenes produce.

TinyRenderer draws without a display or GPU, so the pictures come out the same on a laptop and in CI.
A scene is posed mid-task first (probe on the skin, gantry at a view): a robot at home says little.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from medrobot_llm.backends.base import CancelToken
from medrobot_llm.core.plan import Step
from medrobot_llm.backends.sim import SCENE_FOR_DOMAIN, make
from medrobot_llm.backends.sim.imaging import save_png

__all__ = ["POSES", "render_samples", "render_scene_png"]

#: the steps that pose each scene for its picture (a scene id missing here is drawn as reset leaves it)
POSES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "SurgeryScene-v0": [("locate", {"object": "needle"}), ("grasp", {"arm": "psm1", "object": "needle"}),
                        ("lift", {"arm": "psm1", "height_mm": 20})],
    "UltrasoundScene-v0": [("move_to_window", {"organ": "kidney", "side": "right"}), ("make_contact", {})],
    "XrayScene-v0": [("move_to_view", {"anatomy": "pelvis", "view": "oblique_left"})],
}


def _pose(scene: Any, scene_id: str) -> None:
    for skill, args in POSES.get(scene_id, []):
        result = scene.execute(Step(skill=skill, args=args), CancelToken())
        if not result.success:
            raise RuntimeError(f"posing {scene_id}: {skill} failed: {result.message}")


def render_scene_png(scene_id: str, path: Path, *, seed: int = 0, width: int = 800, height: int = 600,
                     pose: bool = True) -> Path:
    """Render the scene (registry id or domain name) from its default camera into ``path``."""
    scene_id = SCENE_FOR_DOMAIN.get(scene_id, scene_id)
    scene = make(scene_id)
    try:
        scene.reset(seed=seed)
        if pose:
            _pose(scene, scene_id)
        return save_png(scene.render(width, height), Path(path))
    finally:
        scene.close()


def render_samples(out_dir: Path, *, seed: int = 0) -> list[Path]:
    """A B-mode capture of the right kidney and a pelvis radiograph, saved as ``ultrasound_capture.png``
    and ``xray_radiograph.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    tasks: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {
        ("UltrasoundScene-v0", "ultrasound_capture.png"): [
            ("move_to_window", {"organ": "kidney", "side": "right"}), ("make_contact", {}),
            ("sweep", {"distance_mm": 20}), ("capture", {"label": "right kidney"})],
        ("XrayScene-v0", "xray_radiograph.png"): [
            ("move_to_view", {"anatomy": "pelvis", "view": "ap"}), ("take_shot", {})],
    }
    for (scene_id, name), steps in tasks.items():
        scene = make(scene_id, record_dir=out_dir / ".work")
        try:
            scene.reset(seed=seed)
            outcome: dict[str, Any] = {}
            for skill, args in steps:
                result = scene.execute(Step(skill=skill, args=args), CancelToken())
                if not result.success:
                    raise RuntimeError(f"{scene_id}: {skill} failed: {result.message}")
                outcome = result.outcome
            target = out_dir / name
            shutil.copyfile(outcome["path"], target)
            made.append(target)
        finally:
            scene.close()
            shutil.rmtree(out_dir / ".work", ignore_errors=True)
    return made
