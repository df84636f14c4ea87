"""The stop phrases and the stop-only pass's grammars and limits: what the offline recogniser listens for when
it listens for nothing but a stop."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import CONTROL_PHRASES
from medrobot_llm.consoles.voice.audio import SAMPLE_RATE
from medrobot_llm.consoles.voice.grammar import VoiceGrammar
from medrobot_llm.consoles.voice.spoken import spoken_phrases

__all__ = ["AFTER_WORDS_GAIN", "ALONE_MARGIN", "FIRST_LOOK_PHONES", "FIRST_LOOK_WORDS", "STOP_MARGIN", "StopLengths",
           "anchored_stops", "first_look_taken", "kws_stops", "kws_threshold", "narrowband", "stop_jsgf", "stop_phrase",
           "stop_taken", "stops_start", "trailing_stop"]

_STOP_PHRASES: tuple[tuple[str, ...], ...] = tuple(
    sorted({tuple(tokenize(p)) for p in CONTROL_PHRASES["stop"]}, key=lambda p: (-len(p), p)))
_PAUSE_PHRASES = frozenset(tuple(tokenize(p)) for p in CONTROL_PHRASES["pause"])


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
    are gone and the command grammar hears a "stop" as its nearest command ("tilt eight"), which fits it about as
    badly as the stop does."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < 512:
        return False
    power = np.abs(np.fft.rfft(x - x.mean())) ** 2
    high = power[int(len(power) * _NARROW_HZ / (SAMPLE_RATE / 2)):].sum()
    return bool(high < _NARROW_SHARE * max(power.sum(), 1e-9))


#: how long a stop phrase may be voiced and still be one: ``_DRAWN_OUT_S`` plus ``_SLOW_PHONE_S`` a phone of it (in the
#: grammar's dictionary). espeak-ng at 130 words a minute voices "abort all motion" (12 phones) for 1.45 s, 0.12 s a
#: phone; a one-syllable stop is drawn out further ("whoa", 2 phones, 0.61 s with a slow flite voice in reverb). On
#: the dev voices of benchmarks/voice_bench.py (not ``held_out``) no stop phrase the stop-only pass heard was voiced
#: longer than this for that phrase, while commands the pass heard as a stop mostly were ("locate the needle", 1.21
#: s, as "estop", which takes at most 1.0 s). Over longer audio any stop phrase stretched across it fits about as
#: well as the command said ("pick up the shunt with psm1", 2.13 s, fitted "stop motion" better than the command
#: grammar's best path), so the pass is not run on an utterance longer than the longest stop phrase said slowly.
#: On wideband audio it is run only on utterances no longer than one drawn-out syllable (``_DRAWN_OUT_S`` plus one
#: ``_SLOW_PHONE_S``, 0.52 s): there the command grammar hears the longer stop phrases itself (sibilants intact; every
#: stop it missed, dev and held-out, was a word of one or two syllables voiced for at most 0.42 s: "stop" as "stow"
#: or "standby", "whoa" as "one", "estop" as "cancel that"), while the pass heard 10 of the 63 commands of
#: benchmarks/voice_accuracy.py (22.05 kHz) as stops, all voiced for 0.58-1.51 s ("go home" as "whoa", "scan the
#: liver" as "stop the robot", "AP of the chest" as "emergency")
_SLOW_PHONE_S = 0.12
_DRAWN_OUT_S = 0.4
#: how much worse per frame than the command grammar's best path (``stop_taken``) the stop-only pass's stop may fit
#: and still be taken, on wideband and on narrowband audio. The command grammar holds the same stop phrases, but its
#: search prefers a command that fits a little better, so the stop is taken when it fits at least as well; narrowband
#: speech (no sibilants) fits nothing well, and a narrowband stop came within 0.45 per frame of a command ("cease" as
#: "feed" at 11.025 kHz), while wideband commands the pass heard as a stop lay up to 0.4 below it ("scan the
#: bladder" as "stop the robot": 0.14, "cut the vessel" as "stop motion": 0.39). Chosen on dev voices only
_WIDEBAND_TOLERANCE = 0.0
_NARROWBAND_TOLERANCE = 0.5
#: with no path through the command grammar, the stop stands alone against free phones: taken when it is at most this
#: much worse per frame than them
STOP_MARGIN = 3.0


class StopLengths:
    """How long each stop phrase may be voiced (``_SLOW_PHONE_S``), from the grammar's pronunciations."""

    def __init__(self, grammar: VoiceGrammar) -> None:
        self.by_phrase = {" ".join(phrase): _DRAWN_OUT_S + _SLOW_PHONE_S * sum(
            len(grammar.dictionary[w][0].split()) for w in phrase if w in grammar.dictionary) for phrase in _STOP_PHRASES}
        #: the longest utterance the stop-only pass runs on, and the longest on wideband audio
        self.longest_s = max(self.by_phrase.values())
        self.wideband_s = _DRAWN_OUT_S + _SLOW_PHONE_S

    def listened(self, span_s: float, narrow: bool) -> bool:
        """Whether the stop-only pass runs on an utterance voiced for ``span_s`` seconds."""
        return 0.0 < span_s <= (self.longest_s if narrow else self.wideband_s)

    def fits(self, phrase: str, span_s: float) -> bool:
        """Whether ``phrase`` could have been voiced for ``span_s`` seconds."""
        return 0.0 < span_s <= self.by_phrase.get(phrase, self.longest_s)


def stop_taken(vs_grammar: float, vs_phones: float, narrow: bool) -> bool:
    """Whether the stop-only pass's stop, voiced for a length that fits it, is taken: by its margin per frame
    against the command grammar's best path (``vs_grammar``, infinite when that grammar found no path) or, without
    one, against free phones (``vs_phones``)."""
    if not math.isfinite(vs_grammar):
        return vs_phones <= STOP_MARGIN
    return vs_grammar <= (_NARROWBAND_TOLERANCE if narrow else _WIDEBAND_TOLERANCE)


#: the first look for a stop (``first_look``), before the command grammar's decode: how much worse per frame than free
#: phones the stop phrases' grammar may explain the utterance's loud part, and how much worse or better than a loop of
#: the grammar's words (any word, any order: a command's own words fit it far better than a stop does; it scores
#: with the words' language weight, so a stop said fits the stop grammar better than the loop, hence negative), for
#: the stop to be taken at once. Both are required, on an anchored stop phrase (``anchored_stops``) that could have
#: been voiced that long (``StopLengths``). Chosen on dev data only: the stops and the dev commands and talk of
#: benchmarks/voice_bench.py, the dev answers and stops of benchmarks/voice_answers.py, the commands, midway commands
#: and stops of benchmarks/voice_accuracy.py, and its noise clips (464 stops, 316 utterances that say none, each no
#: longer than the longest stop said slowly). Under both, 180 of the stops and none of the others; no other also
#: with both limits 0.25 looser (the nearest: "acquire a 3d spin" as "abort everything", 1.98 and -0.93; "you may
#: proceed" as "emergency", 1.77 and -0.82). Free phones alone took "yup" as "kill" at 1.30, so 1.0 would be its
#: limit without the word loop, and took only 109 of the stops
FIRST_LOOK_PHONES = 1.5
FIRST_LOOK_WORDS = -1.0


def first_look_taken(vs_phones: float, vs_words: float) -> bool:
    """Whether the first look's stop is taken: ``vs_phones`` and ``vs_words`` are how much better per frame free
    phones and the word loop explain the audio than the stop phrases' grammar does."""
    return vs_phones <= FIRST_LOOK_PHONES and vs_words <= FIRST_LOOK_WORDS


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


#: how much better per frame than the command grammar's best path the grammar that ends in a stop
#: (``VoiceGrammar.stopped_jsgf``) must explain an utterance for its stop to be taken. Chosen on dev data only (see
#: ``trailing_stop``)
_TRAILING_GAIN = 0.0
#: how much better per frame free phones may explain the audio after a command's words, where the stop-ending search
#: put a stop, than the command grammar does, for a stop heard in it alone to be taken (``PocketSphinxRecognizer``). Chosen
#: on dev data only: stops said after a dev command by dev voices (espeak-ng en-us in the same breath, flite, festival
#: and espeak-ng after a pause) had 0.75-2.27 (one 3.33: espeak-ng en+f3's "abort"), the last words of dev commands of
#: benchmarks/voice_bench.py that were heard alone as a stop 2.92-3.61. On a wider dev sample (dev stop phrases after
#: dev commands, rotated dev voices and sample rates) stops the command grammar heard there alone reached 2.7-3.8; the
#: first look, run on that audio first (``PocketSphinxRecognizer._stop_said_alone``), takes most of those
ALONE_MARGIN = 2.6
#: how much better per frame than the command grammar the stop-ending search must explain the audio for a stop it
#: heard after a command's words to be decoded alone at all. Dev: stops said after a command in the same breath by
#: espeak-ng gained 0.29-1.08, the dev bench commands whose last words were heard alone as a stop 0.05-0.30, all but
#: one ("... capture an image", 0.14, within ``ALONE_MARGIN``) caught by that margin too
AFTER_WORDS_GAIN = 0.2
#: the consonants a stop phrase must have, in every pronunciation, for the stop-ending search to end on it: stops,
#: fricatives and affricates (CMUdict's phone classes). Vowels, glides and "HH" carry no spectral landmark, so a
#: phrase of only those ("whoa": W OW) fits the last syllable of any command ending in a rounded vowel
_ANCHORS = frozenset("B D G K P T CH JH DH F S SH TH V Z ZH".split())


def anchored_stops(grammar: VoiceGrammar) -> frozenset[str]:
    """The stop phrases the stop-ending search may end on: one of their words has an anchoring consonant
    (``_ANCHORS``) in every pronunciation the grammar's dictionary gives it ("stop now" by "stop")."""
    return frozenset(" ".join(phrase) for phrase in _STOP_PHRASES
                     if any(grammar.dictionary.get(w) and all(_ANCHORS & set(p.split()) for p in grammar.dictionary[w])
                            for w in phrase))


def _peel_stops(words: list[str]) -> tuple[list[str], list[str]]:
    """``words`` without the stop phrases at their end, and those stop phrases."""
    tail: list[str] = []
    while words:
        for phrase in _STOP_PHRASES:
            if len(words) >= len(phrase) and tuple(words[-len(phrase):]) == phrase:
                tail, words = [" ".join(phrase), *tail], words[:-len(phrase)]
                break
        else:
            break
    return words, tail


def trailing_stop(stopped: str, gain: float, wake: tuple[str, ...], anchored: frozenset[str], *,
                  after_words: bool = False) -> str:
    """The stop phrase to take from the stop-ending grammar's transcript ``stopped``, "" for none.

    ``gain`` is how much better per frame the stop-ending grammar explains the audio than the command grammar. The
    stop is taken only when what comes before it is nothing, another stop or a pause phrase ("wait"), and when the
    last stop phrase is ``anchored`` (espeak-ng's "estop, estop, estop" came out as "whoa stop now stop stop").
    That grammar also lets a command come before the stop, so that a command is not forced into a chain of stops,
    but a stop after a command's words is not taken: on the dev commands of benchmarks/voice_bench.py (dev voices
    and texts only), "grab the shunt using the right instrument, then insert it 5 mm deep into the vessel" came
    out as "grab the shunt freeze emergency stop" (0.68 per frame better) and "3d spin of the pelvis" as "three d
    spin abort everything" (0.72), while stops really said after a command gained 0.3 to 0.9 ("... of the chest.
    stop", heard as "... of the chest L5": about 0.3). Ending on an unanchored phrase ("whoa"), it is not taken
    even alone: "go home" in benchmarks/voice_accuracy.py was heard as "whoa whoa" (0.33 better), "send the right
    arm home" in voice_bench as "tug the right arm whoa". Dev stop phrases said by dev voices after "wait" or
    repeated gained as little as 0.06 per frame ("wait, emergency") and 0.18 ("wait, stop stop"), so any gain
    counts.

    With ``after_words`` the stop is returned after a command's words too: the caller then decodes the stop's own
    audio alone (``PocketSphinxRecognizer``) and takes the stop only when that short utterance is heard as one.
    """
    before, tail = _peel_stops(tokenize(stopped))
    if not tail or not math.isfinite(gain) or gain < _TRAILING_GAIN or tail[-1] not in anchored:
        return ""
    while before and before[0] in wake:
        before = before[1:]
    if before and not after_words and tuple(before) not in _PAUSE_PHRASES and stop_phrase(" ".join(before)) is None:
        return ""
    return tail[-1]


def stops_start(words: list[str], normalise: Callable[[str], str]) -> int:
    """The index in the decoder's ``words`` at which the stop phrases that end them begin (``len(words)`` when none
    do), read in the planner's spelling by ``normalise`` so that a phrase spelt over several words counts whole."""
    start = len(words)
    for i in range(len(words) - 1, -1, -1):
        before, tail = _peel_stops(tokenize(normalise(" ".join(words[i:]))))
        if tail and not before:
            start = i
    return start
