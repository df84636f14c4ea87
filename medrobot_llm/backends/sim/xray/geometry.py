"""The X-ray scene's axes, anatomy names and the source-detector geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from medrobot_llm.backends.sim.base import assets_dir

__all__ = ["AXES", "MM", "Arr", "Geometry", "XrayImage", "anatomy_key", "load_config", "ring_mesh", "spoken"]

Arr = NDArray[np.float64]
MM = 1e-3
#: the gantry's axes; ``detector`` is the detector's distance from the isocentre (not a command-set axis)
AXES = ("cranial_caudal", "left_right", "up_down", "tilt", "orbit", "detector")


def load_config() -> dict[str, Any]:
    """The scene definition (``sim/xray/scene.yaml``)."""
    with open(assets_dir() / "xray" / "scene.yaml", encoding="utf-8") as fh:
        cfg: dict[str, Any] = yaml.safe_load(fh)
    return cfg


def spoken(key: str) -> str:
    """An anatomy key as people say it: ``hip/left`` -> "left hip", ``lumbar_spine/L3`` -> "lumbar spine L3"."""
    name, _, qualifier = key.partition("/")
    name = name.replace("_", " ")
    if qualifier in ("left", "right"):
        return f"{qualifier} {name}"
    return f"{name} {qualifier}".strip()


def anatomy_key(anatomy: str, side: str | None = None, level: str | None = None) -> str:
    """The scene's name for an anatomy argument set: ``hip/left``, ``lumbar_spine/L3``, ``pelvis``."""
    if side:
        return f"{anatomy}/{side}"
    if level:
        return f"{anatomy}/{level}"
    return anatomy


def ring_mesh(r_in: float, r_out: float, depth: float, n: int) -> tuple[list[list[float]], list[int]]:
    """The ring's visual: an annulus of thickness ``depth`` about the x axis, as triangles.

    (pybullet crashes on a visual shape array of the ring's 24 boxes, so it gets its own mesh.)
    """
    verts: list[list[float]] = []
    for k in range(n):
        a = 2.0 * math.pi * k / n
        cy, cz = math.cos(a), math.sin(a)
        for r in (r_in, r_out):
            for x in (-depth / 2.0, depth / 2.0):
                verts.append([x, r * cy, r * cz])
    idx: list[int] = []
    for k in range(n):
        a, b = 4 * k, 4 * ((k + 1) % n)
        for i, j in ((0, 1), (3, 2), (2, 0), (1, 3)):   # inner, outer, back face, front face
            idx += [a + i, b + i, a + j, a + j, b + i, b + j]
    return verts, idx


@dataclass(frozen=True)
class Geometry:
    """Where source, isocentre and detector are, and the detector's image axes (world frame, metres)."""

    iso: Arr
    beam: Arr          # unit, source -> detector
    col: Arr           # image columns run this way (the patient's left in an AP view)
    row: Arr           # image rows run this way (toward the feet in an AP view)
    source: Arr
    detector: Arr      # centre of the detector face
    sod: float         # source to isocentre
    sdd: float         # source to detector

    @property
    def magnification(self) -> float:
        return self.sdd / self.sod

    def to_json(self) -> dict[str, Any]:
        return {"iso": self.iso.tolist(), "beam": self.beam.tolist(), "source": self.source.tolist(),
                "detector": self.detector.tolist(), "sod_m": self.sod, "sdd_m": self.sdd}


@dataclass
class XrayImage:
    """The last image: what it shows per pixel, for highlight and the checkers."""

    kind: str                      # "radiograph" or "slice"
    grey: NDArray[np.uint8]
    parts: NDArray[np.uint8]       # part ids along each pixel's ray (…, samples)
    exposed: NDArray[np.bool_]
    geometry: Geometry
    path: Path


