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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pybullet
import pybullet_data

from medrobot_llm.backends.base import FailureKind
from medrobot_llm.core.validator import WorldState
from medrobot_llm.backends.sim.base import SceneSkill, assets_dir
from medrobot_llm.backends.sim.imaging import Frame, Primitive, Volume, matrix_from_quat, quat_from_matrix, rot
from medrobot_llm.backends.sim.ultrasound.arm import Arm, Arr, Label, MM, Window, load_config
from medrobot_llm.backends.sim.ultrasound.imaging import UltrasoundImaging
from medrobot_llm.backends.sim.ultrasound.skills import SKILLS

__all__ = ["UltrasoundScene"]

class UltrasoundScene(UltrasoundImaging):
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
        self.arm = Arm(Path(pybullet_data.getDataPath()) / rob["urdf"], np.asarray(rob["base"], float) * MM,
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
        self.labels: list[Label] = []
        self.volume: Volume | None = None
        self.windows: dict[str, Window] = {}

    # -- world -------------------------------------------------------------------------------
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
        self.labels = [Label(t, "", t) for t in self._tissue_names]
        for layer in self.cfg["layers"]:
            vol.paint(Primitive.from_spec(layer, self._tissue_names.index(layer["tissue"])))
        self.organ_prims: dict[str, Primitive] = {}
        flows: dict[int, Arr] = {}
        for name, spec in self.cfg["organs"].items():
            offset = rng.uniform(-1.0, 1.0, size=3) * float(spec.get("jitter", 0.0)) * MM
            self.labels.append(Label(name, name, spec["tissue"]))
            prim = Primitive.from_spec(spec, len(self.labels) - 1, offset)
            self.organ_prims[name] = prim
            vol.paint(prim)
            if "flow" in spec:
                flows[len(self.labels) - 1] = np.asarray(spec["flow"], dtype=float) * MM
            for k, part in enumerate(spec.get("parts", ())):
                self.labels.append(Label(f"{name}.{k}", name, part["tissue"]))
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
            self.windows[key] = Window(organ, side, self.patient.to_world(np.array([x, y, z])),
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
        self.window: Window | None = None
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

    # -- skills ------------------------------------------------------------------------------------
    def window_for(self, organ: str, side: str) -> Window:
        key = f"{organ}/{side}"
        if key not in self.windows:
            raise ValueError(f"no acoustic window for {organ} on the {side} side")
        return self.windows[key]

    def skills(self) -> Mapping[str, type[SceneSkill[Any]]]:
        return SKILLS


