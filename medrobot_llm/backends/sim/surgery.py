"""SurgeryScene-v0: two remote-centre-of-motion instrument arms, a needle, a vessel phantom and a shunt.

The arms (``sim/surgery/psm.urdf``) are driven by joint motors toward an analytic inverse kinematics of
a Cartesian set-point per arm (tool tip and the jaws' heading about the vertical); the instrument always
points down at the pad. Grasping is physical: the jaws close under a force-limited motor, and only when
both jaws press on the object (contact normal forces from the engine) does a fixed constraint take the
object at the pose it has relative to the gripper at that moment, standing for the friction of the grip
(its strength is the friction the grip force can carry, so a heavier pull slips). The grip lapses the
moment a jaw loses contact or the jaws open, and the object falls. The vessel's rim is pulled back by the
tissue's elastic force (applied to its joints every physics step), so retracting it costs a measurable
force that the safety monitor watches.

Skills only move set-points; ``advance`` runs the controller, the physics and the safety monitors, so a
limit is caught, and the arms held, in the control step it happens.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pybullet
import yaml
from numpy.typing import NDArray

from medrobot_llm.backends.base import BehaviourStatus, FailureKind
from medrobot_llm.core.plan import Step
from medrobot_llm.core.validator import WorldState
from medrobot_llm.backends.sim.base import Scene, SceneSkill, assets_dir
from medrobot_llm.backends.sim.imaging import matrix_from_quat, quat_from_matrix, rot

__all__ = ["ARMS", "OBJECTS", "SurgeryScene", "load_config"]

Arr = NDArray[np.float64]
MM = 1e-3
#: joint indices in psm.urdf
_ARM_JOINTS = [0, 1, 2, 3, 4, 5]
_GRIPPER = 5
_JAWS = (6, 7)
ARMS = ("psm1", "psm2")
OBJECTS = ("needle", "vessel", "shunt")
#: retraction directions in the camera (world) frame, as the command set names them
_DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "forward": (1.0, 0.0, 0.0), "backward": (-1.0, 0.0, 0.0), "left": (0.0, 1.0, 0.0),
    "right": (0.0, -1.0, 0.0), "up": (0.0, 0.0, 1.0), "down": (0.0, 0.0, -1.0),
}


def load_config() -> dict[str, Any]:
    """The scene definition (``sim/surgery/scene.yaml``)."""
    with open(assets_dir() / "surgery" / "scene.yaml", encoding="utf-8") as fh:
        cfg: dict[str, Any] = yaml.safe_load(fh)
    return cfg


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def _yaw_of(R: Arr) -> float:
    return math.atan2(float(R[1, 0]), float(R[0, 0]))


def _trapezoid(t: float, total: float, ramp: float) -> float:
    """The share of a move done at time ``t`` of ``total``, speeding up and slowing down over ``ramp`` each."""
    if ramp <= 0.0:
        return min(1.0, t / total)
    peak = 1.0 / (total - ramp)
    if t < ramp:
        return 0.5 * peak * t * t / ramp
    if t > total - ramp:
        return max(0.0, 1.0 - 0.5 * peak * (total - t) ** 2 / ramp)
    return peak * (t - 0.5 * ramp)


def _v(values: Any, scale: float = MM) -> Arr:
    return np.asarray(values, dtype=float) * scale


class _Kinematics:
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
class _Arm:
    """One instrument arm: its body, set-point and what the physics measured this control step."""

    name: str
    body: int
    kin: _Kinematics
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
    held: str | None = None
    grip: int | None = None
    #: the held object's pose in the gripper's frame (position, rotation), measured when the grip formed
    grip_rel: tuple[Arr, Arr] | None = None
    #: the set-point (x, y, z, heading) the commanded joints were solved for
    solved: tuple[float, float, float, float] | None = None

    @property
    def psi(self) -> float:
        return _yaw_of(self.R)


class SurgeryScene(Scene):
    """The surgery scene; see ``sim/surgery/scene.yaml``.

    ``limits`` overrides entries of the scene file's ``limits`` section (tests tighten them to make a
    limit trip); ``None`` keeps the file's values.
    """

    scene_id = "SurgeryScene-v0"
    domain = "surgery"

    def __init__(self, gui: bool = False, record_dir: Path | None = None, *,
                 limits: dict[str, Any] | None = None) -> None:
        self.cfg = load_config()
        phys = self.cfg["physics"]
        self.substeps = int(phys["substeps"])
        self.physics_hz = float(phys["hz"])
        super().__init__(gui=gui, record_dir=record_dir)
        self.limits: dict[str, Any] = {**self.cfg["limits"], **(limits or {})}
        ws = self.limits["workspace"]
        self._workspace = ((_v(ws["lo"]) - 1e-9).tolist(), (_v(ws["hi"]) + 1e-9).tolist())
        self._joint_bounds: dict[str, tuple[Arr, Arr]] = {}
        self._cid = int(self.client._client)
        self._built = False
        self._all_joints = _ARM_JOINTS + list(_JAWS)
        #: per arm body, the motor commands last sent: pybullet keeps them, so unchanged ones are not resent
        self._sent: dict[int, tuple[tuple[float, ...], float, float]] = {}
        #: the arm bodies touching tissue (pad or vessel) at the end of the last control step
        self._touching: set[int] = set()
        self.arms: dict[str, _Arm] = {}
        self.bodies: dict[str, int] = {}
        self.pad_top = _v(self.cfg["pad"]["top"])
        self._reset_state()

    # -- world -------------------------------------------------------------------------------
    def _build(self) -> None:
        c = self.client
        cfg = self.cfg
        root = assets_dir() / "surgery"
        c.setPhysicsEngineParameter(numSolverIterations=int(cfg["physics"]["solver_iterations"]))
        self.plane_id = int(c.loadURDF("plane.urdf"))
        pad = cfg["pad"]
        self.pad_id = int(c.loadURDF(str(root / pad["urdf"]), list(self.pad_top), useFixedBase=True))
        c.changeDynamics(self.pad_id, -1, contactStiffness=float(pad["stiffness_n_per_mm"]) * 1000.0,
                         contactDamping=float(pad["damping"]), lateralFriction=float(pad["friction"]))
        arms = cfg["arms"]
        mf = arms["motor_force"]
        self._motor_forces = [float(mf["outer"])] * 2 + [float(mf["insertion"])] + [float(mf["wrist"])] * 3
        self._gains = {k: float(v) for k, v in arms["position_gain"].items()}
        self._grip = float(arms["grip_force"])
        self._jaw_speed = float(arms["jaw_speed"]) * MM
        self.arms = {}
        for name in ARMS:
            rcm = _v(arms[name]["rcm"])
            body = int(c.loadURDF(str(root / arms["urdf"]), list(rcm), useFixedBase=True,
                                  flags=pybullet.URDF_USE_IMPLICIT_CYLINDER))
            info = [c.getJointInfo(body, j) for j in _ARM_JOINTS]
            lo = np.array([float(i[8]) for i in info])
            hi = np.array([float(i[9]) for i in info])
            kin = _Kinematics(rcm, float(arms["tcp"]) * MM, lo, hi)
            home = _v(arms["home"][name])
            q = kin.ik(home, 0.0, 0.0)
            self.arms[name] = _Arm(name, body, kin, home, 0.0, float(rcm[1]), q, float(arms["jaw_open"]) * MM, home.copy(), 0.0)
            self._joint_bounds[name] = self._bounds(self.arms[name])
            colour = list(arms[name]["colour"])
            for link in (-1, 0, 1):
                c.changeVisualShape(body, link, rgbaColor=colour)
            for jaw in _JAWS:
                c.changeDynamics(body, jaw, lateralFriction=1.0)
        self.bodies = {}
        for obj in OBJECTS:
            spec = cfg["objects"][obj]
            # an implicit cylinder is round to the last micron; by default pybullet makes a faceted hull with
            # a 1 mm collision margin, which on a 3 mm shunt is a third of its width
            self.bodies[obj] = int(c.loadURDF(str(root / spec["urdf"]), [0.0, 0.0, 1.0],
                                              useFixedBase=(obj == "vessel"),
                                              flags=pybullet.URDF_USE_IMPLICIT_CYLINDER))
        vessel = self.bodies["vessel"]
        self._vessel = vessel
        self._rim_joints = [0, 1, 2]
        self._rim_link = 2
        vspec = cfg["objects"]["vessel"]
        self._rim_k = float(vspec["rim_stiffness_n_per_mm"]) * 1000.0
        self._rim_c = float(vspec["rim_damping"])
        self._rim_weight = float(vspec["rim_mass"]) * 9.81
        c.changeDynamics(vessel, self._rim_link, mass=float(vspec["rim_mass"]))
        c.setJointMotorControlArray(vessel, self._rim_joints, pybullet.VELOCITY_CONTROL, forces=[0.0] * 3)
        for link in range(-1, 3):
            for other in range(-1, 3):
                c.setCollisionFilterPair(vessel, vessel, link, other, 0)
        c.changeDynamics(self.bodies["needle"], -1, lateralFriction=0.6, rollingFriction=0.0)
        c.changeDynamics(self.bodies["shunt"], -1, lateralFriction=0.6, rollingFriction=0.001)
        self._tissue = {self.pad_id, vessel}
        self._sent = {}
        self._built = True

    def _place(self, obj: str, xy: Arr, yaw: float, z: float) -> None:
        """Put an object's link frame at (xy, z) with heading ``yaw`` (pybullet places the centre of mass)."""
        body = self.bodies[obj]
        c = self.client
        local = c.getDynamicsInfo(body, -1)[3]
        R = rot("z", yaw)
        frame = np.array([xy[0], xy[1], z])
        c.resetBasePositionAndOrientation(body, list(frame + R @ np.asarray(local)), quat_from_matrix(R))
        c.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0])

    def _randomise(self) -> None:
        rng = self.np_random
        objs = self.cfg["objects"]
        top = float(self.pad_top[2])
        poses: dict[str, tuple[Arr, float]] = {}
        for obj in ("needle", "shunt", "vessel"):
            spec = objs[obj]
            r = spec["range"]
            xy = _v(spec["nominal"]) + rng.uniform(-1.0, 1.0, size=2) * float(r["xy"]) * MM
            yaw = math.radians(float(spec.get("nominal_yaw_deg", 0.0)) + float(rng.uniform(-1.0, 1.0))
                               * float(r["yaw_deg"]))
            poses[obj] = (xy, yaw)
        self._place("needle", poses["needle"][0], poses["needle"][1], top + float(objs["needle"]["height"]) * MM / 2)
        self._place("shunt", poses["shunt"][0], poses["shunt"][1], top + float(objs["shunt"]["radius"]) * MM)
        self._place("vessel", poses["vessel"][0], poses["vessel"][1], top + float(objs["vessel"]["outer_radius"]) * MM)
        vessel = self.bodies["vessel"]
        for j in self._rim_joints:
            self.client.resetJointState(vessel, j, 0.0, 0.0)
        self.vessel_R = rot("z", poses["vessel"][1])
        self.vessel_origin = np.array([*poses["vessel"][0], top + float(objs["vessel"]["outer_radius"]) * MM])
        self._reset_state()
        for arm in self.arms.values():
            arm.q_cmd = arm.kin.ik(arm.home, arm.home_psi, 0.0)
            arm.sp_pos, arm.sp_psi = arm.home.copy(), arm.home_psi
            arm.jaw_cmd, arm.jaw_bias = float(self.cfg["arms"]["jaw_open"]) * MM, 0.0
            arm.held, arm.grip, arm.grip_rel = None, None, None
            for j, q in zip(_ARM_JOINTS, arm.q_cmd):
                self.client.resetJointState(arm.body, j, float(q))
            for j in _JAWS:
                self.client.resetJointState(arm.body, j, arm.jaw_cmd)

    def _reset_state(self) -> None:
        self.frozen = False
        self.violation: tuple[FailureKind, str] | None = None
        self.located: dict[str, dict[str, Any]] = {}
        self.force_n = 0.0            # the largest tissue force this control step
        self.pad_force_n = 0.0
        self.vessel_force_n = 0.0
        self.rim_force_n = 0.0
        self.max_force_n = 0.0        # the largest since reset
        self.force_log: list[float] = []
        #: per control step, who holds each object (from the first grasp on): a drop shows as an empty set
        self.hold_log: dict[str, list[tuple[float, tuple[str, ...]]]] = {o: [] for o in OBJECTS}
        self.rest: dict[str, Arr] = {}
        self.events: list[dict[str, Any]] = []
        self.retract_log: list[dict[str, Any]] = []
        self.insertions: list[dict[str, Any]] = []
        self.lifts: list[dict[str, Any]] = []
        self.handovers: list[dict[str, Any]] = []

    def _settle(self, steps: int = 60) -> None:
        self._drive()
        for _ in range(steps):
            self._rim_spring()
            self.client.stepSimulation()
        self._measure(0.0, 0.0, 0.0, 1)
        self.rest = {o: self.object_frame(o)[0].copy() for o in OBJECTS}
        self.rest["rim"] = self.rim_position()

    # -- measurements --------------------------------------------------------------------------
    def object_frame(self, obj: str) -> tuple[Arr, Arr]:
        """The object's link frame in the world (position, rotation), from the physics."""
        c = self.client
        body = self.bodies[obj]
        pos, orn = c.getBasePositionAndOrientation(body)
        R = matrix_from_quat(orn)
        local = np.asarray(c.getDynamicsInfo(body, -1)[3])
        return np.asarray(pos) - R @ local, R

    def rim_position(self) -> Arr:
        st = self.client.getLinkState(self.bodies["vessel"], self._rim_link, computeForwardKinematics=True)
        return np.asarray(st[4])

    def rim_displacement(self) -> Arr:
        """The rim's displacement from rest in the world (m), from the joint states."""
        q = [s[0] for s in self.client.getJointStates(self.bodies["vessel"], self._rim_joints)]
        out: Arr = self.vessel_R @ np.asarray(q, dtype=float)
        return out

    def _rim_spring(self) -> float:
        """Apply the tissue's elastic force to the rim's joints; returns its size (N).

        The rim's own weight is carried by the vessel (as the wall it belongs to would), so only the
        displacement costs force. Applied every physics step: the rim is light and stiff, and a force
        held over a whole control step would set it ringing.
        """
        cid = self._cid
        states = pybullet.getJointStates(self._vessel, self._rim_joints, physicsClientId=cid)
        k, damp = self._rim_k, self._rim_c
        ex, ey, ez = (-k * st[0] for st in states)
        forces = [ex - damp * states[0][1], ey - damp * states[1][1], ez - damp * states[2][1] + self._rim_weight]
        pybullet.setJointMotorControlArray(self._vessel, self._rim_joints, pybullet.TORQUE_CONTROL, forces=forces,
                                           physicsClientId=cid)
        return math.sqrt(ex * ex + ey * ey + ez * ez)

    def _drive(self) -> None:
        cid = self._cid
        gain = self._gains
        for arm in self.arms.values():
            sent = (tuple(arm.q_cmd.tolist()), arm.jaw_cmd, arm.jaw_bias)
            if self._sent.get(arm.body) == sent:
                continue
            self._sent[arm.body] = sent
            pybullet.setJointMotorControlArray(arm.body, _ARM_JOINTS, pybullet.POSITION_CONTROL,
                                               targetPositions=arm.q_cmd.tolist(), forces=self._motor_forces,
                                               positionGains=[gain["arm"]] * 6, physicsClientId=cid)
            for jaw, side in zip(_JAWS, (1.0, -1.0)):
                pybullet.setJointMotorControl2(arm.body, jaw, pybullet.POSITION_CONTROL,
                                               targetPosition=arm.jaw_cmd + side * arm.jaw_bias,
                                               force=self._grip, maxVelocity=self._jaw_speed,
                                               positionGain=gain["jaw"], physicsClientId=cid)

    def _tissue_contacts(self, movers: set[int], rim_holders: set[int],
                         touching: set[int] | None = None) -> tuple[float, float]:
        """Normal force the arms and what they hold put on the pad and on the vessel, this physics step.

        ``touching`` (if given) collects the movers in contact with either, from the same contact points.
        """
        cid = self._cid
        pad = vessel = 0.0
        # asked pair by pair: the needle lying on the pad is a score of contact points nobody needs here
        for body in movers:
            pts = pybullet.getContactPoints(self.pad_id, body, physicsClientId=cid)
            for cp in pts:
                pad += cp[9]
            on_vessel = pybullet.getContactPoints(self._vessel, body, physicsClientId=cid)
            if touching is not None and (pts or on_vessel):
                touching.add(body)
            held_rim = body in rim_holders
            for cp in on_vessel:
                # the jaws holding the rim are the grip, not a push on tissue: the rim's pull shows its force
                if not (held_rim and cp[3] == self._rim_link):
                    vessel += cp[9]
        return pad, vessel

    def _movers(self) -> tuple[set[int], set[int]]:
        movers = {a.body for a in self.arms.values()}
        movers |= {self.bodies[a.held] for a in self.arms.values() if a.held and a.held != "vessel"}
        return movers, {a.body for a in self.arms.values() if a.held == "vessel"}

    def _measure(self, pad: float, vessel: float, rim: float, samples: int, dt: float = 0.0) -> None:
        """Forces averaged over the control step's ``samples`` physics steps, and each arm's pose and speed.

        The speed is the tool tip's travel over the control step (``dt``; 0 after a reset): the link
        velocity pybullet reports for a position-driven multibody is the joints' velocity before the
        solver's position correction, about half the real speed of a moving arm, and a speed limit
        checked on it would never trip.
        """
        cid = self._cid
        self.pad_force_n = pad / samples
        self.vessel_force_n = vessel / samples
        self.rim_force_n = rim / samples
        self.force_n = max(self.pad_force_n, self.vessel_force_n, self.rim_force_n)
        for arm in self.arms.values():
            states = pybullet.getJointStates(arm.body, self._all_joints, physicsClientId=cid)
            arm.q_meas = np.array([st[0] for st in states[:6]])
            arm.jaws = np.array([states[6][0], states[7][0]])
            st = pybullet.getLinkState(arm.body, _GRIPPER, computeForwardKinematics=1, physicsClientId=cid)
            R = matrix_from_quat(st[5])
            arm.R = R
            tcp = np.asarray(st[4]) - R[:, 2] * arm.kin.tcp
            arm.speed = float(np.linalg.norm(tcp - arm.tcp)) / dt if dt > 0.0 else 0.0
            arm.tcp = tcp

    def jaw_contacts(self, arm: _Arm, obj: str) -> tuple[float, float]:
        """Normal force of each jaw on the object (N), from the engine's contact points."""
        c = self.client
        body = self.bodies[obj]
        link = self._rim_link if obj == "vessel" else -1
        out = []
        for jaw in _JAWS:
            pts = c.getContactPoints(arm.body, body, jaw, link)
            out.append(sum(cp[9] for cp in pts if cp[8] < 0.0005))
        return out[0], out[1]

    def holders(self, obj: str) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms.values() if a.held == obj)

    # -- grip ----------------------------------------------------------------------------------
    def form_grip(self, arm: _Arm, obj: str) -> None:
        """Fix the object to the gripper at the pose it has now (both jaws were found pressing on it)."""
        c = self.client
        body = self.bodies[obj]
        link = self._rim_link if obj == "vessel" else -1
        g = c.getLinkState(arm.body, _GRIPPER, computeForwardKinematics=True)
        if link == -1:
            o_pos, o_orn = c.getBasePositionAndOrientation(body)
        else:
            st = c.getLinkState(body, link, computeForwardKinematics=True)
            o_pos, o_orn = st[0], st[1]
        inv_pos, inv_orn = c.invertTransform(g[0], g[1])
        rel_pos, rel_orn = c.multiplyTransforms(inv_pos, inv_orn, o_pos, o_orn)
        cid = c.createConstraint(arm.body, _GRIPPER, body, link, pybullet.JOINT_FIXED, [0, 0, 0], rel_pos,
                                 [0, 0, 0], rel_orn, [0, 0, 0, 1])
        mu = float(c.getDynamicsInfo(arm.body, _JAWS[0])[1])
        c.changeConstraint(cid, maxForce=2.0 * mu * float(self.cfg["arms"]["grip_force"]) * 2.0)
        arm.grip, arm.held = int(cid), obj
        # the object's frame in the gripper's link frame, for placing it later
        gl_pos, gl_orn = c.multiplyTransforms(g[4], g[5], [0, 0, 0], [0, 0, 0, 1])
        of_pos, of_R = self.object_frame(obj) if obj != "vessel" else (self.rim_position(), self.vessel_R)
        Rg = matrix_from_quat(gl_orn)
        arm.grip_rel = (Rg.T @ (of_pos - np.asarray(gl_pos)), Rg.T @ of_R)
        self.events.append({"t": self.sim_time, "grip": arm.name, "object": obj})

    def drop_grip(self, arm: _Arm, why: str) -> None:
        if arm.grip is not None:
            self.client.removeConstraint(arm.grip)
            self.events.append({"t": self.sim_time, "release": arm.name, "object": arm.held, "why": why})
        arm.grip, arm.held, arm.grip_rel = None, None, None

    def _check_grips(self) -> None:
        """A grip lasts while both jaws still touch the object; otherwise it is lost and the object falls."""
        for arm in self.arms.values():
            if arm.held is None:
                continue
            left, right = self.jaw_contacts(arm, arm.held)
            if left <= 0.0 or right <= 0.0:
                self.drop_grip(arm, "a jaw lost contact")
        for obj in OBJECTS:
            log = self.hold_log[obj]
            who = self.holders(obj)
            if who or log:
                log.append((self.sim_time, who))

    # -- control loop ---------------------------------------------------------------------------
    def advance(self) -> None:
        """One control step: set-points -> inverse kinematics -> motors -> physics -> measurements -> monitors."""
        if not self.frozen:
            for arm in self.arms.values():
                key = (float(arm.sp_pos[0]), float(arm.sp_pos[1]), float(arm.sp_pos[2]), arm.sp_psi)
                if key == arm.solved:      # the set-point has not moved: the joints are already commanded
                    continue
                q = arm.kin.ik(arm.sp_pos, arm.sp_psi, float(arm.q_cmd[3]))
                bad = self._joint_violation(arm, q) or self._workspace_violation(arm, arm.sp_pos)
                if bad is not None:
                    self._trip(*bad)
                    break
                if not self.frozen:   # a halt from another thread while the IK ran wins
                    arm.q_cmd = q
                    arm.solved = key
        self._drive()
        pad = vessel = rim = 0.0
        movers, rim_holders = self._movers()
        cid = self._cid
        touching: set[int] = set()
        last = self.substeps - 1
        for i in range(self.substeps):
            rim += self._rim_spring()
            pybullet.stepSimulation(physicsClientId=cid)
            p, v = self._tissue_contacts(movers, rim_holders, touching if i == last else None)
            pad += p
            vessel += v
        self._touching = touching
        self.sim_steps += self.substeps
        self._measure(pad, vessel, rim, self.substeps, self.control_period_s)
        self.max_force_n = max(self.max_force_n, self.force_n)
        self.force_log.append(self.force_n)
        self._check_grips()
        if self.violation is None and not self.frozen:
            found = self._monitor()
            if found is not None:
                self._trip(*found)

    def _trip(self, kind: FailureKind, message: str) -> None:
        self.violation = (kind, message)
        self.events.append({"t": self.sim_time, "limit": kind.value, "message": message})
        self.stop_motion()
        self._drive()

    def _joint_violation(self, arm: _Arm, q: Arr) -> tuple[FailureKind, str] | None:
        lo, hi = self._joint_bounds[arm.name]
        if bool(np.all(q >= lo)) and bool(np.all(q <= hi)):
            return None
        j = int(np.nonzero((q < lo) | (q > hi))[0][0])
        names = ("outer yaw", "outer pitch", "insertion", "tool roll", "wrist pitch", "wrist yaw")
        value, unit = (q[j] / MM, "mm") if j == 2 else (math.degrees(q[j]), "deg")
        return FailureKind.JOINT_LIMIT, f"{arm.name} {names[j]} would reach {value:.0f} {unit}, past its limit"

    def _bounds(self, arm: _Arm) -> tuple[Arr, Arr]:
        """The joint range the controller may command: the URDF's less the margins, the wrist's as configured."""
        margin = math.radians(float(self.limits["joint_margin_deg"]))
        lo = arm.kin.lo + margin
        hi = arm.kin.hi - margin
        lo[2] = arm.kin.lo[2] + float(self.limits["insertion_margin"]) * MM
        hi[2] = arm.kin.hi[2] - float(self.limits["insertion_margin"]) * MM
        wrist = math.radians(float(self.limits["wrist_deg"]))
        lo[4:6] = np.maximum(lo[4:6], -wrist)
        hi[4:6] = np.minimum(hi[4:6], wrist)
        return lo, hi

    def _workspace_violation(self, arm: _Arm, p: Arr) -> tuple[FailureKind, str] | None:
        lo, hi = self._workspace
        x, y, z = p.tolist()
        if lo[0] <= x <= hi[0] and lo[1] <= y <= hi[1] and lo[2] <= z <= hi[2]:
            return None
        return FailureKind.WORKSPACE_LIMIT, (f"{arm.name}'s tool tip would leave its workspace at "
                                             f"{[round(float(v) / MM) for v in p]} mm")

    def _monitor(self) -> tuple[FailureKind, str] | None:
        """The safety limits, checked on what the physics measured this control step."""
        cap = float(self.limits["force_cap"])
        if self.force_n > cap:
            where = ("the pad" if self.force_n == self.pad_force_n else
                     "the vessel rim" if self.force_n == self.rim_force_n else "the vessel")
            return FailureKind.FORCE_LIMIT, f"tissue force {self.force_n:.2f} N on {where} above the {cap:g} N cap"
        a1, a2 = self.arms["psm1"], self.arms["psm2"]
        clearance = float(self.limits["arm_clearance"]) * MM
        if pybullet.getClosestPoints(a1.body, a2.body, clearance, physicsClientId=self._cid):
            return FailureKind.COLLISION, f"the instruments came within {self.limits['arm_clearance']:g} mm of each other"
        for arm in self.arms.values():
            contact = arm.body in self._touching or arm.held == "vessel"
            vmax = float(self.limits["contact_speed"] if contact else self.limits["free_speed"])
            if arm.speed / MM > vmax:
                return FailureKind.SPEED_LIMIT, f"{arm.name} tool tip at {arm.speed / MM:.0f} mm/s above {vmax:g} mm/s"
            bad = self._workspace_violation(arm, arm.tcp)
            if bad is not None:
                return bad[0], bad[1].replace("would leave", "left")
        return None

    def stop_motion(self) -> None:
        """Hold every joint where it is now; the jaws keep their grip, so nothing held is dropped.

        Only state changes here: ``halt`` may come from another thread, and the physics client is not
        thread-safe, so the hold reaches the motors at the start of the next control step.
        """
        self.frozen = True
        for arm in self.arms.values():
            arm.q_cmd = arm.q_meas.copy()
            arm.solved = None

    def resume(self) -> None:
        """Called as a skill starts: a held arm takes its measured pose as its new set-point."""
        self.violation = None
        if self.frozen:
            self.frozen = False
            for arm in self.arms.values():
                arm.q_cmd = arm.q_meas.copy()
                arm.sp_pos, R = arm.kin.fk(arm.q_meas)
                arm.sp_psi = _yaw_of(R)

    # -- facts ---------------------------------------------------------------------------------
    def world_state(self) -> WorldState:
        self._ensure_built()
        facts: dict[str, Any] = {f"holding[{a}]": (self.arms[a].held or "none") for a in ARMS}
        for obj in OBJECTS:
            facts[f"located[{obj}]"] = obj in self.located
        facts["located[home]"] = True
        facts["located[handover_point]"] = True
        return WorldState(facts=facts, known=True)

    def observation(self) -> dict[str, Any]:
        """Poses in metres (world frame), forces in newtons; JSON-able."""
        objects = {}
        for obj in OBJECTS:
            pos, R = self.object_frame(obj)
            objects[obj] = {"pos": [float(v) for v in pos], "yaw_deg": math.degrees(_yaw_of(R)),
                            "held_by": list(self.holders(obj))}
        objects["vessel"]["rim_displacement_mm"] = [float(v) / MM for v in self.rim_displacement()]
        return {
            "sim_time": self.sim_time,
            "arms": {a.name: {"tcp": [float(v) for v in a.tcp], "heading_deg": math.degrees(a.psi),
                              "joints": [float(v) for v in a.q_meas], "jaws_mm": [float(v) / MM for v in a.jaws],
                              "holding": a.held} for a in self.arms.values()},
            "objects": objects,
            "force_n": float(self.force_n),
            "max_force_n": float(self.max_force_n),
            "located": sorted(self.located),
            "halted": self.halted,
        }

    def telemetry(self) -> dict[str, Any]:
        return {"force_n": round(self.force_n, 2),
                **{f"{a.name}_mm": [round(float(v) / MM, 1) for v in a.tcp] for a in self.arms.values()},
                **{f"holding[{a.name}]": a.held or "none" for a in self.arms.values()}}

    def camera(self) -> tuple[list[float], list[float]]:
        """The endoscope: above and behind the pad, looking forward and down at the field."""
        c = self.client
        target = list(self.pad_top + np.array([0.0, 0.0, 0.01]))
        view = c.computeViewMatrixFromYawPitchRoll(target, 0.32, -90, -42, 0, 2)
        proj = c.computeProjectionMatrixFOV(45, 4 / 3, 0.02, 2.0)
        return list(view), list(proj)

    def visible_pixels(self, obj: str, width: int = 128, height: int = 96) -> int:
        """How many pixels of the endoscope's view show the object (TinyRenderer's segmentation mask)."""
        view, proj = self.camera()
        _, _, _, _, seg = self.client.getCameraImage(width, height, viewMatrix=view, projectionMatrix=proj,
                                                    renderer=pybullet.ER_TINY_RENDERER)
        return int(np.count_nonzero(np.asarray(seg).reshape(height, width) == self.bodies[obj]))

    # -- task geometry -------------------------------------------------------------------------
    def needle_point(self, theta: float) -> tuple[Arr, float]:
        """A point on the needle's arc (angle ``theta`` from its middle) and the jaws' heading to take it there
        (across the wire, along the radius)."""
        pos, R = self.object_frame("needle")
        r = self.needle_wire_radius()
        local = np.array([r * math.cos(theta), r * math.sin(theta), 0.0])
        return pos + R @ local, _yaw_of(R) + theta

    def needle_wire_radius(self) -> float:
        """How far a capsule's axis lies from the arc's centre at the capsule's middle (m): the wire is a chain
        of straight capsules whose ends sit on the arc, so in between it runs a little inside the arc, and a
        grip centred on the arc there would take it off-centre, one jaw pressing before the other."""
        spec = self.cfg["objects"]["needle"]
        half = math.radians(float(spec["arc_deg"])) / (2.0 * int(spec["segments"]))
        return float(spec["radius"]) * MM * math.cos(half)

    def grasp_target(self, obj: str) -> tuple[Arr, float]:
        """Where the tool tip takes an object and the jaws' heading, from the object's pose now."""
        spec = self.cfg["objects"][obj]
        if obj == "needle":
            return self.needle_point(math.radians(float(spec["grasp_deg"])))
        if obj == "shunt":
            pos, R = self.object_frame("shunt")
            back = float(spec["length"]) / 2.0 - float(spec["grasp_from_tail"])
            return pos - R[:, 0] * back * MM, _yaw_of(R) + math.pi / 2.0
        rim = self.rim_position()
        return rim, _yaw_of(self.vessel_R)

    def lumen(self) -> tuple[Arr, Arr]:
        """(centre of the opening, unit axis into the vessel), world frame."""
        return self.vessel_origin.copy(), self.vessel_R[:, 0].copy()

    def shunt_depth(self) -> tuple[float, float]:
        """How far the shunt's front is inside the lumen past the opening (m), and its front's distance from
        the lumen's axis (m)."""
        pos, R = self.object_frame("shunt")
        front = pos + R[:, 0] * float(self.cfg["objects"]["shunt"]["length"]) * MM / 2.0
        origin, axis = self.lumen()
        rel = front - origin
        along = float(rel @ axis)
        radial = float(np.linalg.norm(rel - axis * along))
        return along, radial

    # -- skills ------------------------------------------------------------------------------------
    def skills(self) -> Mapping[str, type[SceneSkill[Any]]]:
        return _SKILLS


Motion = Generator[None, None, bool]


class _Skill(SceneSkill["SurgeryScene"]):
    """A skill is a generator that yields once per control step; it returns (or ends) when done.

    On top of the scenes' common skill: the motions skills are built from (straight moves of the tool
    tip, jaw closing and opening).
    """

    def __init__(self, scene: SurgeryScene, step: Step) -> None:
        super().__init__(scene, step)
        self._gen: Generator[None, None, None] | None = None

    def begin(self) -> None:
        self._gen = self.run()

    def run(self) -> Generator[None, None, None]:
        raise NotImplementedError
        yield

    def tick(self) -> BehaviourStatus:
        assert self._gen is not None
        try:
            next(self._gen)
        except StopIteration:
            if self.failure is not FailureKind.NONE:
                return BehaviourStatus.FAILURE
            self.progress = 1.0
            return BehaviourStatus.SUCCESS
        if self.failure is not FailureKind.NONE:
            return BehaviourStatus.FAILURE
        return BehaviourStatus.RUNNING

    def arm(self, key: str = "arm") -> _Arm:
        return self.scene.arms[str(self.args[key])]

    # -- motions ---------------------------------------------------------------------------------
    def move(self, arm: _Arm, goal: Arr, psi: float | None = None, speed_mm_s: float | None = None,
             tolerance: float = 0.0008, loaded: bool = False) -> Motion:
        """Run the arm's set-point in a straight line to ``goal`` (turning the jaws to ``psi`` on the way) at
        ``speed_mm_s``, then wait until the measured tool tip is there. Returns False if it never settled.

        ``loaded``: the arm pulls against tissue, and its servos sag under the pull; while it settles, the
        set-point leads the goal by the measured sag (up to ``grasp.sag_max``), as a Cartesian outer loop on
        a real arm would.
        """
        s = self.scene
        speed = float(speed_mm_s or s.cfg["motion"]["free_speed"]) * MM
        turn = math.radians(float(s.cfg["motion"]["turn_speed_deg"]))
        dt = s.control_period_s
        start = arm.sp_pos.copy()
        psi0 = arm.sp_psi
        dpsi = 0.0 if psi is None else _wrap(psi - psi0)
        if arm.held is None and abs(dpsi) > math.pi / 2:   # empty jaws are symmetric: turn the short way
            dpsi = _wrap(dpsi - math.pi)
        dist = float(np.linalg.norm(goal - start))
        # a trapezoidal speed profile: the set-point speeds up and slows down over ``ramp`` rather than jumping
        # to full speed, so what the jaws hold is not jerked out of them (its cruise speed is the asked one)
        cruise = max(dist / speed, abs(dpsi) / turn, dt)
        ramp = min(float(s.cfg["motion"]["ramp_s"]), cruise)
        total = cruise + ramp
        n = int(math.ceil(total / dt))
        for i in range(1, n + 1):
            f = _trapezoid(i / n * total, total, ramp)
            arm.sp_pos = start + (goal - start) * f
            arm.sp_psi = psi0 + dpsi * f
            yield
        g = s.cfg["grasp"]
        gain, most = float(g["sag_gain"]), float(g["sag_max"]) * MM
        for _ in range(int(1.0 / dt)):
            error = goal - arm.tcp
            if float(np.linalg.norm(error)) < tolerance:
                return True
            if loaded:
                lead = arm.sp_pos + gain * error - goal
                size = float(np.linalg.norm(lead))
                arm.sp_pos = goal + (lead if size <= most else lead * (most / size))
            yield
        return False

    def travel(self, arm: _Arm, goal: Arr, psi: float | None = None, final_speed: float | None = None) -> Motion:
        """Rise to the travel height, cross over, and come down to ``goal`` (the last leg at ``final_speed``)."""
        s = self.scene
        safe = float(s.pad_top[2]) + float(s.cfg["motion"]["travel_height"]) * MM
        here = arm.sp_pos.copy()
        if here[2] < safe - 1e-6:
            yield from self.move(arm, np.array([here[0], here[1], safe]), tolerance=0.003)
        above = np.array([goal[0], goal[1], max(safe, float(goal[2]))])
        yield from self.move(arm, above, psi, tolerance=0.003)
        ok = yield from self.move(arm, goal, psi, final_speed)
        return ok

    def jaws(self, arm: _Arm, opening: float) -> Generator[None, None, None]:
        s = self.scene
        arm.jaw_cmd, arm.jaw_bias = opening, 0.0
        for _ in range(int(0.6 / s.control_period_s)):
            if float(np.max(np.abs(arm.jaws - opening))) < 0.0002:
                return
            yield

    def close_on(self, arm: _Arm, obj: str) -> Motion:
        """Close the jaws together; the grip forms only once both jaws press on the object for a few steps.

        Both jaws follow one closing target, as one actuator drives both on the real instrument; once
        both touch, the target stops a little inside the object (the squeeze), so the jaws hold their
        place and the grip force stays under the jaw motors' limit.
        """
        s = self.scene
        g = s.cfg["grasp"]
        threshold = float(g["contact_force"])
        rate = float(s.cfg["arms"]["jaw_speed"]) * MM * s.control_period_s
        squeeze = float(g["squeeze"]) * MM
        both = 0
        hold: float | None = None
        for _ in range(int(g["close_steps"])):
            left, right = s.jaw_contacts(arm, obj)
            touching = left > threshold and right > threshold
            if touching:
                # latched at the first touch: re-derived from the jaws every step, the target would follow
                # them into the object and the jaws would cut into it instead of holding it
                # each jaw squeezes from where it touched, so an object lying off the tool axis is pressed
                # evenly from both sides rather than shoved by one jaw against the other
                if hold is None:
                    hold = max(0.0, float(np.mean(arm.jaws)) - squeeze)
                    arm.jaw_bias = float(arm.jaws[0] - arm.jaws[1]) / 2.0
                arm.jaw_cmd = hold
            else:
                arm.jaw_cmd = max(0.0, min(arm.jaw_cmd, float(np.max(arm.jaws))) - rate)
            yield
            both = both + 1 if touching else 0
            if both >= int(g["settle_steps"]):
                s.form_grip(arm, obj)
                return True
        return False


class _Locate(_Skill):
    """Look for the object in the endoscope's image and record its pose."""

    def run(self) -> Generator[None, None, None]:
        s = self.scene
        obj = str(self.args["object"])
        pixels = s.visible_pixels(obj)
        if pixels < 3:
            self.fail(FailureKind.LOST, f"the {obj} is not in the camera's view")
            return
        pos, R = s.object_frame(obj)
        s.located[obj] = {"pos": pos, "yaw": _yaw_of(R), "pixels": pixels, "t": s.sim_time}
        self.outcome = {"object": obj, "pos_mm": [float(v) / MM for v in pos], "yaw_deg": math.degrees(_yaw_of(R)),
                        "pixels": pixels}
        self.message = f"{obj} at {[round(float(v) / MM, 1) for v in pos]} mm"
        yield


class _MoveTo(_Skill):
    def run(self) -> Generator[None, None, None]:
        s = self.scene
        arm = self.arm()
        target = str(self.args["target"])
        offset = _v(self.args.get("offset_mm") or [0, 0, 0])
        psi: float | None = None
        if target == "home":
            goal, psi = arm.home.copy(), arm.home_psi
        elif target == "handover_point":
            goal = _v(s.cfg["places"]["handover_point"])
        else:
            point, psi = s.grasp_target(target)
            goal = point + np.array([0.0, 0.0, float(s.cfg["motion"]["hover"]) * MM])
        goal = goal + offset
        # near an object the last leg goes down at the approach speed: what lies below may be tissue
        final = None if target in ("home", "handover_point") else float(s.cfg["motion"]["approach_speed"])
        ok = yield from self.travel(arm, goal, psi, final)
        if not ok:
            self.fail(FailureKind.TIMEOUT, f"{arm.name} did not settle at the {target}")
            return
        self.outcome = {"arm": arm.name, "target": target, "tcp_mm": [float(v) / MM for v in arm.tcp],
                        "goal_mm": [float(v) / MM for v in goal]}
        self.message = f"{arm.name} at the {target.replace('_', ' ')}"


class _Grasp(_Skill):
    def run(self) -> Generator[None, None, None]:
        s = self.scene
        arm = self.arm()
        obj = str(self.args["object"])
        if s.holders(obj) and obj != "needle":
            self.fail(FailureKind.PRECONDITION, f"the {obj} is held by {s.holders(obj)[0]}")
            return
        yield from self.jaws(arm, float(s.cfg["arms"]["jaw_open"]) * MM)
        point, psi = s.grasp_target(obj)
        # the jaw tips stop short of the pad: the tool tip is 1 mm above them
        floor = float(s.pad_top[2]) + (float(s.cfg["grasp"]["tip_clearance"]) + 1.0) * MM
        point[2] = max(float(point[2]), floor)
        ok = yield from self.travel(arm, point, psi, float(s.cfg["motion"]["approach_speed"]))
        if not ok:
            self.fail(FailureKind.TIMEOUT, f"{arm.name} did not reach the {obj}")
            return
        gripped = yield from self.close_on(arm, obj)
        if not gripped:
            arm.jaw_cmd, arm.jaw_bias = float(s.cfg["arms"]["jaw_open"]) * MM, 0.0
            self.fail(FailureKind.LOST, f"{arm.name}'s jaws closed without taking the {obj}")
            return
        left, right = s.jaw_contacts(arm, obj)
        self.outcome = {"arm": arm.name, "object": obj, "jaw_forces_n": [left, right],
                        "jaws_mm": [float(v) / MM for v in arm.jaws]}
        self.message = f"{arm.name} holds the {obj}"


class _Release(_Skill):
    def run(self) -> Generator[None, None, None]:
        s = self.scene
        arm = self.arm()
        obj = arm.held
        s.drop_grip(arm, "released")
        yield from self.jaws(arm, float(s.cfg["arms"]["jaw_open"]) * MM)
        up = arm.sp_pos + np.array([0.0, 0.0, 0.005])
        yield from self.move(arm, up, tolerance=0.002)
        self.outcome = {"arm": arm.name, "released": obj}
        self.message = f"{arm.name} let go of the {obj}"


class _Lift(_Skill):
    def run(self) -> Generator[None, None, None]:
        s = self.scene
        arm = self.arm()
        obj = str(arm.held)
        h = float(self.args["height_mm"]) * MM
        before = s.object_frame(obj)[0] if obj != "vessel" else s.rim_position()
        ok = yield from self.move(arm, arm.sp_pos + np.array([0.0, 0.0, h]),
                                  speed_mm_s=float(s.cfg["motion"]["lift_speed"]))
        if arm.held != obj:
            self.fail(FailureKind.LOST, f"{arm.name} dropped the {obj} while lifting")
            return
        if not ok:
            self.fail(FailureKind.TIMEOUT, f"{arm.name} did not settle after lifting")
            return
        after = s.object_frame(obj)[0] if obj != "vessel" else s.rim_position()
        record = {"arm": arm.name, "object": obj, "asked_mm": h / MM, "rise_mm": float(after[2] - before[2]) / MM,
                  "start_z": float(before[2]), "t": s.sim_time}
        s.lifts.append(record)
        self.outcome = dict(record)
        self.message = f"lifted the {obj} {record['rise_mm']:.1f} mm"


class _Handover(_Skill):
    """The receiver waits aside, the giver turns the object to face it and brings the take point to the
    handover point, the receiver closes on it, and only then does the giver let go."""

    def run(self) -> Generator[None, None, None]:
        s = self.scene
        giver, taker = self.arm("from_arm"), self.arm("to_arm")
        obj = str(self.args["object"])
        if obj == "vessel":
            self.fail(FailureKind.INVALID, "the vessel is clamped in place: only its rim can be held, not passed on")
            return
        place = _v(s.cfg["places"]["handover_point"])
        side = float(np.sign(taker.rcm_y - giver.rcm_y))
        yield from self.jaws(taker, float(s.cfg["arms"]["jaw_open"]) * MM)
        wait = place + np.array([0.0, side * 0.035, 0.015])
        yield from self.travel(taker, wait)
        # which take point, and how far the giver must turn so that it faces the receiver
        pos, R = s.object_frame(obj)
        clearance = float(s.cfg["grasp"]["handover_clearance"]) * MM
        options = []
        for local in self._take_points(obj):
            d = pos + R @ local - giver.tcp
            if float(np.linalg.norm(d[:2])) < clearance:     # too near the giver's jaws for the receiver's
                continue
            turn = _wrap(math.atan2(side, 0.0) - math.atan2(float(d[1]), float(d[0])))
            options.append((abs(turn), turn, local))
        _, turn, local = min(options, key=lambda o: o[0])
        goal = place - rot("z", turn) @ (pos + R @ local - giver.tcp)
        goal[2] = place[2]
        ok = yield from self.travel(giver, goal, giver.sp_psi + turn)
        if giver.held != obj:
            self.fail(FailureKind.LOST, f"{giver.name} dropped the {obj} on the way")
            return
        if not ok:
            self.fail(FailureKind.TIMEOUT, f"{giver.name} did not reach the handover point")
            return
        pos, R = s.object_frame(obj)
        take = pos + R @ local
        across = math.atan2(float(local[1]), float(local[0])) if obj == "needle" else math.pi / 2.0
        take_psi = _yaw_of(R) + across
        yield from self.move(taker, take + np.array([0.0, 0.0, 0.012]), take_psi, tolerance=0.002)
        yield from self.move(taker, take, take_psi, float(s.cfg["motion"]["approach_speed"]))
        gripped = yield from self.close_on(taker, obj)
        if not gripped:
            taker.jaw_cmd, taker.jaw_bias = float(s.cfg["arms"]["jaw_open"]) * MM, 0.0
            self.fail(FailureKind.LOST, f"{taker.name}'s jaws closed without taking the {obj}")
            return
        s.drop_grip(giver, "handed over")
        yield from self.jaws(giver, float(s.cfg["arms"]["jaw_open"]) * MM)
        yield from self.move(giver, giver.sp_pos + np.array([0.0, -side * 0.02, 0.01]), tolerance=0.003)
        record = {"from": giver.name, "to": taker.name, "object": obj, "t": s.sim_time}
        s.handovers.append(record)
        self.outcome = {**record, "holders": list(s.holders(obj))}
        self.message = f"{taker.name} took the {obj} from {giver.name}"

    def _take_points(self, obj: str) -> list[Arr]:
        """Where the receiver may take the object, in the object's frame, away from the giver's grip."""
        spec = self.scene.cfg["objects"][obj]
        if obj == "needle":
            r = self.scene.needle_wire_radius()
            t = math.radians(float(spec["handover_take_deg"]))
            return [np.array([r * math.cos(a), r * math.sin(a), 0.0]) for a in (t, -t)]
        half = float(spec["length"]) * MM / 2.0
        return [np.array([a * (half - float(spec["grasp_from_tail"]) * MM), 0.0, 0.0]) for a in (1.0, -1.0)]


class _Retract(_Skill):
    def run(self) -> Generator[None, None, None]:
        s = self.scene
        arm = self.arm()
        direction = np.asarray(_DIRECTIONS[str(self.args["direction"])])
        dist = float(self.args["distance_mm"]) * MM
        start = s.rim_displacement().copy()
        s.retract_log = []
        goal = arm.sp_pos + direction * dist
        speed = float(s.cfg["motion"]["retract_speed"])
        motion = self.move(arm, goal, speed_mm_s=speed, tolerance=0.0008, loaded=True)
        while True:
            try:
                next(motion)
            except StopIteration as done:
                ok = bool(done.value)
                break
            s.retract_log.append({"t": s.sim_time, "force_n": s.rim_force_n,
                                  "displacement_mm": [float(v) / MM for v in s.rim_displacement()]})
            yield
        if arm.held != "vessel":
            self.fail(FailureKind.LOST, f"{arm.name} lost its grip on the vessel rim")
            return
        if not ok:
            self.fail(FailureKind.TIMEOUT, f"{arm.name} did not reach the retraction")
            return
        moved = s.rim_displacement() - start
        self.outcome = {"arm": arm.name, "direction": self.args["direction"], "asked_mm": dist / MM,
                        "rim_moved_mm": float(moved @ direction) / MM, "force_n": s.rim_force_n,
                        "max_force_n": max((r["force_n"] for r in s.retract_log), default=0.0)}
        self.message = f"rim retracted {self.outcome['rim_moved_mm']:.1f} mm at {s.rim_force_n:.2f} N"


class _Insert(_Skill):
    def run(self) -> Generator[None, None, None]:
        s = self.scene
        arm = self.arm()
        depth = float(self.args["depth_mm"]) * MM
        assert arm.grip_rel is not None
        rel_p, rel_R = arm.grip_rel           # the shunt's frame in the gripper's frame
        origin, axis = s.lumen()
        # turn the tool so that the shunt's axis (its x, front forward) lies along the lumen's axis
        shunt_dir_tool = rel_R[:, 0]
        heading_now = math.atan2(float(shunt_dir_tool[1]), float(shunt_dir_tool[0]))
        psi = math.atan2(float(axis[1]), float(axis[0])) - heading_now
        Rg = rot("z", psi)
        half = float(s.cfg["objects"]["shunt"]["length"]) * MM / 2.0
        front_in_tool = rel_p + rel_R[:, 0] * half
        gap = float(s.cfg["motion"]["entry_gap"]) * MM
        tcp_of_gripper = np.array([0.0, 0.0, -arm.kin.tcp])
        # tool tip such that the shunt's front sits ``gap`` before the opening, on the axis
        entry = origin - axis * gap - Rg @ (front_in_tool - tcp_of_gripper)
        ok = yield from self.travel(arm, entry, psi, float(s.cfg["motion"]["approach_speed"]))
        if arm.held != "shunt":
            self.fail(FailureKind.LOST, f"{arm.name} dropped the shunt on the way")
            return
        if not ok:
            self.fail(FailureKind.TIMEOUT, f"{arm.name} did not reach the vessel's opening")
            return
        goal = entry + axis * (gap + depth)
        ok = yield from self.move(arm, goal, psi, float(s.cfg["motion"]["insert_speed"]), tolerance=0.0008)
        along, radial = s.shunt_depth()
        record = {"arm": arm.name, "asked_mm": depth / MM, "depth_mm": along / MM, "off_axis_mm": radial / MM,
                  "t": s.sim_time}
        s.insertions.append(record)
        if arm.held != "shunt":
            self.fail(FailureKind.LOST, f"{arm.name} lost the shunt {along / MM:.1f} mm into the lumen")
            return
        short = along < depth - float(s.cfg["checks"]["depth_tolerance"]) * MM
        if not ok or short:
            self.fail(FailureKind.TIMEOUT, f"the shunt stopped {along / MM:.1f} mm into the lumen")
            return
        self.outcome = dict(record)
        self.message = f"shunt {along / MM:.1f} mm into the lumen"


class _Home(_Skill):
    def run(self) -> Generator[None, None, None]:
        s = self.scene
        names = ARMS if self.args["arm"] == "all" else (str(self.args["arm"]),)
        for name in names:
            arm = s.arms[name]
            yield from self.jaws(arm, float(s.cfg["arms"]["jaw_open"]) * MM)
            ok = yield from self.travel(arm, arm.home.copy(), arm.home_psi)
            if not ok:
                self.fail(FailureKind.TIMEOUT, f"{name} did not settle at home")
                return
        self.outcome = {"arms": list(names), "tcp_mm": {n: [float(v) / MM for v in s.arms[n].tcp] for n in names}}
        self.message = f"{' and '.join(names)} at home"


_SKILLS: dict[str, type[_Skill]] = {
    "locate": _Locate,
    "move_to": _MoveTo,
    "grasp": _Grasp,
    "release": _Release,
    "lift": _Lift,
    "handover": _Handover,
    "retract": _Retract,
    "insert": _Insert,
    "home": _Home,
}
