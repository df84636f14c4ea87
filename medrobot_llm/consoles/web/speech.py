"""Push-to-talk on the page: one recorded utterance in, the voice console's rules out.

The audio is read by the voice console's own reader (``load_wav``: the same checks on a lying header or an empty
file) and transcribed by the same engines (``consoles.voice.engines``); what is done with the transcript follows
the voice console with the talk key held (``push_to_talk``): a stop phrase latches the e-stop at the lower stop
threshold, before any planning; an unsure transcript or speech that is not a command does nothing; a command is
planned once (``Session.propose``) and its plan is read back as a question, and moves only after Confirm of that
read-back, and only while no supervisor question is open (409: that question is answered first, and stays the
one shown). A spoken yes / no is not an answer here: the page's buttons are bound to their question, a voice is not.
"""

from __future__ import annotations

import os
import tempfile
import threading

from medrobot_llm.consoles.voice.asr import Recognizer, Transcript
from medrobot_llm.consoles.voice.audio import AsrError, Audio, load_wav
from medrobot_llm.consoles.voice.console import (
    DEFAULT_STOP_THRESHOLD,
    DEFAULT_THRESHOLD,
    NOT_A_COMMAND,
    spoken_readback,
    unsure,
)
from medrobot_llm.consoles.web.hub import Answer, WebHub
from medrobot_llm.consoles.web.messages import TranscriptMessage
from medrobot_llm.core.plan import PlanStatus

__all__ = ["MAX_SPEECH_S", "SpeechInput"]

_SOURCE = "web-voice"
#: the longest recording that is decoded: a command is a sentence; a button held down for a minute (or a noisy
#: room the recogniser searches hard in) must not keep the one decoder busy for as long
MAX_SPEECH_S = 15.0
def read_wav(data: bytes) -> Audio:
    """The uploaded bytes through ``load_wav``, which reads only regular files: written to one first."""
    fd, name = tempfile.mkstemp(prefix="medrobot-web-", suffix=".wav")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        audio = load_wav(name)
    finally:
        os.unlink(name)
    return Audio(audio.samples, "push-to-talk", pressed=True)


class SpeechInput:
    """Turns one utterance into at most one action, as ``VoiceConsole`` does with the talk key held."""

    def __init__(self, hub: WebHub, recognizer: Recognizer, *, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.hub = hub
        self.recognizer = recognizer
        self.threshold = threshold
        self.stop_threshold = DEFAULT_STOP_THRESHOLD
        self._decoding = threading.Lock()

    def hear(self, data: bytes) -> Answer:
        """One recording; one at a time (a second while one is decoded is refused 429, so decodes never queue up
        behind each other, nor their memory)."""
        if not self._decoding.acquire(blocking=False):
            return Answer.refused(429, "a recording is still being transcribed; speak again when it is done")
        try:
            return self._hear(data)
        finally:
            self._decoding.release()

    def _hear(self, data: bytes) -> Answer:
        try:
            audio = read_wav(data)
            if audio.duration_s > MAX_SPEECH_S:
                return Answer.refused(413, f"the recording is {audio.duration_s:.1f} s long; a spoken command is "
                                      f"at most {MAX_SPEECH_S:g} s (release the talk button after the sentence)")
            heard = self.recognizer.transcribe(audio)
        except AsrError as exc:
            return Answer.refused(422, str(exc).replace(tempfile.gettempdir(), "<upload>"))
        if heard.stop and heard.confidence >= self.stop_threshold:
            answer = self.hub.stop(f"voice stop on the web console: {heard.text!r}")
            return self._said(heard, "stop", answer.body.get("message", ""), answer)
        if (why := unsure(heard, self.threshold)) is not None:
            return self._said(heard, "repeat", why)
        if heard.not_command:
            return self._said(heard, "not_a_command", NOT_A_COMMAND)
        if self.hub.asking():
            # the supervisor's question stays the one shown: a read-back in its place left it unanswerable
            why = "answer the open question first (its Confirm or Deny button); nothing was planned"
            return self._said(heard, "refused", why, Answer.refused(409, why))
        session = self.hub.session
        if session is None:
            return self._said(heard, "refused", "spoken commands are read back by the in-process session; over "
                              "ROS type the command instead", Answer.refused(409, "no in-process session"))
        plan = session.propose(heard.text)
        if plan.status is PlanStatus.CONTROL and plan.control is not None:
            if plan.control.value in ("confirm", "deny"):
                return self._said(heard, "refused", "answer the question with its Confirm or Deny button")
            reply = session.supervisor.control(plan.control, source=_SOURCE)
            return self._said(heard, "control", reply.message)
        if plan.status is not PlanStatus.OK:
            self.hub.show_plan(plan)
            return self._said(heard, "refused", plan.reason or plan.question or plan.status.value)
        question = self.hub.open_readback(plan)
        answer = self._said(heard, "readback", "confirm the read-back to run exactly this plan")
        return Answer(200, {**answer.body, "question": question.model_dump(mode="json"),
                            "spoken": spoken_readback(plan)})

    def _said(self, heard: Transcript, action: str, message: str, answer: Answer | None = None) -> Answer:
        self.hub.emit(TranscriptMessage(text=heard.text, confidence=heard.confidence, action=action,
                                        message=message))
        body = {"transcript": heard.text, "confidence": round(heard.confidence, 3), "action": action,
                "message": message}
        if answer is not None and answer.status != 200:
            return Answer(answer.status, {**answer.body, **body})
        return Answer(200, body)
