"""Radiographs and the 3D spin of the X-ray scene: rays cast through its attenuation volume."""

from __future__ import annotations

import math
import tempfile
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medrobot_llm.backends.sim.base import Scene
from medrobot_llm.backends.sim.imaging import Frame, Volume, save_png
from medrobot_llm.core.paths import file_sha256
from medrobot_llm.backends.sim.xray.geometry import MM, Arr, Geometry, XrayImage

__all__ = ["BeamCut", "XrayImaging"]


class BeamCut(Exception):
    """A halt ended an exposure: before the beam came on (nothing given) or while it was on (``share`` of the
    rays were cast, so part of the dose was given and no image exists). Issue 15: a one-cycle skill runs on
    whatever thread its goal arrived on, so the per-cycle halt check never saw a stop pressed mid-exposure."""

    def __init__(self, skill: str, index: int, *, beam_on: bool, share: float = 0.0) -> None:
        when = (f"with the beam on ({share:.0%} of the rays cast; no image)" if beam_on
                else "before the beam came on (no dose given)")
        super().__init__(f"{skill}: exposure {index + 1} halted {when}")
        self.skill, self.index, self.beam_on, self.share = skill, index, beam_on, share


class XrayImaging(Scene):
    """The X-ray scene's images, kept apart so ``XrayScene`` reads as its world and its gantry loop.
    The attributes below are built by ``XrayScene`` (``__init__``, ``_build``, ``reset``)."""

    cfg: dict[str, Any]
    image_px: int
    patient: Frame
    mu: Volume
    parts: Volume
    part_names: list[str]
    anatomy_parts: dict[str, list[int]]
    axes: dict[str, float]
    view: dict[str, Any] | None
    field: tuple[float, float, float, float] | None
    exposures: list[dict[str, Any]]
    images: list[str]
    last_image: XrayImage | None
    _tmp_dir: Path | None
    #: the exposure whose beam is on (skill, index), so ``cast`` can cut it at a halt; None otherwise
    _beam: tuple[str, int] | None = None

    @abstractmethod
    def geometry(self, axes: dict[str, float] | None = None) -> Geometry:
        """The source-detector geometry at ``axes`` (default: where the gantry is)."""

    @abstractmethod
    def full_field(self, geo: Geometry | None = None) -> tuple[float, float, float, float]:
        """The detector's whole field at the isocentre."""

    @abstractmethod
    def anatomy_ids(self, key: str) -> list[int]:
        """The part ids that make up an anatomy key."""

    # -- imaging ------------------------------------------------------------------------------------------
    def image_dir(self) -> Path:
        if self.record_dir is not None:
            return Path(self.record_dir)
        if self._tmp_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="medrobot_xray_"))
        return self._tmp_dir

    def cast(self, source: Arr, targets: Arr, chunk: int = 4096) -> tuple[NDArray[np.float64], NDArray[np.uint8]]:
        """Line integrals of attenuation from ``source`` to each target (world), and the part ids sampled
        along each ray. Rays are clipped to the volume and sampled at the voxel spacing (midpoint rule)."""
        s = self.patient.to_local(source)
        ends = self.patient.to_local(targets)
        spacing = self.mu.spacing
        lo, hi = self.mu.lo + 0.01 * spacing, self.mu.hi - 0.01 * spacing   # a ray along a face stays inside
        totals = np.zeros(len(ends))
        samples: list[NDArray[np.uint8]] = []
        d_all = ends - s
        with np.errstate(divide="ignore", invalid="ignore"):
            t_a = (lo - s) / d_all
            t_b = (hi - s) / d_all
        t0_all = np.clip(np.nanmax(np.where(np.isfinite(t_a), np.minimum(t_a, t_b), -np.inf), axis=1), 0.0, 1.0)
        t1_all = np.clip(np.nanmin(np.where(np.isfinite(t_a), np.maximum(t_a, t_b), np.inf), axis=1), 0.0, 1.0)
        span = np.maximum(t1_all - t0_all, 0.0)
        lengths = np.linalg.norm(d_all, axis=1) * span
        n = max(1, math.ceil(float(lengths.max()) / spacing))
        k = (np.arange(n, dtype=np.float32) + 0.5) / n
        first = ((s + t0_all[:, None] * d_all - self.mu.lo) / spacing).astype(np.float32)   # in voxel units
        stride = (span[:, None] * d_all / spacing).astype(np.float32)
        first[span <= 0.0] = 0.0      # a ray that misses the volume samples voxel 0 (air) over zero length
        shape = np.asarray(self.mu.shape)
        mu_flat = self.mu.data.reshape(-1)
        part_flat = self.parts.data.reshape(-1)
        for start in range(0, len(ends), chunk):
            if self._beam is not None and self.halted:  # an e-stop cuts the beam between two chunks of rays
                raise BeamCut(*self._beam, beam_on=True, share=start / len(ends))
            sl = slice(start, start + chunk)
            # midpoints lie at least half a sample inside the clipped segment: no index falls outside
            ijk = (first[sl, None, :] + k[None, :, None] * stride[sl, None, :]).astype(np.int32)
            flat = (ijk[..., 0] * shape[1] + ijk[..., 1]) * shape[2] + ijk[..., 2]
            totals[sl] = mu_flat[flat].sum(axis=1, dtype=np.float64) * (lengths[sl] / n) / MM
            samples.append(part_flat[flat])
        return totals, np.concatenate(samples, axis=0)

    def pixel_grid(self, geo: Geometry, n: int) -> tuple[Arr, Arr]:
        """World centres of the detector pixels (n*n, 3) and their isocentre-plane coordinates (n*n, 2)."""
        size = float(self.cfg["gantry"]["detector_size"]) * MM
        c = ((np.arange(n) + 0.5) / n - 0.5) * size
        uu, vv = np.meshgrid(c, c, indexing="xy")
        world = geo.detector + uu.reshape(-1, 1) * geo.col + vv.reshape(-1, 1) * geo.row
        iso = np.stack([uu.reshape(-1), vv.reshape(-1)], axis=-1) / geo.magnification
        return world, iso

    def in_field(self, iso_uv: Arr, field: tuple[float, float, float, float]) -> NDArray[np.bool_]:
        u0, u1, v0, v1 = field
        inside: NDArray[np.bool_] = ((iso_uv[:, 0] >= u0) & (iso_uv[:, 0] <= u1) & (iso_uv[:, 1] >= v0)
                                     & (iso_uv[:, 1] <= v1))
        return inside

    def intend_exposure(self, skill: str, dap: float, projections: int, field: tuple[float, float, float, float]
                        ) -> int:
        """Write ahead the exposure about to happen (its dose is known from the geometry); returns its index."""
        index = len(self.exposures)
        self.record_hazard("intended", "exposure", skill=skill, index=index, dap_mgy_cm2=dap, projections=projections,
                           view=dict(self.view) if self.view else None, axes=dict(self.axes),
                           field_mm=[(field[1] - field[0]) / MM, (field[3] - field[2]) / MM])
        return index

    @contextmanager
    def beam(self, skill: str, index: int) -> Iterator[None]:
        """The beam is on inside this block. The halt latch is read at the last moment before it comes on and
        between chunks of rays while it is on; either way the exposure written ahead is closed as ``not_done``
        saying whether the beam had been on, and ``BeamCut`` ends the skill."""
        if self.halted:
            self.record_hazard("not_done", "exposure", skill=skill, index=index, status="halted", beam_on=False)
            raise BeamCut(skill, index, beam_on=False)
        self._beam = (skill, index)
        try:
            yield
        except BeamCut as cut:
            self.record_hazard("not_done", "exposure", skill=skill, index=index, status="halted", beam_on=True,
                               share_cast=round(cut.share, 3))
            raise
        finally:
            self._beam = None

    def keep_exposure(self, record: dict[str, Any], pixels: NDArray[Any], path: Path) -> dict[str, Any]:
        """Keep an exposure that happened, then write its image: a failed write marks the record, never drops it
        (the dose was given either way). ``record['image_error']`` says why an image is missing."""
        self.exposures.append(record)
        done = {"skill": record["skill"], "index": record["index"], "dap_mgy_cm2": record["dap_mgy_cm2"]}
        try:
            save_png(pixels, path)
        except OSError as exc:
            record["path"] = None
            record["image_error"] = f"cannot write {path}: {exc.strerror or exc}"
            self.record_hazard("done", "exposure", **done, path=None, image_error=record["image_error"])
            return record
        self.images.append(str(path))
        if self.halted:  # made before the halt cut the beam: kept as evidence, flagged, never a success
            record["after_halt"] = done["after_halt"] = True
        self.record_hazard("done", "exposure", **done, path=str(path), sha256=file_sha256(path))
        return record

    def radiograph(self) -> dict[str, Any]:
        """Expose once with the current geometry and field: written ahead, kept, then its PNG saved."""
        n = self.image_px
        geo = self.geometry()
        field = self.field or self.full_field(geo)
        area_cm2 = (field[1] - field[0]) * (field[3] - field[2]) * 1e4
        dap = float(self.cfg["imaging"]["kerma_mgy"]) * area_cm2
        index = self.intend_exposure("take_shot", dap, 1, field)
        world, iso_uv = self.pixel_grid(geo, n)
        with self.beam("take_shot", index):
            line, parts = self.cast(geo.source, world)
        exposed = self.in_field(iso_uv, field)
        photons = float(self.cfg["imaging"]["photons"])
        counts = self.np_random.poisson(photons * np.exp(-line))
        measured = -np.log(np.maximum(counts, 0.5) / photons)
        grey = np.zeros(n * n)
        if exposed.any():
            lo, hi = np.percentile(measured[exposed], [0.5, 99.5])
            hi = max(hi, lo + 2.0)
            grey[exposed] = 24.0 + 231.0 * np.clip((measured[exposed] - lo) / (hi - lo), 0.0, 1.0)
        pixels = grey.reshape(n, n).astype(np.uint8)
        name = self.view["key"].replace("/", "_") + "_" + self.view["view"] if self.view else "shot"
        path = self.image_dir() / f"xray_{index:03d}_{name}.png"
        self.last_image = XrayImage("radiograph", pixels, parts.reshape(n, n, -1), exposed.reshape(n, n), geo, path)
        shares = self.anatomy_shares(parts, exposed)
        center = n // 2
        record = {
            "skill": "take_shot", "kind": "2d", "index": index, "sim_time": self.sim_time, "path": str(path),
            "view": dict(self.view) if self.view else None, "axes": dict(self.axes), "geometry": geo.to_json(),
            "field_mm": [(field[1] - field[0]) / MM, (field[3] - field[2]) / MM],
            "field_offset_mm": [(field[0] + field[1]) / 2 / MM, (field[2] + field[3]) / 2 / MM],
            "dap_mgy_cm2": dap, "projections": 1, "anatomy_shares": shares,
            "center_line_integral": float(line.reshape(n, n)[center - 2:center + 2, center - 2:center + 2].mean()),
            "exposed_share": float(exposed.mean()),
        }
        return self.keep_exposure(record, pixels, path)

    def anatomy_shares(self, parts: NDArray[np.uint8], exposed: NDArray[np.bool_]) -> dict[str, float]:
        """Share of the exposed pixels whose ray crosses each anatomy."""
        present = np.zeros((len(self.part_names), exposed.size), dtype=bool)
        flat = parts.reshape(exposed.size, -1)
        for pid in np.unique(flat):
            if pid:
                present[pid] = (flat == pid).any(axis=1)
        total = max(1, int(exposed.sum()))
        out = {}
        for key, ids in self.anatomy_parts.items():
            share = float((present[ids].any(axis=0) & exposed.reshape(-1)).sum()) / total
            if share > 0:
                out[key] = share
        return out

    def anatomy_mask(self, key: str, image: XrayImage | None = None) -> NDArray[np.bool_]:
        img = image or self.last_image
        assert img is not None
        hits = np.isin(img.parts, np.asarray(self.anatomy_ids(key), dtype=np.uint8))
        return np.asarray(hits.any(axis=-1), dtype=bool)

    def spin(self, angles_deg: list[float]) -> tuple[NDArray[np.float64], Geometry]:
        """Central-row projections (angles, columns) of a spin at the current isocentre and tilt."""
        n = int(self.cfg["imaging"]["spin_pixels"])
        rows = []
        geo = self.geometry()
        for a in angles_deg:
            axes = dict(self.axes, orbit=a)
            g = self.geometry(axes)
            size = float(self.cfg["gantry"]["detector_size"]) * MM
            u = ((np.arange(n) + 0.5) / n - 0.5) * size
            world = g.detector + u[:, None] * g.col
            line, _ = self.cast(g.source, world)
            counts = self.np_random.poisson(float(self.cfg["imaging"]["photons"]) * np.exp(-line))
            rows.append(-np.log(np.maximum(counts, 0.5) / float(self.cfg["imaging"]["photons"])))
        return np.asarray(rows), geo

    def reconstruct(self, sino: NDArray[np.float64], angles_deg: list[float], geo: Geometry
                    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """Fan-beam filtered back-projection of the slice in the ring's plane; returns (grey, part ids).

        The slice is shown as seen from the feet in an AP set-up: the beam's far side (anterior) up.
        """
        n = int(self.cfg["imaging"]["spin_pixels"])
        sod, sdd = geo.sod, geo.sdd
        size = float(self.cfg["gantry"]["detector_size"]) * MM
        du = size / sino.shape[1]
        u = ((np.arange(sino.shape[1]) + 0.5) / sino.shape[1] - 0.5) * size
        s = u * sod / sdd
        ds = du * sod / sdd
        weighted = sino * (sod / np.sqrt(sod ** 2 + s ** 2))[None, :]
        m = sino.shape[1]
        k = np.arange(-m + 1, m)
        ramp = np.zeros(k.shape)
        ramp[k == 0] = 1.0 / (4.0 * ds * ds)
        odd = (k % 2) == 1
        ramp[odd] = -1.0 / (math.pi * k[odd] * ds) ** 2
        filtered = np.array([np.convolve(row, ramp)[m - 1:2 * m - 1] * ds for row in weighted])
        fov = 2.0 * float(s.max()) * 0.98
        c = ((np.arange(n) + 0.5) / n - 0.5) * fov
        xx, yy = np.meshgrid(c, -c, indexing="xy")   # columns along the view's image columns, rows up its beam
        img = np.zeros((n, n))
        dbeta = 2.0 * math.pi / len(angles_deg)
        axes0 = dict(self.axes)
        for row, a in zip(filtered, angles_deg):
            g = self.geometry(dict(axes0, orbit=a))
            along = xx * float(g.beam @ geo.col) + yy * float(g.beam @ geo.beam)
            across = xx * float(g.col @ geo.col) + yy * float(g.col @ geo.beam)
            U = (sod + along) / sod
            s_hit = across / U
            img += np.interp(s_hit, s, row, left=0.0, right=0.0) / (U * U)
        img *= dbeta / 2.0
        lo, hi = np.percentile(img, [1.0, 99.8])
        grey = (np.clip((img - lo) / max(hi - lo, 1e-9), 0.0, 1.0) * 255.0).astype(np.uint8)
        world = geo.iso + xx.reshape(-1, 1) * geo.col + yy.reshape(-1, 1) * geo.beam
        parts = self.parts.sample(self.patient.to_local(world)).astype(np.uint8).reshape(n, n, 1)
        return grey, parts
