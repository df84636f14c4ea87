"""Spoken test material made at run time with espeak-ng: commands across the three domains, stop variants,
silence and noise. Shared by the voice tests and ``benchmarks/voice_accuracy.py``; no audio is committed."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["COMMANDS", "HELD_OUT", "MIDWAY", "STOPS", "Utterance", "commands", "held_out", "midway", "noise_clips", "stops",
           "synthesize"]

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
        "AP of the pelvis", "lateral of the sacrum", "inlet view of the pelvis", "outlet view of the pelvis",
        "AP of the left hip", "lateral of the right knee", "AP of the chest", "lateral of the skull",
        "AP of the lumbar spine", "lateral of the thoracic spine", "tilt back a bit", "orbit ten degrees",
        "move up twenty millimetres", "collimate to the pelvis", "take a shot", "park the gantry",
        "highlight the sacrum", "AP of the left femur", "lateral of the sacrum and take a shot",
        "do a 3d spin", "move toward the head fifty millimetres",
    ),
}

#: commands written midway through the recogniser's tuning on COMMANDS; their first figure (69 %) was taken before
#: any change made for them, and the last round of tuning (the weight of two joined commands and of refusals)
#: looked at them too, so they are no longer held out
MIDWAY: dict[str, tuple[str, ...]] = {
    "surgery": (
        "grasp the needle with psm1", "raise the needle fifteen millimetres with psm1", "release the shunt with psm2",
        "hand the shunt over to psm1", "locate the needle and grasp it with psm2", "move psm2 to the needle",
        "home psm1", "retract the vessel five millimetres with psm1", "insert the shunt into the vessel with psm2",
        "dilate the vessel with psm1", "grasp the vessel with psm2", "move psm1 home", "suture the vessel",
    ),
    "ultrasound": (
        "scan the spleen", "scan the aorta", "go to the liver", "scan the left thyroid", "scan the right carotid",
        "sweep cranially four centimetres", "fan fifteen degrees", "set the depth to eight centimetres",
        "set the gain to seventy percent", "switch to b mode", "set the force to six newtons",
        "rotate the probe forty five degrees", "scan the heart",
    ),
    "xray": (
        "lateral of the pelvis", "AP of the sacrum", "AP of the right knee", "lateral of the left femur",
        "AP of the skull", "tilt forward a bit", "orbit twenty degrees", "move down thirty millimetres",
        "collimate to the chest", "highlight the pelvis", "park", "AP of the right hip and take a shot",
        "x-ray the brain",
    ),
}

#: commands written when the tuning was finished and never decoded before the final figures: how far the tuning
#: carries to sentences it has not seen (same voices and speeds, other pairings)
HELD_OUT: dict[str, tuple[str, ...]] = {
    "surgery": (
        "grasp the shunt with psm1", "move psm1 to the vessel", "lift the shunt twenty millimetres with psm2",
        "release the vessel with psm1", "hand the needle over to psm1", "home both arms",
        "locate the vessel and grasp it with psm1", "move psm2 to the handover point",
        "retract the vessel ten millimetres with psm2", "pick up the needle with psm2",
        "lift the needle ten millimetres with psm2", "insert the shunt with psm1", "burn the vessel",
    ),
    "ultrasound": (
        "go to the left kidney", "move over the bladder", "sweep medially two centimetres", "fan ten degrees",
        "set the depth to ten centimetres", "set the gain to forty percent", "turn on colour doppler",
        "set the force to twelve newtons", "rotate the probe thirty degrees", "tilt the probe five degrees",
        "lift the probe three centimetres", "go to the gallbladder", "scan the stomach",
    ),
    "xray": (
        "lateral of the lumbar spine", "AP of the thoracic spine", "lateral of the left knee",
        "AP of the right femur", "inlet view of the sacrum", "oblique left of the pelvis", "tilt back five degrees",
        "orbit thirty degrees", "move toward the feet twenty millimetres", "collimate to the skull",
        "highlight the chest", "lateral of the chest and take a shot", "x-ray the hand",
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


def midway(folder: Path) -> list[Utterance]:
    """39 commands, 13 a domain, over the same voices and speeds, used for the last round of tuning."""
    return [u for n, d in enumerate(MIDWAY) for u in _assign(d, MIDWAY[d], folder, "mid", n + 1)]


def held_out(folder: Path) -> list[Utterance]:
    """39 commands, 13 a domain, over the same voices and speeds, never used to tune the recogniser."""
    return [u for n, d in enumerate(HELD_OUT) for u in _assign(d, HELD_OUT[d], folder, "held", n + 2)]


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
