"""Agreement of two recognisers: nothing is proposed unless both engines' transcripts make the same plan.

The grammar decoder and Whisper fail differently: the first forces any speech into the nearest command, the
second spells clinical words its own way. A misrecognition that both make into the same plan is much rarer
than either alone, so in this mode a plan is proposed only when both transcripts plan to the same steps with
the same arguments (and the same control); otherwise the person is asked to say it again, and both
transcripts are kept for the log. A stop is the exception: a stop heard by either engine acts at once, since a
missed stop costs more than a false one.
"""

from __future__ import annotations

import json

from medrobot_llm.consoles.voice.asr import Recognizer, Transcript
from medrobot_llm.consoles.voice.audio import Audio
from medrobot_llm.consoles.voice.console import Glancing
from medrobot_llm.core.plan import Plan
from medrobot_llm.planning.base import Planner

__all__ = ["SAY_AGAIN", "AgreementRecognizer", "plan_signature"]

SAY_AGAIN = "say again: the two recognisers heard different commands"


def plan_signature(plan: Plan) -> str:
    """What must be equal for two plans to be the same command: the steps with their arguments, and the
    control. Status, wording of a reason or question and the domain are not: they follow from these."""
    data = plan.to_json()
    return json.dumps({"steps": data.get("steps") or [], "control": data.get("control")}, sort_keys=True)


class AgreementRecognizer:
    """Two recognisers and the session's planner; a transcript comes out only when both plan the same.

    The first recogniser is asked first; when it hears a stop the second is not asked at all, so a stop costs
    one decode. The agreed transcript is the first one's text with the lower of the two confidences: the
    console's threshold then applies to the less sure engine.
    """

    def __init__(self, domain: str, first: Recognizer, second: Recognizer, planner: Planner) -> None:
        self.domain = domain
        self.first = first
        self.second = second
        self.planner = planner
        self.name = f"agree({first.name}+{second.name})"

    def glance(self, audio: Audio) -> Transcript | None:
        """The first recogniser's glance at an utterance's start for a stop (the console's ``Glancing``): a stop
        needs no agreement, as in ``transcribe``."""
        return self.first.glance(audio) if isinstance(self.first, Glancing) else None

    def transcribe(self, audio: Audio) -> Transcript:
        a = self.first.transcribe(audio)
        if a.stop:
            return a
        b = self.second.transcribe(audio)
        if b.stop:
            return b
        heard = {self.first.name: a.text, self.second.name: b.text}
        details = {f"{self.first.name}_confidence": a.confidence, f"{self.second.name}_confidence": b.confidence}
        if self._signature(a.text) != self._signature(b.text):
            return Transcript(text="", confidence=0.0, raw=a.raw, engine=self.name, note=SAY_AGAIN,
                              details=details, alternatives=heard)
        note = "; ".join(n for n in (a.note, b.note) if n)
        return Transcript(text=a.text, confidence=min(a.confidence, b.confidence), raw=a.raw, words=a.words,
                          engine=self.name, note=note, details=details, alternatives=heard,
                          not_command=a.not_command or b.not_command)

    def _signature(self, text: str) -> str:
        return plan_signature(self.planner.plan(self.domain, text))
