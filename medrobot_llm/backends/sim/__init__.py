"""PyBullet scenes behind the ``SkillBackend`` interface, in an explicit, versioned registry.

Scenes are looked up by id (``SurgeryScene-v0``); modules are imported only when a scene is made, so
importing ``medrobot_llm`` never imports pybullet.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.base import Scene

__all__ = ["REGISTRY", "SCENE_FOR_DOMAIN", "make", "register", "scene_ids"]

#: scene id -> "module:Class"; a new version gets a new id, old ids keep their behaviour
REGISTRY: dict[str, str] = {}
_SCENE_ID = re.compile(r"^[A-Z][A-Za-z0-9]*-v[0-9]+$")


def register(scene_id: str, entry_point: str) -> None:
    """Add a scene under a versioned id (``Name-vN``), Gymnasium-style; an id, once taken, is never rebound,
    so a result recorded against ``SurgeryScene-v0`` always means the same physics."""
    if not _SCENE_ID.match(scene_id):
        raise ValueError(f"scene id {scene_id!r} is not of the form Name-vN")
    if scene_id in REGISTRY:
        raise ValueError(f"scene {scene_id!r} is already registered; a changed scene takes a new version")
    if ":" not in entry_point:
        raise ValueError(f"entry point {entry_point!r} is not of the form module:Class")
    REGISTRY[scene_id] = entry_point


register("SurgeryScene-v0", "medrobot_llm.backends.sim.surgery.scene:SurgeryScene")
register("UltrasoundScene-v0", "medrobot_llm.backends.sim.ultrasound.scene:UltrasoundScene")
register("XrayScene-v0", "medrobot_llm.backends.sim.xray.scene:XrayScene")

SCENE_FOR_DOMAIN: dict[str, str] = {
    "surgery": "SurgeryScene-v0",
    "ultrasound": "UltrasoundScene-v0",
    "xray": "XrayScene-v0",
}


def scene_ids() -> list[str]:
    return list(REGISTRY)


def make(scene_id: str, **kwargs: Any) -> Scene:
    """Build a scene by registry id (or by domain name); ``kwargs`` go to its constructor (``gui=True``...)."""
    scene_id = SCENE_FOR_DOMAIN.get(scene_id, scene_id)
    if scene_id not in REGISTRY:
        raise KeyError(f"unknown scene {scene_id!r}; registered: {', '.join(REGISTRY)}")
    module_name, _, cls_name = REGISTRY[scene_id].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    scene: Scene = cls(**kwargs)
    return scene
