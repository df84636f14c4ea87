"""The voice console's logic, apart from any microphone: utterances in, one record per utterance out.

Like the text console it decides nothing about safety; it turns audio into text and hands the plan to the
same ``Session`` / supervisor as ``medrobot run``. What is decided here is what only the voice console
knows, and all of it is about a misrecognition never moving the robot:

- a transcript below the confidence threshold is not acted on; the person is asked to repeat;
- only speech addressed to the robot is acted on: it opens with the wake word, or (``push_to_talk``) it
  was said with the key held; everything else is recorded as ignored, since talk in a theatre is mostly
  not for the robot and the grammar decoder turns any speech into its nearest command;
- a stop phrase goes straight to the supervisor's e-stop, before any planning, addressed or not, and it
  needs only a lower confidence (a false stop is safe, a missed one is not). Utterances are decoded on
  their own thread, so a stop acts while a plan runs;
- a plan made from speech is read back (numbers, sides, directions, as ``render_plan`` writes it) and
  runs only after that read-back is confirmed; anything else drops it, audited as discarded. The plan
  that runs is the plan that was read back: it is planned once (``Session.propose``);
- while it waits for an answer (a read-back's or a step's question's), an utterance is decoded as one where the
  engine can (``Answering``): only the answers and the stops can be said then, and a stop weighed against the
  command grammar's nearest command was a false stop on "confirm" and on flite's "yes";
- speech the engine judges not to be a command at all (``Transcript.not_command``) is said to be so and
  never planned;
- a radiation step is confirmed only by the confirmation phrase for that step ("confirm shot",
  "confirm exposure", "confirm spin"), made from the skill's own synonyms; "yes" is not enough, and
  ``--yes`` confirms contact steps only, never an exposure, because a stray or misheard utterance must
  never fire the tube.
"""

from __future__ import annotations

import functools
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from medrobot_llm.consoles.voice.asr import Recognizer, Transcript
from medrobot_llm.consoles.voice.audio import AsrError, Audio
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import CONTROL_PHRASES
from medrobot_llm.session import Session
from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.core.plan import Plan, PlanStatus
from medrobot_llm.consoles.render import render_plan
from medrobot_llm.safety.supervisor import Question
from medrobot_llm.consoles.voice.grammar import DEFAULT_WAKE_WORD, spoken_words, wake_words

__all__ = ["ASKED_ANSWERS", "DEFAULT_STOP_THRESHOLD", "DEFAULT_THRESHOLD", "DEFAULT_WAKE_WORD", "NOT_A_COMMAND",
           "SAY_YES", "Answering", "Glancing", "Key", "VoiceConsole", "confirmation_phrases", "is_confirmation_for", "is_plain_yes",
           "spoken_readback", "unsure"]

DEFAULT_THRESHOLD = 0.6
#: a stop needs less: a false stop is safe, a missed one is not
DEFAULT_STOP_THRESHOLD = DEFAULT_THRESHOLD / 2
NOT_A_COMMAND = "that was not a command; nothing done"
#: the answers a read-back or a contact step's question asks for, as the console shows them: "yes", and "confirm",
#: which the supervisor's own question text asks for. Any confirm phrase of the command set is taken
#: (``is_plain_yes``); these two are the ones shown, and heard as themselves when an answer is awaited
#: (``Answering``; test_voice_answer_words.py)
ASKED_ANSWERS: tuple[str, ...] = ("yes", "confirm")
#: how the console asks for them
SAY_YES = " or ".join(repr(a) for a in ASKED_ANSWERS)
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


#: words that take a yes back when said with it ("yes, no", "yes. wait, no.", "yes, hold on"): the word that
#: opens a stop, cancel, deny or pause phrase (the rest, "the plan", "a moment", is no sign), unless a confirm
#: phrase uses it too, and the negations
_TAKEN_BACK = (_NEGATIONS | {tokenize(p)[0] for kind in ("stop", "cancel", "deny", "pause")
                             for p in CONTROL_PHRASES[kind] if tokenize(p)[0].isalpha()}) - {
    w for p in CONTROL_PHRASES["confirm"] for w in tokenize(p)} - _ARTICLES


def is_plain_yes(text: str) -> bool:
    """An unconditional yes: the whole utterance is a confirm phrase (or "confirm ..."), with no word anywhere
    in it that takes the yes back, since the last word of "yes, no" is the one the operator meant."""
    said = " ".join(tokenize(text))
    if any(w in _TAKEN_BACK for w in said.split()):
        return False
    return said in CONTROL_PHRASES["confirm"] or said.startswith("confirm")


def unsure(heard: Transcript, threshold: float) -> str | None:
    """Why a transcript is not acted on (nothing heard, or below ``threshold``: the person is asked to repeat),
    or None when it may be."""
    if heard.confidence >= threshold and heard.text:
        return None
    if heard.alternatives and not heard.text:
        return heard.note
    return f"not sure I heard that right (confidence {heard.confidence:.2f} < {threshold:.2f}); please repeat"


@runtime_checkable
class Answering(Protocol):
    """A recogniser that can decode an utterance as an answer (``PocketSphinxRecognizer.answer``): listening only
    for the answer phrases and the stop phrases, the only things the console takes while it waits for one."""

    def answer(self, audio: Audio) -> Transcript: ...


@runtime_checkable
class Glancing(Protocol):
    """A recogniser with a cheap, precise stop check (``PocketSphinxRecognizer.glance``) for an utterance's start
    handed over at the first sign of its end (``Audio.glance``); Whisper and agreement glance through it, and an
    engine without one (``--asr openai``) is not given such a start."""

    def glance(self, audio: Audio) -> Transcript | None: ...


@dataclass(frozen=True)
class Key:
    """A key pressed at the console (``--mic``): "y" confirms a read-back or a contact step, "n" denies.
    A key never confirms an exposure: that takes the step's spoken phrase."""

    key: str


@dataclass(frozen=True)
class _Heard:
    audio: Audio
    transcript: Transcript | None
    #: decoded as an answer (``Answering``), while one was awaited
    as_answer: bool = False


#: put in the queue when the listening thread latched a stop, so an answer being waited for ends at once
_STOPPED = object()
_Item = _Heard | Key | object | None


def spoken_readback(plan: Plan) -> str:
    """The read-back for espeak-ng: the rendered plan with the notation a voice cannot say made into pauses."""
    return re.sub(r"[ \t]+", " ", re.sub(r"[_=(),\[\]]+", " ", render_plan(plan)))


@dataclass
class VoiceConsole:
    """Turns each utterance into at most one supervisor call; emits one JSON-able record per utterance.

    ``emit`` gets every record (``voice --json`` prints them as they come), from this thread or the
    listening thread. Utterances are taken in order; while the console waits for an answer (to a read-back
    or a step's question) the next utterance is the answer. ``gated``: the utterances are recordings (not a
    live microphone), so one is decoded ahead only while a plan runs; a live source is never held back.
    ``speak`` says a read-back aloud (``--speak``).
    """

    session: Session
    recognizer: Recognizer
    emit: Callable[[dict[str, Any]], None]
    threshold: float = DEFAULT_THRESHOLD
    stop_threshold: float = DEFAULT_STOP_THRESHOLD
    yes: bool = False
    answer_tries: int = 2
    timeout_s: float = 300.0
    wake_word: str = DEFAULT_WAKE_WORD
    push_to_talk: bool = False
    speak: Callable[[str], None] | None = None
    gated: bool = True
    #: how long after a spoken read-back a heard utterance is taken for the console's own voice
    echo_s: float = 1.5
    #: how long a read-back waits for its answer; None: as long as the supervisor keeps a step's question open,
    #: since a "yes" said minutes later is an answer to something else
    readback_timeout_s: float | None = None
    #: the time the read-back's expiry is measured by (a test's manual clock)
    clock: Callable[[], float] = time.monotonic
    _inbox: queue.Queue[_Item] = field(default_factory=queue.Queue, init=False, repr=False)
    _turn: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _running: bool = field(default=False, init=False, repr=False)
    _out_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    #: the console waits for an answer (a read-back's or a step's question's), so an utterance is decoded as one
    _awaiting: bool = field(default=False, init=False, repr=False)
    #: the console waits for the next item: a recording is decoded only then or while a plan runs (``gated``)
    _waiting: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        words = wake_words(self.wake_word)
        self._wake = re.compile(r"^\W*" + r"\W+".join(map(re.escape, words)) + r"\b\W*", re.IGNORECASE)

    def run(self, utterances: Iterable[Audio], keys: Iterable[str] = ()) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []

        def out(rec: dict[str, Any]) -> None:
            with self._out_lock:
                records.append(rec)
                self.emit(rec)

        listener = threading.Thread(target=self._listen, args=(utterances, out), name="medrobot-voice-listen",
                                    daemon=True)
        listener.start()
        threading.Thread(target=self._keys, args=(keys,), name="medrobot-voice-keys", daemon=True).start()
        while True:
            item = self._take()
            if item is None:
                break
            if isinstance(item, _Heard):
                self._utterance(item, out)
        listener.join()
        return records

    # ------------------------------------------------------------------ the listening thread
    def _listen(self, utterances: Iterable[Audio], out: Callable[[dict[str, Any]], None]) -> None:
        """Decode every utterance as it comes and latch a stop at once, whatever the console is doing."""
        try:
            for audio in utterances:
                if self.gated:
                    with self._turn:
                        self._turn.wait_for(lambda: self._running or self._waiting)
                heard_at = time.monotonic()
                as_answer = self._awaiting and isinstance(self.recognizer, Answering)
                if audio.glance:
                    if as_answer or not isinstance(self.recognizer, Glancing):
                        continue  # an answer is weighed against the stops by its own decode
                    heard = self.recognizer.glance(audio)
                    if heard is None or not heard.stop or heard.confidence < self.stop_threshold:
                        continue
                else:
                    heard = self._hear(audio, as_answer)
                if not as_answer and self._awaiting and heard is not None and heard.stop:
                    # a question was asked while this was decoded for a command: it is the answer, and a stop
                    # competes with the answers, not with the command grammar's nearest command
                    as_answer = isinstance(self.recognizer, Answering)
                    heard = self._hear(audio, as_answer) if as_answer else heard
                stop = heard is not None and heard.stop and heard.confidence >= self.stop_threshold
                if audio.provisional and not stop:
                    continue  # the start of a longer utterance: it is acted on once complete
                if heard is not None and stop:
                    rec = self._record(audio, heard)
                    self._stop(heard, rec)
                    rec["latency_s"] = round(time.monotonic() - heard_at, 3)
                    out(rec)
                    self._inbox.put(_STOPPED)
                    continue
                with self._turn:
                    self._inbox.put(_Heard(audio, heard, as_answer))
                    if self.gated:
                        self._turn.wait_for(lambda: self._running or self._inbox.empty())
        finally:
            self._inbox.put(None)

    def _keys(self, keys: Iterable[str]) -> None:
        for k in keys:
            self._inbox.put(Key(k.strip().lower()[:1]))

    def _take(self, timeout: float | None = None, answer: Callable[[dict[str, Any]], None] | None = None) -> _Item:
        """The next item; the end of the utterances stays in the queue for whoever waits next. ``answer`` (where its
        records go): it is the answer to a read-back or a question, so an utterance is decoded as one."""
        with self._turn:
            self._awaiting, self._waiting = answer is not None, True
            self._turn.notify_all()
        try:
            item = self._inbox.get(timeout=timeout)
        finally:
            with self._turn:
                self._awaiting = self._waiting = False
                self._turn.notify_all()
        if item is None:
            self._inbox.put(None)
        return self._as_answer(item, answer) if answer is not None else item

    def _as_answer(self, item: _Item, out: Callable[[dict[str, Any]], None]) -> _Item:
        """An utterance taken as an answer, decoded as one when it was decoded ahead for a command (while a plan
        ran, before its question was asked); a stop heard so latches here and ends the wait."""
        if not isinstance(item, _Heard) or item.as_answer or not isinstance(self.recognizer, Answering):
            return item
        heard = self._hear(item.audio, True)
        if heard is not None and heard.stop and heard.confidence >= self.stop_threshold:
            rec = self._record(item.audio, heard)
            self._stop(heard, rec)
            out(rec)
            return _STOPPED
        return _Heard(item.audio, heard, True)

    def _set_running(self, running: bool) -> None:
        with self._turn:
            self._running = running
            self._turn.notify_all()

    # ------------------------------------------------------------------ one utterance
    def _utterance(self, h: _Heard, out: Callable[[dict[str, Any]], None]) -> None:
        heard = h.transcript
        rec = self._record(h.audio, heard)
        if heard is None:
            rec["action"] = "repeat"
            out(rec)
            return
        if (why := unsure(heard, self.threshold)) is not None:
            rec["action"] = "repeat"
            rec["message"] = why
            out(rec)
            return
        text = self._addressed(h)
        if text is None:
            rec["action"] = "ignored"
            rec["message"] = ("not said with the talk key held: ignored" if self.push_to_talk else
                              f"not addressed to the robot (say {self.wake_word!r} first): ignored")
            out(rec)
            return
        if not text:
            rec["action"] = "repeat"
            rec["message"] = f"heard {self.wake_word!r} and nothing after it; please say the command"
            out(rec)
            return
        if heard.not_command:
            rec["action"] = "not_a_command"
            rec["message"] = NOT_A_COMMAND
            out(rec)
            return
        plan = self.session.propose(text)
        rec["plan"] = plan.to_json()
        if plan.status is PlanStatus.CONTROL and plan.control is not None:
            reply = self.session.supervisor.control(plan.control, source="voice")
            rec.update(action="control", state=reply.state.value, message=reply.message)
        elif plan.status is not PlanStatus.OK:
            rec["action"] = "command"
            rec["outcome"] = self.session.run_plan(plan, timeout_s=self.timeout_s).to_json()
        elif not self._read_back(plan, h.audio, out):
            self.session.discard(plan)
            rec.update(action="discarded", message="the read-back was not confirmed: plan dropped, nothing moved")
        else:
            rec["action"] = "command"
            self._set_running(True)
            try:
                outcome = self.session.run_plan(plan, confirm=self._answerer(out), timeout_s=self.timeout_s)
            finally:
                self._set_running(False)
            rec["outcome"] = outcome.to_json()
        out(rec)

    def _addressed(self, h: _Heard) -> str | None:
        """The command without its wake word, or None when the utterance was not for the robot."""
        assert h.transcript is not None
        text = h.transcript.text
        if self.push_to_talk:
            return text if h.audio.pressed else None
        m = self._wake.match(text)
        return text[m.end():].strip() if m else None

    def _read_back(self, plan: Plan, audio: Audio, out: Callable[[dict[str, Any]], None]) -> bool:
        """Show (and say) the plan; True only when the next answer confirms it."""
        shown = render_plan(plan)
        window = (self.session.supervisor.confirm_timeout_s if self.readback_timeout_s is None
                  else self.readback_timeout_s)
        deadline = self.clock() + window
        out({"kind": "readback", "source": audio.source, "text": shown, "plan": plan.to_json(),
             "message": f"say {SAY_YES} (or press y) to run exactly this; anything else drops it"})
        if self.speak is not None:
            self.speak(spoken_readback(plan))
            self._drop_echo(time.monotonic() + self.echo_s, out)
        question = {"readback": shown}
        expired = {"kind": "answer", "question": question, "action": "deny",
                   "message": f"no answer within {window:g} s: the read-back expired, plan dropped"}
        for _ in range(self.answer_tries):
            try:
                item = self._take(max(deadline - self.clock(), 0.0), out)
            except queue.Empty:
                out(expired)
                return False
            if item is not None and item is not _STOPPED and self.clock() > deadline:
                heard_late = self._record(item.audio, item.transcript) if isinstance(item, _Heard) else {}
                out({**heard_late, **expired})
                return False
            if item is None or item is _STOPPED:
                out({"kind": "answer", "question": question, "action": "deny",
                     "message": "no answer was said: plan dropped" if item is None else "stopped: plan dropped"})
                return False
            if isinstance(item, Key):
                ok = item.key == "y"
                out({"kind": "answer", "question": question, "action": "confirm" if ok else "deny",
                     "message": f"key {item.key!r}: " + ("confirmed" if ok else "denied")})
                return ok
            assert isinstance(item, _Heard)
            rec = {"kind": "answer", "question": question, **self._record(item.audio, item.transcript)}
            heard = item.transcript
            if heard is None or heard.confidence < self.threshold or heard.not_command:
                rec.update(action="repeat", message="not sure I heard the answer; please say it again")
                out(rec)
                continue
            ok = is_plain_yes(self._wake.sub("", heard.text))
            rec.update(action="confirm" if ok else "deny",
                       message="read-back confirmed" if ok else "not a yes: plan dropped")
            out(rec)
            return ok
        out({"kind": "answer", "question": question, "action": "deny",
             "message": f"no clear answer after {self.answer_tries} tries: plan dropped"})
        return False

    def _drop_echo(self, until: float, out: Callable[[dict[str, Any]], None]) -> None:
        """Utterances heard while the console spoke, and until the segmenter has cut them, are its own voice,
        not an answer (a stop among them has already acted on the listening thread)."""
        while (wait := until - time.monotonic()) > 0:
            try:
                item = self._take(wait)
            except queue.Empty:
                return
            if item is None:
                return
            if isinstance(item, _Heard):
                out({**self._record(item.audio, item.transcript), "action": "ignored",
                     "message": "heard while the read-back was spoken: taken for the console's own voice"})

    def _hear(self, audio: Audio, as_answer: bool = False) -> Transcript | None:
        try:
            if as_answer and isinstance(self.recognizer, Answering):
                return self.recognizer.answer(audio)
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

    def _asks(self, question: Question) -> str:
        """What to say to ``question``, in the words the answer is judged by (``ASKED_ANSWERS``), shown before the
        answer is taken."""
        if question.hazard.value == "radiation":
            phrases = sorted(confirmation_phrases(self.session.domain, question.skill),
                             key=lambda ph: (ph.split()[1] not in _SHOWN_FIRST, ph))
            return (f"{question.hazard.value} step {question.step_index + 1} ({question.skill}): say "
                    f"{' / '.join(repr(p) for p in phrases[:4])}; anything else denies it")
        return (f"{question.hazard.value} step {question.step_index + 1} ({question.skill}): say {SAY_YES} "
                "(or press y); anything else denies it")

    def _answerer(self, out: Callable[[dict[str, Any]], None]) -> Callable[[Question], bool]:
        """The confirmation policy for one run: the next utterance (or key) answers the question asked."""

        def answer(question: Question) -> bool:
            radiation = question.hazard.value == "radiation"
            if self.yes and not radiation:
                out({"kind": "answer", "question": question.to_json(), "action": "confirm",
                     "message": "confirmed by --yes (contact step)"})
                return True
            out({"kind": "question", "question": question.to_json(), "action": "ask",
                 "message": self._asks(question)})
            for _ in range(self.answer_tries):
                item = self._take(answer=out)
                if item is None or item is _STOPPED:
                    out({"kind": "answer", "question": question.to_json(), "action": "deny",
                         "message": "no answer was said: denied" if item is None else "stopped: denied"})
                    return False
                if isinstance(item, Key):
                    ok = item.key == "y" and not radiation
                    out({"kind": "answer", "question": question.to_json(), "action": "confirm" if ok else "deny",
                         "message": f"key {item.key!r}: " + ("confirmed" if ok else "denied" if not radiation else
                                                            "an exposure is confirmed only by its phrase: denied")})
                    return ok
                assert isinstance(item, _Heard)
                heard = item.transcript
                rec = {"kind": "answer", "question": question.to_json(), **self._record(item.audio, heard)}
                if heard is None or heard.confidence < self.threshold or heard.not_command:
                    rec["action"] = "repeat"
                    rec["message"] = "not sure I heard the answer; please repeat"
                    out(rec)
                    continue
                said = self._wake.sub("", heard.text)
                if radiation:
                    ok = is_confirmation_for(said, self.session.domain, question.skill)
                    phrases = sorted(confirmation_phrases(self.session.domain, question.skill),
                                     key=lambda ph: (ph.split()[1] not in _SHOWN_FIRST, ph))
                    rec["message"] = ("confirmed by its phrase" if ok else
                                      f"a {question.skill} step is confirmed only by saying "
                                      f"{' / '.join(repr(p) for p in phrases[:4])}: denied")
                else:
                    ok = is_plain_yes(said)
                    rec["message"] = "confirmed" if ok else "not a yes: denied"
                rec["action"] = "confirm" if ok else "deny"
                out(rec)
                return ok
            out({"kind": "answer", "question": question.to_json(), "action": "deny",
                 "message": f"no clear answer after {self.answer_tries} tries: denied"})
            return False

        return answer
