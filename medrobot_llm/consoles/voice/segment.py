"""Cutting a live audio stream into utterances, so that a stop is heard soon after it is said.

An utterance ends after 0.6 s of quiet: shorter pauses occur inside commands ("robot, ... scan the liver").
Waiting that long and then decoding would put a spoken stop more than a second behind the word, so an
utterance that is still short (a stop phrase is, at most ~1.2 s even said slowly) is also handed over after
0.25 s of quiet, marked provisional: the console decodes it for a stop only, and acts on the whole
utterance once it is complete.

The voice-activity detector hears a noise floor or a reverb tail as speech, so its quiet came 0.58 s (p50) after a
spoken stop's end, or not before the noise did. So a short utterance is glanced at (``Audio.glance``) as soon as its
energy has stayed well below its loud part for a moment: only the recogniser's first look is run on it, a stop it is
sure of latches, and anything else waits for the checks above, which are unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from medrobot_llm.consoles.voice.audio import SAMPLE_RATE, Audio

__all__ = ["END_QUIET_S", "GLANCE_QUIET_S", "GLANCE_SOFT", "STOP_CHECK_MAX_S", "STOP_CHECK_QUIET_S", "utterances"]

END_QUIET_S = 0.6
STOP_CHECK_QUIET_S = 0.25
STOP_CHECK_MAX_S = 1.5
#: a glance comes after this long of frames that are quiet by the detector or below ``GLANCE_SOFT`` of the energy of
#: the utterance's loudest speech frame; it is taken again only after a frame above that (speech resumed), so a long
#: tail costs one first look. Chosen on the dev stops, commands, talk and noise clips of benchmarks/voice_bench.py
#: (not ``held_out``; 91 stops, 59 commands, 12 talk, 12 noise clips), decoded in order as the console does: 0.15 s and
#: 0.1 s latched the same stops as soon (45 of 90 within 1 s, 33 without glances), 0.15 s with 176 decodes to 188
GLANCE_QUIET_S = 0.15
#: at 0.1 (10 dB down) and 0.3 the first look took a glance at a dev command's start for a stop ("please set up a left
#: oblique of the sacrum" and "3d spin of the pelvis" as "freeze"); at 0.03 (15 dB) none, as without glances
GLANCE_SOFT = 0.03


def utterances(blocks: Iterable[np.ndarray], *, source: str = "mic",
               pressed: Callable[[float, float], bool] = lambda _start, _end: False,
               clock: Callable[[], float] = time.monotonic) -> Iterator[Audio]:
    """Utterances in a stream of 16 kHz int16 blocks of the voice-activity detector's frame length.

    ``pressed(start, end)`` says whether the push-to-talk key marked the utterance heard between those
    clock times.
    """
    from pocketsphinx import Vad

    vad = Vad(Vad.LOOSE, SAMPLE_RATE)
    frames: list[np.ndarray] = []
    quiet = 0
    quiet_s = 0.0
    soft_s = 0.0
    peak = 0.0
    checked = glanced = False
    started = 0.0
    for block in blocks:
        chunk = np.asarray(block, dtype=np.int16).reshape(-1)
        speech = vad.is_speech(chunk.astype("<i2").tobytes())
        if not frames and not speech:
            continue
        if not frames:
            started = clock()
        frames.append(chunk)
        energy = float(np.mean(np.square(chunk, dtype=np.float64))) if len(chunk) else 0.0
        if speech:
            peak = max(peak, energy)
        if speech and energy >= peak * GLANCE_SOFT:
            soft_s, glanced = 0.0, False
        else:
            soft_s += len(chunk) / SAMPLE_RATE
        heard_s = sum(len(f) for f in frames) / SAMPLE_RATE
        if not glanced and soft_s >= GLANCE_QUIET_S and heard_s - soft_s <= STOP_CHECK_MAX_S:
            glanced = True
            yield Audio(np.concatenate(frames), source, provisional=True, glance=True)
        if speech:
            quiet, quiet_s, checked = 0, 0.0, False
            continue
        quiet += 1
        quiet_s += len(chunk) / SAMPLE_RATE
        if not checked and quiet_s >= STOP_CHECK_QUIET_S and heard_s - quiet_s <= STOP_CHECK_MAX_S:
            checked = True
            yield Audio(np.concatenate(frames), source, provisional=True)
        if quiet_s >= END_QUIET_S:
            yield Audio(np.concatenate(frames), source, pressed=pressed(started, clock()))
            frames, quiet, quiet_s, soft_s, peak, checked, glanced = [], 0, 0.0, 0.0, 0.0, False, False
