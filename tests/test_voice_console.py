"""The voice console's decisions with a scripted recogniser, a real planner, a real supervisor and an in-memory
robot: what is acted on (addressed speech only), what moves (a plan only after its read-back is confirmed), and
that a stop acts while a plan runs. Recognition itself is tested in test_voice_safe_audio.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.consoles.voice.asr import Transcript
from medrobot_llm.consoles.voice.audio import Audio
from medrobot_llm.consoles.voice.console import VoiceConsole, spoken_readback
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.session import Session


class Scripted:
    """Hears, for the utterance whose source is a key of ``said``, the transcript given (confidence 0.9)."""

    name = "scripted"

    def __init__(self, said: dict[str, str]) -> None:
        self.said = said

    def transcribe(self, audio: Audio) -> Transcript:
        text = self.said[audio.source]
        stop = text.split()[-1:] == ["stop"]
        return Transcript(text=text, confidence=0.9, engine=self.name, stop=stop)


def _audio(source: str, pressed: bool = False) -> Audio:
    return Audio(np.zeros(160, dtype=np.int16), source, pressed)


def _console(domain: str, said: list[str], tmp_path: Path, **kw: Any) -> tuple[list[dict[str, Any]], Session,
                                                                                   MemoryBackend]:
    backend = MemoryBackend(domain, control_period_s=0.001)
    session = Session(domain, RulePlanner(), backend=backend, audit_path=tmp_path / "audit.jsonl")
    recognizer = Scripted({f"u{k}": text for k, text in enumerate(said)})
    console = VoiceConsole(session, recognizer, lambda _: None, **kw)
    records = console.run([_audio(f"u{k}", pressed=kw.get("push_to_talk", False)) for k in range(len(said))])
    return records, session, backend


def _audit(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_speech_without_the_wake_word_is_ignored_and_nothing_is_planned(tmp_path: Path) -> None:
    records, session, backend = _console("ultrasound", ["scan the liver", "yes"], tmp_path)
    with session:
        assert [r["action"] for r in records] == ["ignored", "ignored"], records
        assert backend.sent == [] and "'robot'" in records[0]["message"]
    assert not any(r["kind"] == "plan" for r in _audit(tmp_path))


def test_a_plan_runs_only_after_its_read_back_is_confirmed(tmp_path: Path) -> None:
    records, session, backend = _console("ultrasound", ["robot scan the liver", "yes"], tmp_path, yes=True)
    with session:
        readback = next(r for r in records if r.get("kind") == "readback")
        assert "sweep(direction=caudal, distance_mm=40" in readback["text"] and "liver" in readback["text"]
        command = records[-1]
        assert command["action"] == "command" and command["outcome"]["success"], records
        assert [s.step.skill for s in backend.sent] == ["move_to_window", "make_contact", "sweep"]
        assert command["plan"] == readback["plan"]
    planned = [r for r in _audit(tmp_path) if r["kind"] == "plan"]
    assert len(planned) == 1 and planned[0]["text"] == "scan the liver", "planned once, without the wake word"


@pytest.mark.parametrize("answer", ["no", "robot scan the kidney", "stop"])
def test_anything_but_a_yes_drops_the_read_back_plan_and_audits_it(tmp_path: Path, answer: str) -> None:
    records, session, backend = _console("ultrasound", ["robot scan the liver", answer], tmp_path, yes=True)
    with session:
        assert backend.sent == [], records
        assert records[-1]["action"] == "discarded" and "nothing moved" in records[-1]["message"]
    assert [r["kind"] for r in _audit(tmp_path)].count("plan_discarded") == 1


def test_no_answer_at_all_drops_the_plan(tmp_path: Path) -> None:
    records, session, backend = _console("xray", ["robot AP of the pelvis"], tmp_path)
    with session:
        assert backend.sent == [] and records[-1]["action"] == "discarded"
        assert any(r.get("message") == "no answer was said: plan dropped" for r in records)


def test_an_exposure_needs_its_own_phrase_on_top_of_the_read_back(tmp_path: Path) -> None:
    said = ["robot AP of the pelvis and take a shot", "yes", "yes"]
    records, session, backend = _console("xray", said, tmp_path, yes=True)
    with session:
        assert [s.step.skill for s in backend.sent] == ["move_to_view"], records
        assert records[-1]["outcome"]["exposures"] == 0
    records, session, backend = _console("xray", [*said[:2], "confirm shot"], tmp_path, yes=True)
    with session:
        assert [s.step.skill for s in backend.sent] == ["move_to_view", "take_shot"], records


def test_stop_acts_without_the_wake_word(tmp_path: Path) -> None:
    records, session, _ = _console("xray", ["stop"], tmp_path)
    with session:
        assert records[0]["action"] == "stop" and records[0]["state"] == "ESTOP"


def test_push_to_talk_acts_only_on_pressed_utterances(tmp_path: Path) -> None:
    backend = MemoryBackend("ultrasound", control_period_s=0.001)
    with Session("ultrasound", RulePlanner(), backend=backend) as session:
        rec = Scripted({"a": "scan the liver", "b": "scan the liver", "c": "yes"})
        console = VoiceConsole(session, rec, lambda _: None, push_to_talk=True, yes=True)
        records = console.run([_audio("a"), _audio("b", pressed=True), _audio("c", pressed=True)])
        assert records[0]["action"] == "ignored" and "key" in records[0]["message"]
        assert records[-1]["action"] == "command" and records[-1]["outcome"]["success"], records


def test_a_key_confirms_a_read_back_but_never_an_exposure(tmp_path: Path) -> None:
    backend = MemoryBackend("xray", control_period_s=0.001)
    with Session("xray", RulePlanner(), backend=backend) as session:
        rec = Scripted({"a": "robot AP of the pelvis and take a shot"})
        gate = threading.Event()

        def utterances() -> Iterator[Audio]:
            yield _audio("a")
            gate.wait(10)

        def keys() -> Iterator[str]:
            yield "y"
            yield "y"
            gate.set()

        records = VoiceConsole(session, rec, lambda _: None, yes=True, gated=False).run(utterances(), keys())
        assert [s.step.skill for s in backend.sent] == ["move_to_view"], records
        assert any("only by its phrase" in str(r.get("message")) for r in records)


def test_a_stop_heard_while_a_plan_runs_halts_it(tmp_path: Path) -> None:
    backend = MemoryBackend("ultrasound", control_period_s=0.01, steps_per_skill=400)
    with Session("ultrasound", RulePlanner(), backend=backend) as session:
        rec = Scripted({"a": "robot scan the liver", "b": "yes", "c": "stop"})

        def utterances() -> Iterator[Audio]:
            yield _audio("a")
            yield _audio("b")
            assert backend.wait_sent(1, timeout=10), "the plan never started"
            yield _audio("c")

        records = VoiceConsole(session, rec, lambda _: None, yes=True).run(utterances())
        stop = next(r for r in records if r.get("action") == "stop")
        assert stop["state"] == "ESTOP" and isinstance(stop["latency_s"], float), stop  # the figure: benchmarks/voice_stop_latency.py
        command = records[-1]
        assert not command["outcome"]["success"] and command["outcome"]["state"] == "ESTOP", records
        assert len(backend.sent) < 3, "the stop must end the run before its last step"


def test_a_spoken_read_back_keeps_numbers_and_sides() -> None:
    plan = RulePlanner().plan("ultrasound", "scan the left kidney")
    said = spoken_readback(plan)
    assert "left" in said and "40" in said and "(" not in said and "_" not in said


class Glancing(Scripted):
    """``Scripted`` with a first look: a glance (``Audio.glance``) is heard as ``glanced`` says, None for none, and the
    full decode is never run on one."""

    def __init__(self, said: dict[str, str], glanced: dict[str, str]) -> None:
        super().__init__(said)
        self.glanced = glanced

    def transcribe(self, audio: Audio) -> Transcript:
        assert not audio.glance, "the full decode ran on a glance"
        return super().transcribe(audio)

    def glance(self, audio: Audio) -> Transcript | None:
        text = self.glanced.get(audio.source)
        return Transcript(text=text, confidence=0.9, engine=self.name, stop=True) if text else None


def _glance(source: str) -> Audio:
    return Audio(np.zeros(160, dtype=np.int16), source, provisional=True, glance=True)


def test_a_stop_taken_at_a_glance_latches_and_nothing_else_is_acted_on(tmp_path: Path) -> None:
    with Session("ultrasound", RulePlanner(), backend=MemoryBackend("ultrasound")) as session:
        rec = Glancing({"c": "robot scan the liver"}, {"b": "stop"})
        records = VoiceConsole(session, rec, lambda _: None, gated=False).run([_glance("a"), _glance("b"), _audio("c")])
        assert [(r["source"], r["state"]) for r in records if r.get("action") == "stop"] == [("b", "ESTOP")], records
        assert not [r for r in records if r.get("source") == "a"], "the glance not taken was acted on"


def test_an_engine_without_a_first_look_is_not_given_glances(tmp_path: Path) -> None:
    with Session("xray", RulePlanner(), backend=MemoryBackend("xray")) as session:
        rec = Scripted({"b": "stop"})
        records = VoiceConsole(session, rec, lambda _: None, gated=False).run([_glance("a"), _audio("b")])
        assert [r.get("source") for r in records] == ["b"] and records[0]["action"] == "stop", records
