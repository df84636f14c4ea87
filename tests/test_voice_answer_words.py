"""Issue 17: the answers a question asks for must be heard as themselves and never as a stop, by the engine the CLI
uses by default, decoded as the console decodes an utterance while it waits for an answer, in more than one
synthetic voice ("confirm", which the supervisor's text asks for, was decoded as "undo" and latched the e-stop:
test_voice_attacks.py; flite's "yes" as "yeah", with the stop-only pass finding "whoa" explained it as well)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from medrobot_llm.consoles.voice.asr import PocketSphinxRecognizer
from medrobot_llm.consoles.voice.audio import Audio, load_wav
from medrobot_llm.consoles.voice.console import ASKED_ANSWERS, Answering, is_plain_yes

pytestmark = [pytest.mark.voice, pytest.mark.slow]


@pytest.fixture(scope="module")
def recognizer() -> Iterator[PocketSphinxRecognizer]:
    yield PocketSphinxRecognizer("ultrasound").load()


def _say(folder: Path, synth: str, text: str) -> Audio:
    raw, padded = folder / f"{synth}.raw.wav", folder / f"{synth}.wav"
    if synth == "espeak-ng":
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), "--", text], check=True, timeout=60)
    else:
        subprocess.run(["flite", "-t", text, "-o", str(raw)], check=True, timeout=60)
    subprocess.run(["sox", "-R", str(raw), "-r", "22050", "-b", "16", "-c", "1", str(padded), "pad", "0.3", "0.8"],
                   check=True, timeout=60)
    return load_wav(padded)


@pytest.mark.parametrize("answer", ASKED_ANSWERS)
@pytest.mark.parametrize("synth", ["espeak-ng", "flite"])
def test_the_answer_a_question_asks_for_is_heard_as_itself_and_not_as_a_stop(
        recognizer: PocketSphinxRecognizer, tmp_path: Path, synth: str, answer: str) -> None:
    """Heard as the word asked for ("confirm" may come out as "confirmed", the same answer), a yes, never a stop."""
    assert isinstance(recognizer, Answering)
    heard = recognizer.answer(_say(tmp_path, synth, answer))
    assert heard.text.startswith(answer) and is_plain_yes(heard.text), heard
    assert not heard.stop and not heard.not_command, heard
