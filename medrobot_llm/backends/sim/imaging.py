"""Geometry and imaging shared by the ultrasound and X-ray scenes: frames, labelled voxel volumes, PNGs.

Both scenes image a phantom that is defined analytically (ellipsoids, capsules, boxes in the patient
frame) and rasterised once per ``reset`` into a voxel grid; their images are samples of that grid along
an image plane (ultrasound) or along rays (X-ray). Everything here is plain numpy so it is fast, exact
and deterministic, and PNGs carry no timestamps so the same seed gives the same bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = [
    "Frame",
    "Primitive",
    "Volume",
    "matrix_from_quat",
    "outline",
    "quat_from_matrix",
    "rot",
    "rot_rpy_deg",
    "save_png",
    "slug",
]

Vec = NDArray[np.float64]


def rot(axis: str, angle_rad: float) -> NDArray[np.float64]:
    """Rotation about a principal axis; right-handed, so a positive angle turns y toward z about x."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    if axis == "y":
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    if axis == "z":
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    raise ValueError(f"unknown axis {axis!r}")


def rot_rpy_deg(rpy: Sequence[float]) -> NDArray[np.float64]:
    """URDF convention: roll about x, then pitch about y, then yaw about z (fixed axes)."""
    r, p, y = (math.radians(float(v)) for v in rpy)
    return rot("z", y) @ rot("y", p) @ rot("x", r)


def rot_about(axis: Vec, angle_rad: float) -> NDArray[np.float64]:
    """Rodrigues: rotation by ``angle_rad`` about the unit vector ``axis``."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    out: NDArray[np.float64] = np.eye(3) + math.sin(angle_rad) * k + (1.0 - math.cos(angle_rad)) * (k @ k)
    return out


def quat_from_matrix(m: NDArray[np.float64]) -> list[float]:
    """(x, y, z, w) as pybullet wants it; computed here so no physics client is needed."""
    t = float(np.trace(m))
    if t > 0.0:
        s = math.sqrt(t + 1.0) * 2.0
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2.0
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2.0
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2.0
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    return [float(x), float(y), float(z), float(w)]


def matrix_from_quat(q: Sequence[float]) -> NDArray[np.float64]:
    x, y, z, w = (float(v) for v in q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@dataclass(frozen=True)
class Frame:
    """A rigid transform: ``world = R @ local + t``. The patient frame of both scenes is one of these."""

    R: NDArray[np.float64]
    t: NDArray[np.float64]

    @classmethod
    def identity(cls) -> Frame:
        return cls(np.eye(3), np.zeros(3))

    def to_world(self, local: NDArray[np.float64]) -> NDArray[np.float64]:
        """Points (…, 3) from this frame to the world."""
        out: NDArray[np.float64] = np.asarray(local) @ self.R.T + self.t
        return out

    def to_local(self, world: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = (np.asarray(world) - self.t) @ self.R
        return out

    def dir_to_world(self, local: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = np.asarray(local) @ self.R.T
        return out

    def dir_to_local(self, world: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = np.asarray(world) @ self.R
        return out

    def compose(self, local: Frame) -> Frame:
        return Frame(self.R @ local.R, self.R @ local.t + self.t)


@dataclass(frozen=True)
class Primitive:
    """A solid of the phantom in the patient frame (metres): an ellipsoid, a capsule, a box or an elliptic
    cylinder (``ecylinder``: radii x, y and half length along its own z).

    ``value`` is what it paints into a volume (a label id or an attenuation coefficient).
    """

    kind: str
    center: NDArray[np.float64]
    size: NDArray[np.float64]
    R: NDArray[np.float64]
    value: float

    @classmethod
    def from_spec(cls, spec: dict[str, Any], value: float, offset: Vec | None = None) -> Primitive:
        """Build from a scene.yaml entry: ``ellipsoid``/``ecylinder`` (center, radii, rpy_deg), ``capsule``
        (a, b, radius) or ``box`` (center, half, rpy_deg); lengths in millimetres there, metres here."""
        shift = np.zeros(3) if offset is None else np.asarray(offset, dtype=float)
        kind = str(spec["shape"])
        if kind == "capsule":
            a = np.asarray(spec["a"], dtype=float) / 1000.0
            b = np.asarray(spec["b"], dtype=float) / 1000.0
            axis = b - a
            length = float(np.linalg.norm(axis))
            z = axis / length
            helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
            x = np.cross(helper, z)
            x /= np.linalg.norm(x)
            R = np.column_stack([x, np.cross(z, x), z])
            size = np.array([float(spec["radius"]) / 1000.0, length / 2.0, 0.0])
            return cls("capsule", (a + b) / 2.0 + shift, size, R, value)
        if kind not in ("ellipsoid", "box", "ecylinder"):
            raise ValueError(f"unknown primitive shape {kind!r}")
        key = "half" if kind == "box" else "radii"
        R = rot_rpy_deg(spec.get("rpy_deg", (0.0, 0.0, 0.0)))
        return cls(kind, np.asarray(spec["center"], dtype=float) / 1000.0 + shift,
                   np.asarray(spec[key], dtype=float) / 1000.0, R, value)

    def surface(self, n: int = 12) -> tuple[NDArray[np.float64], list[int]]:
        """A closed triangle mesh of the surface (vertices in the patient frame, indices) for pybullet."""
        rings = n // 2 + 1
        u = np.linspace(0.0, math.pi, rings)
        v = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
        uu, vv = np.meshgrid(u, v, indexing="ij")
        if self.kind == "capsule":
            r, h = self.size[0], self.size[1]
            z = r * np.cos(uu) + np.where(uu < math.pi / 2, h, -h)
            local = np.stack([r * np.sin(uu) * np.cos(vv), r * np.sin(uu) * np.sin(vv), z], axis=-1)
        elif self.kind == "ellipsoid":
            local = np.stack([np.sin(uu) * np.cos(vv), np.sin(uu) * np.sin(vv), np.cos(uu)], axis=-1) * self.size
        elif self.kind == "ecylinder":
            flat = np.minimum(1.0, 3.0 * np.sin(uu))[..., None]
            ring = np.stack([np.cos(vv) * self.size[0], np.sin(vv) * self.size[1]], axis=-1) * flat
            local = np.concatenate([ring, (np.clip(np.cos(uu) * 2.0, -1.0, 1.0) * self.size[2])[..., None]], axis=-1)
        else:
            sx, sy, sz = self.size
            local = np.array([[x, y, z] for z in (-sz, sz) for y in (-sy, sy) for x in (-sx, sx)])
            faces = [0, 1, 3, 0, 3, 2, 4, 6, 7, 4, 7, 5, 0, 4, 5, 0, 5, 1, 2, 3, 7, 2, 7, 6, 0, 2, 6, 0, 6, 4,
                     1, 5, 7, 1, 7, 3]
            return local @ self.R.T + self.center, faces
        idx: list[int] = []
        for i in range(rings - 1):
            for j in range(n):
                a, b = i * n + j, i * n + (j + 1) % n
                c, d = a + n, b + n
                idx += [a, c, b, b, c, d]
        return local.reshape(-1, 3) @ self.R.T + self.center, idx

    def half_extent(self) -> NDArray[np.float64]:
        """Half sizes of the axis-aligned box around the primitive."""
        if self.kind == "capsule":
            r, h = self.size[0], self.size[1]
            out: NDArray[np.float64] = np.abs(self.R[:, 2]) * h + r
            return out
        out = np.abs(self.R) @ self.size
        return out

    def contains(self, p: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Inside test for points (…, 3)."""
        local = (p - self.center) @ self.R
        if self.kind == "ellipsoid":
            q = local / self.size
            inside: NDArray[np.bool_] = np.einsum("...i,...i->...", q, q) <= 1.0
            return inside
        if self.kind == "box":
            inside = np.all(np.abs(local) <= self.size, axis=-1)
            return inside
        if self.kind == "ecylinder":
            q = local[..., :2] / self.size[:2]
            inside = (np.einsum("...i,...i->...", q, q) <= 1.0) & (np.abs(local[..., 2]) <= self.size[2])
            return inside
        r, h = self.size[0], self.size[1]
        z = np.clip(local[..., 2], -h, h)
        d2 = local[..., 0] ** 2 + local[..., 1] ** 2 + (local[..., 2] - z) ** 2
        inside = d2 <= r * r
        return inside


class Volume:
    """A voxel grid over an axis-aligned box of the patient frame; primitives paint into it in order."""

    def __init__(self, lo: Sequence[float], hi: Sequence[float], spacing: float, dtype: Any) -> None:
        self.lo = np.asarray(lo, dtype=float)
        self.spacing = float(spacing)
        self.shape = tuple(math.ceil((h - lo_) / spacing) for lo_, h in zip(self.lo, hi))
        self.data: NDArray[Any] = np.zeros(self.shape, dtype=dtype)
        self.hi = self.lo + np.asarray(self.shape) * self.spacing

    def _range(self, prim: Primitive) -> tuple[NDArray[np.intp], NDArray[np.intp]] | None:
        half = prim.half_extent()
        i0 = np.clip(np.floor((prim.center - half - self.lo) / self.spacing).astype(np.intp), 0, self.shape)
        i1 = np.clip(np.ceil((prim.center + half - self.lo) / self.spacing).astype(np.intp) + 1, 0, self.shape)
        if np.any(i1 <= i0):
            return None
        return i0, i1

    def paint(self, prim: Primitive, value: float | None = None) -> None:
        """Set the voxels whose centres lie inside the primitive (the bounding block only is visited)."""
        found = self._range(prim)
        if found is None:
            return
        i0, i1 = found
        sl = (slice(i0[0], i1[0]), slice(i0[1], i1[1]), slice(i0[2], i1[2]))
        fill = prim.value if value is None else value
        axes = [(self.lo[k] + (np.arange(i0[k], i1[k]) + 0.5) * self.spacing - prim.center[k]) for k in range(3)]
        if prim.kind == "box" and np.allclose(prim.R, np.eye(3)):
            keep = [np.nonzero(np.abs(axes[k]) <= prim.size[k])[0] for k in range(3)]
            if all(len(k) for k in keep):
                self.data[i0[0] + keep[0][0]: i0[0] + keep[0][-1] + 1, i0[1] + keep[1][0]: i0[1] + keep[1][-1] + 1,
                          i0[2] + keep[2][0]: i0[2] + keep[2][-1] + 1] = fill
            return
        R = prim.R.astype(np.float32)
        x = axes[0].astype(np.float32)[:, None, None, None] * R[0]
        y = axes[1].astype(np.float32)[None, :, None, None] * R[1]
        z = axes[2].astype(np.float32)[None, None, :, None] * R[2]
        local = x + y + z
        if prim.kind == "ellipsoid":
            q = local / prim.size.astype(np.float32)
            inside = np.einsum("...i,...i->...", q, q) <= 1.0
        elif prim.kind == "box":
            inside = np.all(np.abs(local) <= prim.size.astype(np.float32), axis=-1)
        elif prim.kind == "ecylinder":
            q = local[..., :2] / prim.size[:2].astype(np.float32)
            inside = (np.einsum("...i,...i->...", q, q) <= 1.0) & (np.abs(local[..., 2]) <= prim.size[2])
        else:
            r, h = float(prim.size[0]), float(prim.size[1])
            along = np.clip(local[..., 2], -h, h)
            inside = local[..., 0] ** 2 + local[..., 1] ** 2 + (local[..., 2] - along) ** 2 <= r * r
        self.data[sl][inside] = fill

    def indices(self, points: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
        """Flat voxel indices of points (…, 3) and whether each point is inside the grid."""
        ijk = np.floor((points - self.lo) / self.spacing).astype(np.intp)
        shape = np.asarray(self.shape)
        inside = np.all((ijk >= 0) & (ijk < shape), axis=-1)
        ijk = np.clip(ijk, 0, shape - 1)
        flat = (ijk[..., 0] * self.shape[1] + ijk[..., 1]) * self.shape[2] + ijk[..., 2]
        return flat, inside

    def sample(self, points: NDArray[np.float64], outside: float = 0) -> NDArray[Any]:
        """Nearest-voxel values at points (…, 3); ``outside`` beyond the grid."""
        flat, inside = self.indices(points)
        values = self.data.reshape(-1)[flat]
        return np.where(inside, values, np.asarray(outside, dtype=self.data.dtype))


def outline(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The one-pixel boundary of a mask: pixels inside with a 4-neighbour outside."""
    m = np.asarray(mask, dtype=bool)
    padded = np.pad(m, 1, constant_values=False)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    edge: NDArray[np.bool_] = m & ~interior
    return edge


def slug(text: str, fallback: str = "image") -> str:
    """A file-name-safe form of a free-text label."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40]
    return s or fallback


def save_png(pixels: NDArray[Any], path: Path) -> Path:
    """Write an 8-bit grey (H, W) or RGB (H, W, 3) image; no metadata, so equal pixels give equal bytes.

    A write that fails (a full disk) removes what it left: pillow only removes a file it could not encode, not
    one whose last bytes did not reach the disk, and a 0-byte .png would be named and hashed as a picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(np.clip(pixels, 0, 255).astype(np.uint8))
    try:
        Image.fromarray(arr).save(path, format="PNG", optimize=False)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
