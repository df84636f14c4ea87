"""Issue 17: a clear stop latches by the first look, before (and without) the command grammar's decode, which took most
of the time from the end of a spoken stop to the e-stop; a command that the stop phrases' grammar fits goes on to the
full decode. How soon is a benchmark figure (benchmarks/voice_stop_latency.py): here the proof is which searches were
decoded. The audio is dev data of ``benchmarks/voice_bench.py`` (its voices and texts not held out)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.consoles.voice.asr import FIRST_LOOK, PocketSphinxRecognizer
from medrobot_llm.consoles.voice.audio import Audio, load_wav
from medrobot_llm.consoles.voice.console import VoiceConsole
from medrobot_llm.consoles.voice.first_look import first_look
from medrobot_llm.consoles.voice.grammar import build_grammar
from medrobot_llm.consoles.voice.stops import FIRST_LOOK_PHONES, FIRST_LOOK_WORDS, StopLengths, anchored_stops
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.session import Session

from tests._voice_bench import Item, held_out, synthesize  # noqa: E402

_DOMAIN = "xray"
#: a stop of the bench's stop items, slow and with sox noise
_STOP = Item("stop", _DOMAIN, "stop motion", ("espeak-ng", "en-gb-x-rp"), 1.25, 16000, "noise")
#: a command of the bench whose audio the stop phrases' grammar heard as "abort everything", voiced short enough for it
_COMMAND = Item("command", _DOMAIN, "acquire a 3d spin", ("flite", "slt"), 0.8, 22050, "reverb")


class _Spied(PocketSphinxRecognizer):
    """The engine the console uses, with the searches it decodes written down."""

    def __init__(self, domain: str) -> None:
        super().__init__(domain)
        self.searches: list[str] = []

    def _decode(self, search: str, pcm: bytes) -> object:
        self.searches.append(search)
        return super()._decode(search, pcm)


@pytest.fixture(scope="module")
def engine() -> Iterator[_Spied]:
    yield _Spied(_DOMAIN).load()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice-first-look")


def test_the_cases_are_dev_data() -> None:
    for item in (_STOP, _COMMAND):
        assert not held_out(item.voice_id) and not held_out(item.text), item


@pytest.mark.voice
@pytest.mark.slow
def test_a_clear_stop_latches_without_the_command_grammar_decode(engine: _Spied, cache: Path, tmp_path: Path) -> None:
    said = Audio(load_wav(synthesize(_STOP, cache)).samples, "stop motion")
    session = Session(_DOMAIN, RulePlanner(), backend=MemoryBackend(_DOMAIN, control_period_s=0.001),
                      audit_path=tmp_path / "audit.jsonl")
    engine.searches.clear()
    records = VoiceConsole(session, engine, lambda _: None, gated=False).run([said])
    with session:
        state = session.supervisor.status()["state"]
    assert records[0]["action"] == "stop" and state == "ESTOP", records[0]
    assert records[0]["note"].startswith(FIRST_LOOK), records[0]
    assert "grammar" not in engine.searches, engine.searches


@pytest.mark.voice
@pytest.mark.slow
def test_a_command_the_stop_grammar_fits_goes_on_to_the_full_decode(engine: _Spied, cache: Path) -> None:
    engine.searches.clear()
    heard = engine.transcribe(load_wav(synthesize(_COMMAND, cache)))
    assert engine.searches[0] == "stops" and "grammar" in engine.searches, engine.searches
    assert not heard.stop, heard


class _Scores:
    """A decoder for ``first_look`` without audio: each search's words and its per-frame margin below the stop's."""

    def __init__(self, stop: str, phones: float, words: float, frames: int = 100) -> None:
        self.stop, self.frames = stop, frames
        self.per_frame = {"stops": 0.0, "phones": phones, "words": words}
        self.decoded: list[str] = []

    def __call__(self, search: str, _pcm: bytes) -> tuple[str, float, int]:
        self.decoded.append(search)
        # a path score is a likelihood: ``per_frame`` better per frame than the stop's (0.5) is this much higher
        score = 0.5 * math.exp(self.per_frame[search] * self.frames / 1000)
        return (self.stop if search == "stops" else "any words", score, self.frames)


@pytest.fixture(scope="module")
def lengths() -> tuple[StopLengths, frozenset[str]]:
    grammar = build_grammar(_DOMAIN)
    return StopLengths(grammar), anchored_stops(grammar)


def _look(scores: _Scores, span_s: float, lengths: tuple[StopLengths, frozenset[str]]) -> str:
    return first_look(b"", span_s, scores, lengths[0], lengths[1], lambda raw: raw).stop


def test_the_first_look_takes_a_stop_only_within_both_limits(lengths: tuple[StopLengths, frozenset[str]]) -> None:
    assert _look(_Scores("stop now", FIRST_LOOK_PHONES - 0.1, FIRST_LOOK_WORDS - 0.1), 0.6, lengths) == "stop now"
    assert _look(_Scores("stop now", FIRST_LOOK_PHONES + 0.1, FIRST_LOOK_WORDS - 0.1), 0.6, lengths) == ""
    assert _look(_Scores("stop now", FIRST_LOOK_PHONES - 0.1, FIRST_LOOK_WORDS + 0.1), 0.6, lengths) == ""


def test_the_first_look_leaves_unanchored_and_overlong_stops_undecoded(
        lengths: tuple[StopLengths, frozenset[str]]) -> None:
    """"whoa" fits any rounded vowel ("go" was heard as it), and a stop voiced longer than it can be said is a
    command's words: neither costs more than the stop phrases' own decode."""
    for stop, span_s in (("whoa", 0.3), ("stop now", 3.0)):
        scores = _Scores(stop, 0.0, -5.0)
        assert _look(scores, span_s, lengths) == "" and scores.decoded == ["stops"], (stop, scores.decoded)
    scores = _Scores("stop now", FIRST_LOOK_PHONES + 1.0, -5.0)
    assert _look(scores, 0.6, lengths) == "" and scores.decoded == ["stops", "phones"], scores.decoded
