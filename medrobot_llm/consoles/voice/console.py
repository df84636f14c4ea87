"""The voice console's logic, apart from any microphone: utterances in, one record per utterance out.

Like the text console it decides nothing about safety; it turns audio into text and hands the text to the
same ``Session`` / supervisor as ``medrobot run``. Three things are decided here because only the voice
console knows them:

- a transcript below the confidence threshold is not acted on; the person is asked to repeat;
- a stop phrase goes straight to the supervisor's e-stop, before any planning, and it needs only a lower
  confidence (a false stop is safe, a missed one is not);
- a radiation step is confirmed only by the confirmation phrase for that step ("confirm shot",
  "confirm exposure", "confirm spin"), made from the skill's own synonyms; "yes" is not enough, and
  ``--yes`` confirms contact steps only, never an exposure, because a stray or misheard utterance must
  never fire the tube.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from medrobot_llm.consoles.voice.asr import Recognizer, Transcript
from medrobot_llm.consoles.voice.audio import AsrError, Audio
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import CONTROL_PHRASES
from medrobot_llm.session import Session
from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.safety.supervisor import Question
from medrobot_llm.consoles.voice.grammar import spoken_words

__all__ = ["DEFAULT_THRESHOLD", "VoiceConsole", "confirmation_phrases", "is_confirmation_for"]

DEFAULT_THRESHOLD = 0.6
#: words that turn a confirmation into its opposite ("don't confirm the shot")
_NEGATIONS = frozenset({"no", "not", "don't", "dont", "never", "cancel", "deny", "stop", "wait"})
_CONFIRM_WORDS = ("confirm", "confirmed", "confirming")
#: the phrases named first when a wrong answer is refused
_SHOWN_FIRST = frozenset({"shot", "exposure", "spin", "scan"})
_ARTICLES = frozenset({"the", "a", "an", "one", "this", "that"})


@functools.cache
def confirmation_phrases(domain: str, skill: str) -> tuple[str, ...]:
    """The phrases that confirm one radiation step: "confirm" and a word naming that skill, taken from its
    synonyms and left out when another radiation skill shares it ("image" names both a shot and a spin)."""
    cs = load_command_set(domain)
    radiation = [s for s in cs.skills.values() if s.hazard.value == "radiation"]

    def nouns(spec_name: str) -> set[str]:
        spec = cs.skills[spec_name]
        out: set[str] = set()
        for syn in (*spec.synonyms, spec.name.replace("_", " ")):
            words = spoken_words(syn)
            if words and len(words[-1]) >= 3:
                out.add(words[-1])
        return out

    own = nouns(skill)
    for other in radiation:
        if other.name != skill:
            own -= nouns(other.name)
    return tuple(sorted(f"confirm {w}" for w in own))


def is_confirmation_for(text: str, domain: str, skill: str) -> bool:
    """True when ``text`` says the confirmation phrase of ``skill`` and does not negate it."""
    words = [w for w in tokenize(text) if w not in _ARTICLES]
    if any(w in _NEGATIONS for w in words):
        return False
    wanted = {p.split()[1] for p in confirmation_phrases(domain, skill)}
    return any(w in _CONFIRM_WORDS and i + 1 < len(words) and words[i + 1] in wanted for i, w in enumerate(words))


def _is_plain_yes(text: str) -> bool:
    said = " ".join(tokenize(text))
    if any(w in _NEGATIONS for w in said.split()):
        return False
    return said in CONTROL_PHRASES["confirm"] or said.startswith("confirm")


@dataclass
class VoiceConsole:
    """Turns each utterance into at most one supervisor call; emits one JSON-able record per utterance.

    ``emit`` gets every record (``voice --json`` prints them as they come). Utterances are taken in order;
    while the supervisor asks a question the next utterance is the answer.
    """

    session: Session
    recognizer: Recognizer
    emit: Callable[[dict[str, Any]], None]
    threshold: float = DEFAULT_THRESHOLD
    stop_threshold: float = DEFAULT_THRESHOLD / 2
    yes: bool = False
    answer_tries: int = 2
    timeout_s: float = 300.0

    def run(self, utterances: Iterable[Audio]) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        it = iter(utterances)

        def out(rec: dict[str, Any]) -> None:
            records.append(rec)
            self.emit(rec)

        for audio in it:
            heard = self._hear(audio)
            rec = self._record(audio, heard)
            if heard is None:
                rec["action"] = "repeat"
                out(rec)
                continue
            if heard.stop and heard.confidence >= self.stop_threshold:
                self._stop(heard, rec)
                out(rec)
                continue
            if heard.confidence < self.threshold or not heard.text:
                rec["action"] = "repeat"
                rec["message"] = (heard.note if heard.alternatives and not heard.text else
                                  f"not sure I heard that right (confidence {heard.confidence:.2f} < "
                                  f"{self.threshold:.2f}); please repeat")
                out(rec)
                continue
            rec["action"] = "command"
            outcome = self.session.run(heard.text, confirm=self._answerer(it, out), timeout_s=self.timeout_s)
            rec["plan"] = outcome.plan
            rec["outcome"] = outcome.to_json()
            out(rec)
        return records

    def _hear(self, audio: Audio) -> Transcript | None:
        try:
            return self.recognizer.transcribe(audio)
        except AsrError as exc:
            self.emit({"kind": "error", "source": audio.source, "message": str(exc)})
            return None

    def _record(self, audio: Audio, heard: Transcript | None) -> dict[str, Any]:
        return {"transcript": heard.text if heard else "", "confidence": heard.confidence if heard else 0.0,
                "plan": None, "source": audio.source, "engine": self.recognizer.name,
                "note": heard.note if heard else "the audio could not be transcribed",
                **({"transcripts": dict(heard.alternatives)} if heard and heard.alternatives else {})}

    def _stop(self, heard: Transcript, rec: dict[str, Any]) -> None:
        reply = self.session.supervisor.stop(f"voice stop: {heard.text!r}", source="voice")
        rec["action"] = "stop"
        rec["state"] = reply.state.value
        rec["message"] = reply.message

    def _answerer(self, it: Iterator[Audio], out: Callable[[dict[str, Any]], None]) -> Callable[[Question], bool]:
        """The confirmation policy for one run: the next utterance answers the question that was asked."""

        def answer(question: Question) -> bool:
            radiation = question.hazard.value == "radiation"
            if self.yes and not radiation:
                out({"kind": "answer", "question": question.to_json(), "action": "confirm",
                     "message": "confirmed by --yes (contact step)"})
                return True
            for _ in range(self.answer_tries):
                audio = next(it, None)
                if audio is None:
                    out({"kind": "answer", "question": question.to_json(), "action": "deny",
                         "message": "no answer was said: denied"})
                    return False
                heard = self._hear(audio)
                rec = {"kind": "answer", "question": question.to_json(), **self._record(audio, heard)}
                if heard is not None and heard.stop and heard.confidence >= self.stop_threshold:
                    self._stop(heard, rec)
                    out(rec)
                    return False
                if heard is None or heard.confidence < self.threshold:
                    rec["action"] = "repeat"
                    rec["message"] = "not sure I heard the answer; please repeat"
                    out(rec)
                    continue
                if radiation:
                    ok = is_confirmation_for(heard.text, self.session.domain, question.skill)
                    phrases = sorted(confirmation_phrases(self.session.domain, question.skill),
                                     key=lambda ph: (ph.split()[1] not in _SHOWN_FIRST, ph))
                    rec["message"] = ("confirmed by its phrase" if ok else
                                      f"a {question.skill} step is confirmed only by saying "
                                      f"{' / '.join(repr(p) for p in phrases[:4])}: denied")
                else:
                    ok = _is_plain_yes(heard.text)
                    rec["message"] = "confirmed" if ok else "not a yes: denied"
                rec["action"] = "confirm" if ok else "deny"
                out(rec)
                return ok
            out({"kind": "answer", "question": question.to_json(), "action": "deny",
                 "message": f"no clear answer after {self.answer_tries} tries: denied"})
            return False

        return answer
