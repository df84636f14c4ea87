"""Offline recognition (pocketsphinx with the grammar from skills/) on audio that holds no command.

Silence, hiss, white noise and mains hum must never produce an action: no command above the confidence
threshold and no stop. The accuracy on spoken commands is measured by ``benchmarks/voice_accuracy.py``
(espeak-ng speech), not asserted here: it is below the issue's 90 % target today, and the figure is
reported with the command that produced it.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.voice]


@pytest.mark.parametrize("domain", ["surgery", "ultrasound", "xray"])
def test_silence_and_noise_produce_no_action(domain: str) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _voice_corpus import noise_clips

    from medrobot_llm._asr import Audio, PocketSphinxRecognizer
    from medrobot_llm._voice import DEFAULT_THRESHOLD

    rec = PocketSphinxRecognizer(domain)
    for name, clip in noise_clips().items():
        tr = rec.transcribe(Audio(clip, name))
        assert tr.confidence < DEFAULT_THRESHOLD, (name, tr)
        assert not (tr.stop and tr.confidence >= DEFAULT_THRESHOLD / 2), (name, tr)


def test_pure_silence_has_zero_confidence() -> None:
    import numpy as np

    from medrobot_llm._asr import Audio, PocketSphinxRecognizer

    tr = PocketSphinxRecognizer("xray").transcribe(Audio(np.zeros(16000, dtype=np.int16)))
    assert tr.confidence == 0.0 and not tr.stop
