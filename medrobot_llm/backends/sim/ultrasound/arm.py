"""The ultrasound scene's arm (kinematics of the probe holder), scan windows and probe paths."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from medrobot_llm.backends.sim.base import assets_dir
from medrobot_llm.backends.sim.imaging import rot, rot_about

__all__ = ["MM", "Arm", "Arr", "Label", "ProbePath", "Window", "load_config", "log_rot"]

Arr = NDArray[np.float64]
MM = 1e-3


def load_config() -> dict[str, Any]:
    """The scene definition (``sim/ultrasound/scene.yaml``)."""
    with open(assets_dir() / "ultrasound" / "scene.yaml", encoding="utf-8") as fh:
        cfg: dict[str, Any] = yaml.safe_load(fh)
    return cfg


def log_rot(R: Arr) -> tuple[Arr, float]:
    """Axis and angle of a rotation matrix (the angle in [0, pi])."""
    cos = max(-1.0, min(1.0, (float(np.trace(R)) - 1.0) / 2.0))
    angle = math.acos(cos)
    if angle < 1e-9:
        return np.array([0.0, 0.0, 1.0]), 0.0
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    n = float(np.linalg.norm(axis))
    if n < 1e-9:  # angle ~ pi: R is symmetric and the axis is its eigenvector of eigenvalue 1
        w, v = np.linalg.eigh((R + R.T) / 2.0)
        axis = v[:, int(np.argmax(w))]
        n = float(np.linalg.norm(axis))
    return axis / n, angle


class Arm:
    """Forward and inverse kinematics of the iiwa in numpy, from its URDF.

    pybullet's own IK drifts off its target and out of the joint limits on this arm; a damped
    least-squares step with a null-space pull toward an elbow-up rest pose does neither, and one
    step per control step tracks set-points that move a few millimetres at a time.
    """

    def __init__(self, urdf: Path, base_pos: Arr, base_R: Arr, tool: Arr, rest: Arr) -> None:
        root = ET.parse(urdf).getroot()
        self.origin_R: list[Arr] = []
        self.origin_p: list[Arr] = []
        lo: list[float] = []
        hi: list[float] = []
        for joint in root.findall("joint"):
            if joint.get("type") != "revolute":
                continue
            origin = joint.find("origin")
            axis = joint.find("axis")
            limit = joint.find("limit")
            assert origin is not None and axis is not None and limit is not None
            if [float(v) for v in str(axis.get("xyz")).split()] != [0.0, 0.0, 1.0]:
                raise ValueError("the arm model must turn every joint about its local z axis")
            r, p, y = (float(v) for v in str(origin.get("rpy", "0 0 0")).split())
            self.origin_R.append(rot("z", y) @ rot("y", p) @ rot("x", r))
            self.origin_p.append(np.array([float(v) for v in str(origin.get("xyz", "0 0 0")).split()]))
            lo.append(float(str(limit.get("lower"))))
            hi.append(float(str(limit.get("upper"))))
        self.n = len(lo)
        self.lo = np.array(lo)
        self.hi = np.array(hi)
        self.base_p = base_pos
        self.base_R = base_R
        self.tool = tool
        self.rest = rest
        self._base_p = [float(v) for v in base_pos]
        self._base_R = base_R.tolist()
        self._tool = [float(v) for v in tool]
        self._origin_p = [v.tolist() for v in self.origin_p]
        self._origin_R = [m.tolist() for m in self.origin_R]
        self._damping = np.eye(6) * 1e-4

    def fk(self, q: Arr) -> tuple[Arr, Arr, Arr, Arr]:
        """Tool position, tool rotation, and each joint's position and axis (for the Jacobian).

        Plain floats: for 3x3 products numpy's call overhead costs more than the arithmetic.
        """
        R = self._base_R
        p = self._base_p
        ps: list[list[float]] = []
        zs: list[list[float]] = []
        for i in range(self.n):
            o = self._origin_p[i]
            p = [p[k] + R[k][0] * o[0] + R[k][1] * o[1] + R[k][2] * o[2] for k in range(3)]
            B = self._origin_R[i]
            R = [[r[0] * B[0][j] + r[1] * B[1][j] + r[2] * B[2][j] for j in range(3)] for r in R]
            ps.append(p)
            zs.append([R[0][2], R[1][2], R[2][2]])
            c = math.cos(float(q[i]))
            s = math.sin(float(q[i]))
            R = [[r[0] * c + r[1] * s, r[1] * c - r[0] * s, r[2]] for r in R]
        t = self._tool
        tip = [p[k] + R[k][0] * t[0] + R[k][1] * t[1] + R[k][2] * t[2] for k in range(3)]
        return np.array(tip), np.array(R), np.array(ps), np.array(zs)

    def ik_step(self, pos: Arr, R_target: Arr, q: Arr, max_dq: float = 0.08) -> tuple[Arr, float]:
        """One damped least-squares step toward the pose.

        Returns the new joints and the pose error before the step: metres, plus 5 cm per radian of
        orientation error (so 5 mm stands for about 6 degrees).
        """
        pe, R, ps, zs = self.fk(q)
        ep = pos - pe
        Re = R_target @ R.T
        e = np.array([ep[0], ep[1], ep[2],
                      0.5 * (Re[2, 1] - Re[1, 2]), 0.5 * (Re[0, 2] - Re[2, 0]), 0.5 * (Re[1, 0] - Re[0, 1])])
        err = math.sqrt(e[0] ** 2 + e[1] ** 2 + e[2] ** 2) + 0.05 * math.sqrt(e[3] ** 2 + e[4] ** 2 + e[5] ** 2)
        d = pe - ps
        J = np.empty((6, self.n))
        J[0] = zs[:, 1] * d[:, 2] - zs[:, 2] * d[:, 1]
        J[1] = zs[:, 2] * d[:, 0] - zs[:, 0] * d[:, 2]
        J[2] = zs[:, 0] * d[:, 1] - zs[:, 1] * d[:, 0]
        J[3:] = zs.T
        A = np.linalg.inv(J @ J.T + self._damping)
        v = 0.05 * (self.rest - q)
        dq = J.T @ (A @ (e - J @ v)) + v
        dq = np.clip(dq, -max_dq, max_dq)
        q_new: Arr = np.clip(q + dq, self.lo + 0.02, self.hi - 0.02)
        return q_new, err

    def converge(self, pos: Arr, R: Arr, q: Arr, iterations: int = 200) -> tuple[Arr, float]:
        """Iterate to the pose from ``q``; returns the joints and the error left (as ``ik_step`` measures it)."""
        for _ in range(iterations):
            q = self.ik_step(pos, R, q, max_dq=0.3)[0]
        return q, self.ik_step(pos, R, q)[1]

    def feasible(self, poses: list[tuple[Arr, Arr]], q: Arr, tolerance: float) -> bool:
        """Whether tracking these set-points one IK step each, as the controller will, stays on them."""
        for i, (pos, R) in enumerate(poses):
            q, err = self.ik_step(pos, R, q)
            if i > 2 and err > tolerance:
                return False
        for _ in range(20):
            q, err = self.ik_step(poses[-1][0], poses[-1][1], q)
        return err < tolerance / 5.0


@dataclass
class Window:
    organ: str
    side: str
    skin: Arr            # world point on the skin
    R: Arr               # probe orientation: x along the array toward its marker, z into the body
    depth_mm: float
    gain_pct: float
    labels: tuple[str, ...]


@dataclass
class ProbePath:
    """Way-points the probe set-point runs through at bounded linear and angular speed."""

    poses: list[tuple[Arr, Arr]]
    speed: float
    turn_speed: float
    dt: float
    _seg: int = 0
    _s: float = 0.0
    _lengths: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for (p0, R0), (p1, R1) in zip(self.poses, self.poses[1:]):
            _, ang = log_rot(R0.T @ R1)
            self._lengths.append(max(float(np.linalg.norm(p1 - p0)) / self.speed, ang / self.turn_speed, 1e-9))

    @property
    def duration(self) -> float:
        return sum(self._lengths)

    @property
    def done(self) -> bool:
        return self._seg >= len(self._lengths)

    @property
    def progress(self) -> float:
        total = self.duration
        passed = sum(self._lengths[: self._seg]) + (self._s * self._lengths[self._seg] if not self.done else 0.0)
        return min(1.0, passed / total) if total > 0 else 1.0

    def samples(self) -> list[tuple[Arr, Arr]]:
        """Every set-point the path will give, for a feasibility check before moving."""
        copy = ProbePath(self.poses, self.speed, self.turn_speed, self.dt)
        out = []
        while not copy.done:
            out.append(copy.step())
        return out

    def step(self) -> tuple[Arr, Arr]:
        """Advance one control period; returns the new set-point."""
        if self.done:
            return self.poses[-1]
        self._s += self.dt / self._lengths[self._seg]
        while not self.done and self._s >= 1.0:
            self._s = (self._s - 1.0) * self._lengths[self._seg]
            self._seg += 1
            if not self.done:
                self._s /= self._lengths[self._seg]
        if self.done:
            return self.poses[-1]
        (p0, R0), (p1, R1) = self.poses[self._seg], self.poses[self._seg + 1]
        axis, ang = log_rot(R0.T @ R1)
        return p0 + (p1 - p0) * self._s, R0 @ rot_about(axis, ang * self._s)


@dataclass(frozen=True)
class Label:
    name: str       # e.g. kidney_left.0 (its first part)
    organ: str      # what it counts as: kidney_left
    tissue: str


