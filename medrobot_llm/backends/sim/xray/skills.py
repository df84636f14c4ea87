"""The X-ray scene's skills: gantry moves, collimation, exposures, the 3D spin and highlighting."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from medrobot_llm.backends.base import BehaviourStatus, FailureKind
from medrobot_llm.backends.sim.base import SceneSkill
from medrobot_llm.backends.sim.imaging import outline, save_png
from medrobot_llm.backends.sim.xray.geometry import AXES, MM, XrayImage, anatomy_key, spoken
from medrobot_llm.backends.sim.xray.imaging import BeamCut

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.xray.scene import XrayScene  # noqa: F401 - named in SceneSkill["XrayScene"]

__all__ = ["SKILLS", "path_problem"]


def path_problem(s: XrayScene, stages: list[dict[str, float]]) -> str | None:
    """Why the gantry may not drive through ``stages``, or None: the monitor halts it when a body comes
    within ``collision_margin`` of the table, column, floor or patient, so the plan keeps that clearance
    at every pose of the way (the axes move in straight lines, all arriving together, as ``advance`` drives
    them).

    The poses are checked in steps no gantry point can cross the clearance left at the last one in: no
    point moves farther than the axes' travels added up, a turn counted at the ring's outer radius."""
    g = s.cfg["gantry"]
    margin = float(g["collision_margin"])
    reach = {k: 1.0 if s.axis_cfg[k]["unit"] == "mm" else math.radians(1.0) * float(g["outer_radius"]) for k in AXES}
    prev = dict(s.axes)
    gap = s.clearance_at(prev)
    for stage in stages:
        travel = sum(abs(stage[k] - prev[k]) * reach[k] for k in AXES)
        f = 0.0
        while f < 1.0 and travel > 0.0:
            f = min(1.0, f + max(gap - margin, margin) / travel)
            gap = s.clearance_at({k: prev[k] + (stage[k] - prev[k]) * f for k in AXES})
            if gap < margin:
                return (f"the gantry would come within {max(0.0, gap):.1f} mm of the table or patient "
                        f"(it keeps {margin:g} mm)")
        prev = stage
    return None


class _Skill(SceneSkill["XrayScene"]):
    """Common to the scene's skills: the anatomy a step names, as the scene keys it."""

    def key(self) -> str:
        return anatomy_key(str(self.args["anatomy"]), self.args.get("side"), self.args.get("level"))

    def _cut(self, cut: BeamCut) -> BehaviourStatus:
        """A halt cut the exposure (``XrayImaging.beam``): the step fails halted, saying if the beam was on."""
        self.outcome = {"index": cut.index, "beam_on": cut.beam_on, "share_cast": round(cut.share, 3)}
        self.fail(FailureKind.HALTED, str(cut))
        return BehaviourStatus.FAILURE


class _Move(_Skill):
    """Drive the axes through a list of target sets, one after the other."""

    stages: list[dict[str, float]]

    def plan(self, stages: list[dict[str, float]]) -> bool:
        s = self.scene
        for stage in stages:
            problem = s.out_of_range(stage)
            if problem:
                self.fail(FailureKind.JOINT_LIMIT, problem)
                return False
        problem = path_problem(s, stages)
        if problem:
            self.fail(FailureKind.INVALID, f"refused {self.step.skill}: {problem}")
            return False
        self.stages = stages
        self.stage = 0
        total = 0.0
        prev = dict(s.axes)
        for stage in stages:
            total += max(abs(stage[k] - prev[k]) / float(s.axis_cfg[k]["speed"]) for k in AXES)
            prev = stage
        self.total_s = max(total, 1e-9)
        self.max_steps = int((total + 5.0) / s.control_period_s) + 1
        s.targets = dict(stages[0])
        return True

    def moving(self) -> bool:
        """Whether the axes are still on their way; advances through the stages."""
        s = self.scene
        while True:
            if any(abs(s.targets[k] - s.axes[k]) > 1e-6 for k in AXES):
                return True
            self.stage += 1
            if self.stage >= len(self.stages):
                return False
            s.targets = dict(self.stages[self.stage])


class _MoveToView(_Move):
    def start(self) -> None:
        s = self.scene
        view = str(self.args.get("view") or "ap")
        key = self.key()
        try:
            s.anatomy_ids(key)
        except ValueError as exc:
            self.fail(FailureKind.INVALID, str(exc))
            return
        target = s.targets_for_view(key, view)
        s.view_set = False
        s.view = None
        self.key_ = key
        self.view_ = view
        self.plan(s.retracted_path(target))

    def update(self) -> BehaviourStatus:
        s = self.scene
        if self.moving():
            self.progress = 0.0
            return BehaviourStatus.RUNNING
        s.view_set = True
        s.view = {"anatomy": self.args["anatomy"], "side": self.args.get("side"), "level": self.args.get("level"),
                  "view": self.view_, "key": self.key_}
        s.field = None
        self.outcome = {"view": dict(s.view), "axes": dict(s.axes), "geometry": s.geometry().to_json()}
        self.message = f"{self.view_} view of the {spoken(self.key_)} set"
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


class _Adjust(_Move):
    def start(self) -> None:
        s = self.scene
        axis = str(self.args["axis"])
        target = dict(s.axes)
        target[axis] = s.axes[axis] + float(self.args["amount"])
        self.axis = axis
        self.plan([target])

    def update(self) -> BehaviourStatus:
        s = self.scene
        if self.moving():
            return BehaviourStatus.RUNNING
        self.outcome = {"axis": self.axis, "value": s.axes[self.axis], "axes": dict(s.axes)}
        self.message = f"{self.axis} now {s.axes[self.axis]:.0f} {s.axis_cfg[self.axis]['unit']}"
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


class _Park(_Move):
    def start(self) -> None:
        s = self.scene
        park = {k: float(v) for k, v in s.cfg["gantry"]["park"].items()}
        far = float(s.cfg["gantry"]["detector_distance_3d"])
        out = dict(s.axes, detector=far)
        square = dict(park, cranial_caudal=s.axes["cranial_caudal"], detector=far)
        self.plan([out, square, dict(park, detector=far), park])
        s.view_set = False
        s.view = None

    def update(self) -> BehaviourStatus:
        if self.moving():
            return BehaviourStatus.RUNNING
        self.outcome = {"axes": dict(self.scene.axes)}
        self.message = "gantry parked"
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


class _Collimate(_Skill):
    max_steps = 1

    def update(self) -> BehaviourStatus:
        s = self.scene
        geo = s.geometry()
        full = s.full_field(geo)
        note = ""
        if self.args.get("anatomy"):
            key = self.key()
            try:
                pts = s.anatomy_points(s.anatomy_ids(key))
            except ValueError as exc:
                self.fail(FailureKind.INVALID, str(exc))
                return BehaviourStatus.FAILURE
            uv = s.project(pts, geo)
            margin = float(s.cfg["imaging"]["field_margin"]) * MM
            field = (float(uv[:, 0].min()) - margin, float(uv[:, 0].max()) + margin,
                     float(uv[:, 1].min()) - margin, float(uv[:, 1].max()) + margin)
        else:
            w = float(self.args["width_mm"]) * MM / 2.0
            h = float(self.args["height_mm"]) * MM / 2.0
            field = (-w, w, -h, h)
        clipped = (max(field[0], full[0]), min(field[1], full[1]), max(field[2], full[2]), min(field[3], full[3]))
        if clipped != field:
            note = f"; limited by the detector to {(full[1] - full[0]) / MM:.0f} mm"
        if clipped[1] <= clipped[0] or clipped[3] <= clipped[2]:
            self.fail(FailureKind.INVALID, "that field lies outside the detector")
            return BehaviourStatus.FAILURE
        s.field = clipped
        size = [(clipped[1] - clipped[0]) / MM, (clipped[3] - clipped[2]) / MM]
        self.outcome = {"field_mm": size, "field_offset_mm": [(clipped[0] + clipped[1]) / 2 / MM,
                                                              (clipped[2] + clipped[3]) / 2 / MM]}
        self.message = f"field {size[0]:.0f} x {size[1]:.0f} mm{note}"
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


class _TakeShot(_Skill):
    max_steps = 1

    def update(self) -> BehaviourStatus:
        s = self.scene
        if not s.view_set:
            self.fail(FailureKind.PRECONDITION, "no view is set")
            return BehaviourStatus.FAILURE
        try:
            record = s.radiograph()
        except BeamCut as cut:
            return self._cut(cut)
        self.outcome = {k: record[k] for k in ("path", "index", "field_mm", "dap_mgy_cm2", "anatomy_shares",
                                               "center_line_integral", "view")}
        if record.get("image_error"):
            self.fail(FailureKind.ERROR, f"exposure {record['index'] + 1} was given but its image is lost: "
                      f"{record['image_error']}")
            return BehaviourStatus.FAILURE
        self.message = f"exposure {record['index'] + 1} saved to {record['path']}"
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


class _Acquire3D(_Move):
    """A spin: detector out, orbit -180 -> +180 taking projections, back to where it was, detector in."""

    def start(self) -> None:
        s = self.scene
        if not s.view_set:
            self.fail(FailureKind.PRECONDITION, "no view is set")
            return
        here = dict(s.axes)
        out = dict(here, detector=float(s.cfg["gantry"]["detector_distance_3d"]))
        lo, hi = float(s.axis_cfg["orbit"]["min"]), float(s.axis_cfg["orbit"]["max"])
        self.home = here
        self.n = int(s.cfg["imaging"]["spin_projections"])
        self.angles = [lo + (hi - lo) * (i + 0.5) / self.n for i in range(self.n)]
        if not self.plan([out, dict(out, orbit=lo), dict(out, orbit=hi), dict(out, orbit=here["orbit"]), here]):
            return
        self.taken: list[float] = []

    def update(self) -> BehaviourStatus:
        s = self.scene
        if self.stage == 2:
            while len(self.taken) < self.n and s.axes["orbit"] >= self.angles[len(self.taken)]:
                self.taken.append(self.angles[len(self.taken)])
        if self.moving():
            self.progress = min(0.95, len(self.taken) / self.n)
            return BehaviourStatus.RUNNING
        if len(self.taken) < self.n:
            self.fail(FailureKind.ERROR, "the spin did not cover the full circle")
            return BehaviourStatus.FAILURE
        geo = s.geometry(dict(s.axes, detector=float(s.cfg["gantry"]["detector_distance_3d"])))
        field = s.field or s.full_field(geo)
        area = (field[1] - field[0]) * (field[3] - field[2]) * 1e4
        dap = float(s.cfg["imaging"]["kerma_3d_mgy"]) * area * self.n
        index = s.intend_exposure("acquire_3d", dap, self.n, field)
        try:
            with s.beam("acquire_3d", index):
                sino, _ = s.spin(self.angles)
        except BeamCut as cut:
            return self._cut(cut)
        grey, parts = s.reconstruct(sino, self.angles, geo)
        name = s.view["key"].replace("/", "_") if s.view else "spin"
        path = s.image_dir() / f"xray_{index:03d}_{name}_3d.png"
        s.last_image = XrayImage("slice", grey, parts, np.ones(grey.shape, dtype=bool), geo, path)
        record = {"skill": "acquire_3d", "kind": "3d", "index": index, "sim_time": s.sim_time, "path": str(path),
                  "view": dict(s.view) if s.view else None, "axes": dict(s.axes), "geometry": geo.to_json(),
                  "field_mm": [(field[1] - field[0]) / MM, (field[3] - field[2]) / MM],
                  "field_offset_mm": [0.0, 0.0], "dap_mgy_cm2": dap, "projections": self.n,
                  "anatomy_shares": {}, "center_line_integral": 0.0, "exposed_share": 1.0}
        s.keep_exposure(record, grey, path)
        self.outcome = {"path": record["path"], "projections": self.n, "dap_mgy_cm2": dap, "index": index}
        if record.get("image_error"):
            self.fail(FailureKind.ERROR, f"the spin's {self.n} projections were given but the slice is lost: "
                      f"{record['image_error']}")
            return BehaviourStatus.FAILURE
        self.message = f"3-D spin of {self.n} projections; central slice saved to {path}"
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


class _Highlight(_Skill):
    max_steps = 1

    def update(self) -> BehaviourStatus:
        s = self.scene
        img = s.last_image
        if img is None:
            self.fail(FailureKind.PRECONDITION, "there is no image to draw on")
            return BehaviourStatus.FAILURE
        key = self.key()
        try:
            mask = s.anatomy_mask(key) & img.exposed
        except ValueError as exc:
            self.fail(FailureKind.INVALID, str(exc))
            return BehaviourStatus.FAILURE
        if not mask.any():
            self.fail(FailureKind.PRECONDITION, f"the {spoken(key)} is not in the last image")
            return BehaviourStatus.FAILURE
        edge = outline(mask)
        rgb = np.repeat(img.grey[:, :, None], 3, axis=2)
        rgb[edge] = (255, 210, 0)
        path = save_png(rgb, img.path.with_name(img.path.stem + f"_{key.replace('/', '_')}_outline.png"))
        self.outcome = {"path": str(path), "anatomy": key, "pixels": int(mask.sum()),
                        "share": float(mask.sum()) / mask.size, "source_image": str(img.path)}
        self.message = f"outlined the {spoken(key)} in {path}"
        self.progress = 1.0
        return BehaviourStatus.SUCCESS


SKILLS: dict[str, type[_Skill]] = {
    "move_to_view": _MoveToView,
    "adjust": _Adjust,
    "collimate": _Collimate,
    "take_shot": _TakeShot,
    "acquire_3d": _Acquire3D,
    "highlight": _Highlight,
    "park": _Park,
}
