"""What every PyBullet scene shares: its own physics client, its own RNG, Gymnasium-style reset.

A scene is a ``LoopBackend``: the control loop that runs skills steps this scene's physics. Nothing
here touches pybullet's global client or numpy's global RNG, so scenes run side by side in one process
and a seed reproduces a rollout exactly.
"""

from __future__ import annotations

import os
import sys
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pybullet
import pybullet_data
from pybullet_utils import bullet_client

from .._backend import LoopBackend
from .._validator import WorldState

__all__ = ["Scene", "assets_dir"]


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """pybullet prints a banner (``argv[0]=``) on the C-level stdout when it connects; moved to stderr, it
    cannot break the one-JSON-object-on-stdout contract of ``--json`` commands."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no usable stdout/stderr descriptors (a daemon): nothing to protect
        yield
        return
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def assets_dir() -> Path:
    """The ``sim/`` folder (source tree or the copy inside the wheel)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "sim", here / "_data" / "sim"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no sim/ assets folder found near {here}")


class Scene(LoopBackend):
    """Base of the three scenes. Subclasses build the world in ``_build`` and randomise it in ``_randomise``."""

    scene_id: str = ""
    domain: str = ""
    #: physics steps per control step; the control step is what "within one control step" means
    substeps: int = 4
    physics_hz: float = 240.0

    def __init__(self, gui: bool = False, record_dir: Path | None = None) -> None:
        super().__init__()
        self.gui = gui
        self.record_dir = record_dir
        with _stdout_to_stderr():
            self.client = bullet_client.BulletClient(connection_mode=pybullet.GUI if gui else pybullet.DIRECT)
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.np_random = np.random.default_rng()
        self.seed: int | None = None
        self.sim_steps = 0
        self.control_period_s = self.substeps / self.physics_hz

    # -- Gymnasium-style contract -----------------------------------------------------------
    def reset(self, seed: int | None = None) -> dict[str, Any]:
        """Rebuild the world; ``seed`` fixes every random pose. Returns the first observation."""
        if seed is not None or self.seed is None:
            self.seed = seed
            self.np_random = np.random.default_rng(seed)
        self.clear_halt()
        self.client.resetSimulation()
        self.client.setGravity(0, 0, -9.81)
        self.client.setTimeStep(1.0 / self.physics_hz)
        self.sim_steps = 0
        self._build()
        self._randomise()
        self._settle()
        return self.observation()

    def advance(self) -> None:
        for _ in range(self.substeps):
            self.client.stepSimulation()
        self.sim_steps += self.substeps

    @property
    def sim_time(self) -> float:
        return self.sim_steps / self.physics_hz

    def close(self) -> None:
        try:
            self.client.disconnect()
        except pybullet.error:
            pass

    def render(self, width: int = 640, height: int = 480) -> np.ndarray:
        """An RGB picture of the scene from its default camera (TinyRenderer: works headless)."""
        view, proj = self.camera()
        _, _, rgba, _, _ = self.client.getCameraImage(
            width, height, viewMatrix=view, projectionMatrix=proj, renderer=pybullet.ER_TINY_RENDERER
        )
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]

    # -- for subclasses ---------------------------------------------------------------------
    def _settle(self, steps: int = 60) -> None:
        for _ in range(steps):
            self.client.stepSimulation()

    @abstractmethod
    def _build(self) -> None:
        """Load the bodies."""

    @abstractmethod
    def _randomise(self) -> None:
        """Randomise poses within the scene's stated ranges, drawing only from ``self.np_random``."""

    @abstractmethod
    def observation(self) -> dict[str, Any]:
        """A JSON-able snapshot of the scene state (poses, forces, what each gripper holds)."""

    @abstractmethod
    def world_state(self) -> WorldState:
        """The skill files' facts as the physics sees them."""

    @abstractmethod
    def camera(self) -> tuple[list[float], list[float]]:
        """(view matrix, projection matrix) of the default picture."""
