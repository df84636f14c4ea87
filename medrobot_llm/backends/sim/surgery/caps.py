"""The surgery scene's limits as the skills plan with them: the first line of defence.

The monitor (``SurgeryScene._monitor``) catches a limit after the physics crossed it and halts the arms,
a FAULT. Skills are planned so that it never has to: each motion's speed is the slower of what the skill
asks and the cap the monitor will apply to it, and a goal that would leave the workspace, end inside
tissue, or stretch a held vessel rim past the force cap is refused before anything moves. Both lines read
the same ``scene.limits``, so a cap is defined once (``sim/surgery/scene.yaml``) and overridden once; the
skills read it through ``plan_limits``, the one place a test can blind the first line to show the second
still holds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from medrobot_llm.backends.sim.surgery.arm import MM, Arm, Arr

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.surgery.scene import SurgeryScene

__all__ = ["arm_problem", "footprint", "goal_problem", "line_problem", "plan_limits", "pull_problem", "rim_force_at",
           "speed_cap", "tissue_floor"]


def plan_limits(scene: SurgeryScene) -> Mapping[str, Any]:
    """The limits the skills plan within: the monitor's own (``scene.limits``)."""
    return scene.limits


def speed_cap(limits: Mapping[str, Any], in_contact: bool) -> float:
    """The tool-tip speed cap (mm/s): the contact one while touching tissue or holding the vessel rim."""
    return float(limits["contact_speed"] if in_contact else limits["free_speed"])


def rim_force_at(scene: SurgeryScene, arm: Arm, tcp: Arr) -> float:
    """The rim's elastic pull (N) with ``arm``'s tool tip at ``tcp``, if it holds the rim (else 0): the rim
    moves with the jaws, so its displacement grows by the tool tip's travel from where it is now."""
    if arm.held != "vessel":
        return 0.0
    k = float(scene.cfg["objects"]["vessel"]["rim_stiffness_n_per_mm"])
    displacement = scene.rim_displacement() + (tcp - arm.tcp)
    return k * float(np.linalg.norm(displacement)) / MM


def pull_problem(scene: SurgeryScene, arm: Arm, waypoints: Iterable[Arr]) -> str | None:
    """Why a path through ``waypoints`` would pull the held rim past its share of the force cap
    (``motion.pull_share``: the grip needs the rest to hold), or None.

    The rim's pull is the norm of an affine function of the tool tip, so along a straight leg it peaks at
    a corner: checking the corners checks the whole path."""
    cap = float(plan_limits(scene)["force_cap"])
    most = cap * float(scene.cfg["motion"]["pull_share"])
    worst = max((rim_force_at(scene, arm, p) for p in waypoints), default=0.0)
    if worst > most:
        return (f"it would stretch the vessel rim to {worst:.1f} N, above the {most:.1f} N a plan may use of the "
                f"{cap:g} N force cap")
    return None


def footprint(scene: SurgeryScene) -> float:
    """Half the width (m) of what hangs below the wrist, open jaws and all: the tissue under it counts."""
    arms = scene.cfg["arms"]
    return (float(arms["jaw_open"]) + float(scene.cfg["grasp"]["tip_clearance"]) + 1.0) * MM


def tissue_floor(scene: SurgeryScene, xy: Arr, ignore: Iterable[tuple[int, int]] = ()) -> float:
    """The lowest height (m) the tool tip may reach over ``xy``: the highest tissue (pad or vessel) under
    the jaws' footprint, plus the clearance a grasp keeps over the pad.

    Found by casting rays down through the footprint, so a vessel lying under one jaw counts. Every hit
    along a ray counts, not only the first: over the point an arm is about to go down to, the first thing
    a ray meets is mostly that arm's own instrument (or the rim its jaws hold), and the tissue under it,
    unseen, let a pull press the jaws into the vessel wall (a spike past the force cap that only the
    monitor stopped). pybullet reports a ray's hits in no set order, so the highest is taken.
    ``ignore``: (body, link) pairs that are not in the way (the rim the jaws hold or are going to take).
    """
    r = footprint(scene)
    top = float(scene.pad_top[2])
    high, low = top + 0.2, top - 0.01
    offsets = [(0.0, 0.0)] + [(dx * r, dy * r) for dx in (-1.0, 1.0) for dy in (-1.0, 1.0)]
    starts = [[float(xy[0]) + dx, float(xy[1]) + dy, high] for dx, dy in offsets]
    ends = [[s[0], s[1], low] for s in starts]
    skip = set(ignore)
    tissue = {scene.pad_id, scene.bodies["vessel"]}
    floor = top
    for n in itertools.count():
        hits = [hit for hit in scene.client.rayTestBatch(starts, ends, reportHitNumber=n) if int(hit[0]) >= 0]
        if not hits:
            break
        for hit in hits:
            body, link, z = int(hit[0]), int(hit[1]), float(hit[3][2])
            if body in tissue and (body, link) not in skip:
                floor = max(floor, z)
    return floor + (float(scene.cfg["grasp"]["tip_clearance"]) + 1.0) * MM


def goal_problem(scene: SurgeryScene, arm: Arm, goal: Arr, *, over_tissue: bool = True) -> str | None:
    """Why the tool tip may not be sent to ``goal`` (workspace, tissue below it), or None.

    ``over_tissue``: the goal must stay clear of the tissue under it (False for a skill whose point is to
    touch it, which keeps to its own contact speed and force)."""
    ws = plan_limits(scene)["workspace"]
    lo, hi = np.asarray(ws["lo"], dtype=float) * MM, np.asarray(ws["hi"], dtype=float) * MM
    mm = [round(float(v) / MM) for v in goal]
    if bool(np.any(goal < lo - 1e-9)) or bool(np.any(goal > hi + 1e-9)):
        return f"{arm.name}'s tool tip would leave its workspace at {mm} mm"
    if over_tissue:
        floor = tissue_floor(scene, goal, _held_links(scene, arm))
        if float(goal[2]) < floor - 1e-9:
            return (f"{arm.name}'s tool tip would press {(floor - float(goal[2])) / MM:.1f} mm into the tissue "
                    f"at {mm} mm")
    return None


def line_problem(scene: SurgeryScene, arm: Arm, goal: Arr) -> str | None:
    """Why a straight pull from the arm's set-point to ``goal`` would cross a limit, or None: the workspace
    and the tissue under every point of the way (the rim the jaws hold aside), and the rim's pull."""
    start = arm.sp_pos.copy()
    steps = max(1, int(np.ceil(float(np.linalg.norm(goal - start)) / (footprint(scene) / 2.0))))
    for i in range(1, steps + 1):
        found = goal_problem(scene, arm, start + (goal - start) * (i / steps))
        if found is not None:
            return found
    return pull_problem(scene, arm, [goal])


def arm_problem(scene: SurgeryScene, arm: Arm, waypoints: list[Arr]) -> str | None:
    """Why moving ``arm``'s tool tip through ``waypoints`` would bring it near the other instrument (the
    monitor halts the two at ``arm_clearance``), or None.

    Worked out from the kinematics alone, never by posing the arm in the physics (that would disturb the
    contacts the grips stand on): each instrument is its tool (tool tip to wrist) and its shaft (from the
    wrist up through the remote centre, as long as ``scene.shaft_length``); they keep apart by the open jaws'
    footprint, the shaft's radius and the clearance; the other arm stays where it is."""
    room = footprint(scene) + scene.shaft_radius + float(plan_limits(scene)["arm_clearance"]) * MM
    for other in scene.arms.values():
        if other is arm:
            continue
        theirs = _instrument(scene, other, other.tcp)
        for a, b in zip(waypoints, waypoints[1:]):
            n = max(1, int(np.ceil(float(np.linalg.norm(b - a)) / footprint(scene))))
            for i in range(n + 1):
                tip = a + (b - a) * (i / n)
                ours = _instrument(scene, arm, tip)
                gap = min(_segment_gap(p0, p1, q0, q1) for p0, p1 in zip(ours, ours[1:])
                          for q0, q1 in zip(theirs, theirs[1:]))
                if gap < room:
                    mm = [round(float(v) / MM) for v in tip]
                    return (f"{arm.name} would pass {gap / MM:.1f} mm from {other.name} at {mm} mm, closer than "
                            f"the {room / MM:.1f} mm the instruments need")
    return None


def _instrument(scene: SurgeryScene, arm: Arm, tip: Arr) -> list[Arr]:
    """The instrument with its tool tip at ``tip`` (pointing down) as a polyline: tip, wrist, shaft's top."""
    wrist = tip + np.array([0.0, 0.0, arm.kin.tcp])
    up = arm.kin.rcm - wrist
    return [tip, wrist, wrist + up * (scene.shaft_length / float(np.linalg.norm(up)))]


def _segment_gap(p0: Arr, p1: Arr, q0: Arr, q1: Arr) -> float:
    """The shortest distance between segments p0-p1 and q0-q1, to a fraction of a millimetre."""
    s = np.linspace(0.0, 1.0, 41)[:, None]
    ps = p0 + (p1 - p0) * s
    qs = q0 + (q1 - q0) * s
    return float(np.min(np.linalg.norm(ps[:, None, :] - qs[None, :, :], axis=2)))


def _held_links(scene: SurgeryScene, arm: Arm) -> list[tuple[int, int]]:
    """The rim is not in the way of the jaws that hold it."""
    return [(scene.bodies["vessel"], scene._rim_link)] if arm.held == "vessel" else []
