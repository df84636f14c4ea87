"""What every PyBullet scene shares: its own physics client, its own RNG, Gymnasium-style reset.

A scene is a ``LoopBackend``: the control loop that runs skills steps this scene's physics. Nothing
here touches pybullet's global client or numpy's global RNG, so scenes run side by side in one process
and a seed reproduces a rollout exactly.
"""

from __future__ import annotations

import ctypes
import os
import sys
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pybullet
import pybullet_data
from pybullet_utils import bullet_client

from medrobot_llm.backends.base import BehaviourStatus, FailureKind, LoopBackend, SkillBehaviour
from medrobot_llm.core.plan import Step
from medrobot_llm.core.validator import PlanValidationError, WorldState, check_steps
from medrobot_llm.core.paths import PACKAGE_DIR, data_dir

__all__ = ["HazardLog", "RefusedSkill", "Scene", "SceneSkill", "assets_dir"]

#: writes one durable record, as ``AuditLog.append(kind, **fields)`` does, and raises if it cannot
HazardLog = Callable[..., object]


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """pybullet prints a banner (``argv[0]=``) on the C-level stdout when it connects; moved to stderr, it
    cannot break the one-JSON-object-on-stdout contract of ``--json`` commands.

    C's stdout is fully buffered when it is a pipe or a file, so the banner sits in libc's buffer until
    something flushes it: it is flushed while the descriptor still points at stderr, or it would reach the
    real stdout later, after the JSON (as it did without ``PYTHONUNBUFFERED``)."""
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
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to speak of (not on the platforms pybullet ships for)
        pass


def assets_dir() -> Path:
    """The ``sim/`` folder (source tree or the copy inside the wheel)."""
    found = data_dir("sim")
    if found is None:
        raise FileNotFoundError(f"no sim/ assets folder found near {PACKAGE_DIR}")
    return found


class Scene(LoopBackend):
    """Base of the three scenes. Subclasses build the world in ``_build`` and randomise it in ``_randomise``."""

    scene_id: str = ""
    domain: str = ""
    #: physics steps per control step; the control step is what "within one control step" means
    substeps: int = 4
    physics_hz: float = 240.0

    def __init__(self, gui: bool = False, record_dir: Path | None = None) -> None:
        super().__init__()
        #: the limit the safety monitor tripped in the last control step, as (kind, message)
        self.violation: tuple[FailureKind, str] | None = None
        self._built = False
        self.gui = gui
        self.record_dir = record_dir
        #: where the scene writes ahead what it is about to do to the patient, and then what it did (``Session``
        #: points it at the audit log); None: no such record (tests, the ROS nodes)
        self.hazard_log: HazardLog | None = None
        with _stdout_to_stderr():
            self.client = bullet_client.BulletClient(connection_mode=pybullet.GUI if gui else pybullet.DIRECT)
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.np_random = np.random.default_rng()
        self.seed: int | None = None
        self.sim_steps = 0
        self.control_period_s = self.substeps / self.physics_hz

    def record_hazard(self, phase: str, hazard: str, **fields: Any) -> None:
        """Log an exposure or a contact as ``intended`` before it happens and ``done`` after.

        A log that cannot take the ``intended`` record raises here, so the hazard does not happen unrecorded."""
        if self.hazard_log is not None:
            self.hazard_log("hazard", phase=phase, hazard=hazard, sim_time=self.sim_time, **fields)

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

    def _box(self, center: Any, half: Any, rgba: list[float]) -> int:
        """A static box (table, column, pedestal, imaging panel): its centre and half extents in metres."""
        c = self.client
        col = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=list(half))
        vis = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=list(half), rgbaColor=rgba)
        return int(c.createMultiBody(0.0, col, vis, list(center)))

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

    @abstractmethod
    def skills(self) -> Mapping[str, type[SceneSkill[Any]]]:
        """The scene's skill classes by skill name."""

    def cycles_at_most(self, step: Step) -> int | None:
        cls = self.skills().get(step.skill)
        return None if cls is None else cls.max_steps

    @abstractmethod
    def resume(self) -> None:
        """Called as a skill starts: held actuators take their measured pose as their new set-point."""

    @abstractmethod
    def telemetry(self) -> dict[str, Any]:
        """A small snapshot for status lines."""

    def implemented_skills(self) -> frozenset[str]:
        return frozenset(self.skills())

    def prepare(self, behaviour: SkillBehaviour) -> None:
        self.resume()

    def fault(self) -> tuple[FailureKind, str] | None:
        return self.violation

    def _ensure_built(self) -> None:
        if not self._built:
            self.reset()

    def make_behaviour(self, step: Step) -> SkillBehaviour:
        """Validate the step against the world as the physics sees it now, then build its skill.

        A precondition that does not hold is a refusal that runs (and fails) without moving anything;
        any other invalid step is a ``ValueError``, which the loop reports as INVALID.
        """
        self._ensure_built()
        try:
            steps, _ = check_steps(self.domain, [step.model_dump()], self.world_state())
        except PlanValidationError as exc:
            if any(i.code == "precondition" for i in exc.issues):
                return RefusedSkill(self, step, FailureKind.PRECONDITION, exc.sentence())
            raise ValueError(exc.sentence()) from None
        step = steps[0]
        cls = self.skills().get(step.skill)
        if cls is None:
            raise ValueError(f"the {self.domain} scene has no {step.skill} skill")
        return cls(self, step)


SceneT = TypeVar("SceneT", bound=Scene)


class SceneSkill(SkillBehaviour, Generic[SceneT]):
    """A skill of one scene: the lifecycle is ``SkillBehaviour``'s (``start``, ``update``, ``terminate``);
    this only gives it its scene and arguments. Waking held actuators and turning a tripped limit into a
    latched halt are the scene's part of the loop (``Scene.prepare`` and ``Scene.fault``), not the skill's."""

    def __init__(self, scene: SceneT, step: Step) -> None:
        super().__init__(step)
        self.scene = scene
        self.args = step.args
        self.phase = step.skill
        #: the hazard this skill wrote ahead and has not reported done yet
        self.open_hazard: str | None = None

    def telemetry(self) -> dict[str, Any]:
        return self.scene.telemetry()

    def intend(self, hazard: str, **fields: Any) -> None:
        """Write ahead a contact this skill is about to make (``Scene.record_hazard``)."""
        self.scene.record_hazard("intended", hazard, skill=self.step.skill, **fields)
        self.open_hazard = hazard

    def did(self, **fields: Any) -> None:
        """Report the hazard written ahead as done, with what it measured."""
        if self.open_hazard is not None:
            self.scene.record_hazard("done", self.open_hazard, skill=self.step.skill, **fields)
            self.open_hazard = None

    def stop(self, status: BehaviourStatus) -> None:
        """End the skill; a hazard written ahead and never done is closed as ``not_done`` (failed, halted,
        cancelled), so no intent is left open in the log."""
        super().stop(status)
        if self.open_hazard is not None:
            hazard, self.open_hazard = self.open_hazard, None
            self.scene.record_hazard("not_done", hazard, skill=self.step.skill, status=status.name.lower())


class RefusedSkill(SceneSkill[Scene]):
    """A step whose precondition does not hold in the world as it is: it fails at once, nothing moves."""

    moves = False

    def __init__(self, scene: Scene, step: Step, kind: FailureKind, message: str) -> None:
        super().__init__(scene, step)
        self.fail(kind, message)

    def update(self) -> BehaviourStatus:
        return BehaviourStatus.FAILURE
