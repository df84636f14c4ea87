"""Audio in: any PCM WAV a person or a recorder hands the voice console, as the 16 kHz mono the models expect.

Issue 17 found an unreadable WAV passing silently, an empty data chunk raising IndexError, and a 2 KB file whose
header claimed 1 Hz taking 16 s of CPU and 430 MB (its few samples resampled to 16 kHz). A file is read only when
it is a regular file (a FIFO or a device would block or never end), its header is plausible (1-8 channels, 8 to
192 kHz: below 8 kHz speech is not intelligible to the models, and a telephone line is the lowest rate a
microphone path delivers), and no more frames are read than the file can hold, whatever its header claims.
"""

from __future__ import annotations

import io
import math
import os
import stat
import wave
from dataclasses import dataclass

import numpy as np

__all__ = ["CLIPPED_SHARE", "MAX_RATE", "MIN_RATE", "SAMPLE_RATE", "AsrError", "Audio", "clipped_share", "load_wav",
           "resample"]

SAMPLE_RATE = 16000
#: telephone speech; the lowest rate any microphone path here delivers
MIN_RATE = 8000
#: the highest rate of common recorders; a header above it is corrupt, not high-fidelity
MAX_RATE = 192000
_MAX_CHANNELS = 8
#: a WAV header with its format and data chunk headers is at least this long
_MIN_HEADER = 44
#: the data sizes written by a recorder that streams to a pipe and cannot know the length (arecord, sox):
#: "to the end of the file", so such a file is not cut short; any other size above what the file holds is
_UNKNOWN_LENGTH = (0x7FFFFFFF, 0xFFFFFFFF)


#: a sample this close to the 16-bit limit is taken as clipped (resampling rings a clipped plateau just below it)
_NEAR_FULL_SCALE = 32000
#: the share of clipped samples from which a recording is reported as clipped (blind attack 20: a "stop" recorded
#: with the gain too high, +20 to +30 dB, was heard as "yup" with no word of why). Every clip
#: benchmarks/voice_bench.py made has at most 0.03 %; espeak-ng en+m3 and en+f3 (dev voices) saying "abort" with sox
#: gain +10 dB have 0.8 and 1.1 %, at +20 dB 3.3 and 6.4 %
CLIPPED_SHARE = 0.005


def clipped_share(samples: np.ndarray) -> float:
    """The share of samples at or near full scale: a microphone gain set too high flattens the waveform there, and
    the recogniser then hears other words in it."""
    x = np.abs(np.asarray(samples, dtype=np.int32))
    return float(np.mean(x >= _NEAR_FULL_SCALE)) if len(x) else 0.0


class AsrError(RuntimeError):
    """Audio could not be read or recognised; the message says what to fix."""


@dataclass(frozen=True)
class Audio:
    """Mono 16-bit samples at 16 kHz: what pocketsphinx's acoustic model was trained on."""

    samples: np.ndarray
    source: str = ""
    #: said with the push-to-talk key held (or from a source where every utterance counts as pressed)
    pressed: bool = False
    #: the start of an utterance still being said, handed over early to be checked for a stop only
    provisional: bool = False
    #: a provisional start handed over at the first sign of its end, for the recogniser's first look alone
    #: (``Glancing``): too early, and too often, for the full decode's stop passes, which hear command starts as stops
    glance: bool = False

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def pcm(self) -> bytes:
        return np.asarray(self.samples, dtype="<i2").tobytes()

    def wav_bytes(self) -> bytes:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(self.pcm())
        return buf.getvalue()

    @classmethod
    def from_samples(cls, samples: np.ndarray, rate: int, source: str = "") -> Audio:
        """Any rate, float in [-1, 1] or integer PCM, one or more channels (last axis)."""
        x = np.asarray(samples)
        if x.ndim == 2:
            x = x.mean(axis=1) if x.shape[1] <= 8 else x.mean(axis=0)
        if np.issubdtype(x.dtype, np.floating):
            x = x * 32767.0
        x = resample(x.astype(np.float64), rate, SAMPLE_RATE)
        return cls(np.clip(np.round(x), -32768, 32767).astype(np.int16), source)


def load_wav(path: str | os.PathLike[str]) -> Audio:
    """A PCM WAV file of any plausible rate and channel count, as 16 kHz mono; ``AsrError`` naming the problem
    otherwise."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise AsrError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise AsrError(f"{path}: not a regular file (a folder, pipe or device); give a WAV file")
    if st.st_size == 0:
        raise AsrError(f"{path}: the file is empty (0 bytes): nothing was recorded into it")
    try:
        with open(path, "rb") as f, wave.open(f, "rb") as w:
            channels, width, rate, claimed = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            _check_header(path, channels, width, rate)
            # what the file can hold, whatever the header says: a lying header must not make us read or allocate more
            n = min(claimed, max(0, st.st_size - _MIN_HEADER) // (channels * width))
            raw = w.readframes(n)
    # RuntimeError: the wave module's chunk reader on a chunk header that claims more than the file holds
    except (OSError, EOFError, wave.Error, ValueError, RuntimeError) as exc:
        why = str(exc) or "a chunk claims more than the file holds"
        raise AsrError(f"{path}: not a readable PCM WAV file ({why}); record or convert it as 16-bit PCM WAV, "
                       "for example `sox in.any -b 16 -c 1 out.wav`") from None
    raw = raw[: len(raw) - len(raw) % (channels * width)]
    if not raw:
        raise AsrError(f"{path}: the WAV file holds no audio (its data chunk is empty)")
    held = len(raw) // (channels * width)
    if held < claimed and claimed not in {size // (channels * width) for size in _UNKNOWN_LENGTH}:
        raise AsrError(f"{path}: the WAV file is cut short: its header says {claimed / rate:.2f} s of audio, the "
                       f"file holds {held / rate:.2f} s (a recording that did not finish, or a copy broken off); "
                       "record or copy it again")
    x = _samples(raw, width)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    y = resample(x, rate, SAMPLE_RATE)
    return Audio(np.clip(np.round(y), -32768, 32767).astype(np.int16), str(path))


def _check_header(path: str | os.PathLike[str], channels: int, width: int, rate: int) -> None:
    if not 1 <= channels <= _MAX_CHANNELS:
        raise AsrError(f"{path}: the header says {channels} channels; a voice recording has 1 to {_MAX_CHANNELS}")
    if width not in (1, 2, 3, 4):
        raise AsrError(f"{path}: {8 * width}-bit samples are not supported; use 16-bit PCM")
    if not MIN_RATE <= rate <= MAX_RATE:
        low = rate < MIN_RATE
        raise AsrError(f"{path}: the header says {rate} Hz; speech needs {MIN_RATE} Hz or more" if low else
                       f"{path}: the header says {rate} Hz, above {MAX_RATE} Hz: the file is corrupt")


def _samples(raw: bytes, width: int) -> np.ndarray:
    """Integer PCM of 1-4 bytes as 16-bit-scaled floats."""
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return (np.where(v >= 1 << 23, v - (1 << 24), v) / 256.0).astype(np.float64)
    return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0


def resample(x: np.ndarray, rate_in: int, rate_out: int, half_width: int = 16) -> np.ndarray:
    """Band-limited resampling (Blackman-windowed sinc), so speech recorded at 22.05 or 44.1 kHz reaches
    the 16 kHz model without aliasing; numpy only, no audioop (gone in Python 3.13) and no sox."""
    if rate_in == rate_out or len(x) == 0:
        return np.asarray(x, dtype=np.float64)
    if rate_in <= 0 or rate_out <= 0:
        raise AsrError(f"invalid sample rate {rate_in} -> {rate_out}")
    ratio = rate_out / rate_in
    cutoff = min(1.0, ratio)
    width = int(math.ceil(half_width / cutoff))
    n_out = int(round(len(x) * ratio))
    offsets = np.arange(-width + 1, width + 1)
    out = np.empty(n_out, dtype=np.float64)
    padded = np.concatenate([np.zeros(width), np.asarray(x, dtype=np.float64), np.zeros(width + 1)])
    for start in range(0, n_out, 8192):
        t = np.arange(start, min(n_out, start + 8192)) / ratio
        base = np.floor(t).astype(np.int64)
        idx = base[:, None] + offsets[None, :]
        d = t[:, None] - idx
        z = np.clip(d / width, -1.0, 1.0)
        window = 0.42 + 0.5 * np.cos(np.pi * z) + 0.08 * np.cos(2 * np.pi * z)
        kernel = cutoff * np.sinc(cutoff * d) * window
        out[start:start + len(t)] = (padded[idx + width] * kernel).sum(axis=1)
    return out
