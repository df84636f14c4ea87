"""The surgery scene's vocabulary (from the command set), units and the instrument arms' kinematics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.backends.sim.base import assets_dir
from medrobot_llm.backends.sim.imaging import rot

__all__ = ["ARMS", "ARM_JOINTS", "COMMANDS", "DIRECTIONS", "GRIPPER", "JAWS", "MM", "OBJECTS", "Arm", "Arr",
           "Kinematics", "load_config", "trapezoid", "vec_mm", "wrap", "yaw_of"]

Arr = NDArray[np.float64]
MM = 1e-3
#: joint indices in psm.urdf
ARM_JOINTS = [0, 1, 2, 3, 4, 5]
GRIPPER = 5
JAWS = (6, 7)
COMMANDS = load_command_set("surgery")
#: the arms and objects the command set names; an arm value that stands for others ("all") is no arm
ARMS: tuple[str, ...] = COMMANDS.arms
OBJECTS: tuple[str, ...] = tuple(COMMANDS.entities["object"].values)
#: retraction directions in the camera (world) frame, as the command set names them
DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "forward": (1.0, 0.0, 0.0), "backward": (-1.0, 0.0, 0.0), "left": (0.0, 1.0, 0.0),
    "right": (0.0, -1.0, 0.0), "up": (0.0, 0.0, 1.0), "down": (0.0, 0.0, -1.0),
}


def load_config() -> dict[str, Any]:
    """The scene definition (``sim/surgery/scene.yaml``)."""
    with open(assets_dir() / "surgery" / "scene.yaml", encoding="utf-8") as fh:
        cfg: dict[str, Any] = yaml.safe_load(fh)
    return cfg


def wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def yaw_of(R: Arr) -> float:
    return math.atan2(float(R[1, 0]), float(R[0, 0]))


def trapezoid(t: float, total: float, ramp: float) -> float:
    """The share of a move done at time ``t`` of ``total``, speeding up and slowing down over ``ramp`` each."""
    if ramp <= 0.0:
        return min(1.0, t / total)
    peak = 1.0 / (total - ramp)
    if t < ramp:
        return 0.5 * peak * t * t / ramp
    if t > total - ramp:
        return max(0.0, 1.0 - 0.5 * peak * (total - t) ** 2 / ramp)
    return peak * (t - 0.5 * ramp)


def vec_mm(values: Any, scale: float = MM) -> Arr:
    return np.asarray(values, dtype=float) * scale


class Kinematics:
    """Closed-form kinematics of psm.urdf with the instrument pointing straight down.

    The shaft passes through the RCM, so the wrist point fixes the outer yaw, pitch and the insertion;
    the wrist's three joints then turn the jaws to the asked heading about the vertical.
    """

    def __init__(self, rcm: Arr, tcp: float, lo: Arr, hi: Arr) -> None:
        self.rcm = rcm
        self.tcp = tcp
        self.lo = lo
        self.hi = hi

    def fk(self, q: Arr) -> tuple[Arr, Arr]:
        """Tool tip position and the gripper's rotation (its -z is the tool axis, x the jaws' opening)."""
        outer = rot("x", float(q[0])) @ rot("y", float(q[1]))
        R = outer @ rot("z", float(q[3])) @ rot("x", float(q[4])) @ rot("y", float(q[5]))
        wrist = self.rcm + outer @ np.array([0.0, 0.0, -float(q[2])])
        return wrist + R @ np.array([0.0, 0.0, -self.tcp]), R

    def ik(self, tcp: Arr, psi: float, roll_hint: float) -> Arr:
        """Joints that put the tool tip at ``tcp`` pointing down with the jaws opening along heading ``psi``.

        Of the roll angles that do it (a full turn apart) the one nearest ``roll_hint`` is taken, so the
        roll joint follows the heading continuously instead of winding up. In plain floats: this runs
        every control step, and numpy's call overhead would cost more than the arithmetic.
        """
        dx = float(tcp[0]) - float(self.rcm[0])
        dy = float(tcp[1]) - float(self.rcm[1])
        dz = float(tcp[2]) + self.tcp - float(self.rcm[2])
        ins = math.sqrt(dx * dx + dy * dy + dz * dz)
        pitch = math.asin(max(-1.0, min(1.0, -dx / ins)))
        yaw = math.atan2(dy, -dz)
        # M = (Rx(yaw) Ry(pitch))^T Rz(psi) = Rz(roll) Rx(wrist_pitch) Ry(wrist_yaw)
        ca, sa = math.cos(yaw), math.sin(yaw)
        cb, sb = math.cos(pitch), math.sin(pitch)
        cp, sp = math.cos(psi), math.sin(psi)
        # rows of (Rx Ry)^T are the columns of Rx Ry
        c0 = (cb, sa * sb, -ca * sb)
        c1 = (0.0, ca, sa)
        c2 = (sb, -sa * cb, ca * cb)
        z0, z1 = (cp, sp, 0.0), (-sp, cp, 0.0)    # the first two columns of Rz(psi)
        m01 = c0[0] * z1[0] + c0[1] * z1[1]
        m11 = c1[0] * z1[0] + c1[1] * z1[1]
        m21 = c2[0] * z1[0] + c2[1] * z1[1]
        m20 = c2[0] * z0[0] + c2[1] * z0[1]
        m22 = c2[2]
        wp = math.asin(max(-1.0, min(1.0, m21)))
        roll = math.atan2(-m01, m11)
        roll += 2.0 * math.pi * round((roll_hint - roll) / (2.0 * math.pi))
        wy = math.atan2(-m20, m22)
        return np.array([yaw, pitch, ins, roll, wp, wy])


@dataclass
class Arm:
    """One instrument arm: its body, set-point and what the physics measured this control step."""

    name: str
    body: int
    kin: Kinematics
    home: Arr
    home_psi: float
    rcm_y: float
    q_cmd: Arr
    jaw_cmd: float
    sp_pos: Arr
    sp_psi: float
    q_meas: Arr = field(default_factory=lambda: np.zeros(6))
    jaws: Arr = field(default_factory=lambda: np.zeros(2))
    tcp: Arr = field(default_factory=lambda: np.zeros(3))
    R: Arr = field(default_factory=lambda: np.eye(3))
    speed: float = 0.0
    #: half the difference of the two jaws' targets (right minus left): each jaw has its own cable, as on an
    #: EndoWrist, so the closed pair can sit off the tool axis where the object lies
    jaw_bias: float = 0.0
    #: the part of ``jaw_bias`` a pull on the held vessel rim added (``grasp.pull_lean``)
    lean: float = 0.0
    held: str | None = None
    grip: int | None = None
    #: the held object's pose in the gripper's frame (position, rotation), measured when the grip formed
    grip_rel: tuple[Arr, Arr] | None = None
    #: the set-point (x, y, z, heading) the commanded joints were solved for
    solved: tuple[float, float, float, float] | None = None

    @property
    def psi(self) -> float:
        return yaw_of(self.R)


