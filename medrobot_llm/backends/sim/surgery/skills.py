"""The surgery scene's skills, written the one way: ``start`` lays out the parts of the skill, ``update``
(shared here) advances them one control step at a time, and the framework stops them on a cancel or halt.

A part is a method that runs between motions (checks what the last one achieved, plans the next) and
hands back the motion that follows; ``self.ok`` is whether the last motion got where it was going.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from medrobot_llm.backends.base import BehaviourStatus, FailureKind
from medrobot_llm.backends.sim.base import SceneSkill
from medrobot_llm.backends.sim.imaging import rot
from medrobot_llm.backends.sim.surgery.arm import COMMANDS, DIRECTIONS, MM, Arm, Arr, vec_mm, wrap, yaw_of
from medrobot_llm.backends.sim.surgery import caps
from medrobot_llm.backends.sim.surgery.motions import CloseOn, Jaws, Logged, Motion, Move, Part, Pause, Travel
from medrobot_llm.core.command_set import ARM_ENTITY
from medrobot_llm.core.plan import Step

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.surgery.scene import SurgeryScene

__all__ = ["SKILLS"]


class _Skill(SceneSkill["SurgeryScene"]):
    """A surgery skill: its parts run in order, each once the motion before it has finished, so a part
    that finds nothing to wait for hands the same control step on to the next."""

    def __init__(self, scene: SurgeryScene, step: Step) -> None:
        super().__init__(scene, step)
        self.parts: list[Part] = []
        self.motion: Motion | None = None
        self.ok = False

    def then(self, *parts: Part) -> None:
        self.parts.extend(parts)

    def update(self) -> BehaviourStatus:
        while True:
            if self.motion is not None:
                if self.motion.step():
                    return BehaviourStatus.FAILURE if self.failure is not FailureKind.NONE else BehaviourStatus.RUNNING
                self.ok, stopped = self.motion.ok, self.motion.stopped
                self.motion = None
                if stopped is not None and not self.on_stop(stopped):
                    self.fail(FailureKind.LOST, stopped)
            if self.failure is not FailureKind.NONE:
                return BehaviourStatus.FAILURE
            if not self.parts:
                self.progress = 1.0
                return BehaviourStatus.SUCCESS
            self.motion = self.parts.pop(0)()

    def arm(self, key: str = "arm") -> Arm:
        return self.scene.arms[str(self.args[key])]

    def on_stop(self, why: str) -> bool:
        """A motion stopped itself to stay within a limit; True if the skill takes it from here (by default
        the skill fails, with the arm held where it stopped)."""
        return False

    def refused(self, problem: str | None) -> bool:
        """Fail, before the motion that would cross a limit starts, if planning found it would."""
        if problem is not None:
            self.fail(FailureKind.INVALID, f"refused {self.step.skill}: {problem}")
        return problem is not None

    def path_problem(self, arm: Arm, goal: Arr, over_tissue: bool) -> str | None:
        """A travel from where the arm's set-point is to ``goal``, checked against the limits."""
        corners = Travel.corners(self.scene, arm.sp_pos.copy(), goal)
        return (next((p for p in (caps.goal_problem(self.scene, arm, c, over_tissue=over_tissue and c is corners[-1])
                                  for c in corners[1:]) if p), None)
                or caps.pull_problem(self.scene, arm, corners) or caps.arm_problem(self.scene, arm, corners))

    # -- the motions, on this skill's scene ------------------------------------------------------------
    def move(self, arm: Arm, goal: Arr, psi: float | None = None, speed_mm_s: float | None = None,
             tolerance: float = 0.0008, loaded: bool = False) -> Move:
        return Move(self.scene, arm, goal, psi, speed_mm_s, tolerance, loaded)

    def travel(self, arm: Arm, goal: Arr, psi: float | None = None, final_speed: float | None = None) -> Travel:
        return Travel(self.scene, arm, goal, psi, final_speed)

    def open_jaws(self, arm: Arm) -> Jaws:
        return Jaws(self.scene, arm, float(self.scene.cfg["arms"]["jaw_open"]) * MM)

    def close_on(self, arm: Arm, obj: str) -> CloseOn:
        return CloseOn(self.scene, arm, obj)


class _Locate(_Skill):
    """Look for the object in the endoscope's image and record its pose."""

    def start(self) -> None:
        self.then(self.look)

    def look(self) -> Motion | None:
        s = self.scene
        obj = str(self.args["object"])
        pixels = s.visible_pixels(obj)
        if pixels < 3:
            self.fail(FailureKind.LOST, f"the {obj} is not in the camera's view")
            return None
        pos, R = s.object_frame(obj)
        s.located[obj] = {"pos": pos, "yaw": yaw_of(R), "pixels": pixels, "t": s.sim_time}
        self.outcome = {"object": obj, "pos_mm": [float(v) / MM for v in pos], "yaw_deg": math.degrees(yaw_of(R)),
                        "pixels": pixels}
        self.message = f"{obj} at {[round(float(v) / MM, 1) for v in pos]} mm"
        return Pause(1)


class _MoveTo(_Skill):
    def start(self) -> None:
        self.then(self.go, self.arrived)

    def go(self) -> Motion | None:
        s = self.scene
        arm = self.arm()
        target = str(self.args["target"])
        offset = vec_mm(self.args.get("offset_mm") or [0, 0, 0])
        psi: float | None = None
        if target == "home":
            goal, psi = arm.home.copy(), arm.home_psi
        elif target == "handover_point":
            goal = vec_mm(s.cfg["places"]["handover_point"])
        else:
            point, psi = s.grasp_target(target)
            goal = point + np.array([0.0, 0.0, float(s.cfg["motion"]["hover"]) * MM])
        self.goal = goal + offset
        if self.refused(self.path_problem(arm, self.goal, over_tissue=True)):
            return None
        # near an object the last leg goes down at the approach speed: what lies below may be tissue
        final = None if target in ("home", "handover_point") else float(s.cfg["motion"]["approach_speed"])
        return self.travel(arm, self.goal, psi, final)

    def arrived(self) -> None:
        arm = self.arm()
        target = str(self.args["target"])
        if not self.ok:
            self.fail(FailureKind.TIMEOUT, f"{arm.name} did not settle at the {target}")
            return
        self.outcome = {"arm": arm.name, "target": target, "tcp_mm": [float(v) / MM for v in arm.tcp],
                        "goal_mm": [float(v) / MM for v in self.goal]}
        self.message = f"{arm.name} at the {target.replace('_', ' ')}"


class _Grasp(_Skill):
    def start(self) -> None:
        self.obj = str(self.args["object"])
        self.then(self.open, self.approach, self.close, self.gripped)

    def open(self) -> Motion | None:
        holders = self.scene.holders(self.obj)
        if holders and self.obj != "needle":
            self.fail(FailureKind.PRECONDITION, f"the {self.obj} is held by {holders[0]}")
            return None
        return self.open_jaws(self.arm())

    def approach(self) -> Motion | None:
        s = self.scene
        point, psi = s.grasp_target(self.obj)
        # the jaw tips stop short of the pad: the tool tip is 1 mm above them
        floor = float(s.pad_top[2]) + (float(s.cfg["grasp"]["tip_clearance"]) + 1.0) * MM
        point[2] = max(float(point[2]), floor)
        if self.refused(self.path_problem(self.arm(), point, over_tissue=False)):
            return None
        return self.travel(self.arm(), point, psi, float(s.cfg["motion"]["approach_speed"]))

    def close(self) -> Motion | None:
        if not self.ok:
            self.fail(FailureKind.TIMEOUT, f"{self.arm().name} did not reach the {self.obj}")
            return None
        return self.close_on(self.arm(), self.obj)

    def gripped(self) -> None:
        s, arm, obj = self.scene, self.arm(), self.obj
        if not self.ok:
            arm.jaw_cmd, arm.jaw_bias, arm.lean = float(s.cfg["arms"]["jaw_open"]) * MM, 0.0, 0.0
            self.fail(FailureKind.LOST, f"{arm.name}'s jaws closed without taking the {obj}")
            return
        left, right = s.jaw_contacts(arm, obj)
        self.outcome = {"arm": arm.name, "object": obj, "jaw_forces_n": [left, right],
                        "jaws_mm": [float(v) / MM for v in arm.jaws]}
        self.message = f"{arm.name} holds the {obj}"


class _Release(_Skill):
    def start(self) -> None:
        self.then(self.ease, self.let_go, self.rise, self.done)

    def ease(self) -> Motion | None:
        """Bring a stretched vessel rim back to rest before letting go of it: let go under tension, it
        would spring back against the opening jaws and fling the tool far past the contact speed cap."""
        arm = self.arm()
        if arm.held != "vessel":
            return None
        s = self.scene
        goal = arm.sp_pos - s.rim_displacement()
        return self.move(arm, goal, speed_mm_s=float(s.cfg["motion"]["retract_speed"]), loaded=True)

    def let_go(self) -> Motion:
        arm = self.arm()
        self.obj = arm.held
        self.scene.drop_grip(arm, "released")
        return self.open_jaws(arm)

    def rise(self) -> Motion | None:
        arm = self.arm()
        goal = arm.sp_pos + np.array([0.0, 0.0, 0.005])
        if self.refused(caps.goal_problem(self.scene, arm, goal, over_tissue=False)):
            return None
        return self.move(arm, goal, tolerance=0.002)

    def done(self) -> None:
        arm = self.arm()
        self.outcome = {"arm": arm.name, "released": self.obj}
        self.message = f"{arm.name} let go of the {self.obj}"


class _Lift(_Skill):
    def start(self) -> None:
        self.then(self.rise, self.done)

    def rise(self) -> Motion | None:
        s = self.scene
        arm = self.arm()
        self.obj = obj = str(arm.held)
        self.h = float(self.args["height_mm"]) * MM
        self.before = s.object_frame(obj)[0] if obj != "vessel" else s.rim_position()
        goal = arm.sp_pos + np.array([0.0, 0.0, self.h])
        if self.refused(caps.line_problem(s, arm, goal)):
            return None
        return self.move(arm, goal, speed_mm_s=float(s.cfg["motion"]["lift_speed"]), loaded=obj == "vessel")

    def done(self) -> None:
        s, arm, obj, before = self.scene, self.arm(), self.obj, self.before
        if arm.held != obj:
            self.fail(FailureKind.LOST, f"{arm.name} dropped the {obj} while lifting")
            return
        if not self.ok:
            self.fail(FailureKind.TIMEOUT, f"{arm.name} did not settle after lifting")
            return
        after = s.object_frame(obj)[0] if obj != "vessel" else s.rim_position()
        record = {"arm": arm.name, "object": obj, "asked_mm": self.h / MM,
                  "rise_mm": float(after[2] - before[2]) / MM, "start_z": float(before[2]), "t": s.sim_time}
        s.lifts.append(record)
        self.outcome = dict(record)
        self.message = f"lifted the {obj} {record['rise_mm']:.1f} mm"


class _Handover(_Skill):
    """The receiver waits aside, the giver turns the object to face it and brings the take point to the
    handover point, the receiver closes on it, and only then does the giver let go."""

    def start(self) -> None:
        s = self.scene
        self.giver, self.taker = self.arm("from_arm"), self.arm("to_arm")
        self.obj = str(self.args["object"])
        self.place = vec_mm(s.cfg["places"]["handover_point"])
        self.side = float(np.sign(self.taker.rcm_y - self.giver.rcm_y))
        self.then(self.open_taker, self.taker_waits, self.bring, self.reach, self.descend,
                  partial(self.close_on, self.taker, self.obj), self.let_go, self.step_back, self.done)

    def open_taker(self) -> Motion | None:
        if self.obj == "vessel":
            self.fail(FailureKind.INVALID, "the vessel is clamped in place: only its rim can be held, not passed on")
            return None
        return self.open_jaws(self.taker)

    def taker_waits(self) -> Motion:
        return self.travel(self.taker, self.place + np.array([0.0, self.side * 0.035, 0.015]))

    def bring(self) -> Motion | None:
        """Pick the take point, and turn the giver so that it faces the receiver."""
        s, giver, obj, side = self.scene, self.giver, self.obj, self.side
        pos, R = s.object_frame(obj)
        clearance = float(s.cfg["grasp"]["handover_clearance"]) * MM
        options = []
        for local in self._take_points(obj):
            d = pos + R @ local - giver.tcp
            if float(np.linalg.norm(d[:2])) < clearance:     # too near the giver's jaws for the receiver's
                continue
            turn = wrap(math.atan2(side, 0.0) - math.atan2(float(d[1]), float(d[0])))
            options.append((abs(turn), turn, local))
        _, turn, self.local = min(options, key=lambda o: o[0])
        goal = self.place - rot("z", turn) @ (pos + R @ self.local - giver.tcp)
        goal[2] = self.place[2]
        if self.refused(caps.arm_problem(s, giver, Travel.corners(s, giver.sp_pos.copy(), goal))):
            return None
        return self.travel(giver, goal, giver.sp_psi + turn)

    def reach(self) -> Motion | None:
        s, giver, obj, local = self.scene, self.giver, self.obj, self.local
        if giver.held != obj:
            self.fail(FailureKind.LOST, f"{giver.name} dropped the {obj} on the way")
            return None
        if not self.ok:
            self.fail(FailureKind.TIMEOUT, f"{giver.name} did not reach the handover point")
            return None
        pos, R = s.object_frame(obj)
        self.take = pos + R @ local
        across = math.atan2(float(local[1]), float(local[0])) if obj == "needle" else math.pi / 2.0
        self.take_psi = yaw_of(R) + across
        return self.move(self.taker, self.take + np.array([0.0, 0.0, 0.012]), self.take_psi, tolerance=0.002)

    def descend(self) -> Motion:
        return self.move(self.taker, self.take, self.take_psi, float(self.scene.cfg["motion"]["approach_speed"]))

    def let_go(self) -> Motion | None:
        s, taker = self.scene, self.taker
        if not self.ok:
            taker.jaw_cmd, taker.jaw_bias, taker.lean = float(s.cfg["arms"]["jaw_open"]) * MM, 0.0, 0.0
            self.fail(FailureKind.LOST, f"{taker.name}'s jaws closed without taking the {self.obj}")
            return None
        s.drop_grip(self.giver, "handed over")
        return self.open_jaws(self.giver)

    def step_back(self) -> Motion:
        giver = self.giver
        return self.move(giver, giver.sp_pos + np.array([0.0, -self.side * 0.02, 0.01]), tolerance=0.003)

    def done(self) -> None:
        s = self.scene
        record = {"from": self.giver.name, "to": self.taker.name, "object": self.obj, "t": s.sim_time}
        s.handovers.append(record)
        self.outcome = {**record, "holders": list(s.holders(self.obj))}
        self.message = f"{self.taker.name} took the {self.obj} from {self.giver.name}"

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
    def start(self) -> None:
        self.then(self.pull, self.done)

    def pull(self) -> Motion | None:
        s = self.scene
        arm = self.arm()
        self.direction = np.asarray(DIRECTIONS[str(self.args["direction"])])
        self.dist = float(self.args["distance_mm"]) * MM
        self.start_at = s.rim_displacement().copy()
        self.start_sp = arm.sp_pos.copy()
        s.retract_log = []
        self.intend("contact", arm=arm.name, direction=str(self.args["direction"]), distance_mm=self.dist / MM)
        goal = arm.sp_pos + self.direction * self.dist
        if self.refused(caps.line_problem(s, arm, goal)):
            return None
        speed = float(s.cfg["motion"]["retract_speed"])
        return Logged(self.move(arm, goal, speed_mm_s=speed, tolerance=0.0008, loaded=True), self.log)

    def on_stop(self, why: str) -> bool:
        """The pull stopped short (the tool met tissue, or the grip was about to slip): give the tension back,
        easing to where the pull began, then fail with the reason; the rim stays held."""
        s, arm = self.scene, self.arm()
        if getattr(self, "easing", False):       # the easing itself stopped: fail where it is
            return False
        self.easing = True

        def ease() -> Motion:
            return self.move(arm, self.start_sp, speed_mm_s=float(s.cfg["motion"]["retract_speed"]),
                             tolerance=0.002)

        def fail() -> None:
            moved = float((s.rim_displacement() - self.start_at) @ self.direction) / MM
            self.fail(FailureKind.LOST, f"{why}; the pull was eased back ({moved:.1f} mm now)")

        self.parts = [ease, fail]
        return True

    def log(self) -> None:
        s = self.scene
        s.retract_log.append({"t": s.sim_time, "force_n": s.rim_force_n,
                              "displacement_mm": [float(v) / MM for v in s.rim_displacement()]})

    def done(self) -> None:
        s, arm = self.scene, self.arm()
        self.did(rim_moved_mm=float((s.rim_displacement() - self.start_at) @ self.direction) / MM,
                 force_n=s.rim_force_n, held=arm.held)
        if arm.held != "vessel":
            self.fail(FailureKind.LOST, f"{arm.name} lost its grip on the vessel rim")
            return
        if not self.ok:
            self.fail(FailureKind.TIMEOUT, f"{arm.name} did not reach the retraction")
            return
        moved = s.rim_displacement() - self.start_at
        self.outcome = {"arm": arm.name, "direction": self.args["direction"], "asked_mm": self.dist / MM,
                        "rim_moved_mm": float(moved @ self.direction) / MM, "force_n": s.rim_force_n,
                        "max_force_n": max((r["force_n"] for r in s.retract_log), default=0.0)}
        self.message = f"rim retracted {self.outcome['rim_moved_mm']:.1f} mm at {s.rim_force_n:.2f} N"


class _Insert(_Skill):
    def start(self) -> None:
        self.then(self.approach, self.push, self.done)

    def approach(self) -> Motion:
        s = self.scene
        arm = self.arm()
        self.depth = float(self.args["depth_mm"]) * MM
        assert arm.grip_rel is not None
        rel_p, rel_R = arm.grip_rel           # the shunt's frame in the gripper's frame
        origin, self.axis = s.lumen()
        # turn the tool so that the shunt's axis (its x, front forward) lies along the lumen's axis
        shunt_dir_tool = rel_R[:, 0]
        heading_now = math.atan2(float(shunt_dir_tool[1]), float(shunt_dir_tool[0]))
        self.psi = math.atan2(float(self.axis[1]), float(self.axis[0])) - heading_now
        Rg = rot("z", self.psi)
        half = float(s.cfg["objects"]["shunt"]["length"]) * MM / 2.0
        front_in_tool = rel_p + rel_R[:, 0] * half
        self.gap = float(s.cfg["motion"]["entry_gap"]) * MM
        tcp_of_gripper = np.array([0.0, 0.0, -arm.kin.tcp])
        # tool tip such that the shunt's front sits ``gap`` before the opening, on the axis
        self.entry = origin - self.axis * self.gap - Rg @ (front_in_tool - tcp_of_gripper)
        return self.travel(arm, self.entry, self.psi, float(s.cfg["motion"]["approach_speed"]))

    def push(self) -> Motion | None:
        arm = self.arm()
        if arm.held != "shunt":
            self.fail(FailureKind.LOST, f"{arm.name} dropped the shunt on the way")
            return None
        if not self.ok:
            self.fail(FailureKind.TIMEOUT, f"{arm.name} did not reach the vessel's opening")
            return None
        goal = self.entry + self.axis * (self.gap + self.depth)
        self.intend("contact", arm=arm.name, depth_mm=self.depth / MM)
        return self.move(arm, goal, self.psi, float(self.scene.cfg["motion"]["insert_speed"]), tolerance=0.0008)

    def done(self) -> None:
        s, arm, depth = self.scene, self.arm(), self.depth
        along, radial = s.shunt_depth()
        record = {"arm": arm.name, "asked_mm": depth / MM, "depth_mm": along / MM, "off_axis_mm": radial / MM,
                  "t": s.sim_time}
        s.insertions.append(record)
        self.did(depth_mm=record["depth_mm"], off_axis_mm=record["off_axis_mm"], held=arm.held)
        if arm.held != "shunt":
            self.fail(FailureKind.LOST, f"{arm.name} lost the shunt {along / MM:.1f} mm into the lumen")
            return
        short = along < depth - float(s.cfg["checks"]["depth_tolerance"]) * MM
        if not self.ok or short:
            self.fail(FailureKind.TIMEOUT, f"the shunt stopped {along / MM:.1f} mm into the lumen")
            return
        self.outcome = dict(record)
        self.message = f"shunt {along / MM:.1f} mm into the lumen"


class _Home(_Skill):
    def start(self) -> None:
        said = str(self.args["arm"])
        self.names = COMMANDS.entities[ARM_ENTITY].values[said].expands_to or (said,)
        for name in self.names:
            arm = self.scene.arms[name]
            self.then(partial(self.open_jaws, arm), partial(self.go_home, arm), partial(self.at_home, name))
        self.then(self.done)

    def go_home(self, arm: Arm) -> Motion:
        return self.travel(arm, arm.home.copy(), arm.home_psi)

    def at_home(self, name: str) -> None:
        if not self.ok:
            self.fail(FailureKind.TIMEOUT, f"{name} did not settle at home")

    def done(self) -> None:
        s, names = self.scene, self.names
        self.outcome = {"arms": list(names), "tcp_mm": {n: [float(v) / MM for v in s.arms[n].tcp] for n in names}}
        self.message = f"{' and '.join(names)} at home"


SKILLS: dict[str, type[_Skill]] = {
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
