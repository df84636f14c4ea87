"""UltrasoundScene-v0: a probe on a 7-joint arm over a patient phantom (scene, skills, checks)."""

from __future__ import annotations

from medrobot_llm.backends.sim.ultrasound.arm import MM, load_config
from medrobot_llm.backends.sim.ultrasound.scene import UltrasoundScene

__all__ = ["MM", "UltrasoundScene", "load_config"]
