"""The segmenter's two ends on streamed synthetic audio: a short word is glanced at for a stop soon after it ends even
when a noise floor or a reverb tail keeps the voice-activity detector hearing speech, and the whole utterance still
ends only after real quiet, so a command with a pause inside stays one utterance. Time is audio length, not a clock."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("pocketsphinx")

from medrobot_llm.consoles.voice.audio import SAMPLE_RATE, Audio  # noqa: E402
from medrobot_llm.consoles.voice.segment import (  # noqa: E402
    END_QUIET_S,
    GLANCE_QUIET_S,
    STOP_CHECK_MAX_S,
    utterances,
)

_BLOCK = 480  # the voice-activity detector's frame at 16 kHz
_FRAME_S = _BLOCK / SAMPLE_RATE


def _voice(seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    """A vowel-like harmonic tone at 130 Hz, which the detector hears as speech."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 12))
    return np.asarray(wave / np.abs(wave).max() * amplitude)


def _noise(seconds: float, sd: float = 300.0) -> np.ndarray:
    """White noise some 20 dB below ``_voice``: loud enough that the detector calls every frame of it speech."""
    return np.random.default_rng(7).normal(0.0, sd, int(seconds * SAMPLE_RATE))


def _quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE))


def _cut(*parts: np.ndarray) -> list[tuple[float, Audio]]:
    """Every hand-over with how much audio had been fed when it came (seconds)."""
    stream = np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)
    stream = np.concatenate([stream, np.zeros(-len(stream) % _BLOCK, np.int16)])
    fed = [0]

    def blocks() -> Iterator[np.ndarray]:
        for i in range(0, len(stream), _BLOCK):
            fed[0] = i + _BLOCK
            yield stream[i:i + _BLOCK]

    return [(fed[0] / SAMPLE_RATE, audio) for audio in utterances(blocks())]


#: a glance within this much audio after the word (the soft stretch it waits for, a frame it ends in and one for
#: the frame the word ends in)
_PROMPT_S = GLANCE_QUIET_S + 2 * _FRAME_S


def test_a_word_in_steady_noise_is_glanced_at_soon_after_it_ends() -> None:
    lead, word = _quiet(0.3), _voice(0.4)
    cuts = _cut(lead, word, _noise(3.0), _quiet(1.0))
    glances = [at for at, a in cuts if a.glance]
    assert glances, "never checked for a stop: the noise floor was taken for speech"
    assert all(a.provisional for _at, a in cuts if a.glance)
    assert glances[0] - (len(lead) + len(word)) / SAMPLE_RATE <= _PROMPT_S, cuts


def test_a_word_with_a_reverb_tail_is_glanced_at_soon_after_the_tail_falls() -> None:
    lead, word = _quiet(0.3), _voice(0.4)
    t = np.arange(int(1.0 * SAMPLE_RATE)) / SAMPLE_RATE
    tail = _voice(1.0) * np.exp(-t / 0.1)  # a room's decay: 15 dB down in 0.17 s, heard as speech far longer
    cuts = _cut(lead, word, tail, _quiet(1.0))
    glances = [at for at, a in cuts if a.glance]
    assert glances, cuts
    assert glances[0] - (len(lead) + len(word)) / SAMPLE_RATE <= 0.17 + _PROMPT_S, cuts


def test_a_long_soft_tail_is_glanced_at_once() -> None:
    """Each glance costs a first look: noise after the word does not bring another one, only speech does."""
    cuts = _cut(_quiet(0.3), _voice(0.4), _noise(3.0), _quiet(1.0))
    assert sum(1 for _at, a in cuts if a.glance) == 1, cuts


def test_a_command_with_a_pause_inside_is_one_utterance_ending_after_real_quiet() -> None:
    first, pause, second = _voice(0.5), _quiet(0.4), _voice(0.8)
    lead = _quiet(0.3)
    cuts = _cut(lead, first, pause, second, _quiet(2.0))
    final = [(at, a) for at, a in cuts if not a.provisional]
    assert len(final) == 1, cuts
    at, audio = final[0]
    spoken_end = (len(lead) + len(first) + len(pause) + len(second)) / SAMPLE_RATE
    assert at - spoken_end >= END_QUIET_S
    assert audio.duration_s >= (len(first) + len(pause) + len(second)) / SAMPLE_RATE


def test_a_soft_stretch_inside_a_command_does_not_end_it() -> None:
    """Quiet by energy only brings a glance: the utterance ends by the detector's quiet, or a command said softly
    in its middle would be cut in two."""
    cuts = _cut(_quiet(0.3), _voice(0.5), _noise(0.8), _voice(0.6), _quiet(2.0))
    assert sum(1 for _at, a in cuts if not a.provisional) == 1, cuts


def test_a_long_utterance_is_not_looked_at_before_it_is_complete() -> None:
    cuts = _cut(_quiet(0.3), _voice(STOP_CHECK_MAX_S + 0.3), _noise(1.0), _quiet(2.0))
    assert [a.provisional for _at, a in cuts] == [False], cuts


def test_speech_after_a_glanced_gap_is_glanced_at_again() -> None:
    """"emergency ... stop": the first word alone may be no stop the check takes, so the second is looked at too."""
    cuts = _cut(_quiet(0.3), _voice(0.3), _noise(0.4), _voice(0.3), _noise(0.6), _quiet(2.0))
    assert sum(1 for _at, a in cuts if a.glance) == 2, cuts
