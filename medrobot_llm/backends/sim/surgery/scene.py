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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pybullet

from medrobot_llm.backends.base import FailureKind
from medrobot_llm.core.validator import WorldState
from medrobot_llm.backends.sim.base import SceneSkill, assets_dir
from medrobot_llm.backends.sim.imaging import quat_from_matrix, rot
from medrobot_llm.backends.sim.surgery.arm import (
    ARMS, ARM_JOINTS, COMMANDS, JAWS, MM, OBJECTS, Arm, Arr, Kinematics, load_config, vec_mm, yaw_of,
)
from medrobot_llm.backends.sim.surgery.caps import speed_cap
from medrobot_llm.backends.sim.surgery.contacts import SurgeryContacts
from medrobot_llm.backends.sim.surgery.skills import SKILLS

__all__ = ["SurgeryScene"]

class SurgeryScene(SurgeryContacts):
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
        self._workspace = ((vec_mm(ws["lo"]) - 1e-9).tolist(), (vec_mm(ws["hi"]) + 1e-9).tolist())
        self._joint_bounds: dict[str, tuple[Arr, Arr]] = {}
        self._cid = int(self.client._client)
        self._built = False
        self._all_joints = ARM_JOINTS + list(JAWS)
        #: per arm body, the motor commands last sent: pybullet keeps them, so unchanged ones are not resent
        self._sent: dict[int, tuple[tuple[float, ...], float, float]] = {}
        #: the arm bodies touching tissue (pad or vessel) at the end of the last control step
        self._touching: set[int] = set()
        self.arms: dict[str, Arm] = {}
        self.bodies: dict[str, int] = {}
        self.pad_top = vec_mm(self.cfg["pad"]["top"])
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
            rcm = vec_mm(arms[name]["rcm"])
            body = int(c.loadURDF(str(root / arms["urdf"]), list(rcm), useFixedBase=True,
                                  flags=pybullet.URDF_USE_IMPLICIT_CYLINDER))
            info = [c.getJointInfo(body, j) for j in ARM_JOINTS]
            # the shaft (the insertion joint's link) as psm.urdf builds it: what the plans keep the arms apart by
            self.shaft_length, self.shaft_radius = map(float, c.getCollisionShapeData(body, ARM_JOINTS[2])[0][3][:2])
            lo = np.array([float(i[8]) for i in info])
            hi = np.array([float(i[9]) for i in info])
            kin = Kinematics(rcm, float(arms["tcp"]) * MM, lo, hi)
            home = vec_mm(arms["home"][name])
            q = kin.ik(home, 0.0, 0.0)
            self.arms[name] = Arm(name, body, kin, home, 0.0, float(rcm[1]), q, float(arms["jaw_open"]) * MM, home.copy(), 0.0)
            self._joint_bounds[name] = self._bounds(self.arms[name])
            colour = list(arms[name]["colour"])
            for link in (-1, 0, 1):
                c.changeVisualShape(body, link, rgbaColor=colour)
            for jaw in JAWS:
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
            xy = vec_mm(spec["nominal"]) + rng.uniform(-1.0, 1.0, size=2) * float(r["xy"]) * MM
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
            arm.jaw_cmd, arm.jaw_bias, arm.lean = float(self.cfg["arms"]["jaw_open"]) * MM, 0.0, 0.0
            arm.held, arm.grip, arm.grip_rel = None, None, None
            for j, q in zip(ARM_JOINTS, arm.q_cmd):
                self.client.resetJointState(arm.body, j, float(q))
            for j in JAWS:
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

    def _joint_violation(self, arm: Arm, q: Arr) -> tuple[FailureKind, str] | None:
        lo, hi = self._joint_bounds[arm.name]
        if bool(np.all(q >= lo)) and bool(np.all(q <= hi)):
            return None
        j = int(np.nonzero((q < lo) | (q > hi))[0][0])
        names = ("outer yaw", "outer pitch", "insertion", "tool roll", "wrist pitch", "wrist yaw")
        value, unit = (q[j] / MM, "mm") if j == 2 else (math.degrees(q[j]), "deg")
        return FailureKind.JOINT_LIMIT, f"{arm.name} {names[j]} would reach {value:.0f} {unit}, past its limit"

    def _bounds(self, arm: Arm) -> tuple[Arr, Arr]:
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

    def _workspace_violation(self, arm: Arm, p: Arr) -> tuple[FailureKind, str] | None:
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
            vmax = speed_cap(self.limits, self.in_contact(arm))
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
                arm.sp_psi = yaw_of(R)

    # -- facts ---------------------------------------------------------------------------------
    def world_state(self) -> WorldState:
        self._ensure_built()
        facts: dict[str, Any] = {f"holding[{a}]": (self.arms[a].held or "none") for a in ARMS}
        for obj in OBJECTS:
            facts[f"located[{obj}]"] = obj in self.located
        facts.update(COMMANDS.always_known)
        return WorldState(facts=facts, known=True)

    def observation(self) -> dict[str, Any]:
        """Poses in metres (world frame), forces in newtons; JSON-able."""
        objects = {}
        for obj in OBJECTS:
            pos, R = self.object_frame(obj)
            objects[obj] = {"pos": [float(v) for v in pos], "yaw_deg": math.degrees(yaw_of(R)),
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
        return pos + R @ local, yaw_of(R) + theta

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
            return pos - R[:, 0] * back * MM, yaw_of(R) + math.pi / 2.0
        rim = self.rim_position()
        return rim, yaw_of(self.vessel_R)

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
        return SKILLS


