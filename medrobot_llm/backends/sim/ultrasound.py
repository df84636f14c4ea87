"""UltrasoundScene-v0: a KUKA iiwa with a linear probe scans a supine patient phantom.

The contact force is what the physics engine reports (normal forces of the probe-patient contact
points, averaged over the control step), and the probe presses with it through an admittance loop on
the commanded depth along the probe axis, so a sweep over the skin keeps the force it was given. The
phantom's skin is a soft contact (stiffness per mm of indentation); inside, a labelled voxel volume built
from organ ellipsoids gives the B-mode images and the share of each organ in them.

Skills only move set-points; ``advance`` runs the controller, the physics and the safety monitors, so a
limit is caught, and the arm held, in the control step it happens.
"""

from __future__ import annotations

import math
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pybullet
import pybullet_data
import yaml
from numpy.typing import NDArray

from medrobot_llm.backends.base import BehaviourStatus, FailureKind
from medrobot_llm.core.validator import WorldState
from medrobot_llm.backends.sim.base import Scene, SceneSkill, assets_dir
from medrobot_llm.backends.sim.imaging import Frame, Primitive, Volume, matrix_from_quat, quat_from_matrix, rot, rot_about, save_png, slug

__all__ = ["UltrasoundScene", "load_config"]

Arr = NDArray[np.float64]
MM = 1e-3


def load_config() -> dict[str, Any]:
    """The scene definition (``sim/ultrasound/scene.yaml``)."""
    with open(assets_dir() / "ultrasound" / "scene.yaml", encoding="utf-8") as fh:
        cfg: dict[str, Any] = yaml.safe_load(fh)
    return cfg


def _log_rot(R: Arr) -> tuple[Arr, float]:
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


class _Arm:
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
class _Window:
    organ: str
    side: str
    skin: Arr            # world point on the skin
    R: Arr               # probe orientation: x along the array toward its marker, z into the body
    depth_mm: float
    gain_pct: float
    labels: tuple[str, ...]


@dataclass
class _Path:
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
            _, ang = _log_rot(R0.T @ R1)
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
        copy = _Path(self.poses, self.speed, self.turn_speed, self.dt)
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
        axis, ang = _log_rot(R0.T @ R1)
        return p0 + (p1 - p0) * self._s, R0 @ rot_about(axis, ang * self._s)


@dataclass(frozen=True)
class _Label:
    name: str       # e.g. kidney_left.0 (its first part)
    organ: str      # what it counts as: kidney_left
    tissue: str


class UltrasoundScene(Scene):
    """A 7-DoF arm with a linear probe over a supine patient phantom; see ``sim/ultrasound/scene.yaml``.

    Constructor overrides (``None`` keeps the scene file's value) exist so tests and studies can make the
    tissue softer or the limits tighter without editing the scene.
    """

    scene_id = "UltrasoundScene-v0"
    domain = "ultrasound"

    def __init__(self, gui: bool = False, record_dir: Path | None = None, *, image_px: int | None = None,
                 skin_stiffness_n_per_mm: float | None = None, force_cap_n: float | None = None,
                 max_penetration_mm: float | None = None) -> None:
        super().__init__(gui=gui, record_dir=record_dir)
        self.cfg = load_config()
        lim = self.cfg["limits"]
        self.image_px = int(image_px or self.cfg["imaging"]["pixels"])
        self.stiffness = float(skin_stiffness_n_per_mm or self.cfg["patient"]["stiffness_n_per_mm"])
        self.force_cap_n = float(force_cap_n if force_cap_n is not None else lim["force_cap"])
        self.force_tolerance_n = float(lim["force_tolerance"])
        self.max_penetration_mm = float(max_penetration_mm if max_penetration_mm is not None
                                        else lim["max_penetration"])
        self._ctl = self.cfg["control"]
        self._tissue_names = list(self.cfg["tissues"])
        rob = self.cfg["robot"]
        base_R = rot("z", math.radians(float(rob["base_yaw_deg"])))
        probe = self.cfg["probe"]
        tip_from_last_joint = (float(probe["flange_offset"]) + float(probe["tip"])) * MM
        self.arm = _Arm(Path(pybullet_data.getDataPath()) / rob["urdf"], np.asarray(rob["base"], float) * MM,
                        base_R, np.array([0.0, 0.0, tip_from_last_joint]), np.radians(rob["rest_q_deg"]))
        self._home_q = np.radians(np.asarray(rob["home_q_deg"], dtype=float))
        self._joint_margin = math.radians(float(rob["joint_margin_deg"]))
        self._tmp_dir: Path | None = None
        self._cid = int(self.client._client)
        self._probe_tip = float(probe["tip"]) * MM
        self._motor_forces = [float(rob["motor_force"])] * self.arm.n
        self._position_gains = [float(rob["position_gain"])] * self.arm.n
        self._built = False
        self.patient = Frame.identity()
        self.labels: list[_Label] = []
        self.volume: Volume | None = None
        self.windows: dict[str, _Window] = {}

    # -- world -------------------------------------------------------------------------------
    def _box(self, center: Arr, half: Arr, rgba: list[float]) -> int:
        c = self.client
        col = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=list(half))
        vis = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=list(half), rgbaColor=rgba)
        return int(c.createMultiBody(0.0, col, vis, list(center)))

    def _build(self) -> None:
        c = self.client
        c.setPhysicsEngineParameter(numSolverIterations=int(self.cfg["robot"]["solver_iterations"]))
        room = self.cfg["room"]
        self.table_id = self._box(np.asarray(room["table"]["center"]) * MM, np.asarray(room["table"]["half"]) * MM,
                                  [0.55, 0.58, 0.62, 1.0])
        self.pedestal_id = self._box(np.asarray(room["pedestal"]["center"]) * MM,
                                     np.asarray(room["pedestal"]["half"]) * MM, [0.25, 0.25, 0.28, 1.0])
        parts = self.cfg["patient"]["parts"]
        halves = [list(np.asarray(p["half"], float) * MM) for p in parts.values()]
        centers = [list(np.asarray(p["center"], float) * MM) for p in parts.values()]
        skin = [0.93, 0.76, 0.65, 1.0]
        col = c.createCollisionShapeArray([pybullet.GEOM_BOX] * len(parts), halfExtents=halves,
                                          collisionFramePositions=centers)
        vis = c.createVisualShapeArray([pybullet.GEOM_BOX] * len(parts), halfExtents=halves,
                                       visualFramePositions=centers, rgbaColors=[skin] * len(parts))
        self.patient_id = int(c.createMultiBody(0.0, col, vis, list(np.asarray(room["patient_origin"]) * MM)))
        damping = float(self.cfg["patient"]["damping"])
        c.changeDynamics(self.patient_id, -1, contactStiffness=self.stiffness * 1000.0, contactDamping=damping,
                         lateralFriction=float(self.cfg["patient"]["friction"]))
        rob = self.cfg["robot"]
        self.arm_id = int(c.loadURDF(rob["urdf"], list(np.asarray(rob["base"]) * MM),
                                     quat_from_matrix(self.arm.base_R), useFixedBase=True))
        self.joints = list(range(self.arm.n))
        for j, q in zip(self.joints, self._home_q):
            c.resetJointState(self.arm_id, j, float(q))
        flange = float(self.cfg["probe"]["flange_offset"]) * MM
        link = c.getLinkState(self.arm_id, self.arm.n - 1, computeForwardKinematics=True)
        pos, orn = c.multiplyTransforms(link[4], link[5], [0, 0, flange], [0, 0, 0, 1])
        self.probe_id = int(c.loadURDF(str(assets_dir() / "ultrasound" / self.cfg["probe"]["urdf"]), pos, orn))
        com = c.getDynamicsInfo(self.arm_id, self.arm.n - 1)[3]
        cid = c.createConstraint(self.arm_id, self.arm.n - 1, self.probe_id, -1, pybullet.JOINT_FIXED, [0, 0, 0],
                                 [-com[0], -com[1], flange - com[2]], [0, 0, 0])
        c.changeConstraint(cid, maxForce=5000)
        for link_index in range(-1, self.arm.n):
            c.setCollisionFilterPair(self.arm_id, self.probe_id, link_index, -1, 0)
        self._built = True

    def _randomise(self) -> None:
        rng = self.np_random
        rng_cfg = self.cfg["patient"]["pose_range"]
        shift = rng.uniform(-1.0, 1.0, size=2) * float(rng_cfg["xy"]) * MM
        yaw = math.radians(float(rng.uniform(-1.0, 1.0)) * float(rng_cfg["yaw_deg"]))
        origin = np.asarray(self.cfg["room"]["patient_origin"], dtype=float) * MM + np.array([shift[0], shift[1], 0])
        self.patient = Frame(rot("z", yaw), origin)
        self.client.resetBasePositionAndOrientation(self.patient_id, list(origin), quat_from_matrix(self.patient.R))
        self._build_volume(rng)
        self._build_windows()
        self._reset_control()

    def _build_volume(self, rng: np.random.Generator) -> None:
        """Rasterise the phantom into the label grid: tissue layers first, then each organ and its parts."""
        img = self.cfg["imaging"]
        parts = self.cfg["patient"]["parts"]
        lo = np.min([np.asarray(p["center"]) - np.asarray(p["half"]) for p in parts.values() if p["skin"]], axis=0)
        hi = np.max([np.asarray(p["center"]) + np.asarray(p["half"]) for p in parts.values() if p["skin"]], axis=0)
        vol = Volume(lo * MM, hi * MM, float(img["voxel"]) * MM, np.uint8)
        self.labels = [_Label(t, "", t) for t in self._tissue_names]
        for layer in self.cfg["layers"]:
            vol.paint(Primitive.from_spec(layer, self._tissue_names.index(layer["tissue"])))
        self.organ_prims: dict[str, Primitive] = {}
        flows: dict[int, Arr] = {}
        for name, spec in self.cfg["organs"].items():
            offset = rng.uniform(-1.0, 1.0, size=3) * float(spec.get("jitter", 0.0)) * MM
            self.labels.append(_Label(name, name, spec["tissue"]))
            prim = Primitive.from_spec(spec, len(self.labels) - 1, offset)
            self.organ_prims[name] = prim
            vol.paint(prim)
            if "flow" in spec:
                flows[len(self.labels) - 1] = np.asarray(spec["flow"], dtype=float) * MM
            for k, part in enumerate(spec.get("parts", ())):
                self.labels.append(_Label(f"{name}.{k}", name, part["tissue"]))
                vol.paint(Primitive.from_spec(part, len(self.labels) - 1, offset))
        self.volume = vol
        tissues = self.cfg["tissues"]
        self._echo = np.array([float(tissues[lab.tissue]["echo"]) for lab in self.labels])
        self._atten = np.array([float(tissues[lab.tissue]["atten"]) for lab in self.labels])
        self._organ_of = np.array([lab.organ for lab in self.labels], dtype=object)
        self._flow_of = np.zeros((len(self.labels), 3))
        for index, flow in flows.items():
            self._flow_of[index] = flow

    def skin_height(self, x: float, y: float) -> float | None:
        """The skin's z (patient frame, m) at (x, y), or None off the patient's skin."""
        best: float | None = None
        for part in self.cfg["patient"]["parts"].values():
            if not part["skin"]:
                continue
            c = np.asarray(part["center"], float) * MM
            h = np.asarray(part["half"], float) * MM
            if abs(x - c[0]) <= h[0] and abs(y - c[1]) <= h[1]:
                top = float(c[2] + h[2])
                best = top if best is None else max(best, top)
        return best

    def _skin_part(self, x: float, y: float) -> tuple[Arr, Arr] | None:
        """(center, half) of the skin part under (x, y) in the patient frame."""
        for part in self.cfg["patient"]["parts"].values():
            c = np.asarray(part["center"], float) * MM
            h = np.asarray(part["half"], float) * MM
            if part["skin"] and abs(x - c[0]) <= h[0] and abs(y - c[1]) <= h[1]:
                return c, h
        return None

    def _build_windows(self) -> None:
        """Windows follow the patient's pose (the robot knows where the patient lies), not each organ's jitter."""
        self.windows = {}
        for key, w in self.cfg["windows"].items():
            organ, side = key.split("/")
            x, y = (float(v) * MM for v in w["skin"])
            z = self.skin_height(x, y)
            if z is None:
                raise ValueError(f"window {key} is off the skin")
            aim_y, aim_z = (float(v) * MM for v in w["aim"])
            a = np.array([0.0, aim_y - y, aim_z - z])
            a /= np.linalg.norm(a)
            along = np.array([0.0, 1.0, 0.0]) if w["plane"] == "transverse" else np.array([1.0, 0.0, 0.0])
            xt = along - a * float(along @ a)
            xt /= np.linalg.norm(xt)
            R_local = np.column_stack([xt, np.cross(a, xt), a])
            self.windows[key] = _Window(organ, side, self.patient.to_world(np.array([x, y, z])),
                                        self.patient.R @ R_local, float(w["depth"]), float(w["gain"]),
                                        tuple(w["labels"]))

    # -- controller state ----------------------------------------------------------------------
    def _reset_control(self) -> None:
        self.q_cmd = self._home_q.copy()
        tip, R, _, _ = self.arm.fk(self.q_cmd)
        self.ref_pos: Arr = tip
        self.ref_R: Arr = R
        self.depth = 0.0
        self.f_target: float | None = None
        self.joint_target: Arr | None = None
        self.frozen = False
        self.retracting = False
        self.violation: tuple[FailureKind, str] | None = None
        self.force_n = 0.0
        self.penetration_mm = 0.0
        self.tip = tip
        self.tip_R = R
        self.tip_speed = 0.0
        self.q_meas = self.q_cmd.copy()
        self._reach_bad = 0
        self.window: _Window | None = None
        self.image_invert = False
        img = self.cfg["imaging"]["default"]
        self.imaging: dict[str, Any] = {"depth_mm": float(img["depth"]), "gain_pct": float(img["gain"]),
                                        "mode": str(img["mode"])}
        self.imaging_user: set[str] = set()
        self.sweep_log: list[dict[str, float]] = []
        self.sweep_target_n: float | None = None
        self.captures: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def _drive(self) -> None:
        pybullet.setJointMotorControlArray(
            self.arm_id, self.joints, pybullet.POSITION_CONTROL, targetPositions=self.q_cmd.tolist(),
            forces=self._motor_forces, positionGains=self._position_gains, physicsClientId=self._cid)

    def _settle(self, steps: int = 60) -> None:
        for j, q in zip(self.joints, self.q_cmd):
            self.client.resetJointState(self.arm_id, j, float(q))
        self._drive()
        super()._settle(steps)
        self._measure(0.0, 0.0, 0)

    def _measure(self, force_sum: float, pen: float, samples: int) -> None:
        cid = self._cid
        self.force_n = force_sum / samples if samples else 0.0
        self.penetration_mm = pen / MM
        pos, orn = pybullet.getBasePositionAndOrientation(self.probe_id, physicsClientId=cid)
        R = matrix_from_quat(orn)
        self.tip_R = R
        r = R[:, 2] * self._probe_tip
        self.tip = np.asarray(pos) + r
        (vx, vy, vz), (wx, wy, wz) = pybullet.getBaseVelocity(self.probe_id, physicsClientId=cid)
        self.tip_speed = math.sqrt((vx + wy * r[2] - wz * r[1]) ** 2 + (vy + wz * r[0] - wx * r[2]) ** 2
                                   + (vz + wx * r[1] - wy * r[0]) ** 2)
        self.q_meas = np.array([st[0] for st in pybullet.getJointStates(self.arm_id, self.joints,
                                                                          physicsClientId=cid)])

    def advance(self) -> None:
        """One control step: set-point -> admittance -> IK -> motors -> physics -> measurements -> monitors."""
        dt = self.control_period_s
        if not self.frozen:
            if self.f_target is not None:
                rate = float(self._ctl["admittance"]) * MM * (self.f_target - self.force_n)
                vmax = float(self._ctl["approach_speed"]) * MM
                self.depth += max(-vmax, min(vmax, rate)) * dt
            if self.joint_target is not None:
                q_new = self.joint_target.copy()
                self._reach_bad = 0
            else:
                target = self.ref_pos + self.ref_R[:, 2] * self.depth
                q_new, err = self.arm.ik_step(target, self.ref_R, self.q_cmd)
                self._reach_bad = self._reach_bad + 1 if err > float(self.cfg["limits"]["reach_error"]) * MM else 0
            if not self.frozen:   # a halt from another thread while the IK ran wins
                self.q_cmd = q_new
        self._drive()
        force = 0.0
        pen = 0.0
        cid = self._cid
        for _ in range(self.substeps):
            pybullet.stepSimulation(physicsClientId=cid)
            for cp in pybullet.getContactPoints(self.probe_id, self.patient_id, physicsClientId=cid):
                force += cp[9]
                pen = max(pen, -cp[8])
        self.sim_steps += self.substeps
        self._measure(force, pen, self.substeps)
        if self.violation is None and not self.frozen:
            found = self._monitor()
            if found is not None:
                self.violation = found
                self.events.append({"t": self.sim_time, "limit": found[0].value, "message": found[1]})
                self.stop_motion()
                self._drive()

    def _monitor(self) -> tuple[FailureKind, str] | None:
        """The safety limits, checked on what the physics measured this control step."""
        lim = self.cfg["limits"]
        trip = self.force_cap_n + self.force_tolerance_n
        if self.force_n > trip and not self.retracting:
            return FailureKind.FORCE_LIMIT, (f"contact force {self.force_n:.1f} N above the {self.force_cap_n:g} N cap "
                                             f"(trips at {trip:g} N)")
        if self.penetration_mm > self.max_penetration_mm and not self.retracting:
            return FailureKind.WORKSPACE_LIMIT, (f"skin indentation {self.penetration_mm:.1f} mm beyond the "
                                                 f"{self.max_penetration_mm:g} mm limit")
        cid = self._cid
        for other in (self.patient_id, self.table_id):
            if pybullet.getContactPoints(self.arm_id, other, physicsClientId=cid):
                return FailureKind.COLLISION, "the arm touched the patient or the table"
        if pybullet.getContactPoints(self.probe_id, self.table_id, physicsClientId=cid):
            return FailureKind.COLLISION, "the probe touched the table"
        margin = self._joint_margin
        bad = np.nonzero((self.q_meas < self.arm.lo + margin) | (self.q_meas > self.arm.hi - margin))[0]
        if bad.size:
            return FailureKind.JOINT_LIMIT, f"joint {int(bad[0]) + 1} at its limit"
        if self._reach_bad >= int(lim["reach_steps"]):
            return FailureKind.JOINT_LIMIT, "the set-point is out of the arm's reach"
        contact = self.in_contact
        vmax = float(lim["contact_speed"] if contact else lim["free_speed"])
        if self.tip_speed * 1000.0 > vmax:
            return FailureKind.SPEED_LIMIT, f"probe speed {self.tip_speed * 1000:.0f} mm/s above {vmax:g} mm/s"
        ws = lim["workspace"]
        if np.any(self.tip < np.asarray(ws["lo"]) * MM) or np.any(self.tip > np.asarray(ws["hi"]) * MM):
            return FailureKind.WORKSPACE_LIMIT, "the probe left its workspace"
        if contact and not self.retracting and not self.on_skin(self.tip, self.tip_R):
            return FailureKind.WORKSPACE_LIMIT, "the probe reached the edge of the skin it may touch"
        return None

    def on_skin(self, tip: Arr, R: Arr) -> bool:
        """Whether both ends of the lens lie over one skin part, ``skin_margin`` inside its edges."""
        half = float(self.cfg["probe"]["array"]) * MM / 2.0
        margin = float(self.cfg["limits"]["skin_margin"]) * MM
        local = self.patient.to_local(np.stack([tip + R[:, 0] * half, tip - R[:, 0] * half]))
        part = self._skin_part(float(local[0, 0]), float(local[0, 1]))
        if part is None:
            return False
        c, h = part
        return bool(np.all(np.abs(local[:, :2] - c[:2]) <= h[:2] - margin))

    def stop_motion(self) -> None:
        """Hold the joints where they are now; a later skill resumes from the measured pose.

        Only state changes here: ``halt`` may come from another thread, and the physics client is not
        thread-safe, so the hold reaches the motors at the start of the next control step.
        """
        self.frozen = True
        self.joint_target = None
        self.q_cmd = self.q_meas.copy()

    def resume(self) -> None:
        """Called as a skill starts: a held arm takes its measured pose as the new set-point."""
        self.violation = None
        self.retracting = False
        if self.frozen:
            self.frozen = False
            self.q_cmd = self.q_meas.copy()
            tip, R, _, _ = self.arm.fk(self.q_cmd)
            self.ref_pos, self.ref_R, self.depth = tip, R, 0.0
            self.joint_target = None

    def rebase(self) -> None:
        """Fold the force loop's depth into the reference point, so rotations pivot on the lens."""
        self.ref_pos = self.ref_pos + self.ref_R[:, 2] * self.depth
        self.depth = 0.0

    # -- facts ---------------------------------------------------------------------------------
    @property
    def in_contact(self) -> bool:
        return self.force_n > float(self._ctl["contact_threshold"])

    def clearance_mm(self) -> float | None:
        """Height of the lens over the skin under it (mm), None when not over the skin."""
        local = self.patient.to_local(self.tip)
        z = self.skin_height(float(local[0]), float(local[1]))
        return None if z is None else (float(local[2]) - z) / MM

    def probe_state(self) -> str:
        if self.in_contact:
            return "contact"
        h = self.clearance_mm()
        if h is not None and h < float(self._ctl["hovering_below"]):
            return "hovering"
        return "away"

    def world_state(self) -> WorldState:
        self._ensure_built()
        return WorldState(facts={"probe": self.probe_state()}, known=True)

    def observation(self) -> dict[str, Any]:
        """Poses in metres (world frame), forces in newtons; JSON-able."""
        return {
            "sim_time": self.sim_time,
            "probe": self.probe_state(),
            "tip": [float(v) for v in self.tip],
            "probe_axis": [float(v) for v in self.tip_R[:, 2]],
            "array_axis": [float(v) for v in self.tip_R[:, 0]],
            "force_n": float(self.force_n),
            "target_force_n": self.f_target,
            "penetration_mm": float(self.penetration_mm),
            "clearance_mm": self.clearance_mm(),
            "joints": [float(v) for v in self.q_meas],
            "window": None if self.window is None else f"{self.window.organ}/{self.window.side}",
            "imaging": dict(self.imaging),
            "patient": {"origin": [float(v) for v in self.patient.t],
                        "yaw_deg": math.degrees(math.atan2(self.patient.R[1, 0], self.patient.R[0, 0]))},
            "organs": {k: [float(v) for v in p.center] for k, p in self.organ_prims.items()},
            "captures": len(self.captures),
            "halted": self.halted,
        }

    def telemetry(self) -> dict[str, Any]:
        return {"probe": self.probe_state(), "force_n": round(self.force_n, 2),
                "tip_mm": [round(v * 1000, 1) for v in self.tip]}

    def camera(self) -> tuple[list[float], list[float]]:
        c = self.client
        target = list(self.patient.to_world(np.array([0.1, 0.0, 0.0])))
        view = c.computeViewMatrixFromYawPitchRoll(target, 1.5, 145, -30, 0, 2)
        proj = c.computeProjectionMatrixFOV(50, 4 / 3, 0.05, 5.0)
        return list(view), list(proj)

    # -- imaging ---------------------------------------------------------------------------------
    def image_dir(self) -> Path:
        if self.record_dir is not None:
            return Path(self.record_dir)
        if self._tmp_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="medrobot_ultrasound_"))
        return self._tmp_dir

    def bmode(self) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
        """The image in the probe's plane now: (pixels, label per pixel).

        Rows go down the beam; columns run along the array from its marker end (the patient's right in a
        transverse view, the head in a longitudinal one), which the screen shows on the left. Each pixel's echo is its tissue's echogenicity
        times Rayleigh speckle drawn from the scene RNG, attenuated by every tissue above it (so bone
        and gas cast shadows, fluid enhances) against the machine's time-gain compensation, then the gain
        and a log compression over the dynamic range. Without contact there is no coupling and no echo.
        """
        assert self.volume is not None
        n = self.image_px
        img_cfg = self.cfg["imaging"]
        depth = float(self.imaging["depth_mm"]) * MM
        width = float(self.cfg["probe"]["array"]) * MM
        rows = (np.arange(n) + 0.5) / n * depth
        cols = (0.5 - (np.arange(n) + 0.5) / n) * width * (-1.0 if self.image_invert else 1.0)
        pts = (self.tip[None, None, :] + rows[:, None, None] * self.tip_R[:, 2][None, None, :]
               + cols[None, :, None] * self.tip_R[:, 0][None, None, :])
        labels = self.volume.sample(self.patient.to_local(pts)).astype(np.int64)
        gel = np.cumprod(labels == 0, axis=0).astype(bool)
        echo = np.where(gel, 0.0, self._echo[labels])
        atten = np.where(gel, 0.0, self._atten[labels])
        step_cm = depth / n * 100.0
        atten_db = np.cumsum(atten, axis=0) * step_cm - atten * step_cm
        tgc_db = rows[:, None] * 100.0 * float(img_cfg["tgc_db_per_cm"])
        amp = echo * 10.0 ** ((tgc_db - atten_db) * 2.0 / 20.0)
        interfaces = np.zeros_like(amp)
        interfaces[1:] = (labels[1:] != labels[:-1]) * 0.6 * np.minimum(echo[1:] + 0.2, 1.0) * 10.0 ** (
            (tgc_db[1:] - atten_db[1:]) * 2.0 / 20.0)
        speckle = self.np_random.rayleigh(math.sqrt(2.0 / math.pi), size=(n, n + 4))
        k = int(img_cfg["speckle_smoothing"])
        if k > 1:
            kernel = np.ones(k) / k
            speckle = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, speckle)
        amp = amp * speckle[:, 2:2 + n] + interfaces
        if not self.in_contact:
            amp = np.zeros_like(amp)
        dr = float(img_cfg["dynamic_range_db"])
        gain_db = float(img_cfg["system_gain_db"]) + (float(self.imaging["gain_pct"]) - 50.0) * float(
            img_cfg["gain_db_per_pct"])
        db = 20.0 * np.log10(np.maximum(amp, 1e-9)) + gain_db
        grey = np.clip((db + dr) / dr, 0.0, 1.0) * 255.0
        return grey.astype(np.uint8), labels

    def doppler(self, grey: NDArray[np.uint8], labels: NDArray[np.int64]) -> NDArray[np.uint8]:
        """Colour flow inside the central colour box: red toward the probe, blue away.

        The colour beams are steered in the image plane, as on a linear probe, so a vessel running along
        a longitudinal view (at 90 degrees to the unsteered beam) still shows flow.
        """
        n = self.image_px
        rgb = np.repeat(grey[:, :, None], 3, axis=2).astype(np.float64)
        steer = math.radians(float(self.cfg["imaging"]["doppler_steer_deg"]))
        beam_local = self.patient.dir_to_local(self.tip_R @ np.array([math.sin(steer), 0.0, math.cos(steer)]))
        v = -(self._flow_of[labels] @ beam_local)
        box = np.zeros((n, n), dtype=bool)
        box[:, n // 5: n - n // 5] = True
        flow = box & (np.abs(v) > 0.01) & self.in_contact
        scale = np.clip(np.abs(v) / 0.3, 0.3, 1.0)
        rgb[flow & (v > 0)] = np.stack([255 * scale, 40 * scale, 30 * scale], axis=-1)[flow & (v > 0)]
        rgb[flow & (v < 0)] = np.stack([30 * scale, 60 * scale, 255 * scale], axis=-1)[flow & (v < 0)]
        rgb[0, box[0]] = 200.0
        rgb[-1, box[-1]] = 200.0
        return rgb.astype(np.uint8)

    def capture(self, label: str) -> dict[str, Any]:
        """Save the current image as a PNG and report what it shows."""
        grey, labels = self.bmode()
        pixels = self.doppler(grey, labels) if self.imaging["mode"] == "color_doppler" else grey
        index = len(self.captures)
        name = slug(label, fallback=(f"{self.window.organ}_{self.window.side}" if self.window else "capture"))
        path = save_png(pixels, self.image_dir() / f"us_{index:03d}_{name}.png")
        organ_ids = self._organ_of[labels]
        names, counts = np.unique(organ_ids[organ_ids != ""], return_counts=True)
        shares = {str(k): float(v) / labels.size for k, v in zip(names, counts)}
        record = {
            "path": str(path),
            "label": label,
            "organ_shares": shares,
            "window": None if self.window is None else f"{self.window.organ}/{self.window.side}",
            "depth_mm": float(self.imaging["depth_mm"]),
            "gain_pct": float(self.imaging["gain_pct"]),
            "mode": self.imaging["mode"],
            "inverted": self.image_invert,
            "width_mm": float(self.cfg["probe"]["array"]),
            "pixels": [int(self.image_px), int(self.image_px)],
            "force_n": float(self.force_n),
            "sim_time": self.sim_time,
        }
        self.captures.append(record)
        return record

    # -- skills ------------------------------------------------------------------------------------
    def window_for(self, organ: str, side: str) -> _Window:
        key = f"{organ}/{side}"
        if key not in self.windows:
            raise ValueError(f"no acoustic window for {organ} on the {side} side")
        return self.windows[key]

    def skills(self) -> Mapping[str, type[SceneSkill[Any]]]:
        return _SKILLS


class _Skill(SceneSkill["UltrasoundScene"]):
    """Common to the scene's skills: resume a held arm, and turn a tripped limit into a latched halt."""

    def steps_for(self, seconds: float) -> int:
        return int(seconds / self.scene.control_period_s) + 1


class _PathSkill(_Skill):
    """Follow a path of set-points, then wait until the measured lens is on the last one."""

    path: _Path
    tolerance = 0.002

    def run_path(self) -> BehaviourStatus:
        s = self.scene
        if not self.path.done:
            s.ref_pos, s.ref_R = self.path.step()
            self.progress = 0.95 * self.path.progress
            return BehaviourStatus.RUNNING
        target = s.ref_pos + s.ref_R[:, 2] * s.depth
        if float(np.linalg.norm(s.tip - target)) < self.tolerance:
            self.progress = 1.0
            return BehaviourStatus.SUCCESS
        return BehaviourStatus.RUNNING

    def limit_steps(self) -> None:
        self.max_steps = self.steps_for(self.path.duration + 3.0)


class _Transfer(_PathSkill):
    """Rise to the safe height, swing in joint space to a known arm configuration, then approach.

    Swinging in joint space rather than tracking a line in space brings the arm to the same
    configuration whatever it did before, so wrist turns and elbow drift from earlier skills never pile
    up into a joint limit; the speed of the probe is capped during the swing as on any free move. A
    swing that would bring the lens near the skin goes by the home pose instead.
    """

    def plan_transfer(self, goal_q: Arr, approach: list[tuple[Arr, Arr]] | None) -> None:
        s = self.scene
        s.f_target, s.joint_target = None, None
        s.rebase()
        up = s.patient.R[:, 2]
        safe = float(s.patient.t[2]) + float(s._ctl["safe_height"]) * MM
        start = s.ref_pos.copy()
        lift = start + up * max(0.0, safe - float(start[2]))
        self.path = self.make_path([(start, s.ref_R), (lift, s.ref_R)])
        q_lift, _ = s.arm.converge(lift, s.ref_R, s.q_cmd.copy(), 30)
        direct = self.swing_clear(q_lift, goal_q)
        self.swings = [goal_q] if direct else [s._home_q.copy(), goal_q]
        self.goal_q = self.swings[0]
        self.approach = approach
        self.stage = "rise"
        self.joint_rate = math.radians(float(s._ctl["joint_speed_deg"])) * s.control_period_s
        arm_reach = 1.3  # metres: no probe path in a swing is longer than the arm's span
        swing_s = len(self.swings) * (math.pi / (self.joint_rate / s.control_period_s)
                                      + arm_reach / (0.8 * float(s._ctl["free_speed"]) * MM))
        tail = self.make_path(approach).duration if approach else 0.0
        self.max_steps = self.steps_for(self.path.duration + swing_s + tail + 5.0)

    def swing_clear(self, q0: Arr, q1: Arr) -> bool:
        """Whether the lens stays ``swing_clearance`` over the skin all along a straight joint-space swing;
        if not, the swing goes by the home pose, beside the table."""
        s = self.scene
        need = float(s._ctl["swing_clearance"]) * MM
        for f in np.linspace(0.0, 1.0, 25):
            local = s.patient.to_local(s.arm.fk(q0 + (q1 - q0) * f)[0])
            skin = s.skin_height(float(local[0]), float(local[1]))
            if skin is not None and float(local[2]) - skin < need:
                return False
        return True

    def make_path(self, poses: list[tuple[Arr, Arr]]) -> _Path:
        ctl = self.scene._ctl
        return _Path(poses, float(ctl["free_speed"]) * MM, math.radians(float(ctl["turn_speed_deg"])),
                     self.scene.control_period_s)

    def arrived(self) -> BehaviourStatus:
        """Called once the transfer is over."""
        return BehaviourStatus.SUCCESS

    def tick(self) -> BehaviourStatus:
        s = self.scene
        if self.stage == "rise":
            if self.run_path() is BehaviourStatus.RUNNING:
                self.progress = 0.2 * self.path.progress
                return BehaviourStatus.RUNNING
            self.stage = "swing"
            s.joint_target = s.q_cmd.copy()
        if self.stage == "swing":
            assert s.joint_target is not None
            diff = self.goal_q - s.joint_target
            move = diff * min(1.0, self.joint_rate / max(float(np.max(np.abs(diff))), 1e-12))   # a straight line
            reach = float(np.linalg.norm(s.arm.fk(s.joint_target + move)[0] - s.arm.fk(s.joint_target)[0]))
            allowed = 0.8 * float(s._ctl["free_speed"]) * MM * s.control_period_s
            if reach > allowed:
                move *= allowed / reach
            s.joint_target = s.joint_target + move
            self.progress = 0.2 + 0.6 * (1.0 - min(1.0, float(np.max(np.abs(diff))) / math.pi))
            if float(np.max(np.abs(diff))) > 1e-9 or float(np.max(np.abs(s.q_meas - self.goal_q))) > 0.01:
                return BehaviourStatus.RUNNING
            if self.goal_q is not self.swings[-1]:
                self.goal_q = self.swings[-1]
                return BehaviourStatus.RUNNING
            tip, R, _, _ = s.arm.fk(self.goal_q)
            s.q_cmd = self.goal_q.copy()
            s.joint_target = None
            s.ref_pos, s.ref_R, s.depth = tip, R, 0.0
            if not self.approach:
                self.progress = 1.0
                return self.arrived()
            self.stage = "approach"
            self.path = self.make_path([(tip, R), *self.approach])
        if self.run_path() is BehaviourStatus.RUNNING:
            self.progress = 0.8 + 0.2 * self.path.progress
            return BehaviourStatus.RUNNING
        self.progress = 1.0
        return self.arrived()


class _MoveToWindow(_Transfer):
    def begin(self) -> None:
        s = self.scene
        if s.in_contact:
            self.fail(FailureKind.PRECONDITION, "the probe is touching the skin; lift it first")
            return
        try:
            w = s.window_for(self.args["organ"], self.args["side"])
        except ValueError as exc:
            self.fail(FailureKind.INVALID, str(exc))
            return
        hover = w.skin - w.R[:, 2] * float(s._ctl["hover"]) * MM
        up = s.patient.R[:, 2]
        safe = float(s.patient.t[2]) + float(s._ctl["safe_height"]) * MM
        above = hover + up * max(0.0, safe - float(hover[2]))
        # The probe may be held either way round (the screen's left-right invert keeps the marker side on
        # the left): take the grip that leaves the wrist most room to rotate the probe both ways.
        grips = []
        for invert in (False, True):
            R = w.R @ rot("z", math.pi) if invert else w.R
            q, err = s.arm.converge(above, R, s.arm.rest.copy())
            if err < 1e-3 and s.arm.feasible(self.make_path([(above, R), (hover, R)]).samples(), q,
                                             float(s.cfg["limits"]["reach_error"]) * MM):
                grips.append((abs(float(q[-1])), invert, q, R))
        if not grips:
            self.fail(FailureKind.JOINT_LIMIT, f"the {w.side} {w.organ} window is out of the arm's reach")
            return
        _, self.invert, q_above, R = min(grips, key=lambda g: g[0])
        self.window = w
        self.plan_transfer(q_above, [(hover, R)])

    def arrived(self) -> BehaviourStatus:
        s = self.scene
        s.window = self.window
        s.image_invert = self.invert
        if "depth_mm" not in s.imaging_user:
            s.imaging["depth_mm"] = self.window.depth_mm
        if "gain_pct" not in s.imaging_user:
            s.imaging["gain_pct"] = self.window.gain_pct
        self.outcome = {"window": f"{self.window.organ}/{self.window.side}", "clearance_mm": s.clearance_mm(),
                        "tip": [float(v) for v in s.tip], "imaging": dict(s.imaging)}
        self.message = f"hovering over the {self.window.side} {self.window.organ} window"
        return BehaviourStatus.SUCCESS


class _Press(_Skill):
    """Regulate the force to ``force_n`` and finish once it has stayed in the settle band."""

    def begin(self) -> None:
        s = self.scene
        s.joint_target = None
        s.f_target = float(self.args["force_n"])
        self._inside = 0
        gap = max(0.0, (s.clearance_mm() or 0.0)) + 20.0
        self.max_steps = self.steps_for(gap / float(s._ctl["approach_speed"]) + 4.0)

    def tick(self) -> BehaviourStatus:
        s = self.scene
        assert s.f_target is not None
        band = float(s._ctl["settle_band"])
        self._inside = self._inside + 1 if (s.in_contact and abs(s.force_n - s.f_target) < band) else 0
        self.progress = min(0.99, s.force_n / s.f_target)
        if self._inside >= int(s._ctl["settle_steps"]):
            self.progress = 1.0
            self.outcome = {"force_n": float(s.force_n), "target_force_n": s.f_target,
                            "penetration_mm": float(s.penetration_mm)}
            self.message = f"in contact at {s.force_n:.1f} N"
            return BehaviourStatus.SUCCESS
        return BehaviourStatus.RUNNING

    def terminate(self, status: BehaviourStatus) -> None:
        if status is BehaviourStatus.FAILURE and self.failure is FailureKind.TIMEOUT:
            self.message = f"the force did not settle at {self.scene.f_target} N"


class _MakeContact(_Press):
    def begin(self) -> None:
        s = self.scene
        if s.in_contact:
            self.fail(FailureKind.PRECONDITION, "the probe is already in contact")
            return
        if s.probe_state() != "hovering":
            self.fail(FailureKind.PRECONDITION, "the probe is not hovering over the skin")
            return
        super().begin()


class _SetForce(_Press):
    def begin(self) -> None:
        if not self.scene.in_contact:
            self.fail(FailureKind.PRECONDITION, "the probe is not in contact")
            return
        super().begin()


class _Sweep(_Skill):
    def begin(self) -> None:
        s = self.scene
        if not s.in_contact or s.f_target is None:
            self.fail(FailureKind.PRECONDITION, "the probe is not in contact")
            return
        s.rebase()
        direction = str(self.args["direction"])
        local = s.patient.to_local(s.tip)
        if direction in ("cranial", "caudal"):
            d = np.array([1.0 if direction == "cranial" else -1.0, 0.0, 0.0])
        else:
            if abs(float(local[1])) < 0.005:
                self.fail(FailureKind.INVALID, f"{direction} is undefined on the midline; sweep cranial or caudal")
                return
            outward = math.copysign(1.0, float(local[1]))
            d = np.array([0.0, outward if direction == "lateral" else -outward, 0.0])
        self.dir = s.patient.dir_to_world(d)
        self.distance = float(self.args["distance_mm"]) * MM
        self.speed = float(self.args["speed_mm_s"]) * MM
        self.travelled = 0.0
        self.start_tip = s.tip.copy()
        s.sweep_log = []
        s.sweep_target_n = s.f_target
        self.max_steps = self.steps_for(self.distance / self.speed + 3.0)

    def tick(self) -> BehaviourStatus:
        s = self.scene
        s.sweep_log.append({"t": s.sim_time, "force_n": float(s.force_n), "target_n": float(s.f_target or 0.0),
                            "contact": float(s.in_contact)})
        if self.travelled >= self.distance - 1e-9:
            forces = [r["force_n"] for r in s.sweep_log]
            self.outcome = {"distance_mm": float(np.linalg.norm(s.tip - self.start_tip)) / MM,
                            "force_mean_n": float(np.mean(forces)), "force_min_n": float(np.min(forces)),
                            "force_max_n": float(np.max(forces)), "samples": len(forces)}
            self.message = f"swept {self.outcome['distance_mm']:.0f} mm {self.args['direction']}"
            self.progress = 1.0
            return BehaviourStatus.SUCCESS
        step = min(self.speed * s.control_period_s, self.distance - self.travelled)
        s.ref_pos = s.ref_pos + self.dir * step
        self.travelled += step
        self.progress = self.travelled / self.distance
        return BehaviourStatus.RUNNING


class _Turn(_Skill):
    """Turn the probe about its lens through a list of angles (fan, rotate, tilt); the force loop keeps running."""

    axis_index = 0
    speed_key = "turn_speed_deg"

    def angles(self) -> list[float]:
        raise NotImplementedError

    def begin(self) -> None:
        s = self.scene
        s.joint_target = None
        s.rebase()
        self.R0 = s.ref_R.copy()
        self.axis_local = np.eye(3)[:, self.axis_index]
        self.targets = [math.radians(a) for a in self.angles()]
        max_tilt = math.radians(float(s.cfg["limits"]["max_tilt_deg"]))
        inward = -s.patient.R[:, 2]
        for a in self.targets:
            R = self.R0 @ rot_about(self.axis_local, a)
            tilt = math.acos(max(-1.0, min(1.0, float(R[:, 2] @ inward))))
            if tilt > max_tilt + 1e-6:
                self.fail(FailureKind.WORKSPACE_LIMIT, f"that would tilt the probe {math.degrees(tilt):.0f} deg from "
                          f"the skin normal; the limit is {math.degrees(max_tilt):g} deg")
                return
        self.rate = math.radians(float(s._ctl[self.speed_key])) * s.control_period_s
        poses: list[tuple[Arr, Arr]] = []
        angle = 0.0
        for goal in self.targets:
            while abs(goal - angle) > 1e-9:
                angle += max(-self.rate, min(self.rate, goal - angle))
                poses.append((s.ref_pos, self.R0 @ rot_about(self.axis_local, angle)))
        if s.in_contact and not all(s.on_skin(pos, R) for pos, R in poses[::5] + poses[-1:]):
            self.fail(FailureKind.WORKSPACE_LIMIT, "turning the probe here would take the lens over the edge of "
                      "the skin")
            return
        if poses and not s.arm.feasible(poses, s.q_cmd.copy(), float(s.cfg["limits"]["reach_error"]) * MM):
            self.fail(FailureKind.JOINT_LIMIT, "the arm cannot turn the probe that far (joint limits)")
            return
        self.angle = 0.0
        self.index = 0
        travel = sum(abs(b - a) for a, b in zip([0.0] + self.targets, self.targets))
        self.total = max(travel, 1e-9)
        self.done_travel = 0.0
        self.forces: list[float] = []
        self.max_steps = self.steps_for(travel / (self.rate / s.control_period_s) + 3.0)

    def tick(self) -> BehaviourStatus:
        s = self.scene
        if s.in_contact:
            self.forces.append(float(s.force_n))
        if self.index >= len(self.targets):
            self.outcome = {"angles_deg": [math.degrees(a) for a in self.targets],
                            "probe_axis": [float(v) for v in s.tip_R[:, 2]]}
            if self.forces:
                self.outcome["force_mean_n"] = float(np.mean(self.forces))
            self.progress = 1.0
            return BehaviourStatus.SUCCESS
        goal = self.targets[self.index]
        delta = max(-self.rate, min(self.rate, goal - self.angle))
        self.angle += delta
        self.done_travel += abs(delta)
        if abs(goal - self.angle) < 1e-9:
            self.index += 1
        s.ref_R = self.R0 @ rot_about(self.axis_local, self.angle)
        self.progress = self.done_travel / self.total
        return BehaviourStatus.RUNNING


class _Fan(_Turn):
    axis_index = 0
    speed_key = "fan_speed_deg"

    def begin(self) -> None:
        if not self.scene.in_contact:
            self.fail(FailureKind.PRECONDITION, "the probe is not in contact")
            return
        super().begin()

    def angles(self) -> list[float]:
        a = float(self.args["angle_deg"])
        return [a, -a, 0.0]


class _Rotate(_Turn):
    axis_index = 2
    flip = False

    def begin(self) -> None:
        super().begin()
        if self.failure is FailureKind.JOINT_LIMIT and abs(float(self.args["angle_deg"])) >= 179.999:
            # half a turn ends in the same pose either way round: take the way the wrist can go
            self.failure, self.message, self.flip = FailureKind.NONE, "", True
            super().begin()

    def angles(self) -> list[float]:
        angle = float(self.args["angle_deg"])
        return [-angle if self.flip else angle]


class _Tilt(_Turn):
    def begin(self) -> None:
        self.axis_index = 0 if self.args["axis"] == "roll" else 1
        super().begin()

    def angles(self) -> list[float]:
        return [float(self.args["angle_deg"])]


class _SetImaging(_Skill):
    def tick(self) -> BehaviourStatus:
        s = self.scene
        for key in ("depth_mm", "gain_pct", "mode"):
            if self.args.get(key) is not None:
                s.imaging[key] = self.args[key] if key == "mode" else float(self.args[key])
                s.imaging_user.add(key)
        self.outcome = dict(s.imaging)
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


class _Capture(_Skill):
    def tick(self) -> BehaviourStatus:
        s = self.scene
        if not s.in_contact:
            self.fail(FailureKind.PRECONDITION, "the probe is not in contact: no image")
            return BehaviourStatus.FAILURE
        self.outcome = s.capture(str(self.args.get("label") or ""))
        self.message = f"saved {self.outcome['path']}"
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


class _Lift(_PathSkill):
    tolerance = 0.003

    def begin(self) -> None:
        s = self.scene
        s.f_target, s.joint_target = None, None
        s.retracting = True
        s.rebase()
        start = s.tip.copy()
        back = (float(self.args["height_mm"]) + s.penetration_mm) * MM
        end = start - s.ref_R[:, 2] * back
        s.ref_pos = start
        self.path = _Path([(start, s.ref_R), (end, s.ref_R)], float(s._ctl["lift_speed"]) * MM,
                          math.radians(float(s._ctl["turn_speed_deg"])), s.control_period_s)
        self.limit_steps()

    def tick(self) -> BehaviourStatus:
        status = self.run_path()
        if status is BehaviourStatus.SUCCESS:
            s = self.scene
            s.retracting = False
            self.outcome = {"clearance_mm": s.clearance_mm(), "tip": [float(v) for v in s.tip]}
            self.message = "probe lifted off the skin"
        return status


class _Home(_Transfer):
    def begin(self) -> None:
        s = self.scene
        if s.in_contact:
            self.fail(FailureKind.PRECONDITION, "the probe is touching the skin; lift it first")
            return
        self.plan_transfer(s._home_q.copy(), None)

    def arrived(self) -> BehaviourStatus:
        s = self.scene
        s.window = None
        self.outcome = {"joints": [float(v) for v in s.q_meas], "tip": [float(v) for v in s.tip]}
        self.message = "arm at home"
        return BehaviourStatus.SUCCESS


_SKILLS: dict[str, type[_Skill]] = {
    "move_to_window": _MoveToWindow,
    "make_contact": _MakeContact,
    "set_force": _SetForce,
    "sweep": _Sweep,
    "fan": _Fan,
    "rotate_probe": _Rotate,
    "tilt_probe": _Tilt,
    "set_imaging": _SetImaging,
    "capture": _Capture,
    "lift_probe": _Lift,
    "home": _Home,
}
