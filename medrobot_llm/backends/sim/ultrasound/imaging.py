"""B-mode and Doppler images of the ultrasound scene, sliced from its labelled volume under the probe."""

from __future__ import annotations

import math
import tempfile
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medrobot_llm.backends.sim.base import Scene
from medrobot_llm.backends.sim.imaging import Frame, Volume, save_png, slug
from medrobot_llm.backends.sim.ultrasound.arm import MM, Arr, Window

__all__ = ["UltrasoundImaging"]


class UltrasoundImaging(Scene):
    """The ultrasound scene's images, kept apart so ``UltrasoundScene`` reads as its world and its control loop.
    The attributes below are built by ``UltrasoundScene`` (``__init__``, ``_build``, ``reset``)."""

    cfg: dict[str, Any]
    image_px: int
    image_invert: bool
    imaging: dict[str, Any]
    patient: Frame
    volume: Volume | None
    window: Window | None
    tip: Arr
    tip_R: Arr
    force_n: float
    captures: list[dict[str, Any]]
    _tmp_dir: Path | None
    _echo: NDArray[np.float64]
    _atten: NDArray[np.float64]
    _organ_of: NDArray[np.object_]
    _flow_of: NDArray[np.float64]

    @property
    @abstractmethod
    def in_contact(self) -> bool:
        """Whether the probe touches the skin."""

    # -- imaging ---------------------------------------------------------------------------------
    def image_dir(self) -> Path:
        if self.record_dir is not None:
            return Path(self.record_dir)
        if self._tmp_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="medrobot_ultrasound_"))
        return self._tmp_dir

    def bmode(self) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
        """The image in the probe's plane now: (pixels, label per pixel).

        Rows go down the beam; columns run along the array from its marker end (the patient's right in a
        transverse view, the head in a longitudinal one), which the screen shows on the left. Each pixel's echo is its tissue's echogenicity
        times Rayleigh speckle drawn from the scene RNG, attenuated by every tissue above it (so bone
        and gas cast shadows, fluid enhances) against the machine's time-gain compensation, then the gain
        and a log compression over the dynamic range. Without contact there is no coupling and no echo.
        """
        assert self.volume is not None
        n = self.image_px
        img_cfg = self.cfg["imaging"]
        depth = float(self.imaging["depth_mm"]) * MM
        width = float(self.cfg["probe"]["array"]) * MM
        rows = (np.arange(n) + 0.5) / n * depth
        cols = (0.5 - (np.arange(n) + 0.5) / n) * width * (-1.0 if self.image_invert else 1.0)
        pts = (self.tip[None, None, :] + rows[:, None, None] * self.tip_R[:, 2][None, None, :]
               + cols[None, :, None] * self.tip_R[:, 0][None, None, :])
        labels = self.volume.sample(self.patient.to_local(pts)).astype(np.int64)
        gel = np.cumprod(labels == 0, axis=0).astype(bool)
        echo = np.where(gel, 0.0, self._echo[labels])
        atten = np.where(gel, 0.0, self._atten[labels])
        step_cm = depth / n * 100.0
        atten_db = np.cumsum(atten, axis=0) * step_cm - atten * step_cm
        tgc_db = rows[:, None] * 100.0 * float(img_cfg["tgc_db_per_cm"])
        amp = echo * 10.0 ** ((tgc_db - atten_db) * 2.0 / 20.0)
        interfaces = np.zeros_like(amp)
        interfaces[1:] = (labels[1:] != labels[:-1]) * 0.6 * np.minimum(echo[1:] + 0.2, 1.0) * 10.0 ** (
            (tgc_db[1:] - atten_db[1:]) * 2.0 / 20.0)
        speckle = self.np_random.rayleigh(math.sqrt(2.0 / math.pi), size=(n, n + 4))
        k = int(img_cfg["speckle_smoothing"])
        if k > 1:
            kernel = np.ones(k) / k
            speckle = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, speckle)
        amp = amp * speckle[:, 2:2 + n] + interfaces
        if not self.in_contact:
            amp = np.zeros_like(amp)
        dr = float(img_cfg["dynamic_range_db"])
        gain_db = float(img_cfg["system_gain_db"]) + (float(self.imaging["gain_pct"]) - 50.0) * float(
            img_cfg["gain_db_per_pct"])
        db = 20.0 * np.log10(np.maximum(amp, 1e-9)) + gain_db
        grey = np.clip((db + dr) / dr, 0.0, 1.0) * 255.0
        return grey.astype(np.uint8), labels

    def doppler(self, grey: NDArray[np.uint8], labels: NDArray[np.int64]) -> NDArray[np.uint8]:
        """Colour flow inside the central colour box: red toward the probe, blue away.

        The colour beams are steered in the image plane, as on a linear probe, so a vessel running along
        a longitudinal view (at 90 degrees to the unsteered beam) still shows flow.
        """
        n = self.image_px
        rgb = np.repeat(grey[:, :, None], 3, axis=2).astype(np.float64)
        steer = math.radians(float(self.cfg["imaging"]["doppler_steer_deg"]))
        beam_local = self.patient.dir_to_local(self.tip_R @ np.array([math.sin(steer), 0.0, math.cos(steer)]))
        v = -(self._flow_of[labels] @ beam_local)
        box = np.zeros((n, n), dtype=bool)
        box[:, n // 5: n - n // 5] = True
        flow = box & (np.abs(v) > 0.01) & self.in_contact
        scale = np.clip(np.abs(v) / 0.3, 0.3, 1.0)
        rgb[flow & (v > 0)] = np.stack([255 * scale, 40 * scale, 30 * scale], axis=-1)[flow & (v > 0)]
        rgb[flow & (v < 0)] = np.stack([30 * scale, 60 * scale, 255 * scale], axis=-1)[flow & (v < 0)]
        rgb[0, box[0]] = 200.0
        rgb[-1, box[-1]] = 200.0
        return rgb.astype(np.uint8)

    def capture(self, label: str) -> dict[str, Any]:
        """Save the current image as a PNG and report what it shows."""
        grey, labels = self.bmode()
        pixels = self.doppler(grey, labels) if self.imaging["mode"] == "color_doppler" else grey
        index = len(self.captures)
        name = slug(label, fallback=(f"{self.window.organ}_{self.window.side}" if self.window else "capture"))
        path = save_png(pixels, self.image_dir() / f"us_{index:03d}_{name}.png")
        organ_ids = self._organ_of[labels]
        names, counts = np.unique(organ_ids[organ_ids != ""], return_counts=True)
        shares = {str(k): float(v) / labels.size for k, v in zip(names, counts)}
        record = {
            "path": str(path),
            "label": label,
            "organ_shares": shares,
            "window": None if self.window is None else f"{self.window.organ}/{self.window.side}",
            "depth_mm": float(self.imaging["depth_mm"]),
            "gain_pct": float(self.imaging["gain_pct"]),
            "mode": self.imaging["mode"],
            "inverted": self.image_invert,
            "width_mm": float(self.cfg["probe"]["array"]),
            "pixels": [int(self.image_px), int(self.image_px)],
            "force_n": float(self.force_n),
            "sim_time": self.sim_time,
        }
        self.captures.append(record)
        return record
