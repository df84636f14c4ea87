"""Attack 20 on ``medrobot voice``: an unusual voice, a quiet or clipped microphone, and broken WAV files.

Each test makes its audio here with espeak-ng and sox (as a careless user's recording would be made) and
drives the real CLI with ``--json``, so it measures what the README promises from the outside: "Stops always
act" (a stop phrase latches the e-stop before any planning, addressed or not, whatever its confidence) and
"a WAV file that could not be read" exits with status 2 and a ``{"kind": "error"}`` line. The strict xfails are
what the attack found broken; the passing tests are what held and must keep holding.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.voice, pytest.mark.sim, pytest.mark.slow]


def _say(folder: Path, name: str, text: str, voice: str, wpm: int, rate: int, *effects: str) -> Path:
    """espeak-ng speech resampled by sox to 16-bit mono at ``rate``, padded as a --wav recording is."""
    raw = folder / f"{name}.raw.wav"
    out = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), "--", text], check=True, timeout=60)
    subprocess.run(["sox", "-R", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out), "pad", "0.3", "0.5",
                    *effects], check=True, timeout=60, capture_output=True)
    return out


def _voice(*wavs: Path) -> tuple[int, list[dict[str, Any]]]:
    """Run ``medrobot voice --domain xray --json`` on the files; its exit status and JSON lines."""
    argv = [sys.executable, "-m", "medrobot_llm.cli", "voice", "--domain", "xray", "--json"]
    for wav in wavs:
        argv += ["--wav", str(wav)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _wav_header(data_bytes: int, rate: int = 16000) -> bytes:
    """A canonical 16-bit mono PCM header whose data chunk claims ``data_bytes``."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack(
        "<I", data_bytes)


@pytest.mark.parametrize("rate", [44100, 8000])
def test_a_stop_the_stop_only_pass_heard_latches_the_estop(tmp_path: Path, rate: int) -> None:
    """Found by the attack: heard by the stop-only pass at confidence 0.19, one voiced frame in a padded file, and
    answered 'please repeat'. A stop's confidence now counts voiced seconds, not their share (``stop_confidence``)."""
    status, lines = _voice(_say(tmp_path, "stop", "stop", "en+m7", 320, rate))
    assert [line.get("action") for line in lines] == ["stop"], lines
    assert status == 1


def test_a_quiet_stop_transcribed_as_stop_latches_the_estop(tmp_path: Path) -> None:
    """Found by the attack: transcribed 'stop' at confidence 0.0 at -35 dB, no frame loud enough to be voiced. The
    voicing gate now follows a quiet recording's level."""
    status, lines = _voice(_say(tmp_path, "quiet_stop", "stop", "en-us", 160, 16000, "gain", "-35"))
    assert [(line.get("transcript"), line.get("action")) for line in lines] == [("stop", "stop")], lines
    assert status == 1


@pytest.mark.xfail(strict=True, reason=(
    "attack 20: a clipped 'stop' (espeak-ng en-us 160 wpm, 16 kHz, sox gain +30 dB, a microphone gain set too high) "
    "is heard as 'yup' and ignored as not addressed: no stop (en+m3 at +20 dB, 22.05 kHz: 'yep', 'please repeat')"))
def test_a_clipped_stop_latches_the_estop(tmp_path: Path) -> None:
    status, lines = _voice(_say(tmp_path, "clipped_stop", "stop", "en-us", 160, 16000, "gain", "30"))
    assert [line.get("action") for line in lines] == ["stop"], lines
    assert status == 1


def test_a_truncated_wav_is_an_error(tmp_path: Path) -> None:
    """Attack 20: a data chunk claiming 32000 bytes that holds 956 (a recording cut short) was decoded as far as
    it went and answered "no speech, please repeat" with exit status 0."""
    wav = tmp_path / "truncated.wav"
    wav.write_bytes(_wav_header(32000) + bytes(956))
    status, lines = _voice(wav)
    assert status == 2
    assert [line.get("kind") for line in lines] == ["error"], lines


@pytest.mark.parametrize(("name", "header", "said"), [
    ("rate_4000", _wav_header(32000, rate=4000), "4000 Hz"),
    ("rate_0", _wav_header(32000, rate=0), "0 Hz"),
    ("text", b"not a wav at all\n", "RIFF"),
])
def test_an_unreadable_wav_is_named_with_exit_status_2(tmp_path: Path, name: str, header: bytes, said: str) -> None:
    """Held in the attack: absurd rates and non-WAV data exit 2 with a {"kind": "error"} line that says why."""
    wav = tmp_path / f"{name}.wav"
    wav.write_bytes(header + (bytes(32000) if header.startswith(b"RIFF") else b""))
    status, lines = _voice(wav)
    assert status == 2
    assert [line.get("kind") for line in lines] == ["error"] and said in lines[0]["message"], lines


@pytest.mark.xfail(strict=True, reason=(
    "attack 20: a confirm phrase said when nothing waits for an answer (to a colleague, or a beat early) latches "
    "the e-stop: espeak-ng en-us 150 wpm at 16 kHz 'confirm' is heard as 'undo', a stop 'on a second look' "
    "('whoa'), and 'okay' as a stop by the stop-only pass ('whoa'); en+f2's 'confirm' and flite slt's were "
    "ignored (2 of 4). Said as the answer to a read-back, the same 'okay' confirms. The README says this 'confirm' "
    "-> 'undo' -> 'whoa' e-stop was fixed, but only answers are decoded as answers"))
@pytest.mark.parametrize("word", ["confirm", "okay"])
def test_a_confirm_phrase_said_out_of_turn_latches_nothing(tmp_path: Path, word: str) -> None:
    status, lines = _voice(_say(tmp_path, word, word, "en-us", 150, 16000))
    assert [line.get("action") for line in lines] != ["stop"], (status, lines)


@pytest.mark.xfail(strict=True, reason=(
    "attack 20: 'stop now' said by espeak-ng en-us (150 wpm, 16 kHz) in the same breath after a command is no stop: "
    "after 'move to an AP view of the chest' nothing is recognised at all ('please repeat', exit 0), after 'move to "
    "a lateral view of the skull' it is heard as the command '... L2 and go' (2 of 2; 'halt', 'freeze', 'abort "
    "everything' and 'stop the robot' there were heard); the README lists it among the stops still missed"))
@pytest.mark.parametrize("command", ["move to an AP view of the chest", "move to a lateral view of the skull"])
def test_stop_now_right_after_a_command_latches_the_estop(tmp_path: Path, command: str) -> None:
    status, lines = _voice(_say(tmp_path, "one_breath", f"robot, {command}, stop now", "en-us", 150, 16000))
    assert [line.get("action") for line in lines] == ["stop"], lines
    assert status == 1
