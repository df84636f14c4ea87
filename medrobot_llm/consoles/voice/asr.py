"""Speech to text for the voice console: offline pocketsphinx with the command-set grammar (the OpenAI-compatible
endpoint is in ``scored_asr``, Whisper in ``whisper``).

Both return a transcript in the planner's spelling and a confidence in [0, 1]. The console acts only on a
transcript whose confidence clears a threshold; below it the person is asked to repeat, because a
misheard command that still parses would be worse than no command. The one exception is "stop": it is
checked on the transcript before any planning; offline a short utterance first gets a cheap look for a clear stop
(``first_look``), which latches it without waiting for the command grammar, and a short utterance not heard as a stop is
decoded again listening only for one, so a stop is acted on even when the first decode heard something else;
any utterance not heard as a stop is decoded again by the grammar with a stop at its end, for a stop said after
a command, after "wait" or repeated.
"""

from __future__ import annotations

import math
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medrobot_llm.consoles.voice.answers import answer_jsgf, is_answer, is_yes, stop_answers, trim_to_speech
from medrobot_llm.consoles.voice.audio import (CLIPPED_SHARE, SAMPLE_RATE, AsrError, Audio, clipped_share, load_wav,
                                              resample)
from medrobot_llm.consoles.voice.first_look import first_look, word_loop_arpa
from medrobot_llm.consoles.voice.first_look import per_frame_margin as _margin
from medrobot_llm.consoles.voice.grammar import DEFAULT_WAKE_WORD, VoiceGrammar, build_grammar, normalise_transcript, wake_words
from medrobot_llm.consoles.voice.stops import (AFTER_WORDS_GAIN, ALONE_MARGIN, StopLengths, anchored_stops, kws_stops,
                                              kws_threshold, narrowband, stop_jsgf, stop_phrase, stop_taken, stops_start,
                                              trailing_stop)
from medrobot_llm.consoles.voice.voicing import Voiced, scale_for, speech_frames

__all__ = [
    "SAMPLE_RATE",
    "FIRST_LOOK",
    "AsrError",
    "Audio",
    "PocketSphinxRecognizer",
    "Recognizer",
    "Transcript",
    "WordScore",
    "load_wav",
    "resample",
    "stop_confidence",
    "stop_phrase",
]

_FRAME_S = 0.01
#: how a transcript's note opens when the first look took its stop
FIRST_LOOK = "stop heard at first look"


@dataclass(frozen=True)
class WordScore:
    word: str
    start_s: float
    end_s: float
    posterior: float


@dataclass(frozen=True)
class Transcript:
    """What was heard. ``text`` is in the planner's spelling; ``raw`` is the recogniser's own words."""

    text: str
    confidence: float
    raw: str = ""
    words: tuple[WordScore, ...] = ()
    engine: str = ""
    #: a stop phrase was heard, in the transcript, on the second look or by the keyword-spotting pass
    stop: bool = False
    #: the engine judged the speech not to be a command at all (it fits the grammar far worse than free
    #: phones), whatever command the grammar forced it into; the console says so and does nothing
    not_command: bool = False
    #: why the confidence is what it is, for people reading the log
    note: str = ""
    details: dict[str, float] = field(default_factory=dict)
    #: each engine's transcript, when several were asked (``--asr agree``)
    alternatives: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Recognizer(Protocol):
    """Anything that turns one utterance into a transcript with a confidence."""

    name: str

    def transcribe(self, audio: Audio) -> Transcript: ...


#: how much dithered silence goes around an utterance before decoding. Measured on espeak-ng speech:
#: 0.25 s of padding made the grammar decoder fit the silence with words (sentence grammar 69/83 exact
#: against 78/83 without padding), so none is added; the dither alone keeps the features finite
_PAD_S = 0.0
#: beams wider than pocketsphinx's defaults and no cap on active HMMs: the narrow beams (1e-25, maxhmmpf
#: 3000) pruned the right path and left many decodes empty ("final result does not match the grammar");
#: with the tight grammar a decode still takes about 0.35 s
#: and a word insertion penalty below the default 0.65: with it the decoder explained one long word by
#: several short ones ("twenty three metres" for "twenty millimetres", "orbit orbit and raise"); 0.01 gave
#: 3 more right plans of 63 on espeak-ng speech, 1e-4 and below fewer;
#: and 16 Gaussians per frame scored exactly instead of 4 (``topn``): the acoustic model's scores are an
#: approximation over the top-N Gaussians, tracked from frame to frame among the active states, so with 4 the
#: big grammar's best path was not the best of its own phrases ("collimate to the pelvis" lost to "get a tilt
#: raise" although a two-phrase grammar of those scored it higher). 16 gave one more right plan of 63 and two
#: of 39 on the midway set, for about 10 % more decode time
_DECODER_OPTIONS: dict[str, float] = {"beam": 1e-60, "wbeam": 1e-40, "pbeam": 1e-60, "maxhmmpf": -1, "wip": 0.01,
                                      "topn": 16}
#: the spectral scales, relative to the speaker's, of the second look for a stop, and the longest voiced
#: stretch it is taken for: the stop phrases take at most 1.2 s even slowly said (espeak-ng at 130 words a
#: minute), commands mostly longer, so the extra decodes cost little on average
_SECOND_LOOK = (0.95, 1.05)
_SECOND_LOOK_MAX_S = 1.5
#: the phone-loop margin above which speech is judged not to be a command (``_margin``). Tuned on dev
#: data only: the 63 commands of benchmarks/voice_accuracy.py (four espeak-ng voices, three speeds; the
#: recogniser's own tuning set), whose right plans had margins up to 4.68, and the dev talk of
#: benchmarks/voice_oog.py. Just above the highest right plan, so no right plan of the dev data is rejected;
#: 4.0, fitted first on en-us alone, rejected 10 of those 58 right plans. Figures for both sets in the README
_NOT_COMMAND_MARGIN = 4.7
#: a voiced share of the audio at which the voicing weight is full (espeak commands: 0.3-0.6)
_FULL_VOICING = 0.15
#: a stop's confidence counts seconds, not shares of the file (``stop_confidence``): the seconds of speech (by the
#: voice-activity detector) at which its speech weight is full. The stops with the least speech of the dev data had
#: 0.40 s: benchmarks/voice_bench.py's dev stops and tests/test_voice_stop_level.py's grid (dev espeak-ng voices and
#: stop phrases, -35..0 dB, 160-320 words a minute); the dev noise clips' silence has none
_STOP_SPEECH_S = 0.3
#: and the voiced seconds at which its voicing weight is full: two voiced frames. The least voiced stop of that grid
#: (en+f3's "estop" at 320 words a minute) had three, 0.045 s (confidence 0.27 by the voiced share of the file, under the threshold); the
#: dev noise clips (silence, hiss, white noise, hum, at -35 to +12 dB) have no voiced frame at all
_STOP_VOICED_S = 0.03


class PocketSphinxRecognizer:
    """Offline recognition against the domain's grammar.

    The search is Viterbi only (``bestpath`` off): a lattice over the command grammar is not needed for the
    best path and was what made one decode take minutes with the old phrase-loop grammar. Without a lattice
    there are no word posteriors, so confidence combines three things that catch different failures: how
    much of the audio the voice-activity detector calls speech (silence), how much of it is voiced (hiss,
    white noise and hum, which the detector lets through), and whether the transcript reads as a command,
    control or named refusal for the planner (a decode that is only glue words says nothing). A short
    utterance not heard as a stop gets a second look for one (``_stop_on_second_look``), and any utterance not heard
    as a stop a decode by the grammar that ends in one (``_stop_at_the_end``). The keyword-spotting pass for stops
    is off by default: with its thresholds it heard all 20 espeak-ng stops, but also a stop in 9 of the 63 commands,
    and per-phrase thresholds do not mend it: on dev audio the best "stop" keyword score in a command that says
    none (-0.125, "AP of the skull, then tilt back", flite rms) lay above those of "stop" said repeated, after
    "wait" or after a command (-0.13 to -0.14).
    """

    name = "pocketsphinx"

    def __init__(self, domain: str, *, keyword_spotting: bool = False, wake_word: str = DEFAULT_WAKE_WORD) -> None:
        self.domain = domain
        self.grammar: VoiceGrammar = build_grammar(domain, wake_word)
        self.wake = wake_words(wake_word)
        self.stop_lengths = StopLengths(self.grammar)
        self.anchored_stops = anchored_stops(self.grammar)
        self.keyword_spotting = keyword_spotting
        self._lock = threading.Lock()
        self._decoder: Any = None

    def _make_decoder(self) -> Any:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:  # pragma: no cover - pocketsphinx is a dependency
            raise AsrError("pocketsphinx is not installed (pip install pocketsphinx)") from exc
        with tempfile.TemporaryDirectory(prefix="medrobot-voice-") as tmp:
            dict_path = Path(tmp) / f"{self.domain}.dict"
            dict_path.write_text(self.grammar.dictionary_text(), encoding="utf-8")
            decoder = Decoder(lm=None, dict=str(dict_path), loglevel="FATAL", bestpath=False, **_DECODER_OPTIONS)
            if self.keyword_spotting:
                kws_path = Path(tmp) / "stop.kws"
                kws_path.write_text("".join(f"{p} /1e-{kws_threshold(p)}/\n" for p in kws_stops(self.grammar)),
                                    encoding="utf-8")
                decoder.add_kws("stop", str(kws_path))
            loop_path = Path(tmp) / "words.arpa"
            loop_path.write_text(word_loop_arpa(self.grammar.dictionary), encoding="utf-8")
            decoder.add_lm_file("words", str(loop_path))
        decoder.add_jsgf_string("grammar", self.grammar.jsgf)
        decoder.add_jsgf_string("stops", stop_jsgf(self.wake))
        decoder.add_jsgf_string("stopped", self.grammar.stopped_jsgf)
        decoder.add_jsgf_string("answers", answer_jsgf(self.wake))
        decoder.add_allphone_file("phones", None)
        decoder.activate_search("grammar")
        return decoder

    def load(self) -> PocketSphinxRecognizer:
        """Build the decoder now (a few seconds for the grammar) rather than on the first utterance, which
        may be a stop."""
        with self._lock:
            if self._decoder is None:
                self._decoder = self._make_decoder()
        return self

    def transcribe(self, audio: Audio) -> Transcript:
        """A stop the first look is sure of (``first_look``) at once, anything else as the full decode hears it."""
        self.load()
        with self._lock:
            return self._first_look(audio) or self._transcribe(audio)

    def glance(self, audio: Audio) -> Transcript | None:
        """The stop the first look takes in ``audio``, None when it takes none: the check of an utterance's start
        handed over at the first sign of its end (``Audio.glance``), which the full decode is not run on."""
        self.load()
        with self._lock:
            return self._first_look(audio)

    def _first_look(self, audio: Audio) -> Transcript | None:
        """The stop the first look takes in a short utterance, None when it takes none. The decoder's cepstral mean
        is put back as it was, so that an utterance the first look leaves is decoded as it was without it."""
        voicing = Voiced.of(audio.samples)
        if not 0.0 < voicing.span_s <= self.stop_lengths.longest_s:
            return None
        cmn = self._decoder.get_cmn(False)
        try:
            look = first_look(self._pcm(trim_to_speech(audio.samples), scale_for(voicing.median_pitch)),
                              voicing.span_s, self._scored, self.stop_lengths, self.anchored_stops,
                              lambda raw: normalise_transcript(raw, self.grammar.written))
        finally:
            self._decoder.set_cmn(cmn)
            self._decoder.activate_search("grammar")
        if not look.stop:
            return None
        confidence = stop_confidence(audio, *speech_frames(audio), voicing)
        return Transcript(text=look.stop, confidence=round(confidence, 4), raw=look.stop, engine=self.name, stop=True,
                          note=f"{FIRST_LOOK} ({look.stop!r}; free phones {look.vs_phones:.2f}, the word "
                               f"loop {look.vs_words:.2f} per frame better)",
                          details={"first_look_vs_phones": look.vs_phones, "first_look_vs_words": look.vs_words})

    def _scored(self, search: str, pcm: bytes) -> tuple[str, float, int]:
        hyp = self._decode(search, pcm)
        return (hyp.hypstr.strip(), float(hyp.score), self._decoder.n_frames()) if hyp is not None else (
            "", 0.0, self._decoder.n_frames())

    def stop_only(self, audio: Audio) -> Transcript:
        """A transcript that is a stop when this recogniser hears one in ``audio`` (by any of its passes), an empty
        one otherwise: for an engine that hears commands its own way and may hear a narrowband "stop" as "up"
        (``--asr whisper``). Only utterances short enough to be a stop phrase are decoded (``StopLengths``)."""
        if not 0.0 < Voiced.of(audio.samples).span_s <= self.stop_lengths.longest_s:
            return Transcript(text="", confidence=0.0, engine=self.name)
        heard = self.transcribe(audio)
        if not heard.stop:
            return Transcript(text="", confidence=0.0, engine=self.name, details=heard.details)
        return heard

    def answer(self, audio: Audio) -> Transcript:
        """``audio`` heard as the answer to a read-back or a step's question (``answers``): a stop when the stop
        phrases' grammar fits its loud part nearly as well as the answers' (``stop_answers``) and it is no longer
        than a stop said slowly; else, when the command grammar hears no answer there, not one (that grammar's
        transcript, which no question takes for a yes; a stop in it looked for as in a command)."""
        self.load()
        with self._lock:
            voicing = Voiced.of(audio.samples)
            pcm = self._pcm(trim_to_speech(audio.samples), scale_for(voicing.median_pitch))
            answer, stop_said = (h.hypstr.strip() if (h := self._decode(g, pcm)) else "" for g in ("answers", "stops"))
            said, note = normalise_transcript(answer, self.grammar.written), ""
            stop = stop_phrase(normalise_transcript(stop_said, self.grammar.written))
            # each grammar picks its best phrase; the two are then scored alone, since a grammar's score carries
            # the odds of its many alternatives (the answers' cost flite's "yes" 0.5 per frame against "whoa")
            vs = _margin(self._alone(stop_said, pcm), self._alone(answer, pcm) if answer else 0.0,
                         self._decoder.n_frames()) if stop else -math.inf
            yes = is_yes(said, self.wake)
            details = {"stop_vs_answer": vs, "answer_is_yes": float(yes)} if math.isfinite(vs) else {}
            if not (stop and stop_answers(vs, yes) and voicing.span_s <= self.stop_lengths.longest_s):
                stop = None
                heard = normalise_transcript(h.hypstr.strip() if (h := self._decode("grammar", pcm)) else "",
                                             self.grammar.written)
                if heard and not is_answer(heard, self.wake):
                    if (as_command := self._transcribe(audio)).stop:
                        return as_command
                    said, note = heard, f"not an answer: the command grammar heard {heard!r}"
            speech, total = speech_frames(audio)
            confidence = (min(1.0, speech / total / 0.3) * min(1.0, voicing.ratio / _FULL_VOICING)
                          if total and (said or stop) else 0.0)
            if stop:
                confidence = max(confidence, stop_confidence(audio, speech, total, voicing))
                said, note = stop, f"stop heard while an answer was awaited ({vs:.2f} per frame against the answer)"
            return Transcript(text=said, confidence=round(confidence, 4), raw=said, engine=self.name,
                              stop=bool(stop), note=note, details=details)

    def _alone(self, words: str, pcm: bytes) -> float:
        """The path score of ``words`` (the decoder's spelling) as the only thing that could have been said."""
        self._decoder.add_jsgf_string("alone", f"#JSGF V1.0;\ngrammar alone;\npublic <alone> = {words};\n")
        hyp = self._decode("alone", pcm)
        return float(hyp.score) if hyp is not None else 0.0

    def _decode(self, search: str, pcm: bytes) -> Any:
        d = self._decoder
        d.activate_search(search)
        d.start_utt()
        d.process_raw(pcm, no_search=False, full_utt=True)
        d.end_utt()
        return d.hyp()

    def _pcm(self, samples: np.ndarray, scale: float) -> bytes:
        """The decoder's input: the samples with their spectrum scaled by ``scale``, and a little dither
        (digital silence has no spectrum, and log-spectral features of zeros are -inf)."""
        x = samples.astype(np.float64)
        if abs(scale - 1.0) > 0.02:
            x = resample(x, round(SAMPLE_RATE * scale), SAMPLE_RATE)
        pad = np.zeros(int(_PAD_S * SAMPLE_RATE))
        x = np.concatenate([pad, x, pad])
        x += np.random.default_rng(0).normal(0.0, 10.0, len(x))
        return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()

    def _stop_on_second_look(self, samples: np.ndarray, scale: float) -> str:
        """A stop phrase heard when a short utterance is decoded again at slightly other spectral scales.

        The speaker scale is an estimate, and on a few utterances the command grammar's choice flips with
        a few per cent of it (a fast female "stop stop" came out as "tilt a little bit" at one scale and
        as "stop stop" at 5 % less). A missed stop is the costliest error a voice console makes and a false
        stop the cheapest, so a short utterance that was not heard as a stop is decoded at 5 % either side
        and a stop heard there counts. Only the stop is taken from these decodes, never a command.
        """
        for factor in _SECOND_LOOK:
            hyp = self._decode("grammar", self._pcm(samples, scale * factor))
            raw = hyp.hypstr.strip() if hyp is not None else ""
            found = stop_phrase(normalise_transcript(raw, self.grammar.written))
            if found:
                return found
        return ""

    def _phones_score(self, pcm: bytes) -> float:
        """The free phone loop's path score: every phone equally likely, so it is the best any sequence of
        phones explains the audio, the yardstick both margins below are measured against. With pocketsphinx's
        phone bigram model the not-a-command margin separated talk from commands less well
        (benchmarks/voice_oog.py on the dev set: 11 of 20 talk utterances above every command, against 14)."""
        hyp = self._decode("phones", pcm)
        self._decoder.activate_search("grammar")
        return float(hyp.score) if hyp is not None else 0.0

    def _stop_pass(self, pcm: bytes) -> tuple[str, float]:
        """The stop phrase a grammar of nothing but stop phrases hears, and its path score.

        The command grammar picks the nearest of thousands of commands, and a narrowband "stop" (no sibilant
        energy above 4 kHz) or an unusual voice's lies nearer to some of them ("tilt eight", "go to") than to
        "stop". Asked only "which stop", the decoder has no such neighbour; whether it was a stop at all is then
        whether the utterance is short enough for that stop and it explains the audio about as well as the command
        the grammar chose (``StopLengths``, ``stop_taken``).
        """
        hyp = self._decode("stops", pcm)
        self._decoder.activate_search("grammar")
        raw = hyp.hypstr.strip() if hyp is not None else ""
        return stop_phrase(normalise_transcript(raw, self.grammar.written)) or "", float(hyp.score) if hyp else 0.0

    def _stop_at_the_end(self, pcm: bytes, grammar_score: float, n_frames: int) -> tuple[str, float, int | None]:
        """A stop said after a pause word or another stop, how much better per frame than the command grammar the
        grammar that ends in one explains the audio (``trailing_stop``), and, when that grammar heard a stop after
        a command's words instead, the decoder frame at which that stop begins.

        The command grammar holds no stop after anything else: put there, it turned 3 of the 63 commands of
        benchmarks/voice_accuracy.py into stops, because the decoder takes whichever path fits a little better.
        Decoded as a search of its own, the stop is taken only when it explains the audio better than the command
        grammar's path."""
        hyp = self._decode("stopped", pcm)
        segs = [(re.sub(r"\(\d+\)$", "", s.word), s.start_frame) for s in self._decoder.seg() or ()
                if not s.word.startswith(("<", "[", "("))] if hyp is not None else []
        self._decoder.activate_search("grammar")
        if hyp is None:
            return "", math.inf, None
        said = normalise_transcript(hyp.hypstr.strip(), self.grammar.written)
        gain = _margin(float(hyp.score), grammar_score, n_frames)
        taken = trailing_stop(said, gain, self.wake, self.anchored_stops)
        # a command grammar with no path at all fits the audio worse than any stop after words (flite's "set the
        # gain to 60 percent", a pause and "stop everything" at 11.025 kHz): its stop is still decoded alone
        if taken or not trailing_stop(said, gain if grammar_score > 0.0 else 0.0, self.wake, self.anchored_stops,
                                      after_words=True):
            return taken, gain, None
        start = stops_start([w for w, _ in segs], self.grammar.normalise)
        after = not gain < AFTER_WORDS_GAIN and 0 < start < len(segs)
        return "", gain, segs[start][1] if after else None

    def _stop_said_alone(self, samples: np.ndarray, start_s: float) -> str:
        """The stop heard when the audio from ``start_s`` on, where the stop-ending search put a stop after a
        command's words, is decoded alone as a separate utterance ("", when it is not heard as a stop).

        That search also fits a stop onto a command's last words ("3d spin of the pelvis" as "3d spin abort
        everything", 0.72 per frame better, more than a stop really said after a command gained), but those words
        decoded alone are still heard as what they are, by the command grammar and the stop-only pass's own limits
        (``StopLengths``, ``stop_taken``). Only the stop is taken from them, never a command; only when the command
        grammar itself hears it, since a command's last words cut out mid-command fit no whole command and the
        stop-only pass, weighed against that grammar, then took "freeze" for "store a frame" and "AP of the pelvis"
        (voice_accuracy.py); and only when that grammar explains them about as well as free phones do
        (``ALONE_MARGIN``), as it explains a stop said on its own.

        Failing that, the audio gets the first look a separate short utterance gets (``first_look``): a stop it is
        sure of is taken whatever the command grammar hears there. On dev voices the command grammar heard stops
        said after a command in their own audio, yet 2.7-3.8 per frame worse than free phones, past
        ``ALONE_MARGIN`` (espeak-ng en-us "emergency", en+f2 "e stop", en+m3 "stop everything"), and the first look
        took each of them, while it took none of the command ends the stop-ending search put a stop on
        (voice_accuracy.py's "AP of the pelvis" and "collimate to the pelvis": free phones 3.11 and 4.04 better)."""
        tail = samples[max(0, round(start_s * SAMPLE_RATE)):]
        heard = self._transcribe(Audio(tail), after_words=False)
        if stop_phrase(heard.text) is not None:
            pcm = self._pcm(tail, heard.details["speaker_scale"])
            hyp = self._decode("grammar", pcm)
            margin = _margin(self._phones_score(pcm), float(hyp.score) if hyp is not None else 0.0,
                             self._decoder.n_frames())
            if margin <= ALONE_MARGIN:
                return f"{heard.note or f'heard as {heard.text!r}'}; free phones {margin:.2f} better"
        # after the decode above, so that the decoder's cepstral mean moves as it did without the first look (it puts
        # it back), and the utterances after this one are decoded as they were
        return look.note if (look := self._first_look(Audio(tail))) is not None else ""

    def _transcribe(self, audio: Audio, *, after_words: bool = True) -> Transcript:
        d = self._decoder
        speech, total = speech_frames(audio)
        voicing = Voiced.of(audio.samples)
        voiced = voicing.ratio
        scale = scale_for(voicing.median_pitch)
        pcm = self._pcm(audio.samples, scale)
        hyp = self._decode("grammar", pcm)
        raw = hyp.hypstr.strip() if hyp is not None else ""
        words: list[WordScore] = []
        frames = 0
        for seg in (d.seg() if hyp is not None else None) or ():
            if seg.word.startswith("<") or seg.word.startswith("["):
                continue
            w = re.sub(r"\(\d+\)$", "", seg.word)
            start = seg.start_frame * _FRAME_S * scale - _PAD_S
            end = (seg.end_frame + 1) * _FRAME_S * scale - _PAD_S
            words.append(WordScore(w, max(0.0, start), end, 1.0))
            frames += seg.end_frame - seg.start_frame + 1
        n_frames = d.n_frames()
        grammar_score = float(hyp.score) if hyp is not None else 0.0
        text = normalise_transcript(raw, self.grammar.written)
        stop = stop_phrase(text) is not None
        # a stop is never judged "not a command" (a false stop is safe), and it is acted on sooner unjudged
        narrow = narrowband(audio.samples)
        short = self.stop_lengths.listened(voicing.span_s, narrow)
        phones = self._phones_score(pcm) if not stop and (words or short) else 0.0
        margin = _margin(phones, grammar_score, n_frames) if words and not stop else 0.0
        if not math.isfinite(margin):
            margin = 0.0
        heard_stop, stop_score = self._stop_pass(pcm) if not stop and short else ("", 0.0)
        stop_margin = _margin(phones, stop_score, n_frames)
        # with no path through the command grammar, the stop stands alone against free phones
        stop_vs_grammar = _margin(grammar_score, stop_score, n_frames) if grammar_score > 0.0 else math.inf
        spotted = ""
        if self.keyword_spotting and voiced > 0.0:
            kws = self._decode("stop", pcm)
            spotted = kws.hypstr.strip() if kws is not None else ""
        taken = (bool(heard_stop) and not stop and self.stop_lengths.fits(heard_stop, voicing.span_s)
                 and stop_taken(stop_vs_grammar, stop_margin, narrow))
        # a stop the pass took needs no second look, whose two decodes of the command grammar would only delay it
        second = ""
        if not stop and not taken and words and 0.0 < voicing.span_s <= _SECOND_LOOK_MAX_S:
            second = self._stop_on_second_look(audio.samples, scale)
        trailing, trailing_gain, after_frame, alone = "", math.inf, None, ""
        if not stop and not taken and not second and (words or voicing.span_s > 0.0):
            trailing, trailing_gain, after_frame = self._stop_at_the_end(pcm, grammar_score, n_frames)
        if after_frame is not None and after_words:
            alone = self._stop_said_alone(audio.samples, after_frame * _FRAME_S * scale - _PAD_S)
        parsed = _reads_as_command(self.domain, text) if words else False
        details = {
            "speech_ratio": speech / total if total else 0.0,
            "voiced_ratio": voiced,
            "speaker_scale": scale,
            "word_frames": float(frames),
            "frames": float(n_frames),
            "parsed": float(parsed),
            "phone_margin": margin,
        }
        # the stop-only pass's figures, when it ran and both paths were found
        details.update({k: v for k, v in (("stop_margin", stop_margin), ("stop_vs_grammar", stop_vs_grammar),
                                          ("stop_at_end_gain", trailing_gain)) if math.isfinite(v)})
        # Silence and hum still come out as some grammar words; the share of the audio the detector calls
        # speech and the share that is voiced scale the confidence down for them.
        speech_weight = min(1.0, details["speech_ratio"] / 0.3)
        voice_weight = min(1.0, voiced / _FULL_VOICING)
        confidence = speech_weight * voice_weight * (1.0 if parsed else 0.4) if words else 0.0
        note = "no speech" if speech == 0 else ("nothing recognised" if not words else "")
        if second:
            stop = True
            confidence = max(confidence, speech_weight * voice_weight)
            note = f"stop heard on a second look ({second!r})"
        if taken:
            stop = True
            confidence = max(confidence, speech_weight * voice_weight)
            note = (f"stop heard by the stop-only pass ({heard_stop!r} explains the audio about as well as {text!r}: "
                    f"{stop_vs_grammar:.2f} per frame)")
        if trailing:
            stop = True
            confidence = max(confidence, speech_weight * voice_weight)
            note = (f"stop heard at the end ({trailing!r}: the grammar that ends in a stop explains the audio "
                    f"{trailing_gain:.2f} per frame better than {text!r})")
        if alone:
            stop = True
            confidence = max(confidence, speech_weight * voice_weight)
            note = f"stop heard after the command's words, decoded alone ({alone})"
        if stop:
            confidence = max(confidence, stop_confidence(audio, speech, total, voicing))
        if spotted and not stop:
            stop = True
            confidence = max(confidence, speech_weight * voice_weight * 0.5)
            note = f"stop heard by keyword spotting ({spotted!r})"
        not_command = not stop and margin > _NOT_COMMAND_MARGIN
        if not_command:
            note = f"that was not a command (it fits free phones {margin:.2f} better per frame than the grammar)"
        clipped = clipped_share(audio.samples)
        if clipped >= CLIPPED_SHARE and not stop:
            # a stop misheard in clipped audio is not mended here; it is at least said why it was not heard
            note = "; ".join(n for n in (f"the recording is clipped ({clipped:.1%} of samples at full scale): lower "
                                         "the input gain", note) if n)
            details["clipped_share"] = clipped
        return Transcript(text=text, confidence=round(float(confidence), 4), raw=raw, words=tuple(words),
                          engine=self.name, stop=stop, not_command=not_command, note=note, details=details)


def stop_confidence(audio: Audio, speech: int, total: int, voicing: Voiced) -> float:
    """How sure a heard stop is that a voice said it, whatever the silence around it and however fast it was said.

    The confidence of a command weighs the shares of the file that are speech and voiced, which a stop said fast
    or with long silence around it (a --wav recording padded 0.3 s and 0.5 s: espeak-ng en+f3's "estop" at 320 words
    a minute, three voiced frames in 75) never reaches: its stop was heard and not acted on. Noise is told from a voice
    by having no voiced frame at all, and silence by having no speech, so both are counted in seconds here."""
    if not total:
        return 0.0
    speech_s = speech / total * len(audio.samples) / SAMPLE_RATE
    return min(1.0, speech_s / _STOP_SPEECH_S) * min(1.0, voicing.seconds / _STOP_VOICED_S)


def _reads_as_command(domain: str, text: str) -> bool:
    """True when the planner reads ``text`` as a plan, a control, a clarification or a named refusal,
    rather than finding nothing it knows in it."""
    from medrobot_llm.planning.rule.planner import RulePlanner

    plan = RulePlanner().plan(domain, text).to_json()
    return bool(plan.get("steps") or plan.get("control") or plan.get("status") in ("clarify", "refused")
                and (plan.get("reason") or plan.get("question")))
