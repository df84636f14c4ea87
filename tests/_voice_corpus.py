"""Spoken test material made at run time with espeak-ng: commands across the three domains, stop variants,
silence and noise. Shared by the voice tests and ``benchmarks/voice_accuracy.py``; no audio is committed."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["COMMANDS", "STOPS", "Utterance", "commands", "noise_clips", "stops", "synthesize"]

VOICES = ("en-us", "en", "en+f3", "en+m3")
SPEEDS = (130, 150, 165)

COMMANDS: dict[str, tuple[str, ...]] = {
    "surgery": (
        "locate the needle", "pick up the needle with psm1", "grasp the needle with psm2", "lift the needle",
        "lift the needle 30 millimetres", "release the needle", "hand the needle over to psm2",
        "locate the vessel", "grasp the vessel with psm1", "retract the vessel", "home all arms",
        "move psm1 to the handover point", "locate the shunt", "grasp the shunt with psm2",
        "move psm2 home", "release psm1", "lift the needle two centimetres", "home psm2",
        "pick up the shunt with psm1", "locate the needle then grasp it with psm1", "cut the vessel",
    ),
    "ultrasound": (
        "scan the liver", "scan the left kidney", "scan the right kidney", "go to the spleen",
        "scan the gallbladder", "move over the aorta", "scan the bladder", "sweep caudally three centimetres",
        "fan twenty degrees", "set the depth to twelve centimetres", "set the gain to fifty percent",
        "switch to color doppler", "rotate the probe ninety degrees", "lift the probe", "make contact",
        "set the force to ten newtons", "scan the left carotid", "scan the right thyroid", "go home",
        "tilt the probe ten degrees", "scan the brain",
    ),
    "xray": (
        "ap of the pelvis", "lateral of the sacrum", "inlet view of the pelvis", "outlet view of the pelvis",
        "ap of the left hip", "lateral of the right knee", "ap of the chest", "lateral of the skull",
        "ap of the lumbar spine", "lateral of the thoracic spine", "tilt back a bit", "orbit ten degrees",
        "move up twenty millimetres", "collimate to the pelvis", "take a shot", "park the gantry",
        "highlight the sacrum", "ap of the left femur", "lateral of the sacrum and take a shot",
        "do a 3d spin", "move toward the head fifty millimetres",
    ),
}

STOPS: tuple[str, ...] = ("stop", "stop stop", "emergency stop", "halt", "stop now", "abort", "stop everything",
                          "stop the robot", "freeze", "stop moving")


@dataclass(frozen=True)
class Utterance:
    domain: str
    text: str
    voice: str
    speed: int
    path: Path


def _assign(domain: str, texts: tuple[str, ...], folder: Path, tag: str, offset: int = 0) -> list[Utterance]:
    out = []
    for k, text in enumerate(texts):
        i = k + offset
        voice, speed = VOICES[i % len(VOICES)], SPEEDS[(i // len(VOICES)) % len(SPEEDS)]
        out.append(Utterance(domain, text, voice, speed, folder / f"{tag}_{domain}_{k:02d}.wav"))
    return out


def commands(folder: Path) -> list[Utterance]:
    """63 commands, 21 a domain, spread over four voices and three speeds."""
    return [u for n, d in enumerate(COMMANDS) for u in _assign(d, COMMANDS[d], folder, "cmd", n)]


def stops(folder: Path) -> list[Utterance]:
    """20 stops: ten phrasings, each in two voices and speeds, across the domains."""
    first = _assign("surgery", STOPS, folder, "stopa", 0)
    second = _assign("xray", STOPS, folder, "stopb", 2)
    return first + [Utterance(u.domain, u.text, VOICES[(k + 1) % 4], 180, u.path) for k, u in enumerate(second)]


def synthesize(utterances: list[Utterance], workers: int = 4) -> None:
    """espeak-ng, in parallel, skipping files already made this session (the cache)."""
    def one(u: Utterance) -> None:
        if not u.path.exists():
            u.path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["espeak-ng", "-v", u.voice, "-s", str(u.speed), "-w", str(u.path), u.text],
                           check=True, timeout=60, capture_output=True)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, utterances))


def noise_clips(seed: int = 7) -> dict[str, np.ndarray]:
    """Two seconds each of silence, faint hiss, loud white noise and a mains hum, 16 kHz int16."""
    rng = np.random.default_rng(seed)
    t = np.arange(32000) / 16000.0
    return {
        "silence": np.zeros(32000, dtype=np.int16),
        "hiss": rng.normal(0, 60, 32000).astype(np.int16),
        "white": np.clip(rng.normal(0, 3000, 32000), -32768, 32767).astype(np.int16),
        "hum": (2000 * np.sin(2 * np.pi * 50 * t) + rng.normal(0, 100, 32000)).astype(np.int16),
    }
