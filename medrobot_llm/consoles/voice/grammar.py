"""The speech grammar, generated from ``skills/`` so that what the recogniser can hear is exactly what the
planner can read.

A closed grammar is what makes an offline recogniser usable in a theatre: pocketsphinx with a free
language model mishears clinical words, with a grammar it only has to choose among the command set's
own phrases, a few fixed frames per skill; the text console takes anything the planner reads. Words the
planner refuses by name (unsupported actions and organs, other domains' targets) are in the grammar too: a
word the recogniser cannot hear is replaced by the nearest word it can, and "cut the vessel" must not come
out as "put the vessel".

This module puts the parts together: ``frames`` (the phrases, from ``skills/``), ``quantities`` (numbers and
units), ``jsgf`` (rules and the file), ``phones`` (a pronunciation for every grammar word) and ``spoken``
(written text to spoken words and back: "psm one" -> "psm1", "l four" -> "L4").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from medrobot_llm.consoles.voice.frames import GrammarBuilder, domain_words
from medrobot_llm.consoles.voice.jsgf import jsgf_words, write_jsgf
from medrobot_llm.consoles.voice.phones import acoustic_dictionary, pronunciations
from medrobot_llm.consoles.voice.spoken import normalise_transcript, spoken_words, written_forms
from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.language.numbers import number_words
from medrobot_llm.language.words import CONTROL_PHRASES, FUNCTION_WORDS

__all__ = [
    "DEFAULT_WAKE_WORD",
    "REMARK_OPENERS",
    "VoiceGrammar",
    "acoustic_dictionary",
    "build_grammar",
    "domain_words",
    "normalise_transcript",
    "number_words",
    "spoken_words",
    "wake_words",
]

#: the name the console answers to unless configured otherwise (AESOP answered only to its name)
DEFAULT_WAKE_WORD = "robot"
#: words a remark about the robot opens with ("the robot is slow today", "my robot", "this robot"): the grammar
#: may hear one just before the wake word (nowhere else), so that the transcript keeps it and the utterance does
#: not open with the wake word; without them the wake word's path took "the robot" for "robot", and the remark
#: counted as addressed
REMARK_OPENERS = ("the", "a", "this", "that", "my", "your", "our", "his", "her", "their", "its", "i", "we", "you",
                  "he", "she", "it", "they")


@dataclass(frozen=True)
class VoiceGrammar:
    """One domain's grammar, the pronunciations its words need, and the way back to written form."""

    domain: str
    jsgf: str
    words: frozenset[str]
    #: pronunciations for the decoder's dictionary: every grammar word, each with one or more phone strings
    dictionary: dict[str, tuple[str, ...]] = field(repr=False)
    #: how each word got its pronunciation ("dictionary", "table", "derived", "spelled")
    sources: dict[str, str] = field(repr=False)
    #: spoken word sequences that read back as one written token ("psm one" -> "psm1")
    written: dict[tuple[str, ...], str] = field(repr=False)
    #: the rules, by name, as lists of spoken phrases (for tests and for the keyword-spotting pass)
    rules: dict[str, tuple[str, ...]] = field(repr=False)
    #: the same grammar with a stop phrase (or two) required at the end, after a command, a pause phrase, a stop or
    #: nothing: the search that hears "... of the chest, stop", "wait, stop" and "stop stop stop", which the
    #: grammar itself fits to its nearest command ("... of the chest L5", "where you stopped", "tilt tilt a tad").
    #: Other controls may not come first: "stop, stop, stop" was heard as "status stop stop"
    stopped_jsgf: str = field(default="", repr=False)

    def dictionary_text(self) -> str:
        """The decoder's dictionary file: one line per pronunciation, alternates numbered as in CMUdict."""
        lines = []
        for word in sorted(self.dictionary):
            for k, pron in enumerate(self.dictionary[word]):
                lines.append(f"{word if k == 0 else f'{word}({k + 1})'} {pron}")
        return "\n".join(lines) + "\n"

    def normalise(self, transcript: str) -> str:
        return normalise_transcript(transcript, self.written)


def wake_words(wake_word: str) -> tuple[str, ...]:
    """The wake word as the grammar spells it; refused when it has nothing a person could say, or a word of a
    control phrase ("stop", "yes", "no", "wait": a stop or an answer would then count as addressed, and an
    addressed "yes" lose its wake word and confirm) or a function word ("the": any remark opens with it)."""
    words = tuple(spoken_words(wake_word))
    if not words or not all(w.isalpha() for w in words):
        raise ValueError(f"a wake word must be one or more plain words, got {wake_word!r}")
    said = f" {' '.join(words)} "
    if clash := sorted({p for phrases in CONTROL_PHRASES.values() for p in (" ".join(spoken_words(q))
                                                                             for q in phrases)
                        if p and f" {p} " in said}):
        raise ValueError(f"a wake word must not say a stop phrase or an answer ({', '.join(clash)}), got "
                         f"{wake_word!r}")
    if clash := [w for w in words if w in FUNCTION_WORDS]:
        raise ValueError(f"a wake word must not contain a function word ({', '.join(clash)}), got {wake_word!r}")
    return words


@functools.cache
def build_grammar(domain: str, wake_word: str = DEFAULT_WAKE_WORD) -> VoiceGrammar:
    """The grammar for ``domain``, regenerated from its skill file (cached per process).

    Fixed frames per skill, numbers only with the units their argument accepts, controls as whole phrases,
    refusals only as "<refused action> the <noun>" or "<verb> the <refused target>", and at most two commands
    joined by "then" or "and": every freedom the grammar gives, the decoder spends on short-word guesses.
    The wake word may open any utterance and is optional: were it required, the decoder would hear it in
    every utterance and nothing would count as not addressed.
    """
    cs = load_command_set(domain)
    b = GrammarBuilder(domain, cs)
    lead = b.book.add("remark_opener", list(REMARK_OPENERS))
    top = f"[ [ {lead} ] {' '.join(wake_words(wake_word))} ] {b.utterance()}"
    jsgf = write_jsgf(domain, top, b.book.bodies)
    stopped = write_jsgf(domain, f"[ [ {lead} ] {' '.join(wake_words(wake_word))} ] {b.before_stop}", b.book.bodies)
    words = jsgf_words((top, *b.book.bodies.values()))
    dictionary: dict[str, tuple[str, ...]] = {}
    sources: dict[str, str] = {}
    for w in sorted(words):
        dictionary[w], sources[w] = pronunciations(w)
    rules = {k: tuple(dict.fromkeys(v)) for k, v in b.phrases.items()}
    return VoiceGrammar(domain=domain, jsgf=jsgf, words=frozenset(words), dictionary=dictionary, sources=sources,
                        written=written_forms(cs), rules=rules, stopped_jsgf=stopped)
