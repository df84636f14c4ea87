"""XrayScene-v0: a Loop-X-like ring gantry images a supine patient on a cantilevered table.

The gantry is kinematic: its axes (the command set's tilt, orbit, cranial_caudal, left_right, up_down, and
the detector's distance) move toward their targets at bounded speed each control step, and the ring,
source and detector bodies follow. Collision with the table, its column, the floor or the patient is
found with the physics engine's distance queries and halts the gantry.

Radiographs are computed, not drawn: rays from the source to every detector pixel are integrated
through a voxel volume of attenuation coefficients (soft tissue, lung, cortical and cancellous bone,
built from the solids in ``sim/xray/scene.yaml``), Beer-Lambert with quantum noise from the scene RNG,
and blanked outside the collimated field. A second voxel volume names the bone each voxel belongs to, so
the scene knows which anatomy every pixel shows.
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
from medrobot_llm.backends.sim.base import SceneSkill
from medrobot_llm.backends.sim.imaging import Frame, Primitive, Volume, quat_from_matrix, rot
from medrobot_llm.backends.sim.xray.geometry import AXES, MM, Arr, Geometry, XrayImage, load_config, ring_mesh, spoken
from medrobot_llm.backends.sim.xray.imaging import XrayImaging
from medrobot_llm.backends.sim.xray.skills import SKILLS

__all__ = ["XrayScene"]

class XrayScene(XrayImaging):
    """A ring gantry over a patient on a table; see ``sim/xray/scene.yaml``."""

    scene_id = "XrayScene-v0"
    domain = "xray"

    def __init__(self, gui: bool = False, record_dir: Path | None = None, *, image_px: int | None = None) -> None:
        super().__init__(gui=gui, record_dir=record_dir)
        self.cfg = load_config()
        self.image_px = int(image_px or self.cfg["imaging"]["pixels"])
        self._cid = int(self.client._client)
        g = self.cfg["gantry"]
        self.axis_cfg: dict[str, dict[str, Any]] = g["axes"]
        self.home_iso = np.asarray(g["home_iso"], dtype=float) * MM
        self._tmp_dir: Path | None = None
        self._built = False
        self.patient = Frame.identity()
        self._parts_spec = self._collect_parts()
        self.part_names = ["(none)"] + [name for name, _, _ in self._parts_spec]
        self._segment_of = {name: seg for name, seg, _ in self._parts_spec}
        self.anatomy_parts: dict[str, list[int]] = {
            key: [self.part_names.index(p) for p in parts] for key, parts in self.cfg["anatomy"].items()}

    # -- definition -------------------------------------------------------------------------------
    def _collect_parts(self) -> list[tuple[str, str, list[dict[str, Any]]]]:
        """(part, segment, solids) in paint order, series expanded."""
        out: list[tuple[str, str, list[dict[str, Any]]]] = []
        for seg_name, seg in self.cfg["segments"].items():
            for series in seg.get("series", ()):
                a = np.asarray(series["from"], dtype=float)
                b = np.asarray(series["to"], dtype=float)
                names = list(series["names"])
                for i, name in enumerate(names):
                    at = a + (b - a) * (i / max(1, len(names) - 1))
                    solids = []
                    for solid in series["solids"]:
                        moved = dict(solid)
                        for key in ("center", "a", "b"):
                            if key in moved:
                                moved[key] = (np.asarray(moved[key], dtype=float) + at).tolist()
                        solids.append(moved)
                    out.append((name, seg_name, solids))
            for name, solids in seg.get("parts", {}).items():
                out.append((name, seg_name, list(solids)))
        return out

    def _mu(self, material: str) -> float:
        return float(self.cfg["materials"][material])

    # -- world ------------------------------------------------------------------------------------
    def _build(self) -> None:
        c = self.client
        room = self.cfg["room"]
        self.table_id = self._box(np.asarray(room["table"]["center"]) * MM, np.asarray(room["table"]["half"]) * MM,
                                  [0.35, 0.35, 0.38, 1.0])
        self.column_id = self._box(np.asarray(room["column"]["center"]) * MM,
                                   np.asarray(room["column"]["half"]) * MM, [0.6, 0.6, 0.62, 1.0])
        self.floor_id = int(c.createMultiBody(0.0, c.createCollisionShape(pybullet.GEOM_PLANE), -1, [0, 0, 0]))
        self.patient_id = self._patient_body()
        g = self.cfg["gantry"]
        n = int(g["segments"])
        r_in, r_out = float(g["bore_radius"]) * MM, float(g["outer_radius"]) * MM
        r_mid = (r_in + r_out) / 2.0
        half = [float(g["depth"]) * MM / 2.0, (r_out - r_in) / 2.0, r_mid * math.tan(math.pi / n) * 1.02]
        poses = []
        for k in range(n):
            a = 2.0 * math.pi * k / n
            R = rot("x", a)
            poses.append(([float(v) for v in R @ np.array([0.0, r_mid, 0.0])], quat_from_matrix(R)))
        # getClosestPoints reports at most 16 points per body pair, so a ring of 24 boxes in one compound
        # can hide the one box that touches; three compounds of 8 report every box.
        self.ring_ids: list[int] = []
        for start in range(0, n, 8):
            part = poses[start:start + 8]
            col = c.createCollisionShapeArray([pybullet.GEOM_BOX] * len(part), halfExtents=[half] * len(part),
                                              collisionFramePositions=[p for p, _ in part],
                                              collisionFrameOrientations=[q for _, q in part])
            self.ring_ids.append(int(c.createMultiBody(0.0, col, -1, list(self.home_iso))))
        verts, idx = ring_mesh(r_in, r_out, float(g["depth"]) * MM, 48)
        vis = c.createVisualShape(pybullet.GEOM_MESH, vertices=verts, indices=idx, rgbaColor=[0.9, 0.9, 0.92, 1.0])
        self.ring_id = int(c.createMultiBody(0.0, -1, vis, list(self.home_iso)))
        d = float(g["detector_size"]) * MM / 2.0
        self.detector_id = self._box(np.zeros(3), np.array([d, d, 0.015]), [0.15, 0.2, 0.35, 1.0])
        self.source_id = self._box(np.zeros(3), np.array([0.08, 0.08, 0.08]), [0.3, 0.3, 0.32, 1.0])
        base_half = [0.25, r_out * 0.6, (float(self.home_iso[2]) - r_out) / 2.0]
        self.base_id = int(c.createMultiBody(
            0.0, -1, c.createVisualShape(pybullet.GEOM_BOX, halfExtents=base_half, rgbaColor=[0.8, 0.8, 0.82, 1.0]),
            [0, 0, base_half[2]]))
        # the source sits inside the ring's housing, under the table: the ring and the detector meet things first
        self._pairs = [(r, b) for r in self.ring_ids for b in (self.table_id, self.column_id, self.floor_id,
                                                                 self.patient_id)]
        self._pairs += [(self.detector_id, b) for b in (self.table_id, self.column_id, self.patient_id)]
        self._names = {**{r: "ring" for r in self.ring_ids}, self.detector_id: "detector", self.source_id: "source",
                       self.table_id: "table", self.column_id: "table column", self.floor_id: "floor",
                       self.patient_id: "patient"}
        self._built = True

    def _patient_body(self) -> int:
        """The patient's skin as convex solids (one link each), for collision checks and pictures."""
        c = self.client
        shapes: list[tuple[int, int]] = []
        for spec in self.cfg["body"]:
            if spec["material"] != "soft":
                continue
            verts, idx = Primitive.from_spec(spec, 0.0).surface(16)
            col = c.createCollisionShape(pybullet.GEOM_MESH, vertices=verts.tolist())
            vis = c.createVisualShape(pybullet.GEOM_MESH, vertices=verts.tolist(), indices=idx,
                                      rgbaColor=[0.93, 0.76, 0.65, 1.0])
            shapes.append((col, vis))
        (col0, vis0), links = shapes[0], shapes[1:]
        n = len(links)
        origin = [0.0, 0.0, float(self.cfg["room"]["table_top_z"]) * MM]
        return int(c.createMultiBody(
            0.0, col0, vis0, origin, linkMasses=[0.0] * n, linkCollisionShapeIndices=[s[0] for s in links],
            linkVisualShapeIndices=[s[1] for s in links], linkPositions=[[0, 0, 0]] * n,
            linkOrientations=[[0, 0, 0, 1]] * n, linkInertialFramePositions=[[0, 0, 0]] * n,
            linkInertialFrameOrientations=[[0, 0, 0, 1]] * n, linkParentIndices=[0] * n,
            linkJointTypes=[pybullet.JOINT_FIXED] * n, linkJointAxis=[[0, 0, 1]] * n))

    def _randomise(self) -> None:
        rng = self.np_random
        pr = self.cfg["pose_range"]
        shift = rng.uniform(-1.0, 1.0, size=2) * float(pr["xy"]) * MM
        yaw = math.radians(float(rng.uniform(-1.0, 1.0)) * float(pr["yaw_deg"]))
        origin = np.array([shift[0], shift[1], float(self.cfg["room"]["table_top_z"]) * MM])
        self.patient = Frame(rot("z", yaw), origin)
        self.client.resetBasePositionAndOrientation(self.patient_id, origin.tolist(), quat_from_matrix(self.patient.R))
        offsets = {name: rng.uniform(-1.0, 1.0, size=3) * float(seg.get("jitter", 0.0)) * MM
                   for name, seg in self.cfg["segments"].items()}
        self._build_volumes(offsets)
        self._reset_gantry()

    def _build_volumes(self, offsets: dict[str, Arr]) -> None:
        spacing = float(self.cfg["imaging"]["voxel"]) * MM
        body = [Primitive.from_spec(s, self._mu(s["material"])) for s in self.cfg["body"]]
        lo = np.min([p.center - p.half_extent() for p in body], axis=0) - spacing
        hi = np.max([p.center + p.half_extent() for p in body], axis=0) + spacing
        mu = Volume(lo, hi, spacing, np.float32)
        part = Volume(lo, hi, spacing, np.uint8)
        for prim in body:
            mu.paint(prim)
        self.part_solids: dict[int, list[Primitive]] = {}
        for index, (_name, seg, solids) in enumerate(self._parts_spec, start=1):
            prims = [Primitive.from_spec(s, self._mu(s["material"]), offsets[seg]) for s in solids]
            self.part_solids[index] = prims
            for prim in prims:
                mu.paint(prim)
                part.paint(prim, float(index))
        self.mu = mu
        self.parts = part
        self.segment_offsets = offsets
        self._points: dict[tuple[int, ...], Arr] = {}
        self.anatomy_center: dict[str, Arr] = {}
        self.anatomy_nominal_center: dict[str, Arr] = {}
        for key, ids in self.anatomy_parts.items():
            self.anatomy_center[key] = self._center(ids, with_jitter=True)
            self.anatomy_nominal_center[key] = self._center(ids, with_jitter=False)

    def _center(self, ids: list[int], with_jitter: bool) -> Arr:
        """Centre of the anatomy's bounding box, patient frame; nominal = as the atlas has it (no jitter)."""
        los, his = [], []
        for i in ids:
            shift = np.zeros(3) if with_jitter else self.segment_offsets[self._segment_of[self.part_names[i]]]
            for prim in self.part_solids[i]:
                los.append(prim.center - shift - prim.half_extent())
                his.append(prim.center - shift + prim.half_extent())
        center: Arr = (np.min(los, axis=0) + np.max(his, axis=0)) / 2.0
        return center

    # -- gantry state ---------------------------------------------------------------------------------
    def _reset_gantry(self) -> None:
        park = self.cfg["gantry"]["park"]
        self.axes: dict[str, float] = {k: float(park[k]) for k in AXES}
        self.targets: dict[str, float] = dict(self.axes)
        self.frozen = False
        self.violation: tuple[FailureKind, str] | None = None
        self.view: dict[str, Any] | None = None
        self.view_set = False
        self.field: tuple[float, float, float, float] | None = None
        self.exposures: list[dict[str, Any]] = []
        self.images: list[str] = []
        self.last_image: XrayImage | None = None
        self.events: list[dict[str, Any]] = []
        self._place_bodies()
        pybullet.performCollisionDetection(physicsClientId=self._cid)
        self.clearance_mm, _ = self._clearance()

    def geometry(self, axes: dict[str, float] | None = None) -> Geometry:
        a = self.axes if axes is None else axes
        iso = self.home_iso + np.array([a["cranial_caudal"], -a["left_right"], a["up_down"]]) * MM
        R = rot("y", math.radians(a["tilt"])) @ rot("x", math.radians(a["orbit"]))
        beam = R[:, 2]
        sod = float(self.cfg["gantry"]["source_distance"]) * MM
        odd = a["detector"] * MM
        return Geometry(iso, beam, R @ np.array([0.0, -1.0, 0.0]), R @ np.array([-1.0, 0.0, 0.0]),
                        iso - beam * sod, iso + beam * odd, sod, sod + odd)

    def _place_bodies(self) -> None:
        geo = self.geometry()
        cid = self._cid
        ring_R = rot("y", math.radians(self.axes["tilt"]))
        for body in (self.ring_id, *self.ring_ids):
            pybullet.resetBasePositionAndOrientation(body, geo.iso.tolist(), quat_from_matrix(ring_R),
                                                     physicsClientId=cid)
        panel = np.column_stack([geo.row, geo.col, geo.beam])   # right-handed: (col, row, beam) is not
        pybullet.resetBasePositionAndOrientation(self.detector_id, (geo.detector + geo.beam * 0.015).tolist(),
                                                 quat_from_matrix(panel), physicsClientId=cid)
        pybullet.resetBasePositionAndOrientation(self.source_id, geo.source.tolist(), quat_from_matrix(panel),
                                                 physicsClientId=cid)
        base = [float(geo.iso[0]), float(geo.iso[1]),
                pybullet.getBasePositionAndOrientation(self.base_id, physicsClientId=cid)[0][2]]
        pybullet.resetBasePositionAndOrientation(self.base_id, base, [0, 0, 0, 1], physicsClientId=cid)

    def _clearance(self) -> tuple[float, str]:
        """Smallest distance (mm, capped at 100) from a gantry body to the table, column, floor or patient,
        and which pair it is."""
        best, pair = 100.0, ""
        cid = self._cid
        for a, b in self._pairs:
            for pt in pybullet.getClosestPoints(a, b, 0.1, physicsClientId=cid):
                if pt[8] / MM < best:
                    best, pair = pt[8] / MM, f"{self._names[a]} and {self._names[b]}"
        return best, pair

    def advance(self) -> None:
        """One control step: every axis moves toward its target at its speed, all arriving together; then the
        collision check on the new pose."""
        dt = self.control_period_s
        moved = False
        if not self.frozen:
            times = [abs(self.targets[k] - self.axes[k]) / float(self.axis_cfg[k]["speed"]) for k in AXES]
            t_need = max(times)
            if t_need > 1e-12:
                frac = min(1.0, dt / t_need)
                before = dict(self.axes)
                for k in AXES:
                    self.axes[k] += (self.targets[k] - self.axes[k]) * frac
                moved = True
                self._check_speed(before, dt)
        self.sim_steps += self.substeps
        if moved:
            # every body is kinematic: no dynamics to step, only the moved shapes' bounds to refresh
            self._place_bodies()
            pybullet.performCollisionDetection(physicsClientId=self._cid)
            self.clearance_mm, pair = self._clearance()
            margin = float(self.cfg["gantry"]["collision_margin"])
            if self.violation is None and self.clearance_mm < margin:
                self._trip(FailureKind.COLLISION, f"collision: the {pair} came within "
                           f"{max(0.0, self.clearance_mm):.0f} mm of each other")

    def _check_speed(self, before: dict[str, float], dt: float) -> None:
        margin = float(self.cfg["gantry"]["speed_margin"])
        for k in AXES:
            speed = abs(self.axes[k] - before[k]) / dt
            if speed > float(self.axis_cfg[k]["speed"]) * margin + 1e-9:
                self._trip(FailureKind.SPEED_LIMIT, f"{k} moved at {speed:.0f} {self.axis_cfg[k]['unit']}/s")

    def _trip(self, kind: FailureKind, message: str) -> None:
        if self.violation is None:
            self.violation = (kind, message)
            self.events.append({"t": self.sim_time, "limit": kind.value, "message": message})
        self.stop_motion()

    def stop_motion(self) -> None:
        """Every axis holds where it is."""
        self.frozen = True
        self.targets = dict(self.axes)

    def resume(self) -> None:
        self.violation = None
        self.frozen = False
        self.targets = dict(self.axes)

    def out_of_range(self, targets: dict[str, float]) -> str | None:
        for k in AXES:
            lo, hi = float(self.axis_cfg[k]["min"]), float(self.axis_cfg[k]["max"])
            if not lo - 1e-6 <= targets[k] <= hi + 1e-6:
                unit = self.axis_cfg[k]["unit"]
                return f"{k} would go to {targets[k]:.0f} {unit}, outside its range {lo:g}..{hi:g} {unit}"
        return None

    # -- anatomy and views ------------------------------------------------------------------------------
    def retracted_path(self, target: dict[str, float]) -> list[dict[str, float]]:
        """Stages to a pose: a move that turns the beam or travels along the table first pulls the detector
        back to its outer stop, so it never sweeps close past the patient, and brings it in at the end."""
        far = float(self.cfg["gantry"]["detector_distance_3d"])
        big = (abs(target["orbit"] - self.axes["orbit"]) > 1.0 or abs(target["tilt"] - self.axes["tilt"]) > 1.0
               or abs(target["cranial_caudal"] - self.axes["cranial_caudal"]) > 100.0)
        if not big:
            return [target]
        return [dict(self.axes, detector=far), dict(target, detector=far), target]

    def anatomy_ids(self, key: str) -> list[int]:
        if key not in self.anatomy_parts:
            raise ValueError(f"no {spoken(key)} in this scene")
        return self.anatomy_parts[key]

    def view_angles(self, view: str, key: str) -> tuple[float, float]:
        v = self.cfg["views"][view]
        orbit = float(v["orbit"])
        if view == "lateral" and key.endswith("/right"):
            orbit = -orbit
        return float(v["tilt"]), orbit

    def targets_for_view(self, key: str, view: str) -> dict[str, float]:
        """Axes that put the atlas centre of the anatomy (on the registered patient) at the isocentre, with
        the detector as near as it can come while keeping ``view_clearance`` from the patient."""
        center = self.patient.to_world(self.anatomy_nominal_center[key])
        tilt, orbit = self.view_angles(view, key)
        d = (center - self.home_iso) / MM
        g = self.cfg["gantry"]
        target = {"cranial_caudal": float(d[0]), "left_right": float(-d[1]), "up_down": float(d[2]), "tilt": tilt,
                  "orbit": orbit, "detector": float(g["detector_distance"])}
        while target["detector"] < float(g["detector_distance_3d"]) and \
                self.clearance_at(target) < float(g["view_clearance"]):
            target["detector"] = min(target["detector"] + 25.0, float(g["detector_distance_3d"]))
        return target

    def clearance_at(self, axes: dict[str, float]) -> float:
        """The clearance (mm) the gantry would have at these axes; the bodies are put back afterwards."""
        saved = dict(self.axes)
        self.axes = dict(axes)
        self._place_bodies()
        pybullet.performCollisionDetection(physicsClientId=self._cid)
        found, _ = self._clearance()
        self.axes = saved
        self._place_bodies()
        pybullet.performCollisionDetection(physicsClientId=self._cid)
        return found

    def full_field(self, geo: Geometry | None = None) -> tuple[float, float, float, float]:
        geo = geo or self.geometry()
        h = float(self.cfg["gantry"]["detector_size"]) * MM / 2.0 / geo.magnification
        return -h, h, -h, h

    def project(self, world: Arr, geo: Geometry) -> Arr:
        """Points (N, 3) to isocentre-plane coordinates (N, 2) along the image's columns and rows."""
        w = world - geo.source
        depth = w @ geo.beam
        scale = geo.sod / depth
        out: Arr = np.stack([(w @ geo.col) * scale, (w @ geo.row) * scale], axis=-1)
        return out

    def anatomy_points(self, ids: list[int]) -> Arr:
        """World centres of the anatomy's voxels (cached until the next reset)."""
        key = tuple(ids)
        if key not in self._points:
            ijk = np.argwhere(np.isin(self.parts.data, np.asarray(ids, dtype=np.uint8)))
            self._points[key] = self.patient.to_world(self.parts.lo + (ijk + 0.5) * self.parts.spacing)
        return self._points[key]

    # -- facts -------------------------------------------------------------------------------------------
    def world_state(self) -> WorldState:
        self._ensure_built()
        return WorldState(facts={"view_set": self.view_set, "image": self.last_image is not None}, known=True)

    def observation(self) -> dict[str, Any]:
        geo = self.geometry()
        field = self.field or self.full_field(geo)
        return {
            "sim_time": self.sim_time,
            "axes": dict(self.axes),
            "view_set": self.view_set,
            "view": dict(self.view) if self.view else None,
            "image": self.last_image is not None,
            "geometry": geo.to_json(),
            "field_mm": [(field[1] - field[0]) / MM, (field[3] - field[2]) / MM],
            "clearance_mm": float(self.clearance_mm),
            "exposures": len(self.exposures),
            "projections": int(sum(e["projections"] for e in self.exposures)),
            "dap_mgy_cm2": float(sum(e["dap_mgy_cm2"] for e in self.exposures)),
            "patient": {"origin": self.patient.t.tolist(),
                        "yaw_deg": math.degrees(math.atan2(self.patient.R[1, 0], self.patient.R[0, 0]))},
            "halted": self.halted,
        }

    def telemetry(self) -> dict[str, Any]:
        return {k: round(v, 1) for k, v in self.axes.items()} | {"clearance_mm": round(self.clearance_mm, 0)}

    def camera(self) -> tuple[list[float], list[float]]:
        c = self.client
        target = [0.1, 0.0, 0.95]
        view = c.computeViewMatrixFromYawPitchRoll(target, 3.2, 40, -22, 0, 2)
        proj = c.computeProjectionMatrixFOV(50, 4 / 3, 0.05, 10.0)
        return list(view), list(proj)

    # -- skills ----------------------------------------------------------------------------------------------
    def skills(self) -> Mapping[str, type[SceneSkill[Any]]]:
        return SKILLS


