"""How much of an utterance is voiced, at what pitch, and how far to scale its spectrum for the acoustic model:
measured once per utterance and shared by every decoding pass and engine, since noise, hum and a high voice
each fool the decoders in their own way."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medrobot_llm.consoles.voice.audio import SAMPLE_RATE, Audio

__all__ = ["Voiced", "median_pitch", "scale_for", "speaker_scale", "speech_frames", "voiced_ratio"]


def speech_frames(audio: Audio) -> tuple[int, int]:
    """(frames judged speech, frames in all) by pocketsphinx's WebRTC voice-activity detector."""
    from pocketsphinx import Vad

    vad = Vad(Vad.LOOSE, SAMPLE_RATE)
    step = vad.frame_bytes // 2
    x = audio.samples
    speech = total = 0
    for i in range(0, len(x) - step + 1, step):
        total += 1
        if vad.is_speech(np.asarray(x[i:i + step], dtype="<i2").tobytes()):
            speech += 1
    return speech, total


#: the RMS a 30 ms frame needs to be judged voiced in a recording of ordinary level (-44 dBFS)
_LOUD_RMS = 200.0
#: in a recording whose loudest frame is quieter than ``_LOUD_RMS / _QUIET_SHARE``, the gate is this share of that
#: frame instead: with the fixed gate a stop said across the room (sox gain -35 dB on tests/test_voice_stop_level.py's
#: dev voices and phrases: loudest frames 76-145 RMS) had no voiced frame, so it was weighed as hum and did not act.
#: Loudness is not what tells noise from a voice here, periodicity is: the dev noise clips (tests/_voice_corpus.py,
#: seeds 0-4: hiss, white noise, hum) peak at 0.25 autocorrelation against the 0.5 a voiced frame needs. Recordings
#: whose loudest frame clears 800 RMS (-32 dBFS; every clip benchmarks/voice_bench.py made has 2018 or more) are
#: measured as before
_QUIET_SHARE = 0.25
#: never below this (-72 dBFS): digital near-silence is no voice at any gain
_QUIET_FLOOR_RMS = 8.0


def _loud_rms(loudest_rms: float) -> float:
    """The RMS at which a frame counts as loud enough to be voiced, given the recording's loudest frame's."""
    return min(_LOUD_RMS, max(_QUIET_FLOOR_RMS, loudest_rms * _QUIET_SHARE))


#: the voicing frames' hop, in samples and in seconds
_HOP = 240
_HOP_S = _HOP / SAMPLE_RATE


def _voicing(samples: np.ndarray, frame: int = 480, hop: int = _HOP) -> tuple[np.ndarray, np.ndarray]:
    """Per 30 ms frame: whether it is voiced (loud enough, with an autocorrelation peak at a speaking pitch,
    70-400 Hz), and its pitch in Hz (meaningful on voiced frames only).

    The autocorrelation is normalised for the shrinking overlap at long lags, and only a local maximum
    counts as a peak: without the first a low or falling voice never looked periodic (a short "stop" at
    180 words a minute had no voiced frame), and without the second a 50 Hz hum, whose autocorrelation
    merely falls through the pitch range, looked voiced throughout.
    """
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < frame:
        return np.zeros(0, dtype=bool), np.zeros(0)
    n = 1 + (len(x) - frame) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop][:n]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames ** 2).sum(axis=1)
    loud = energy > frame * _loud_rms(float(np.sqrt(energy.max() / frame))) ** 2
    spec = np.fft.rfft(frames, 2 * frame, axis=1)
    acf = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :frame]
    acf = acf / np.maximum(acf[:, :1], 1e-9) * (frame / (frame - np.arange(frame)))[None, :]
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 70
    inner = acf[:, lo:hi + 1]
    is_peak = (inner >= acf[:, lo - 1:hi]) & (inner >= acf[:, lo + 1:hi + 2])
    peaks = np.where(is_peak, inner, -1.0)
    best = peaks.max(axis=1)
    # the shortest period with nearly the best peak: a voice is as periodic at two periods as at one
    lag = lo + (peaks >= 0.9 * best[:, None]).argmax(axis=1)
    return loud & (best > 0.5), SAMPLE_RATE / lag


@dataclass(frozen=True)
class Voiced:
    """An utterance's voicing, computed once: its voiced share, voiced span and pitch all come from it."""

    voiced: np.ndarray
    pitch: np.ndarray

    @classmethod
    def of(cls, samples: np.ndarray) -> Voiced:
        return cls(*_voicing(samples))

    @property
    def ratio(self) -> float:
        return float(np.mean(self.voiced)) if len(self.voiced) else 0.0

    @property
    def seconds(self) -> float:
        """How long the voiced frames last (each adds a hop, 15 ms): unlike ``ratio``, whatever the padding."""
        return float(self.voiced.sum()) * _HOP_S

    @property
    def span_s(self) -> float:
        """Seconds from the first voiced frame to the last one; 0 when none is voiced."""
        idx = np.flatnonzero(self.voiced)
        return float(idx[-1] - idx[0] + 2) * _HOP_S if len(idx) else 0.0

    @property
    def median_pitch(self) -> float:
        return float(np.median(self.pitch[self.voiced])) if self.voiced.sum() >= 5 else 0.0


def voiced_ratio(samples: np.ndarray) -> float:
    """The share of 30 ms frames that are voiced.

    The voice-activity detector calls loud white noise speech, and the grammar decoder then fits it as well
    as it fits speech, so neither can tell noise from a command. Speech has voiced stretches; hiss and white
    noise are not periodic, and mains hum is periodic far below any voice's pitch.
    """
    return Voiced.of(samples).ratio


def median_pitch(samples: np.ndarray) -> float:
    """The speaker's median pitch over the voiced frames, in Hz; 0 when fewer than five frames are voiced."""
    return Voiced.of(samples).median_pitch


#: the pitch the acoustic model's speakers are closest to, and how formants follow pitch: across speakers
#: vocal-tract resonances scale roughly with pitch to the power 0.2-0.25 (women's formants are some 15 %
#: higher than men's, their pitch about twice as high)
_REFERENCE_PITCH_HZ = 130.0
_FORMANT_PER_PITCH = 0.25
#: never scale a spectrum by more than this (a child's voice, a squeak of noise)
_MIN_SCALE = 0.85


def speaker_scale(samples: np.ndarray) -> float:
    """How much to lower the utterance's frequencies so that a high voice meets the acoustic model.

    The US English model was trained mostly on adult male speech. A high (female) voice has its formants
    where the model expects other vowels, and its pitch harmonics are resolved by the filterbank: the
    female espeak-ng voice got the right plan for 9 of 16 commands against 13-14 for the male ones. Playing
    the audio back slower by the formant ratio (vocal-tract length normalisation done on the waveform, which
    moves formants and harmonics together) brought it to 14 of 16. Voices at or below the reference pitch
    are left alone.
    """
    return scale_for(median_pitch(samples))


def scale_for(pitch: float) -> float:
    if pitch <= _REFERENCE_PITCH_HZ:
        return 1.0
    return max(_MIN_SCALE, float((_REFERENCE_PITCH_HZ / pitch) ** _FORMANT_PER_PITCH))
