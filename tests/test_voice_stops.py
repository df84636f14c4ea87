"""Issue 17: a stop latches the e-stop whatever the synthesizer, voice, sample rate and stop phrase, with every
offline engine. "stop" recorded at 8 kHz was heard as "tilt eight": the command grammar picks the nearest of
thousands of commands, and narrowband speech (no sibilant energy above 4 kHz) lies nearer to some of them than
to "stop". The stop-only pass asks instead "which stop, if any".

A sample of the space, a phrase and a voice per (synthesizer, sample rate), drawn by hash from the voices not
held out by ``benchmarks/voice_bench.py``; the benchmark runs the wide sweep. Each case goes through the console
with a real session, so "heard" means the e-stop latched, not a flag on a transcript.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.consoles.voice.asr import Recognizer
from medrobot_llm.consoles.voice.audio import Audio, load_wav
from medrobot_llm.consoles.voice.console import VoiceConsole
from medrobot_llm.consoles.voice.engines import make_recognizer
from medrobot_llm.language.words import CONTROL_PHRASES
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.session import Session

pytestmark = [pytest.mark.voice, pytest.mark.slow]

from tests._voice_bench import SAMPLE_RATES, VOICES, Item, held_out, synthesize  # noqa: E402

_DOMAIN = "xray"
_SYNTHS = tuple(dict.fromkeys(s for s, _ in VOICES))


def _pick(seq: tuple[Any, ...] | list[Any], name: str) -> Any:
    return seq[hashlib.sha256(name.encode()).digest()[0] % len(seq)]


def _case(synth: str, rate: int) -> Item:
    voices = [v for v in VOICES if v[0] == synth and not held_out(f"{v[0]}:{v[1]}")]
    name = f"{synth}:{rate}"
    return Item("stop", _DOMAIN, _pick(sorted(CONTROL_PHRASES["stop"]), name), _pick(voices, name), 1.0, rate,
                "clean")


class _Engines:
    """Each engine made once for the module, as ``medrobot voice --asr`` makes it (loading one takes seconds)."""

    def __init__(self) -> None:
        self.made: dict[tuple[str, str], Recognizer] = {}

    def __call__(self, name: str, domain: str = _DOMAIN) -> Recognizer:
        if (name, domain) not in self.made:
            self.made[name, domain] = make_recognizer(name, domain, RulePlanner())
        return self.made[name, domain]


@pytest.fixture(scope="module")
def engines() -> Iterator[_Engines]:
    yield _Engines()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice-stops")


def _stopped(recognizer: Recognizer, item: Item, tmp_path: Path, cache: Path) -> None:
    samples = load_wav(synthesize(item, cache)).samples
    backend = MemoryBackend(item.domain, control_period_s=0.001)
    session = Session(item.domain, RulePlanner(), backend=backend, audit_path=tmp_path / "audit.jsonl")
    said = Audio(samples, f"{item.voice_id} {item.sample_rate} Hz {item.text!r}")
    records = VoiceConsole(session, recognizer, lambda _: None).run([said])
    with session:
        state = session.supervisor.status()["state"]
    assert records[0]["action"] == "stop" and state == "ESTOP", records[0]


@pytest.mark.parametrize("synth", _SYNTHS)
@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_every_synthesizer_s_stop_latches_at_every_rate_with_pocketsphinx(synth: str, rate: int, tmp_path: Path,
                                                                         cache: Path, engines: _Engines) -> None:
    _stopped(engines("pocketsphinx"), _case(synth, rate), tmp_path, cache)


@pytest.mark.parametrize("engine", ["whisper", "agree"])
@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_a_stop_latches_at_every_rate_with_whisper_and_agree(engine: str, rate: int, tmp_path: Path,
                                                            cache: Path, engines: _Engines) -> None:
    _stopped(engines(engine), _case(_pick(_SYNTHS, f"{engine}:{rate}"), rate), tmp_path, cache)


@pytest.mark.parametrize("engine", ["pocketsphinx", "whisper", "agree"])
def test_an_8_khz_stop_stops(engine: str, tmp_path: Path, cache: Path, engines: _Engines) -> None:
    """The issue's case: espeak-ng's "stop" recorded at 8 kHz, heard as "tilt eight" by the command grammar."""
    _stopped(engines(engine), Item("stop", _DOMAIN, "stop", ("espeak-ng", "en-us"), 1.0, 8000, "clean"), tmp_path, cache)


#: stops the command grammar heard as a command and the stop-only pass used to miss (dev voices of voice_bench.py):
#: a slow long phrase at 8 kHz voiced for over 1 s, past the pass's old fixed 1 s; and wideband stops, clean, with
#: sox noise or in reverb, on which the pass did not run (heard as "standby", "one", "cancel that", "stow")
_MISSED = {
    "slow 'emergency stop' at 8 kHz in reverb, 1.1 s": Item("stop", "surgery", "emergency stop", ("espeak-ng", "en+f2"),
                                                            1.25, 8000, "reverb"),
    "'whoa' with sox noise at 16 kHz": Item("stop", "surgery", "whoa", ("festival", "cmu_us_slt_arctic_hts"), 1.0,
                                            16000, "noise"),
    "'estop' in a high voice at 16 kHz": Item("stop", "xray", "estop", ("espeak-ng", "en+f3"), 1.0, 16000, "clean"),
    "slow 'stop' with sox noise at 22.05 kHz": Item("stop", "ultrasound", "stop", ("espeak-ng", "en-us"), 1.25, 22050,
                                                    "noise"),
}


@pytest.mark.parametrize("case", sorted(_MISSED))
def test_the_stop_only_pass_hears_long_and_wideband_stops(case: str, tmp_path: Path, cache: Path,
                                                         engines: _Engines) -> None:
    item = _MISSED[case]
    assert not held_out(item.voice_id)
    _stopped(engines("pocketsphinx", item.domain), item, tmp_path, cache)


def test_a_wideband_command_like_a_stop_phrase_is_not_a_stop(tmp_path: Path, engines: _Engines) -> None:
    """The other side of the pass: on wideband audio it listens only to utterances as short as one drawn-out
    syllable, since there the command grammar hears longer stops itself. "scan the liver" (espeak-ng at
    22.05 kHz, voiced 0.93 s) fits "stop the robot" better than the command grammar's "scan the lumen"."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _voice_corpus import commands, synthesize as speak

    said = next(u for u in commands(tmp_path) if u.text == "scan the liver")
    speak([said])
    heard = engines("pocketsphinx", said.domain).transcribe(load_wav(said.path))
    assert not heard.stop, heard
