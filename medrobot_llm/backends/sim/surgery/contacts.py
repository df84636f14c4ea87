"""What the surgery scene's physics measures (poses, tissue and jaw forces) and the grips it forms from the jaw contacts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pybullet

from medrobot_llm.backends.sim.base import Scene
from medrobot_llm.backends.sim.imaging import matrix_from_quat
from medrobot_llm.backends.sim.surgery.arm import ARM_JOINTS, GRIPPER, JAWS, OBJECTS, Arm, Arr

__all__ = ["SurgeryContacts"]


class SurgeryContacts(Scene):
    """What the surgery scene measures and grips, kept apart so ``SurgeryScene`` reads as its world and its
    control loop. The attributes below are built by ``SurgeryScene`` (``__init__``, ``_build``, ``reset``)."""

    cfg: dict[str, Any]
    arms: dict[str, Arm]
    bodies: dict[str, int]
    pad_id: int
    vessel_R: Arr
    events: list[dict[str, Any]]
    hold_log: dict[str, list[tuple[float, tuple[str, ...]]]]
    _cid: int
    _all_joints: list[int]
    _gains: dict[str, float]
    _grip: float
    _jaw_speed: float
    _motor_forces: list[float]
    _vessel: int
    _rim_joints: list[int]
    _rim_link: int
    _rim_k: float
    _rim_c: float
    _rim_weight: float
    #: per arm body, the motor commands last sent: pybullet keeps them, so unchanged ones are not resent
    _sent: dict[int, tuple[tuple[float, ...], float, float]]
    _touching: set[int]

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
            pybullet.setJointMotorControlArray(arm.body, ARM_JOINTS, pybullet.POSITION_CONTROL,
                                               targetPositions=arm.q_cmd.tolist(), forces=self._motor_forces,
                                               positionGains=[gain["arm"]] * 6, physicsClientId=cid)
            for jaw, side in zip(JAWS, (1.0, -1.0)):
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
            st = pybullet.getLinkState(arm.body, GRIPPER, computeForwardKinematics=1, physicsClientId=cid)
            R = matrix_from_quat(st[5])
            arm.R = R
            tcp = np.asarray(st[4]) - R[:, 2] * arm.kin.tcp
            arm.speed = float(np.linalg.norm(tcp - arm.tcp)) / dt if dt > 0.0 else 0.0
            arm.tcp = tcp

    def jaw_contacts(self, arm: Arm, obj: str) -> tuple[float, float]:
        """Normal force of each jaw on the object (N), from the engine's contact points."""
        c = self.client
        body = self.bodies[obj]
        link = self._rim_link if obj == "vessel" else -1
        out = []
        for jaw in JAWS:
            pts = c.getContactPoints(arm.body, body, jaw, link)
            out.append(sum(cp[9] for cp in pts if cp[8] < 0.0005))
        return out[0], out[1]

    def in_contact(self, arm: Arm) -> bool:
        """The arm touched tissue at the end of the last control step, or holds the vessel rim: the contact
        speed cap applies to it (``caps.speed_cap``), in the skills' plans and in the monitor alike."""
        return arm.body in self._touching or arm.held == "vessel"

    def holders(self, obj: str) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms.values() if a.held == obj)

    # -- grip ----------------------------------------------------------------------------------
    def form_grip(self, arm: Arm, obj: str) -> None:
        """Fix the object to the gripper at the pose it has now (both jaws were found pressing on it)."""
        c = self.client
        body = self.bodies[obj]
        link = self._rim_link if obj == "vessel" else -1
        g = c.getLinkState(arm.body, GRIPPER, computeForwardKinematics=True)
        if link == -1:
            o_pos, o_orn = c.getBasePositionAndOrientation(body)
        else:
            st = c.getLinkState(body, link, computeForwardKinematics=True)
            o_pos, o_orn = st[0], st[1]
        inv_pos, inv_orn = c.invertTransform(g[0], g[1])
        rel_pos, rel_orn = c.multiplyTransforms(inv_pos, inv_orn, o_pos, o_orn)
        cid = c.createConstraint(arm.body, GRIPPER, body, link, pybullet.JOINT_FIXED, [0, 0, 0], rel_pos,
                                 [0, 0, 0], rel_orn, [0, 0, 0, 1])
        mu = float(c.getDynamicsInfo(arm.body, JAWS[0])[1])
        c.changeConstraint(cid, maxForce=2.0 * mu * float(self.cfg["arms"]["grip_force"]) * 2.0)
        arm.grip, arm.held = int(cid), obj
        # the object's frame in the gripper's link frame, for placing it later
        gl_pos, gl_orn = c.multiplyTransforms(g[4], g[5], [0, 0, 0], [0, 0, 0, 1])
        of_pos, of_R = self.object_frame(obj) if obj != "vessel" else (self.rim_position(), self.vessel_R)
        Rg = matrix_from_quat(gl_orn)
        arm.grip_rel = (Rg.T @ (of_pos - np.asarray(gl_pos)), Rg.T @ of_R)
        self.events.append({"t": self.sim_time, "grip": arm.name, "object": obj})

    def drop_grip(self, arm: Arm, why: str) -> None:
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
