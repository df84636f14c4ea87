"""The stop phrases and the stop-only pass's grammars and limits: what the offline recogniser listens for when
it listens for nothing but a stop."""

from __future__ import annotations

import numpy as np

from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import CONTROL_PHRASES
from medrobot_llm.consoles.voice.audio import SAMPLE_RATE
from medrobot_llm.consoles.voice.grammar import VoiceGrammar
from medrobot_llm.consoles.voice.spoken import spoken_phrases

__all__ = ["STOP_LISTEN_MAX_S", "STOP_MARGIN", "STOP_PASS_MAX_S", "kws_stops", "kws_threshold", "narrowband",
           "stop_jsgf", "stop_phrase"]

_STOP_PHRASES: tuple[tuple[str, ...], ...] = tuple(
    sorted({tuple(tokenize(p)) for p in CONTROL_PHRASES["stop"]}, key=len, reverse=True))


def stop_phrase(text: str) -> str | None:
    """The stop phrase said anywhere in ``text``, if any. A stop inside a longer sentence still stops (as
    the planner does), since a person who says "stop" mid-command means it."""
    words = tokenize(text)
    for phrase in _STOP_PHRASES:
        k = len(phrase)
        for i in range(len(words) - k + 1):
            if tuple(words[i:i + k]) == phrase:
                return " ".join(phrase)
    return None


#: the share of the power above ``_NARROW_HZ`` (just above 11.025 kHz's band) below which audio is narrowband:
#: espeak-ng and festival speech at 16 and 22.05 kHz had 2e-3 to 1e-2 of its power there, the same at 8 and 11.025
#: kHz (clean, with noise or reverb) 1e-9 to 1e-6, and flite's voices, which speak at 8 kHz, 1e-8 at any rate
_NARROW_HZ = 5800.0
_NARROW_SHARE = 1e-4


def narrowband(samples: np.ndarray) -> bool:
    """Whether the audio has (next to) no power above 5.8 kHz: recorded at 11.025 kHz or less, so its sibilants
    are gone and the command grammar hears a "stop" as its nearest command ("tilt eight")."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < 512:
        return False
    power = np.abs(np.fft.rfft(x - x.mean())) ** 2
    high = power[int(len(power) * _NARROW_HZ / (SAMPLE_RATE / 2)):].sum()
    return bool(high < _NARROW_SHARE * max(power.sum(), 1e-9))


#: the stop-only pass (``_stop_pass``) runs on every narrowband utterance (``narrowband``) voiced for at most this
#: long. On wideband speech it also stopped on 5 of the 63 espeak-ng commands of benchmarks/voice_accuracy.py
#: ("make contact", "scan the liver" heard as "scan the lumen"), 92.1 % right plans fell to 84.1 %, so it is kept
#: to the audio that needs it. The stops the command
#: grammar misses are the short ones, which have near neighbours among the commands ("stop" as "tilt eight" or "go
#: to", "freeze" as "resume", "halt" as "tilt"): voiced for 0.1-0.5 s, and never over 0.85 s on the dev voices at
#: 8 and 11.025 kHz, while longer stop phrases are distinctive enough for the command grammar. Over longer audio a
#: stop phrase stretched across it fits about as well as the command said ("collimate to the pelvis", 1.24 s,
#: fitted "abort everything" better than itself), so the pass would stop on commands.
#: Its stop is taken when its path scores at least as well as the command grammar's best path (that grammar holds
#: the same stop phrases, but its search prefers a command that fits a little better, and narrowband speech fits
#: nothing well), or, when the command grammar found no path, when it is at most ``STOP_MARGIN`` per frame worse
#: than free phones. Chosen on dev voices (not held out by benchmarks/voice_bench.py) at 8 and 11.025 kHz: the
#: missed stops had the stop path 0.3-0.7 per frame above the chosen command, "yes" and "wait" 0.8-1.4 below it
STOP_PASS_MAX_S = 1.0
#: how long an utterance pocketsphinx decodes for a stop beside another engine (``stop_only``): the longest stop
#: phrase said slowly, "abort all motion" voiced for 1.45 s by espeak-ng at 130 words a minute. Whisper tiny.en
#: wrote it as "a board all motion" and "build bullet hole motion" at 16 kHz, which the command grammar hears
STOP_LISTEN_MAX_S = 2.0
STOP_MARGIN = 3.0


def stop_jsgf(wake: tuple[str, ...]) -> str:
    """The stop-only pass's grammar: the command set's stop phrases, the wake word allowed before them."""
    stops = " | ".join(spoken_phrases(list(CONTROL_PHRASES["stop"])))
    return f"#JSGF V1.0;\ngrammar stops;\npublic <stop> = [ {' '.join(wake)} ] ( {stops} );\n"


def kws_stops(grammar: VoiceGrammar) -> list[str]:
    """The stop phrases the keyword pass listens for: those of two or more syllables' worth of phones, since
    a one-syllable keyword fires on any syllable of noise."""
    out = []
    for phrase in CONTROL_PHRASES["stop"]:
        words = phrase.split()
        if all(w in grammar.dictionary for w in words) and sum(len(grammar.dictionary[w][0].split())
                                                               for w in words) >= 4:
            out.append(phrase)
    return out


def kws_threshold(phrase: str) -> int:
    """A longer phrase may be spotted at a lower score (pocketsphinx keyword thresholds are per phrase)."""
    return 10 + 5 * len(phrase.split())
