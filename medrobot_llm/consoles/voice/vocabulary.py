"""The command set's vocabulary for open-vocabulary recognisers (Whisper, an OpenAI-compatible endpoint).

A grammar decoder can only say grammar words; an open-vocabulary model can say anything, which is what lets
it hear that speech was not a command, but also lets it spell a clinical word its own way ("P.S.M. 1",
"colimate"). Two things bring it back to the planner's words without taking that freedom away: a prompt of
the command set's own words, which biases the decoder towards them, and a snap of a near-miss word onto the
one vocabulary word it is unmistakably closest to. Both take their words from the grammar generated from
``skills/``, so the recognisers and the planner never disagree on a spelling.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass

from medrobot_llm.consoles.voice.grammar import VoiceGrammar, build_grammar

__all__ = ["MIN_MARGIN", "MIN_SIMILARITY", "Snapped", "closest", "prompt", "prompt_phrases", "sentence_prompt", "snap", "vocabulary"]

#: a near-miss word is replaced only when its closest vocabulary word is at least this similar (difflib's
#: ratio: "millimeter" -> "millimetre" 0.9, "colimate" -> "collimate" 0.94; at 0.8 "rotates" became "prostate")...
MIN_SIMILARITY = 0.85
#: ...and the next closest is at least this much less similar: a guess between two vocabulary words is how a
#: misrecognition becomes motion
MIN_MARGIN = 0.1
#: shorter words are left alone: every three-letter word is one letter from several others
_MIN_LENGTH = 4
#: sentence punctuation, but not the point of a decimal ("2.5")
_PUNCTUATION = re.compile(r"[,!?;:\"()]+|\.(?!\d)")


def prompt_phrases(grammar: VoiceGrammar) -> list[str]:
    """The command set's phrases that bias an open-vocabulary model, so it spells "psm1", "collimate" and
    "sacrum" as the planner does: skills and entities, the words a general-purpose model misspells."""
    rules = grammar.rules
    return [*rules.get("skill", ())[:40], *rules.get("entity", ())[:60]]


def prompt(grammar: VoiceGrammar) -> str:
    """The phrases as one comma-separated prompt, within what Whisper reads of a prompt."""
    return ", ".join(prompt_phrases(grammar))[:800]


def sentence_prompt(grammar: VoiceGrammar) -> str:
    """The phrases as short sentences. Whisper continues its prompt's style: after a comma-separated list it
    wrote commands as lists ("pick up, needle, wimp, psm one"); after sentences it wrote "psm two" where with
    no prompt it wrote "the SM2" (espeak-ng, three surgery commands)."""
    return ". ".join(p.capitalize() for p in prompt_phrases(grammar))[:800] + "."


@functools.cache
def vocabulary(domain: str) -> frozenset[str]:
    """Every word a transcript may keep as it is: the grammar's spoken words and their written forms."""
    grammar = build_grammar(domain)
    return grammar.words | frozenset(w.lower() for w in grammar.written.values())


@dataclass(frozen=True)
class Snapped:
    """A transcript after snapping, and what was changed (heard word -> vocabulary word)."""

    text: str
    changes: tuple[tuple[str, str], ...]


def closest(word: str, vocab: frozenset[str]) -> str | None:
    """The one vocabulary word ``word`` is a near miss of, or None when none is near or two are as near."""
    scored = sorted(((difflib.SequenceMatcher(None, word, v).ratio(), v) for v in vocab), reverse=True)
    if not scored or scored[0][0] < MIN_SIMILARITY:
        return None
    if len(scored) > 1 and scored[0][0] - scored[1][0] < MIN_MARGIN:
        return None
    return scored[0][1]


def snap(text: str, domain: str) -> Snapped:
    """``text`` lower-cased, without sentence punctuation, and with each alphabetic word that is not in the
    vocabulary replaced by its unambiguous closest vocabulary word, if it has one. Numbers, written tokens
    ("psm1", "3d") and words with no clear match are kept: the planner reads digits, and a word it does not
    know is a reason for it to refuse or ask, which is what should happen."""
    vocab = vocabulary(domain)
    out: list[str] = []
    changes: list[tuple[str, str]] = []
    for token in _PUNCTUATION.sub(" ", text).lower().split():
        if token in vocab or not token.isalpha() or len(token) < _MIN_LENGTH:
            out.append(token)
            continue
        near = closest(token, vocab)
        if near is None:
            out.append(token)
        else:
            out.append(near)
            changes.append((token, near))
    return Snapped(" ".join(out), tuple(changes))
