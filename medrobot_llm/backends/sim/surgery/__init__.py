"""SurgeryScene-v0: two instrument arms, a needle, a vessel phantom and a shunt (scene, skills, checks)."""

from __future__ import annotations

from medrobot_llm.backends.sim.surgery.arm import ARMS, MM, OBJECTS, load_config
from medrobot_llm.backends.sim.surgery.scene import SurgeryScene

__all__ = ["ARMS", "MM", "OBJECTS", "SurgeryScene", "load_config"]
