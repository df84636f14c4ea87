"""Issue 17's rule for stops, with the engine the CLI uses by default: a stop phrase anywhere in an utterance (alone,
repeated, after "wait", after a command in the same breath or after a pause) is heard as a stop, and the command said
without it is not. espeak-ng en-us at 150 words a minute, padded as a `medrobot voice --wav` file would be (espeak-ng
leaves no pause at ". stop": a lowercase word after a full stop does not end its sentence); and dev voices of
``benchmarks/voice_bench.py`` saying a dev command, a pause and a dev stop phrase."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medrobot_llm.consoles.voice.asr import PocketSphinxRecognizer
from medrobot_llm.consoles.voice.audio import SAMPLE_RATE, Audio, load_wav
from medrobot_llm.language.words import CONTROL_PHRASES

pytestmark = [pytest.mark.voice, pytest.mark.slow]

_DOMAIN = "xray"
_COMMAND = "robot, move to a lateral view of the chest"
#: the first stop phrases of the command set: the plain word, a two-syllable one, a two-word one and a made-up word
_STOPS = CONTROL_PHRASES["stop"][:4]
_FORMS = ("{stop}", "{stop}, {stop}, {stop}", "wait, {stop}")
#: said right after the command in the same breath: taken only when the command grammar hears the stop in its own
#: audio decoded alone; these two it hears as "status" and "go tilted", and the stop-only pass, which does hear them
#: there, also took "freeze" for the end of voice_accuracy.py's "AP of the pelvis"
_AFTER_A_COMMAND_MISSED = frozenset({"stop", "estop"})
_CASES = [pytest.param(stop, form, id=f"{stop}-{form}") for stop in _STOPS for form in _FORMS] + [
    pytest.param(stop, _COMMAND + ". {stop}.", id=f"{stop}-after-a-command", marks=[pytest.mark.xfail(
        strict=True, reason="the command grammar does not hear this stop in its audio alone ('status', 'go tilted')")]
        if stop in _AFTER_A_COMMAND_MISSED else []) for stop in _STOPS]


@pytest.fixture(scope="module")
def recognizer() -> Iterator[PocketSphinxRecognizer]:
    yield PocketSphinxRecognizer(_DOMAIN).load()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice-stop-rule")


def _say(folder: Path, text: str) -> Audio:
    stem = "_".join("".join(c for c in text if c.isalnum() or c == " ").split())
    raw, padded = folder / f"{stem}.raw.wav", folder / f"{stem}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), "--", text], check=True, timeout=60)
    subprocess.run(["sox", "-R", str(raw), "-r", "22050", "-b", "16", "-c", "1", str(padded), "pad", "0.3", "0.8"],
                   check=True, timeout=60)
    return load_wav(padded)


@pytest.mark.parametrize(("stop", "form"), _CASES)
def test_a_stop_phrase_anywhere_is_a_stop(recognizer: PocketSphinxRecognizer, folder: Path, stop: str,
                                          form: str) -> None:
    heard = recognizer.transcribe(_say(folder, form.format(stop=stop)))
    assert heard.stop, heard


def test_the_command_without_the_stop_is_no_stop(recognizer: PocketSphinxRecognizer, folder: Path) -> None:
    heard = recognizer.transcribe(_say(folder, _COMMAND))
    assert not heard.stop and heard.text == "robot go to lateral view of the chest", heard


from tests._voice_bench import Item, held_out, synthesize  # noqa: E402

#: a command of ``benchmarks/voice_bench.py``'s suite that is not held out, said by dev voices (not ``held_out``) at
#: several sample rates, then a pause, then a dev stop phrase: every synthesizer, narrow- and wideband
_DEV_COMMAND = "set the gain to 60 percent"
_AFTER_A_PAUSE = (
    (("espeak-ng", "en+f3"), "abort", 22050),
    (("espeak-ng", "en"), "e stop", 16000),
    (("flite", "rms"), "stop motion", 8000),
    (("flite", "slt"), "stop everything", 11025),
    (("festival", "cmu_us_slt_arctic_hts"), "stop moving", 16000),
)
_PAUSE_S = 0.3
#: the cases still missed, and why (measured)
_MISSED = {("espeak-ng", "en+f3"): "the command grammar explains this 'abort' decoded alone 3.33 per frame worse than "
           "free phones, past ALONE_MARGIN (2.6), which the last words of dev commands heard alone as a stop reach (2.92)"}


def _dev_said(folder: Path, voice: tuple[str, str], sample_rate: int, *texts: str) -> Audio:
    """``texts`` said one after another by ``voice`` with ``_PAUSE_S`` of quiet between them."""
    parts = [load_wav(synthesize(Item("command", _DOMAIN, t, voice, 1.0, sample_rate, "clean"), folder)).samples
             for t in texts]
    quiet = np.zeros(round(_PAUSE_S * SAMPLE_RATE), dtype=np.int16)
    return Audio(np.concatenate([p for part in parts for p in (part, quiet)][:-1]))


def test_the_cases_are_dev_data() -> None:
    """The rule was chosen on dev data only, so the cases that check it must not be held out either."""
    assert not held_out(_DEV_COMMAND)
    for voice, stop, _ in _AFTER_A_PAUSE:
        assert not held_out(f"{voice[0]}:{voice[1]}") and not held_out(stop) and stop in CONTROL_PHRASES["stop"]


@pytest.fixture(scope="module")
def ultrasound() -> Iterator[PocketSphinxRecognizer]:
    yield PocketSphinxRecognizer("ultrasound").load()


@pytest.mark.parametrize(("voice", "stop", "sample_rate"), [
    pytest.param(*case, marks=pytest.mark.xfail(strict=True, reason=_MISSED[case[0]])) if case[0] in _MISSED else case
    for case in _AFTER_A_PAUSE], ids=lambda v: str(v))
def test_a_stop_after_a_command_and_a_pause_is_a_stop(ultrasound: PocketSphinxRecognizer, folder: Path,
                                                      voice: tuple[str, str], stop: str, sample_rate: int) -> None:
    heard = ultrasound.transcribe(_dev_said(folder, voice, sample_rate, _DEV_COMMAND, stop))
    assert heard.stop, heard


@pytest.mark.parametrize(("voice", "sample_rate"), [(("espeak-ng", "en"), 16000), (("flite", "slt"), 11025),
                                                    (("festival", "cmu_us_slt_arctic_hts"), 16000)], ids=lambda v: str(v))
def test_the_dev_command_alone_is_no_stop(ultrasound: PocketSphinxRecognizer, folder: Path, voice: tuple[str, str],
                                          sample_rate: int) -> None:
    heard = ultrasound.transcribe(_dev_said(folder, voice, sample_rate, _DEV_COMMAND))
    assert not heard.stop, heard


#: dev stop phrases said by dev voices right after a dev command of ``benchmarks/voice_bench.py`` (its domain, voice,
#: speed factor and sample rate), in the same breath and after a pause: the command grammar heard each stop in its own
#: audio but explained it 2.7-3.8 per frame worse than free phones, past ``ALONE_MARGIN``, so it was missed; the first
#: look a separate short utterance gets now takes it there
_FIRST_LOOK_AFTER_WORDS = (
    ("ultrasound", "set the gain to 150 percent", ("espeak-ng", "en-us"), 0.8, 22050, "emergency"),
    ("surgery", "release the needle with psm1", ("espeak-ng", "en+f2"), 1.0, 11025, "e stop"),
    ("ultrasound", "image the right kidney pressing with 5 newtons and save an image", ("espeak-ng", "en+m3"), 1.0,
     11025, "stop everything"),
)
#: commands of ``benchmarks/voice_accuracy.py`` (its voice and speed) whose last words the stop-ending search heard
#: as a stop and whose audio there its stop-only pass heard as one too: the first look must not take them
_COMMAND_ENDS = (("xray", "AP of the pelvis", "en+f3", 130), ("xray", "collimate to the pelvis", "en+m3", 130))


@pytest.fixture(scope="module")
def recognizers() -> dict[str, PocketSphinxRecognizer]:
    return {}


def _recognizer(recognizers: dict[str, PocketSphinxRecognizer], domain: str) -> PocketSphinxRecognizer:
    return recognizers.get(domain) or recognizers.setdefault(domain, PocketSphinxRecognizer(domain).load())


def _bench_said(folder: Path, domain: str, voice: tuple[str, str], rate: float, sample_rate: int, text: str,
                pause: bool) -> Audio:
    """``text`` said by ``voice`` as ``benchmarks/voice_bench.py`` says it; with ``pause`` its two sentences (split
    at ". ") are said apart with ``_PAUSE_S`` of quiet between them, else in one breath."""
    parts = text.split(". ") if pause else [text]
    said = [load_wav(synthesize(Item("command", domain, t, voice, rate, sample_rate, "clean"), folder)).samples
            for t in parts]
    quiet = np.zeros(round(_PAUSE_S * SAMPLE_RATE), dtype=np.int16)
    return Audio(np.concatenate([p for part in said for p in (part, quiet)][:-1]))


def test_the_first_look_cases_are_dev_data() -> None:
    for domain, command, voice, _, _, stop in _FIRST_LOOK_AFTER_WORDS:
        assert not held_out(command) and not held_out(f"{voice[0]}:{voice[1]}") and not held_out(stop)
        assert stop in CONTROL_PHRASES["stop"] and domain in ("surgery", "ultrasound", "xray")


#: en-us's "emergency" in the same breath is still missed: the first look's stop explains that audio 1.50 per frame
#: worse than free phones, on its limit (``FIRST_LOOK_PHONES``), and the command grammar hears it 3.82 worse
_STILL_MISSED = {("set the gain to 150 percent", False): "the first look's margin against free phones is on its "
                 "limit (1.50) and the command grammar's is past ALONE_MARGIN (3.82)"}


@pytest.mark.parametrize(("domain", "command", "voice", "rate", "sample_rate", "stop", "pause"), [
    pytest.param(*case, pause, marks=[pytest.mark.xfail(strict=True, reason=_STILL_MISSED[(case[1], pause)])]
                 if (case[1], pause) in _STILL_MISSED else [], id=f"{case[2][1]}-{case[5]}-{'pause' if pause else 'breath'}")
    for case in _FIRST_LOOK_AFTER_WORDS for pause in (False, True)])
def test_a_stop_the_first_look_is_sure_of_after_a_command_is_a_stop(
        recognizers: dict[str, PocketSphinxRecognizer], folder: Path, domain: str, command: str, voice: tuple[str, str],
        rate: float, sample_rate: int, stop: str, pause: bool) -> None:
    audio = _bench_said(folder, domain, voice, rate, sample_rate, f"{command}. {stop}", pause)
    heard = _recognizer(recognizers, domain).transcribe(audio)
    assert heard.stop, heard


@pytest.mark.parametrize(("domain", "command", "voice", "rate", "sample_rate", "stop"), _FIRST_LOOK_AFTER_WORDS,
                         ids=lambda v: str(v))
def test_those_commands_alone_are_no_stop(recognizers: dict[str, PocketSphinxRecognizer], folder: Path, domain: str,
                                          command: str, voice: tuple[str, str], rate: float, sample_rate: int,
                                          stop: str) -> None:
    heard = _recognizer(recognizers, domain).transcribe(_bench_said(folder, domain, voice, rate, sample_rate, command,
                                                                    False))
    assert not heard.stop, heard


@pytest.mark.parametrize(("domain", "command", "voice", "speed"), _COMMAND_ENDS, ids=lambda v: str(v))
def test_a_command_whose_end_fits_a_stop_is_no_stop(recognizers: dict[str, PocketSphinxRecognizer], folder: Path,
                                                    domain: str, command: str, voice: str, speed: int) -> None:
    wav = folder / f"{command.replace(' ', '_')}_{voice}_{speed}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), command], check=True, timeout=60)
    heard = _recognizer(recognizers, domain).transcribe(load_wav(wav))
    assert not heard.stop, heard
