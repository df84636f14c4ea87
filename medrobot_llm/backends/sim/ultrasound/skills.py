"""The ultrasound scene's skills: probe transfers, contact under force control, sweeps, turns and captures."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from medrobot_llm.backends.base import BehaviourStatus, FailureKind
from medrobot_llm.backends.sim.base import SceneSkill
from medrobot_llm.backends.sim.imaging import rot, rot_about
from medrobot_llm.backends.sim.ultrasound.arm import Arr, MM, ProbePath

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.ultrasound.scene import UltrasoundScene  # noqa: F401 - named in SceneSkill[...]

__all__ = ["SKILLS", "off_skin"]


def off_skin(s: UltrasoundScene, tip: Arr, R: Arr, way: Arr, distance: float) -> float | None:
    """How far (m) along a straight slide of ``distance`` the lens would first leave the skin it may touch
    (checked every millimetre), or None: the monitor halts the probe there, so a sweep is planned short of it."""
    for k in range(1, int(math.ceil(distance / MM)) + 1):
        along = min(k * MM, distance)
        if not s.on_skin(tip + way * along, R):
            return along
    return None


class _Skill(SceneSkill["UltrasoundScene"]):
    """Common to the scene's skills: durations in control steps of this scene."""

    def steps_for(self, seconds: float) -> int:
        return int(seconds / self.scene.control_period_s) + 1


class _PathSkill(_Skill):
    """Follow a path of set-points, then wait until the measured lens is on the last one."""

    path: ProbePath
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

    def make_path(self, poses: list[tuple[Arr, Arr]]) -> ProbePath:
        ctl = self.scene._ctl
        return ProbePath(poses, float(ctl["free_speed"]) * MM, math.radians(float(ctl["turn_speed_deg"])),
                     self.scene.control_period_s)

    def arrived(self) -> BehaviourStatus:
        """Called once the transfer is over."""
        return BehaviourStatus.SUCCESS

    def update(self) -> BehaviourStatus:
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
    def start(self) -> None:
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

    def start(self) -> None:
        s = self.scene
        s.joint_target = None
        s.f_target = float(self.args["force_n"])
        self._inside = 0
        gap = max(0.0, (s.clearance_mm() or 0.0)) + 20.0
        self.max_steps = self.steps_for(gap / float(s._ctl["approach_speed"]) + 4.0)

    def update(self) -> BehaviourStatus:
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
    def start(self) -> None:
        s = self.scene
        if s.in_contact:
            self.fail(FailureKind.PRECONDITION, "the probe is already in contact")
            return
        if s.probe_state() != "hovering":
            self.fail(FailureKind.PRECONDITION, "the probe is not hovering over the skin")
            return
        self.intend("contact", target_force_n=float(self.args["force_n"]))
        super().start()

    def update(self) -> BehaviourStatus:
        s = self.scene
        if s.in_contact:
            self.did(force_n=float(s.force_n), penetration_mm=float(s.penetration_mm))   # the first touch
        return super().update()


class _SetForce(_Press):
    def start(self) -> None:
        if not self.scene.in_contact:
            self.fail(FailureKind.PRECONDITION, "the probe is not in contact")
            return
        super().start()


class _Sweep(_Skill):
    def start(self) -> None:
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
        # planned within the limits the monitor checks: the contact speed cap, and skin under the whole lens
        # all the way (the monitor halts a probe that reaches the edge of the skin it may touch)
        self.speed = min(float(self.args["speed_mm_s"]), float(s.cfg["limits"]["contact_speed"])) * MM
        edge = off_skin(s, s.tip, s.tip_R, self.dir, self.distance)
        if edge is not None:
            self.fail(FailureKind.INVALID, f"refused sweep: {direction} the probe would reach the edge of the skin "
                                           f"it may touch after {edge / MM:.0f} mm")
            return
        self.travelled = 0.0
        self.start_tip = s.tip.copy()
        s.sweep_log = []
        s.sweep_target_n = s.f_target
        self.max_steps = self.steps_for(self.distance / self.speed + 3.0)

    def update(self) -> BehaviourStatus:
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

    def start(self) -> None:
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

    def update(self) -> BehaviourStatus:
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

    def start(self) -> None:
        if not self.scene.in_contact:
            self.fail(FailureKind.PRECONDITION, "the probe is not in contact")
            return
        super().start()

    def angles(self) -> list[float]:
        a = float(self.args["angle_deg"])
        return [a, -a, 0.0]


class _Rotate(_Turn):
    axis_index = 2
    flip = False

    def start(self) -> None:
        super().start()
        if self.failure is FailureKind.JOINT_LIMIT and abs(float(self.args["angle_deg"])) >= 179.999:
            # half a turn ends in the same pose either way round: take the way the wrist can go
            self.failure, self.message, self.flip = FailureKind.NONE, "", True
            super().start()

    def angles(self) -> list[float]:
        angle = float(self.args["angle_deg"])
        return [-angle if self.flip else angle]


class _Tilt(_Turn):
    def start(self) -> None:
        self.axis_index = 0 if self.args["axis"] == "roll" else 1
        super().start()

    def angles(self) -> list[float]:
        return [float(self.args["angle_deg"])]


class _SetImaging(_Skill):
    max_steps = 1

    def update(self) -> BehaviourStatus:
        s = self.scene
        for key in ("depth_mm", "gain_pct", "mode"):
            if self.args.get(key) is not None:
                s.imaging[key] = self.args[key] if key == "mode" else float(self.args[key])
                s.imaging_user.add(key)
        self.outcome = dict(s.imaging)
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


class _Capture(_Skill):
    max_steps = 1

    def update(self) -> BehaviourStatus:
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

    def start(self) -> None:
        s = self.scene
        s.f_target, s.joint_target = None, None
        s.retracting = True
        s.rebase()
        start = s.tip.copy()
        back = (float(self.args["height_mm"]) + s.penetration_mm) * MM
        end = start - s.ref_R[:, 2] * back
        s.ref_pos = start
        self.path = ProbePath([(start, s.ref_R), (end, s.ref_R)], float(s._ctl["lift_speed"]) * MM,
                          math.radians(float(s._ctl["turn_speed_deg"])), s.control_period_s)
        self.limit_steps()

    def update(self) -> BehaviourStatus:
        status = self.run_path()
        if status is BehaviourStatus.SUCCESS:
            s = self.scene
            s.retracting = False
            self.outcome = {"clearance_mm": s.clearance_mm(), "tip": [float(v) for v in s.tip]}
            self.message = "probe lifted off the skin"
        return status


class _Home(_Transfer):
    def start(self) -> None:
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


SKILLS: dict[str, type[_Skill]] = {
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
