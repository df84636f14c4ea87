"""Audio in (issue 17): any plausible WAV is read at its true rate; every implausible one is refused by name,
without reading or allocating more than the file holds, and the CLI's exit status says a file was not heard."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.consoles.voice.audio import MAX_RATE, MIN_RATE, SAMPLE_RATE, AsrError, load_wav


def _wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def _header(rate: int, channels: int = 1, width: int = 2, frames_claimed: int = 0, data: bytes = b"") -> bytes:
    """A RIFF/WAVE header written by hand, so it can lie about the rate or the data size."""
    data_size = frames_claimed * channels * width if frames_claimed else len(data)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * width, channels * width, 8 * width)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_size) + data
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + body


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[int(np.argmax(spectrum))])


@settings(max_examples=25, deadline=None)
@given(rate=st.sampled_from([8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000]),
       tone=st.integers(200, 3500))
def test_any_rate_from_8_khz_keeps_the_pitch_and_the_duration(tmp_path_factory: pytest.TempPathFactory, rate: int,
                                                               tone: int) -> None:
    """The rule behind "freeze at 8 kHz heard as resume": what was said at any rate reaches the model at 16 kHz
    with the same frequencies and the same length."""
    t = np.arange(int(0.5 * rate)) / rate
    path = _wav(tmp_path_factory.mktemp("a") / "tone.wav", np.round(8000 * np.sin(2 * np.pi * tone * t)), rate)
    audio = load_wav(path)
    assert abs(len(audio.samples) - 0.5 * SAMPLE_RATE) <= 1
    assert abs(_peak_hz(audio.samples.astype(np.float64), SAMPLE_RATE) - tone) <= 4.0


def test_stereo_and_8_bit_are_read(tmp_path: Path) -> None:
    t = np.arange(8000) / 8000
    left = np.round(8000 * np.sin(2 * np.pi * 440 * t))
    stereo = np.stack([left, left], axis=1).reshape(-1)
    audio = load_wav(_wav(tmp_path / "s.wav", stereo, 8000, channels=2))
    assert abs(_peak_hz(audio.samples.astype(np.float64), SAMPLE_RATE) - 440) <= 4.0


@pytest.mark.parametrize("rate", [1, 100, 4000, MIN_RATE - 1, MAX_RATE + 1, 2**31 - 1])
def test_an_implausible_rate_is_refused_by_name(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "rate.wav"
    path.write_bytes(_header(rate, data=b"\x00\x01" * 1000))
    with pytest.raises(AsrError, match=f"{rate} Hz"):
        load_wav(path)


def test_a_header_claiming_more_frames_than_the_file_holds_reads_only_the_file(tmp_path: Path) -> None:
    """2 KB on disk, a header claiming 2**31 frames: reading must be bounded by the file, not the header."""
    path = tmp_path / "liar.wav"
    path.write_bytes(_header(16000, frames_claimed=2**31 - 1, data=b"\x10\x00" * 1000))
    tracemalloc.start()
    try:
        audio = load_wav(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(audio.samples) == 1000
    assert peak < 2_000_000


@settings(max_examples=40, deadline=None)
@given(held=st.integers(1, 4000), more=st.integers(1, 2**28), channels=st.sampled_from([1, 2]))
def test_a_wav_cut_short_is_refused_and_says_so(tmp_path_factory: pytest.TempPathFactory, held: int, more: int,
                                                channels: int) -> None:
    """Attack 20: a data chunk that claims more than the file holds (a recording that did not finish) was decoded
    as far as it went, so a cut-off "stop" or command became "please repeat" with exit status 0."""
    path = tmp_path_factory.mktemp("cut") / "cut.wav"
    path.write_bytes(_header(16000, channels=channels, frames_claimed=held + more, data=b"\x10\x00" * held * channels))
    with pytest.raises(AsrError, match="cut short"):
        load_wav(path)


@pytest.mark.parametrize("data_size", [0x7FFFFFFF, 0xFFFFFFFF])
def test_a_streamed_wav_of_unknown_length_is_read_to_its_end(tmp_path: Path, data_size: int) -> None:
    """arecord and sox writing to a pipe cannot know the length and write the largest size instead."""
    path = tmp_path / "streamed.wav"
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_size)
    path.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + body + b"\x10\x00" * 1600)
    assert len(load_wav(path).samples) == 1600


@pytest.mark.parametrize("content", [b"", b"RIFF", b"not a wav at all" * 10, _header(16000)[:30],
                                     _header(16000, data=b"")])
def test_unreadable_or_empty_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AsrError, match=r"bad\.wav"):
        load_wav(path)


def test_a_fifo_or_a_device_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(AsrError, match="not a regular file"):
            load_wav(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AsrError, match="cannot read"):
        load_wav(tmp_path / "nowhere.wav")


@pytest.mark.voice
@pytest.mark.sim
def test_the_cli_exits_non_zero_and_names_a_wav_it_could_not_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(_header(1, data=b"\x00\x01" * 1000))
    proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "voice", "--domain", "xray", "--wav", str(bad),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "bad.wav" in proc.stderr and "1 Hz" in proc.stderr
    errors = [line for line in proc.stdout.splitlines() if line.startswith("{") and '"kind": "error"' in line]
    assert len(errors) == 1 and "bad.wav" in errors[0]


def test_the_cli_names_a_path_that_is_no_file_for_what_it_is(tmp_path: Path) -> None:
    """Attack 20: a folder or a pipe given as --wav was reported as "no such file", though it is there."""
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for path, said in ((tmp_path, "not a regular file"), (fifo, "not a regular file"),
                       (tmp_path / "gone.wav", "no such file")):
        proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "voice", "--domain", "xray", "--wav",
                               str(path)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and said in proc.stderr and str(path) in proc.stderr, proc.stderr
