"""Issue 17, attacked blind from outside: speech a careless user, a noisy room or a second voice could give the
voice console, synthesized here as in the attack (espeak-ng, padded and resampled by sox as `medrobot voice
--wav` files would be) and decoded by the real pocketsphinx engine the CLI uses by default. Where a test is about
an answer, the command before it is scripted as pocketsphinx heard it in the attack, so only the answer is decoded.

Each test states what the README and `medrobot voice --help` promise and is marked xfail (strict) while the
console does otherwise, so the file passes today and turns red the day the behaviour is fixed.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.consoles.render import render_plan
from medrobot_llm.consoles.voice.asr import Recognizer, Transcript
from medrobot_llm.consoles.voice.audio import Audio, load_wav
from medrobot_llm.consoles.voice.console import Answering, VoiceConsole, spoken_readback
from medrobot_llm.consoles.voice.engines import make_recognizer
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.session import Session

pytestmark = [pytest.mark.voice, pytest.mark.slow]

_DOMAIN = "xray"
#: a one-step motion plan with no question of its own; said by espeak-ng, pocketsphinx heard it as _HEARD every
#: time in the attack, so the tests that are about the answer script it and decode only the answer
_COMMAND = "robot, move to a lateral view of the chest"
_HEARD = "robot go to lateral view of the chest"


@pytest.fixture(scope="module")
def recognizer() -> Iterator[Recognizer]:
    """Made once: loading the decoder and its grammar takes seconds."""
    yield make_recognizer("pocketsphinx", _DOMAIN, RulePlanner())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice-attacks")


def _silent(source: str) -> Audio:
    """An utterance whose transcript a _Partly recogniser scripts."""
    return Audio(np.zeros(160, dtype=np.int16), source)


def _say(folder: Path, text: str) -> Audio:
    """espeak-ng en-us at 150 wpm, with 0.3 s of quiet before and 0.8 s after, as one file of a --wav stream."""
    stem = "_".join("".join(c for c in text if c.isalnum() or c == " ").split())
    raw, padded = folder / f"{stem}.raw.wav", folder / f"{stem}.wav"
    if not padded.exists():
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), "--", text], check=True, timeout=60)
        subprocess.run(["sox", "-R", str(raw), "-r", "22050", "-b", "16", "-c", "1", str(padded), "pad", "0.3", "0.8"],
                       check=True, timeout=60)
    return load_wav(padded)


def _console(recognizer: Recognizer, folder: Path, tmp_path: Path,
             said: list[str | Audio]) -> tuple[list[dict[str, Any]], str, MemoryBackend]:
    """The records, the supervisor's state afterwards and what reached the robot, for ``said`` in order (text is
    spoken by espeak-ng, an Audio goes as it is)."""
    backend = MemoryBackend(_DOMAIN, control_period_s=0.001)
    session = Session(_DOMAIN, RulePlanner(), backend=backend, audit_path=tmp_path / "audit.jsonl")
    audio = [_say(folder, item) if isinstance(item, str) else item for item in said]
    records = VoiceConsole(session, recognizer, lambda _: None).run(audio)
    with session:
        state = session.supervisor.status()["state"]
    return records, state, backend


class _Partly:
    """The real engine for the utterance under attack, scripted transcripts (as heard in the attack) for the ones
    that only set the scene, so the test decodes one word instead of a long command."""

    name = "pocketsphinx"

    def __init__(self, real: Recognizer, said: dict[str, str]) -> None:
        self.real, self.said = real, said

    def transcribe(self, audio: Audio) -> Transcript:
        if audio.source in self.said:
            return Transcript(text=self.said[audio.source], confidence=1.0, engine=self.name, stop=False)
        return self.real.transcribe(audio)


@pytest.mark.parametrize("answer", ["yes, no", "yes. wait, no."])
def test_a_yes_taken_back_in_the_same_breath_moves_nothing(recognizer: Recognizer, folder: Path, tmp_path: Path,
                                                           answer: str) -> None:
    """README: a plan runs only when the next answer is "yes"; anything else drops it. The answer grammar holds
    "yes", "no", "not yet" and the like, so it forces "yes, no" onto its best single answer, "yes" at 1.0
    (flite's slt voice too, by the CLI); Whisper writes "yes no" and drops the plan."""
    command = _Partly(recognizer, {_COMMAND: _HEARD})
    records, _, backend = _console(command, folder, tmp_path, [_silent(_COMMAND), answer])
    readback = [r for r in records if r.get("kind") == "readback"]
    assert readback and "move_to_view(anatomy=chest, view=lateral)" in readback[0]["text"], records
    answered = next(r for r in records if r.get("kind") == "answer")
    assert answered["action"] != "confirm", answered
    assert backend.sent == [], backend.sent


_STOP_AFTER_A_COMMAND = pytest.param(
    f"{_COMMAND}. stop.", id="after-a-command",
    marks=pytest.mark.xfail(strict=True, reason="the command grammar hears '... of the chest L5'; the stop after a "
                            "command's words is decoded alone, but taken only when the command grammar hears it there "
                            "(it hears 'status'): the stop-only pass, which hears 'stop', also took 'freeze' for the end "
                            "of voice_accuracy.py's 'AP of the pelvis'"))


@pytest.mark.parametrize("said", ["stop stop stop", "wait, stop", _STOP_AFTER_A_COMMAND])
def test_a_stop_said_twice_or_after_a_word_latches_the_estop(recognizer: Recognizer, folder: Path, tmp_path: Path,
                                                              said: str) -> None:
    """README: a stop phrase latches the e-stop at once, addressed or not. "stop stop stop" is what people say
    when something goes wrong; "stop, stop, the patient is moving", "please stop now", "stop the robot" and
    "emergency stop, emergency stop" all latch (tried through the CLI), and so must these, which the command grammar
    hears as "tilt tilt a tad", "where you stopped" and "... of the chest L5": a stop said right after a command in
    the same breath too, as ``stop_phrase`` takes a stop anywhere in a transcript (that one does not yet)."""
    records, state, _ = _console(recognizer, folder, tmp_path, [said])
    assert records[0]["action"] == "stop" and state == "ESTOP", records


def test_talk_about_the_robot_is_not_addressed_to_it(recognizer: Recognizer, folder: Path, tmp_path: Path) -> None:
    """README: an utterance is acted on only when it opens with the wake word; anything else is "ignored". Here it
    was planned (and refused only because "destroy" is no skill), so the wake word, the first of the guards
    against talk becoming a plan, does not hold for talk that merely mentions the robot."""
    records, _, backend = _console(recognizer, folder, tmp_path, ["the robot is slow today"])
    assert records[0]["action"] == "ignored", records
    assert backend.sent == [], backend.sent


@pytest.mark.parametrize(("said", "opposite", "direction"), [
    ("move right 50 mm", "move left 50 mm", "right"),
    ("move down 30 mm", "move up 30 mm", "down"),
])
def test_a_read_back_names_the_direction_that_will_run(said: str, opposite: str, direction: str) -> None:
    """Issue 17: a plan from speech is read back "with its numbers, sides and directions" so that left heard as
    right is caught before anything moves. The printed and the spoken read-backs of a move and of its opposite
    differ only by a minus sign, so an operator who hears "left right ... 50" confirms either; the read-back
    should say the direction itself more often for the move that goes that way."""
    plans = RulePlanner().plan(_DOMAIN, said), RulePlanner().plan(_DOMAIN, opposite)
    assert all(plan.steps for plan in plans), plans
    for read in (render_plan, spoken_readback):
        counts = [Counter(re.findall(r"[a-z]+", read(plan).lower())) for plan in plans]
        assert counts[0][direction] > counts[1][direction], [read(plan) for plan in plans]


class _PartlyAnswering(_Partly):
    """_Partly that also decodes an utterance as an answer, as the real engine does while the console waits for one."""

    def answer(self, audio: Audio) -> Transcript:
        if audio.source in self.said:
            return self.transcribe(audio)
        assert isinstance(self.real, Answering)
        return self.real.answer(audio)


def test_confirm_said_to_a_contact_question_confirms_it(folder: Path, tmp_path: Path) -> None:
    """The supervisor's question for a contact step reads "Confirm contact step 2 of 3: make_contact(force_n=8) -
    say 'confirm'" (in the --json answer record); help and README say "yes" confirms it, and "yes" does. Saying
    the word the question asks for, or the obvious answer to "Confirm ...?", should not be an emergency stop:
    with espeak-ng en-us it was, every time (5 of 5 in the attack, in both domains tried), until an utterance the
    console takes as an answer was decoded as one (answers and stops only, cut to its loud part)."""
    domain = "ultrasound"
    backend = MemoryBackend(domain, control_period_s=0.001)
    session = Session(domain, RulePlanner(), backend=backend, audit_path=tmp_path / "audit.jsonl")
    recognizer = _PartlyAnswering(make_recognizer("pocketsphinx", domain, RulePlanner()),
                                  {"command": "robot scan the left kidney", "yes": "yes"})
    confirm = _say(folder, "confirm")

    def said() -> Iterator[Audio]:
        # said once the question is asked, as a person answers it: a recording queued earlier is decoded ahead as a
        # command while the plan's first step runs, where the stop passes can take "confirm" for a stop (a
        # fresh-clone CI run did; noted in the README as a --wav stream's limit)
        yield _silent("command")
        yield _silent("yes")
        deadline = time.monotonic() + 60
        while session.supervisor.status()["state"] != "AWAITING_CONFIRMATION" and time.monotonic() < deadline:
            time.sleep(0.01)
        yield confirm

    records = VoiceConsole(session, recognizer, lambda _: None).run(said())
    with session:
        state = session.supervisor.status()["state"]
    assert state != "ESTOP" and all(r.get("action") != "stop" for r in records), records
    contact = [r for r in records if r.get("kind") == "answer" and "text" in (r.get("question") or {})]
    assert contact and contact[0]["action"] == "confirm", records
