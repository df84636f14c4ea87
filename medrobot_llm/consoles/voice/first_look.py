"""The first look for a stop: cheap searches run on a short utterance before the command grammar's decode, so that a
clear stop latches at once instead of after it.

On a 1.5 s "stop now" the command grammar's decode took about 0.85 s of CPU, nearly all of the time from the end of a
spoken stop to the e-stop (issue 17 asks for 1 s); the stop phrases' grammar and free phones take some 0.03 s each, a
loop of the grammar's words about 0.15 s. The first look asks the stop phrases' grammar which stop it was, and takes
it only when that stop explains the utterance's loud part nearly as well as free phones and clearly better than any
run of the grammar's words (``first_look_taken``); anything else goes on to the full decode, which is unchanged. It
never takes anything but a stop, so a command is never acted on without the command grammar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from medrobot_llm.consoles.voice.stops import FIRST_LOOK_PHONES, StopLengths, first_look_taken, stop_phrase

__all__ = ["Decode", "FirstLook", "first_look", "per_frame_margin", "word_loop_arpa"]

#: a search decoded on the decoder's input: (its words, its path score, the frames decoded); ("", 0.0, n) for no path
Decode = Callable[[str, bytes], tuple[str, float, int]]


def per_frame_margin(free: float, constrained: float, n_frames: int) -> float:
    """How much better the free phone loop explains the audio than a grammar's best path, per frame: both are
    the decoders' path scores (``Hypothesis.score``, a likelihood), compared as natural logs per 10 ms frame
    (times 1000); infinite when either decode found no path."""
    if free <= 0.0 or constrained <= 0.0:
        return math.inf
    return round((math.log(free) - math.log(constrained)) * 1000 / max(1, n_frames), 4)


def word_loop_arpa(words: Iterable[str]) -> str:
    """A unigram language model in ARPA format in which every one of ``words`` is equally likely: any sequence of
    the grammar's words, the first look's yardstick for "some command" at a fraction of the grammar's cost."""
    vocabulary = sorted(set(words))
    log_p = -math.log10(len(vocabulary) + 1)
    lines = ["\\data\\", f"ngram 1={len(vocabulary) + 2}", "", "\\1-grams:", "-99 <s>", f"{log_p:.4f} </s>",
             *(f"{log_p:.4f} {w}" for w in vocabulary), "", "\\end\\", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class FirstLook:
    """What the first look heard: the stop taken ("" for none) and its margins (infinite where not decoded)."""

    stop: str
    vs_phones: float = math.inf
    vs_words: float = math.inf


def first_look(pcm: bytes, span_s: float, decode: Decode, lengths: StopLengths, anchored: frozenset[str],
               normalise: Callable[[str], str]) -> FirstLook:
    """The stop in ``pcm`` (the utterance's loud part, voiced for ``span_s`` seconds) when the first look is sure
    of it. ``decode`` runs the searches "stops", "phones" and "words"; each is decoded only while the stop is still
    in the running, so an utterance that is no stop costs one or two short decodes. Only an anchored stop phrase
    (``anchored_stops``: "whoa" fits any rounded vowel) that could have been voiced that long is taken."""
    said, stop_score, n_frames = decode("stops", pcm)
    stop = stop_phrase(normalise(said)) or ""
    if not stop or stop not in anchored or not lengths.fits(stop, span_s):
        return FirstLook("")
    vs_phones = per_frame_margin(decode("phones", pcm)[1], stop_score, n_frames)
    if not vs_phones <= FIRST_LOOK_PHONES:
        return FirstLook("", vs_phones)
    vs_words = per_frame_margin(decode("words", pcm)[1], stop_score, n_frames)
    return FirstLook(stop if first_look_taken(vs_phones, vs_words) else "", vs_phones, vs_words)
