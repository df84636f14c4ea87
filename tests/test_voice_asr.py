"""Offline recognition (pocketsphinx with the grammar from skills/) on audio that holds no command.

Silence, hiss, white noise and mains hum must never produce an action: no command above the confidence
threshold and no stop. The accuracy on spoken commands is asserted end to end in ``test_voice_accuracy.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.voice]


@pytest.mark.parametrize("domain", ["surgery", "ultrasound", "xray"])
def test_silence_and_noise_produce_no_action(domain: str) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _voice_corpus import noise_clips

    from medrobot_llm.consoles.voice.asr import Audio, PocketSphinxRecognizer
    from medrobot_llm.consoles.voice.console import DEFAULT_THRESHOLD

    rec = PocketSphinxRecognizer(domain)
    for name, clip in noise_clips().items():
        tr = rec.transcribe(Audio(clip, name))
        assert tr.confidence < DEFAULT_THRESHOLD, (name, tr)
        assert not (tr.stop and tr.confidence >= DEFAULT_THRESHOLD / 2), (name, tr)


def test_pure_silence_has_zero_confidence() -> None:
    from medrobot_llm.consoles.voice.asr import Audio, PocketSphinxRecognizer

    tr = PocketSphinxRecognizer("xray").transcribe(Audio(np.zeros(16000, dtype=np.int16)))
    assert tr.confidence == 0.0 and not tr.stop


def _pulses(pitch_hz: float, seconds: float = 1.0) -> np.ndarray:
    """A glottal-like pulse train through a resonance: voiced, with a known pitch."""
    from medrobot_llm.consoles.voice.asr import SAMPLE_RATE

    n = int(seconds * SAMPLE_RATE)
    x = np.zeros(n)
    x[:: int(SAMPLE_RATE / pitch_hz)] = 1.0
    t = np.arange(200) / SAMPLE_RATE
    ring = np.exp(-t * 300) * np.sin(2 * np.pi * 700 * t)
    y = np.convolve(x, ring)[:n]
    return (y / np.abs(y).max() * 8000).astype(np.int16)


def test_a_high_voice_is_scaled_down_and_a_low_one_left_alone() -> None:
    from medrobot_llm.consoles.voice.voicing import median_pitch, speaker_scale, voiced_ratio

    low, high = _pulses(105.0), _pulses(220.0)
    assert abs(median_pitch(low) - 105.0) < 5 and abs(median_pitch(high) - 220.0) < 10
    assert voiced_ratio(low) > 0.8 and voiced_ratio(high) > 0.8
    assert speaker_scale(low) == 1.0
    assert 0.85 <= speaker_scale(high) < 0.9


def test_mains_hum_is_not_voiced() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _voice_corpus import noise_clips

    from medrobot_llm.consoles.voice.voicing import voiced_ratio

    assert voiced_ratio(noise_clips()["hum"]) == 0.0


def test_a_stop_phrase_is_taken_only_from_audio_it_could_have_been_voiced_in() -> None:
    """The stop-only pass's rule: a stop phrase said slowly is voiced at most a drawn-out vowel plus a slow phone per
    phone, so "whoa" cannot be the 1.2 s "locate the needle", while the longest phrase said slowly is still listened
    to (on wideband audio only a drawn-out syllable); the stop is then taken when it fits at least as well as the command grammar's best path (with a tolerance on
    narrowband audio, which fits nothing well), or, with no grammar path, not far worse than free phones."""
    import math

    from medrobot_llm.consoles.voice.grammar import build_grammar
    from medrobot_llm.consoles.voice.stops import STOP_MARGIN, StopLengths, stop_taken

    lengths = StopLengths(build_grammar("xray"))
    assert lengths.fits("whoa", 0.5) and not lengths.fits("whoa", 1.2) and not lengths.fits("stop", 0.0)
    assert lengths.fits("abort all motion", 1.6) and lengths.longest_s == lengths.by_phrase["abort all motion"]
    assert lengths.by_phrase["whoa"] < lengths.by_phrase["stop"] < lengths.by_phrase["stop the robot"]
    # wideband, only as long as one drawn-out syllable: the command grammar hears longer stops there itself ("go
    # home", 0.58 s, fitted "whoa" better than the command grammar's best path)
    assert lengths.listened(1.5, narrow=True) and not lengths.listened(1.5, narrow=False)
    assert lengths.listened(0.45, narrow=False) and not lengths.listened(0.58, narrow=False)
    assert not lengths.listened(lengths.longest_s + 0.01, narrow=True)
    assert stop_taken(-0.1, 9.0, narrow=False) and not stop_taken(0.1, 0.0, narrow=False)
    assert stop_taken(0.3, 9.0, narrow=True) and not stop_taken(1.0, 0.0, narrow=True)
    assert stop_taken(math.inf, STOP_MARGIN, narrow=False) and not stop_taken(math.inf, STOP_MARGIN + 0.1, narrow=True)


def test_the_stop_ending_search_takes_an_anchored_stop_after_nothing_a_stop_or_a_pause_only() -> None:
    """The stop-ending search's rule (``trailing_stop``): its stop is taken when it explains the audio better than the
    command grammar, comes after nothing, a stop or a pause phrase, and the last stop phrase has a consonant that
    vowels cannot fake; "whoa" (W OW) fitted the "home" of "go home" and "send the right arm home"."""
    from medrobot_llm.consoles.voice.grammar import build_grammar
    from medrobot_llm.consoles.voice.stops import anchored_stops, trailing_stop

    anchored = anchored_stops(build_grammar("xray"))
    assert "whoa" not in anchored and {"stop", "stop now", "e stop", "halt", "kill"} <= anchored
    wake = ("robot",)
    assert trailing_stop("stop estop estop", 0.5, wake, anchored) == "estop"
    assert trailing_stop("robot wait stop", 0.0, wake, anchored) == "stop"
    assert trailing_stop("whoa stop now stop stop", 0.8, wake, anchored) in anchored
    assert trailing_stop("wait stop", -0.01, wake, anchored) == ""
    assert trailing_stop("whoa whoa", 0.33, wake, anchored) == ""
    assert trailing_stop("grab the shunt freeze emergency stop", 0.68, wake, anchored) == ""
    assert trailing_stop("go to lateral view of the chest", 0.9, wake, anchored) == ""
    # after a command's words the stop is only handed on, to be decoded alone (``PocketSphinxRecognizer``)
    assert trailing_stop("grab the shunt freeze emergency stop", 0.68, wake, anchored, after_words=True) == "emergency stop"
    assert trailing_stop("tug the right arm whoa", 0.5, wake, anchored, after_words=True) == ""
    assert trailing_stop("go to lateral view of the chest", 0.9, wake, anchored, after_words=True) == ""


def test_the_stops_that_end_a_decode_start_where_their_first_word_does() -> None:
    """``stops_start``: the audio decoded alone for a stop after a command's words starts at the first of the stop
    phrases that end the decoder's words, a phrase of several words ("abort all motion") counted whole."""
    from medrobot_llm.consoles.voice.grammar import build_grammar
    from medrobot_llm.consoles.voice.stops import stops_start

    normalise = build_grammar("xray").normalise
    assert stops_start("go to lateral view of the chest stop".split(), normalise) == 7
    assert stops_start("three d spin abort all motion".split(), normalise) == 3
    assert stops_start("go to lateral view of the chest whoa stop stop".split(), normalise) == 7
    assert stops_start("stop stop".split(), normalise) == 0
    assert stops_start("go to lateral view".split(), normalise) == 4
