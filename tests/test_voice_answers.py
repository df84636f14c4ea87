"""Issue 17, the voice console's answers and options, with a scripted recogniser (recognition itself is in
test_voice_attacks.py): a yes taken back in the same breath drops the plan, an answer the engine judges not to
be speech of the grammar is asked again, a read-back expires on a manual clock, and the CLI refuses a
threshold or a wake word that would defeat the console's checks."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.cli import build_parser
from medrobot_llm.consoles.voice.asr import Transcript
from medrobot_llm.consoles.voice.audio import Audio
from medrobot_llm.consoles.voice.console import VoiceConsole
from medrobot_llm.consoles.voice.grammar import wake_words
from medrobot_llm.language.words import CONTROL_PHRASES
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.session import Session

_COMMAND = "robot go to lateral view of the chest"


class _Scripted:
    """Hears the scripted transcript of each utterance."""

    name = "scripted"

    def __init__(self, said: dict[str, Transcript]) -> None:
        self.said = said

    def transcribe(self, audio: Audio) -> Transcript:
        return self.said[audio.source]


def _heard(text: str, **kw: Any) -> Transcript:
    return Transcript(text=text, confidence=1.0, engine="scripted", **kw)


def _run(tmp_path: Path, answer: Transcript, **kw: Any) -> tuple[list[dict[str, Any]], MemoryBackend]:
    backend = MemoryBackend("xray", control_period_s=0.001)
    session = Session("xray", RulePlanner(), backend=backend, audit_path=tmp_path / "audit.jsonl")
    emit = kw.pop("emit", lambda _: None)
    recognizer = _Scripted({"command": _heard(_COMMAND), "answer": answer})
    audio = [Audio(np.zeros(160, dtype=np.int16), source) for source in ("command", "answer")]
    records = VoiceConsole(session, recognizer, emit, **kw).run(audio)
    with session:
        pass
    return records, backend


def _answer(records: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in records if r.get("kind") == "answer")


def test_a_plain_yes_still_runs_the_plan(tmp_path: Path) -> None:
    """The guard the tests below rely on: the scripted command and a plain yes do move the robot."""
    records, backend = _run(tmp_path, _heard("yes"))
    assert _answer(records)["action"] == "confirm" and backend.sent, records


_YES = [p for p in CONTROL_PHRASES["confirm"] if p.isascii()]
_BACK = ["no", "wait", "cancel", "not", "stop", "hold on", "not yet", "nope", "never mind", "wait a second", "don't"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(yes=st.sampled_from(_YES), back=st.sampled_from(_BACK), after=st.booleans())
def test_a_yes_taken_back_before_or_after_drops_the_plan(tmp_path: Path, yes: str, back: str, after: bool) -> None:
    """The whole utterance must be an unconditional yes: the operator's "no" (or "wait") is what they meant."""
    said = f"{yes} {back}" if after else f"{back} {yes}"
    records, backend = _run(tmp_path, _heard(said))
    assert _answer(records)["action"] != "confirm" and backend.sent == [], (said, records)


def test_an_answer_that_is_not_speech_of_the_grammar_is_asked_again_never_a_yes(tmp_path: Path) -> None:
    """The grammar forces any speech onto its nearest answer, often "yes"; the phone loop tells it was not one."""
    records, backend = _run(tmp_path, _heard("yes", not_command=True))
    assert _answer(records)["action"] == "repeat" and backend.sent == [], records


def test_talk_that_only_mentions_the_robot_is_ignored(tmp_path: Path) -> None:
    """Addressed means the wake word opens the utterance; a transcript that keeps the leading "the" is talk."""
    backend = MemoryBackend("xray", control_period_s=0.001)
    session = Session("xray", RulePlanner(), backend=backend, audit_path=tmp_path / "audit.jsonl")
    said = {"talk": _heard("the robot destroy the node"), "also": _heard("my robot go to lateral view of the chest")}
    records = VoiceConsole(session, _Scripted(said), lambda _: None).run(
        [Audio(np.zeros(160, dtype=np.int16), s) for s in said])
    with session:
        pass
    assert [r["action"] for r in records] == ["ignored", "ignored"] and backend.sent == [], records


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _waits(clock: _Clock, seconds: float) -> Callable[[dict[str, Any]], None]:
    """The operator, reading the read-back for ``seconds`` before answering."""

    def emit(rec: dict[str, Any]) -> None:
        if rec.get("kind") == "readback":
            clock.now += seconds

    return emit


@pytest.mark.parametrize(("window", "late_by", "confirmed"), [(30.0, 29.0, True), (30.0, 31.0, False),
                                                               (5.0, 6.0, False)])
def test_a_read_back_expires_after_its_window(tmp_path: Path, window: float, late_by: float,
                                              confirmed: bool) -> None:
    """A yes said after the window answers nothing: the plan was dropped when the window closed."""
    clock = _Clock()
    records, backend = _run(tmp_path, _heard("yes"), clock=clock, readback_timeout_s=window,
                            emit=_waits(clock, late_by))
    answer = _answer(records)
    assert (answer["action"] == "confirm") is confirmed and bool(backend.sent) is confirmed, records
    if not confirmed:
        assert "expired" in answer["message"], answer


def test_a_read_back_window_defaults_to_the_supervisors_question_window(tmp_path: Path) -> None:
    """The supervisor's default question window is 30 s; the read-back keeps the same one."""
    clock = _Clock()
    records, backend = _run(tmp_path, _heard("yes"), clock=clock, emit=_waits(clock, 31.0))
    assert _answer(records)["action"] == "deny" and backend.sent == [], records


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["voice", "--domain", "xray", "--wav", "x.wav", *argv])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1.5", "-1", "0", "many"])
def test_threshold_must_be_a_confidence(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse("--threshold", value)
    assert exc.value.code == 2 and "--threshold" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0.01", "0.6", "1"])
def test_a_threshold_in_range_is_taken(value: str) -> None:
    assert _parse("--threshold", value).threshold == float(value)


@pytest.mark.parametrize("word", ["stop", "emergency stop", "halt", "yes", "no", "okay", "wait", "cancel", "the",
                                  "my robot", "this"])
def test_a_wake_word_that_is_a_stop_an_answer_or_a_function_word_is_refused(
        word: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="wake word"):
        wake_words(word)
    with pytest.raises(SystemExit) as exc:
        _parse("--wake-word", word)
    assert exc.value.code == 2 and "--wake-word" in capsys.readouterr().err


@pytest.mark.parametrize("word", ["robot", "hey robot", "computer", "robot arm"])
def test_a_name_is_a_wake_word(word: str) -> None:
    assert _parse("--wake-word", word).wake_word == word


def test_a_contact_question_is_shown_before_its_answer_and_asks_for_a_word_the_console_takes(
        tmp_path: Path) -> None:
    """The question is printed before the answer is taken; the word it asks for, and the supervisor's own
    "confirm", both confirm the step."""
    for word in ("yes", "confirm"):
        backend = MemoryBackend("ultrasound", control_period_s=0.001)
        session = Session("ultrasound", RulePlanner(), backend=backend, audit_path=tmp_path / f"{word}.jsonl")
        said = {"command": _heard("robot scan the left kidney"), "readback": _heard("yes"), "answer": _heard(word)}
        records = VoiceConsole(session, _Scripted(said), lambda _: None).run(
            [Audio(np.zeros(160, dtype=np.int16), s) for s in said])
        with session:
            pass
        kinds = [r.get("kind") for r in records]
        asked = kinds.index("question")
        assert kinds[asked + 1] == "answer" and "say 'yes'" in records[asked]["message"], records
        assert records[asked]["question"]["hazard"] == "contact", records
        assert records[asked + 1]["action"] == "confirm" and backend.sent, records
