"""Whisper held to the command language by rescoring its own candidates with its own forced-decoding score.

Whisper tiny.en decodes freely: it writes what it thinks it heard in everyday English ("bsm two", "injacket
sailing into the mast") and the planner cannot read it. The prompt of the command set's phrases helps (without
it, right plans on dev halved) but cannot hold it and sometimes leaks (a whole command came out as "aortic
aortic"). What the model knows better than its greedy path is how well a *given* text explains the audio:
``ctranslate2.models.Whisper.align`` returns P(each token | audio, the tokens before it), so any text can be
scored against the utterance once its encoding is known. The search therefore proposes texts the planner can
read (Whisper's own n-best, and edits of them toward the command set's words, chosen by pronunciation) and keeps
an edit only when the score rises: Whisper's log-probability less a fixed charge per word outside the command
set's vocabulary, the command language's prior (tuned on the voice benchmark's dev items only: 4 nats a word).
The free transcript keeps the last word: a candidate the planner reads is preferred over one it cannot read only
within ``margin`` nats of the free transcript's score, so small talk stays small talk and a plan is never
swapped for another one Whisper finds clearly less likely.

The model-facing half (``WhisperUtterance``) and the search (``CommandSearch``) are apart, so the search's rules
can be tested with any scorer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medrobot_llm.consoles.voice.grammar import build_grammar
from medrobot_llm.consoles.voice.phones import SPELLED, pronunciations
from medrobot_llm.consoles.voice.vocabulary import snap, vocabulary
from medrobot_llm.language.numbers import NUMBER_WORDS
from medrobot_llm.planning.base import Planner

__all__ = ["Choice", "CommandSearch", "Decoded", "Scorer", "WhisperUtterance", "surface", "understood"]

#: texts in, log P(text | audio) out, one per text
Scorer = Callable[[Sequence[str]], list[float]]

#: the share of the free transcript's words another hypothesis must keep to be a candidate (on dev, every
#: hypothesis chosen with fewer was wrong, and "ap on the sacrum" for a command of 14 words still moved)
_MIN_KEPT = 0.7


@dataclass(frozen=True)
class Decoded:
    """Whisper's free decode of one utterance: its hypotheses, best first, and the best one's figures."""

    hypotheses: tuple[str, ...]
    avg_logprob: float
    no_speech_prob: float


class WhisperUtterance:
    """One utterance encoded once, then decoded and scored as often as the search asks.

    ``model`` is a ``faster_whisper.WhisperModel``; its feature extractor, tokenizer and CTranslate2 model are
    used directly because ``WhisperModel.transcribe`` returns neither an n-best list nor a way to score a text.
    """

    def __init__(self, model: Any, samples: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        from faster_whisper.tokenizer import Tokenizer

        self._model = model
        self._tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
        features = model.feature_extractor(samples)
        chunk = model.feature_extractor.nb_max_frames
        self._frames = min(int(features.shape[-1]), chunk)
        padded = np.zeros((features.shape[0], chunk), dtype=np.float32)
        padded[:, :self._frames] = features[:, :self._frames]
        self.encoded = model.encode(padded)

    def decode(self, prompt: str | None, beam_size: int, hypotheses: int) -> Decoded:
        """The free decode, as faster-whisper's ``transcribe`` does it for one segment without timestamps."""
        from faster_whisper.transcribe import get_suppressed_tokens

        tok = self._tokenizer
        previous = tok.encode(" " + prompt.strip()) if prompt else []
        start = self._model.get_prompt(tok, previous, without_timestamps=True)
        result = self._model.model.generate(
            self.encoded, [start], beam_size=beam_size, num_hypotheses=max(1, min(hypotheses, beam_size)),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tok, (-1,)), max_length=self._model.max_length)[0]
        texts = tuple(tok.decode([t for t in seq if t < tok.eot]).strip() for seq in result.sequences_ids)
        best = result.sequences_ids[0]
        # faster-whisper's average: the length-normalised score back to a sum, over the tokens and the end token
        avg = float(result.scores[0]) * len(best) / (len(best) + 1)
        return Decoded(texts, avg, float(result.no_speech_prob))

    def score(self, texts: Sequence[str]) -> list[float]:
        """log P(text | audio) of each text, forced through the decoder with no prompt (one at a time: a batch
        repeats the encoder output per text and was slower on these CPUs). Against the whole 30 s window, as
        Whisper was trained: cutting the padding after the speech made scoring four times faster but moved
        scores by up to 6 nats and reordered candidates ("lateral view" fell behind "let her all view")."""
        tok = self._tokenizer
        start = [*tok.sot_sequence, tok.no_timestamps]
        out: list[float] = []
        for text in texts:
            tokens = tok.encode(text)
            if not tokens:
                out.append(float("-inf"))
                continue
            res = self._model.model.align(self.encoded, start, [tokens], self._frames // 2)[0]
            probs = np.asarray(res.text_token_probs, dtype=np.float64)
            out.append(float(np.log(np.clip(probs, 1e-30, 1.0)).sum()))
        return out


def surface(text: str) -> str:
    """A planner-side text written the way Whisper writes a sentence, so that all candidates are scored in one
    style and none loses for its spelling: capitalised, abbreviations in capitals ("PSM1", "AP"), a full stop."""
    words = []
    for w in text.split():
        stem = re.match(r"[a-z]+", w)
        words.append(w.upper() if stem and stem.group() in SPELLED else w)
    out = " ".join(words)
    return " " + out[:1].upper() + out[1:] + "." if out else ""


def understood(planner: Planner, domain: str, text: str) -> bool:
    """The planner found a command in ``text``: a plan, a question, or a refusal for a named reason. Only
    "not understood" is no meaning, so a refusal is never traded for a plan the audio fits less well."""
    data = planner.plan(domain, text).to_json()
    return not (data.get("status") == "refused" and data.get("code") == "not_understood")


@dataclass(frozen=True)
class Choice:
    """What the search chose, with the free transcript beside it for the log. Scores are Whisper's log-
    probability of the text less the charge for its words outside the vocabulary."""

    text: str
    score: float
    free: str
    free_score: float
    #: candidates Whisper scored
    scored: int


def _distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Edit distance between phone strings, over the longer one's length."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1] / max(len(a), len(b), 1)


@functools.cache
def _phones(word: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(re.sub(r"\d", "", p) for p in pron.split()) for pron in pronunciations(word)[0])


@functools.cache
def _spoken_vocabulary(domain: str) -> tuple[str, ...]:
    return tuple(sorted(w for w in vocabulary(domain) if w.isalpha()))


class CommandSearch:
    """Candidates toward the command set's words, scored by Whisper, and the rule that picks one."""

    def __init__(self, domain: str, planner: Planner, *, margin: float = 4.0, oov_penalty: float = 4.0,
                 neighbours: int = 4, rounds: int = 3, max_distance: float = 0.5, span: int = 2) -> None:
        self.domain = domain
        self.planner = planner
        self.grammar = build_grammar(domain)
        self.vocab = vocabulary(domain)
        self.margin = margin
        self.neighbours = neighbours
        self.rounds = rounds
        self.max_distance = max_distance
        #: the longest run of heard words around an unknown one that one edit replaces
        self.span = span
        #: charged per word outside the command set's vocabulary: the command language's prior, which lets an
        #: edit into the vocabulary win when Whisper finds it about as likely as its own spelling
        self.oov_penalty = oov_penalty

    def normalise(self, raw: str) -> str:
        """Whisper's text in the planner's spelling: the unambiguous snap, then written forms ("psm2")."""
        return self.grammar.normalise(snap(raw, self.domain).text)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (one search per domain lives as long as the recogniser)
    def near(self, heard: str) -> tuple[str, ...]:
        """The vocabulary words whose pronunciation is nearest ``heard``'s (several words: their phones run
        together), nearest first."""
        mine = tuple(p for w in heard.split() for p in _phones(w)[0])
        # a word with no pronunciation but its letters ("kneecapulvis") is compared by its spelling
        letters = any(pronunciations(w)[1] == "spelled" and w not in SPELLED for w in heard.split())
        scored = []
        for target in _spoken_vocabulary(self.domain):
            if target == heard:
                continue
            if letters:
                d = _distance(tuple(heard.replace(" ", "")), tuple(target))
            else:
                d = min((_distance(mine, v) for v in _phones(target)
                         if abs(len(v) - len(mine)) <= self.max_distance * len(v)), default=1.0)
            if d <= self.max_distance:
                scored.append((d, target))
        return tuple(w for _, w in sorted(scored)[:self.neighbours])

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def homophones(self, heard: str) -> tuple[str, ...]:
        """The number words that share a pronunciation with ``heard`` ("to" and "two", "for" and "four"): Whisper
        writes a number as the commoner word, and only numbers are worth the decoder's time."""
        mine = set(_phones(heard))
        return tuple(w for w in _spoken_vocabulary(self.domain)
                     if w != heard and w in NUMBER_WORDS and mine & set(_phones(w)))

    def edits(self, text: str) -> list[str]:
        """Every text one edit away: a run of up to ``span`` words around one the vocabulary lacks replaced by
        a near vocabulary word, or a vocabulary word replaced by a number word that sounds the same."""
        words = text.split()
        out: list[str] = []
        for i, w in enumerate(words):
            if not w.isalpha():
                continue
            if w in self.vocab:
                # a vocabulary word is only swapped for one that sounds the same ("psm to" -> "psm two")
                out.extend(" ".join([*words[:i], v, *words[i + 1:]]) for v in self.homophones(w))
                continue
            # every span of up to ``span`` words around the unknown one ("knee be" -> "ap")
            for a in range(max(0, i - self.span + 1), i + 1):
                for b in range(i + 1, min(len(words), a + self.span) + 1):
                    if all(x.isalpha() for x in words[a:b]):
                        out.extend(" ".join([*words[:a], v, *words[b:]]) for v in self.near(" ".join(words[a:b])))
        return list(dict.fromkeys(self.grammar.normalise(t) for t in out))

    def choose(self, hypotheses: Sequence[str], scorer: Scorer) -> Choice:
        """The candidate to plan from. Candidates: the hypotheses in the planner's spelling, then, from the
        best-scoring one, edits kept one at a time while each raises Whisper's score. The choice: the best-
        scoring candidate the planner understands, if it is within ``margin`` of the free transcript's score
        (the first hypothesis); otherwise the best-scoring candidate."""
        scores: dict[str, float] = {}

        def rate(texts: Sequence[str]) -> None:
            new = [t for t in dict.fromkeys(texts) if t and t not in scores]
            for t, s in zip(new, scorer([surface(t) for t in new]), strict=True):
                scores[t] = s - self.oov_penalty * sum(w not in self.vocab and w.isalpha() for w in t.split())

        texts = [self.normalise(h) for h in hypotheses]
        free = texts[0] if texts else ""
        # ``align`` does not score the end of the text, so a hypothesis that stops early ("lift" for "lift the
        # needle 8 cm with psm1") is never charged for the speech it leaves out: such hypotheses are no candidates
        rate([t for t in texts if t == free or len(t.split()) >= _MIN_KEPT * len(free.split())])
        if not scores:
            return Choice("", float("-inf"), "", float("-inf"), 0)
        current = max(scores, key=scores.__getitem__)
        for _ in range(self.rounds):
            rate(self.edits(current))
            best = max(scores, key=scores.__getitem__)
            if scores[best] <= scores[current]:
                break
            current = best
        free_score = scores.get(free, float("-inf"))
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        pick = ranked[0]
        if not understood(self.planner, self.domain, pick):
            for cand in ranked:
                if scores[cand] < free_score - self.margin:
                    break
                if understood(self.planner, self.domain, cand):
                    pick = cand
                    break
        return Choice(pick, scores[pick], free, free_score, len(scores))
