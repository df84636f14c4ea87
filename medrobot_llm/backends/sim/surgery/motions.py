"""The motions the surgery skills are built from, each advanced one control step at a time.

A motion never blocks: ``step`` does one control step's worth (moves a set-point, checks a contact) and
says whether it needs the step, or has finished without it, so the next part of the skill starts in the
same control step. A motion plans when it first steps, from the arm as it is then, not when it is made.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from medrobot_llm.backends.sim.surgery.arm import MM, Arm, Arr, trapezoid, wrap
from medrobot_llm.backends.sim.surgery import caps

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.surgery.scene import SurgeryScene

__all__ = ["Chain", "CloseOn", "Jaws", "Logged", "Motion", "Move", "Part", "Pause", "Travel"]

#: a part of a skill: runs its code and hands back the motion that follows, if any
Part = Callable[[], "Motion | None"]


class Motion(ABC):
    """One part of a skill that takes control steps. ``ok`` is whether it got where it was going."""

    ok = False
    #: why the motion stopped itself short of its goal to stay within a limit (None: it did not)
    stopped: str | None = None

    @abstractmethod
    def step(self) -> bool:
        """Advance one control step; False once finished (this control step then goes to what follows)."""


class Chain(Motion):
    """Parts run one after the other; each is called once the one before has finished, and its ``ok`` is
    the last motion's."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = list(parts)
        self.current: Motion | None = None

    def step(self) -> bool:
        while True:
            if self.current is not None:
                if self.current.step():
                    return True
                self.ok, self.stopped = self.current.ok, self.current.stopped
                self.current = None
                if self.stopped is not None:
                    return False
            if not self.parts:
                return False
            self.current = self.parts.pop(0)()


class Pause(Motion):
    """Hold for ``steps`` control steps."""

    ok = True

    def __init__(self, steps: int) -> None:
        self.left = steps

    def step(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class Move(Motion):
    """Run the arm's set-point in a straight line to ``goal`` (turning the jaws to ``psi`` on the way) at
    ``speed_mm_s``, then wait until the measured tool tip is there; ``ok`` is False if it never settled.

    ``loaded``: the arm pulls against tissue, and its servos sag under the pull; while it settles, the
    set-point leads the goal by the measured sag (up to ``grasp.sag_max``), as a Cartesian outer loop on
    a real arm would.

    The move is planned within the limits the monitor checks: its cruise speed is at most
    ``motion.speed_share`` of the tool-tip cap that applies to the arm (``caps.speed_cap``), and it is
    guarded: it stops where it is (``stopped`` says why) when tissue pushes back with
    ``motion.guard_force_share`` of the force cap, or, holding the vessel rim, when a jaw is about to lose
    it (a grip that lapses under a pull lets the rim spring back and fling the tool: issue 16's 94 mm/s).
    Holding the rim, the closed jaw pair leans against the rim's pull (``grasp.pull_lean``), so a pull
    along the closing axis keeps both jaws on it.
    """

    def __init__(self, scene: SurgeryScene, arm: Arm, goal: Arr, psi: float | None = None,
                 speed_mm_s: float | None = None, tolerance: float = 0.0008, loaded: bool = False) -> None:
        self.scene, self.arm, self.goal, self.psi = scene, arm, goal, psi
        self.speed_mm_s, self.tolerance, self.loaded = speed_mm_s, tolerance, loaded
        self.n = -1          # set-points of the ramp, planned at the first step
        self.i = 1           # the next of them
        self.waited = 0      # control steps spent settling

    def _plan(self) -> None:
        s, arm = self.scene, self.arm
        asked = float(self.speed_mm_s or s.cfg["motion"]["free_speed"])
        limits = caps.plan_limits(s)
        cap = caps.speed_cap(limits, s.in_contact(arm)) * float(s.cfg["motion"]["speed_share"])
        speed = min(asked, cap) * MM
        self.holds_rim = arm.held == "vessel"
        self.cap_n = float(limits["force_cap"])
        self.guard_n = float(s.cfg["motion"]["guard_force_share"]) * self.cap_n
        self.grip_n = float(s.cfg["grasp"]["slip_margin"])
        if self.holds_rim:
            # lean the jaw pair against the rim's pull, by the share of it along the closing axis (grasp.pull_lean);
            # the pull points where the rim is stretched, the same way whether the move stretches or eases it
            now = s.rim_displacement()
            way = max(now, now + (self.goal - arm.tcp), key=lambda v: float(np.linalg.norm(v)))
            size = float(np.linalg.norm(way))
            along = float(way @ arm.R[:, 0]) / size if size > 0.0 else 0.0
            lean = -along * float(s.cfg["grasp"]["pull_lean"]) * MM
            arm.jaw_bias += lean - arm.lean
            arm.lean = lean
        turn = math.radians(float(s.cfg["motion"]["turn_speed_deg"]))
        dt = s.control_period_s
        self.start = arm.sp_pos.copy()
        self.psi0 = arm.sp_psi
        dpsi = 0.0 if self.psi is None else wrap(self.psi - self.psi0)
        if arm.held is None and abs(dpsi) > math.pi / 2:   # empty jaws are symmetric: turn the short way
            dpsi = wrap(dpsi - math.pi)
        self.dpsi = dpsi
        dist = float(np.linalg.norm(self.goal - self.start))
        # a trapezoidal speed profile: the set-point speeds up and slows down over ``ramp`` rather than jumping
        # to full speed, so what the jaws hold is not jerked out of them (its cruise speed is the asked one)
        cruise = max(dist / speed, abs(dpsi) / turn, dt)
        self.ramp = min(float(s.cfg["motion"]["ramp_s"]), cruise)
        self.total = cruise + self.ramp
        self.n = int(math.ceil(self.total / dt))
        self.settle_steps = int(1.0 / dt)
        g = s.cfg["grasp"]
        self.gain, self.most = float(g["sag_gain"]), float(g["sag_max"]) * MM

    def step(self) -> bool:
        if self.n < 0:
            self._plan()
        arm, goal = self.arm, self.goal
        if self.i > 1 and self._guard():
            return False
        if self.i <= self.n:
            f = trapezoid(self.i / self.n * self.total, self.total, self.ramp)
            arm.sp_pos = self.start + (goal - self.start) * f
            arm.sp_psi = self.psi0 + self.dpsi * f
            self.i += 1
            return True
        if self.waited >= self.settle_steps:
            self.ok = False
            return False
        error = goal - arm.tcp
        if float(np.linalg.norm(error)) < self.tolerance:
            self.ok = True
            return False
        if self.loaded:
            lead = arm.sp_pos + self.gain * error - goal
            size = float(np.linalg.norm(lead))
            arm.sp_pos = goal + (lead if size <= self.most else lead * (self.most / size))
        self.waited += 1
        return True

    def _guard(self) -> bool:
        """Stop here, holding the set-point where it is, if going on would cross a limit."""
        s, arm = self.scene, self.arm
        pushed = max(s.pad_force_n, s.vessel_force_n)
        if pushed > self.guard_n:
            self.stopped = (f"{arm.name} stopped: the tissue pushed back with {pushed:.1f} N, near the "
                            f"{self.cap_n:g} N cap")
        elif self.holds_rim:
            if arm.held != "vessel" or min(s.jaw_contacts(arm, "vessel")) < self.grip_n:
                self.stopped = f"{arm.name} stopped: its grip on the vessel rim was about to slip"
        if self.stopped is None:
            return False
        self.ok = False
        return True


class Travel(Chain):
    """Rise to the travel height, cross over, and come down to ``goal`` (the last leg at ``final_speed``)."""

    def __init__(self, scene: SurgeryScene, arm: Arm, goal: Arr, psi: float | None = None,
                 final_speed: float | None = None) -> None:
        super().__init__([self._legs])
        self.scene, self.arm, self.goal, self.psi, self.final_speed = scene, arm, goal, psi, final_speed

    @staticmethod
    def corners(scene: SurgeryScene, here: Arr, goal: Arr) -> list[Arr]:
        """The points the tool tip passes from ``here`` to ``goal``: up to the travel height, across, down."""
        safe = float(scene.pad_top[2]) + float(scene.cfg["motion"]["travel_height"]) * MM
        up = [np.array([here[0], here[1], safe])] if here[2] < safe - 1e-6 else []
        return [here.copy(), *up, np.array([goal[0], goal[1], max(safe, float(goal[2]))]), goal.copy()]

    def _legs(self) -> Motion:
        s, arm, goal, psi = self.scene, self.arm, self.goal, self.psi
        *rise, above, _ = self.corners(s, arm.sp_pos.copy(), goal)[1:]
        legs: list[Part] = [partial(Move, s, arm, p, None, None, 0.003) for p in rise]
        legs.append(lambda: Move(s, arm, above, psi, tolerance=0.003))
        legs.append(lambda: Move(s, arm, goal, psi, self.final_speed))
        return Chain(legs)


class Jaws(Motion):
    """Open (or close) the jaws to ``opening``, waiting up to 0.6 s for them to get there."""

    ok = True

    def __init__(self, scene: SurgeryScene, arm: Arm, opening: float) -> None:
        self.scene, self.arm, self.opening = scene, arm, opening
        self.left = -1

    def step(self) -> bool:
        arm = self.arm
        if self.left < 0:
            arm.jaw_cmd, arm.jaw_bias, arm.lean = self.opening, 0.0, 0.0
            self.left = int(0.6 / self.scene.control_period_s)
        if self.left == 0 or float(np.max(np.abs(arm.jaws - self.opening))) < 0.0002:
            return False
        self.left -= 1
        return True


class CloseOn(Motion):
    """Close the jaws together; the grip forms only once both jaws press on the object for a few steps.

    Both jaws follow one closing target, as one actuator drives both on the real instrument; once
    both touch, the target stops a little inside the object (the squeeze), so the jaws hold their
    place and the grip force stays under the jaw motors' limit.
    """

    def __init__(self, scene: SurgeryScene, arm: Arm, obj: str) -> None:
        self.scene, self.arm, self.obj = scene, arm, obj
        g = scene.cfg["grasp"]
        self.threshold = float(g["contact_force"])
        self.rate = float(scene.cfg["arms"]["jaw_speed"]) * MM * scene.control_period_s
        self.squeeze = float(g["squeeze"]) * MM
        self.close_steps = int(g["close_steps"])
        self.settle_steps = int(g["settle_steps"])
        self.both = 0
        self.hold: float | None = None
        self.touching = False
        self.k = -1

    def step(self) -> bool:
        s, arm = self.scene, self.arm
        if self.k < 0:
            self.k = 0
        else:               # the control step after a closing command: did both jaws stay on it?
            self.both = self.both + 1 if self.touching else 0
            if self.both >= self.settle_steps:
                s.form_grip(arm, self.obj)
                self.ok = True
                return False
            self.k += 1
        if self.k >= self.close_steps:
            return False
        left, right = s.jaw_contacts(arm, self.obj)
        self.touching = left > self.threshold and right > self.threshold
        if self.touching:
            # latched at the first touch: re-derived from the jaws every step, the target would follow
            # them into the object and the jaws would cut into it instead of holding it
            # each jaw squeezes from where it touched, so an object lying off the tool axis is pressed
            # evenly from both sides rather than shoved by one jaw against the other
            if self.hold is None:
                self.hold = max(0.0, float(np.mean(arm.jaws)) - self.squeeze)
                arm.jaw_bias, arm.lean = float(arm.jaws[0] - arm.jaws[1]) / 2.0, 0.0
            arm.jaw_cmd = self.hold
        else:
            arm.jaw_cmd = max(0.0, min(arm.jaw_cmd, float(np.max(arm.jaws))) - self.rate)
        return True


class Logged(Motion):
    """Another motion, with ``log`` called after each control step it takes."""

    def __init__(self, inner: Motion, log: Callable[[], None]) -> None:
        self.inner, self.log = inner, log

    def step(self) -> bool:
        if self.inner.step():
            self.log()
            return True
        self.ok, self.stopped = self.inner.ok, self.inner.stopped
        return False
