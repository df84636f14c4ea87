"""XrayScene-v0: a ring gantry around a patient on a table (scene, skills, checks)."""

from __future__ import annotations

from medrobot_llm.backends.sim.xray.geometry import AXES, MM, Geometry, anatomy_key, load_config, spoken
from medrobot_llm.backends.sim.xray.scene import XrayScene

__all__ = ["AXES", "MM", "Geometry", "XrayScene", "anatomy_key", "load_config", "spoken"]
