"""Whisper-style transcripts scored by their segments: an OpenAI-compatible transcription endpoint
(``--asr openai``), and the confidence rule it shares with the offline faster-whisper engine."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from medrobot_llm.consoles.voice.asr import Transcript, stop_phrase
from medrobot_llm.consoles.voice.audio import AsrError, Audio
from medrobot_llm.consoles.voice.grammar import build_grammar
from medrobot_llm.consoles.voice.vocabulary import prompt

__all__ = ["OpenAIRecognizer", "segment_confidence"]


class OpenAIRecognizer:
    """An OpenAI-compatible ``/v1/audio/transcriptions`` endpoint (``--asr openai``)."""

    name = "openai"

    def __init__(self, domain: str, *, model: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, timeout_s: float = 30.0) -> None:
        self.domain = domain
        self.grammar = build_grammar(domain)
        self.model = model or os.environ.get("MEDROBOT_ASR_MODEL") or "whisper-1"
        self.base_url = base_url or os.environ.get("MEDROBOT_ASR_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        self.api_key = api_key or os.environ.get("MEDROBOT_ASR_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.timeout_s = timeout_s

    def transcribe(self, audio: Audio) -> Transcript:
        """One request with the domain's vocabulary as the prompt, asking for segment scores.

        Confidence is exp(mean avg_logprob) scaled by (1 - the highest no_speech_prob) when the server gives
        segments (verbose_json); a server that gives only text gets 0.5, below the default threshold, so an
        unscored transcript is never acted on without the person lowering ``--threshold`` on purpose.
        """
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is a dependency
            raise AsrError("--asr openai needs the openai package (pip install openai)") from exc
        if not self.base_url and not self.api_key:
            raise AsrError("--asr openai needs an endpoint: set MEDROBOT_ASR_BASE_URL (or OPENAI_BASE_URL) "
                           "and MEDROBOT_ASR_API_KEY (or OPENAI_API_KEY)")
        client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "none", timeout=self.timeout_s,
                               max_retries=0)
        try:
            resp = client.audio.transcriptions.create(
                model=self.model, file=("utterance.wav", audio.wav_bytes(), "audio/wav"),
                response_format="verbose_json", language="en", prompt=self._prompt())
        except openai.OpenAIError as exc:
            raise AsrError(f"transcription endpoint failed: {exc}") from exc
        data: dict[str, Any] = resp.model_dump() if hasattr(resp, "model_dump") else dict(resp)
        raw = str(data.get("text") or "").strip()
        segments = [s for s in (data.get("segments") or []) if isinstance(s, dict)]
        details: dict[str, float] = {}
        if segments:
            confidence, details = segment_confidence([float(s.get("avg_logprob", -10.0)) for s in segments],
                                                     [float(s.get("no_speech_prob", 0.0)) for s in segments])
            note = ""
        else:
            confidence = 0.5 if raw else 0.0
            note = "the endpoint gave no segment scores"
        text = " ".join(raw.replace(",", " ").replace(".", " ").replace("!", " ").replace("?", " ").split())
        return Transcript(text=text, confidence=round(confidence, 4) if raw else 0.0, raw=raw, engine=self.name,
                          stop=stop_phrase(text) is not None, note=note, details=details)

    def _prompt(self) -> str:
        return prompt(self.grammar)


def segment_confidence(avg_logprobs: list[float], no_speech_probs: list[float]) -> tuple[float, dict[str, float]]:
    """A Whisper-style transcript's confidence: exp(mean avg_logprob) scaled by (1 - the highest no_speech_prob),
    with the two figures for the log. The log-probability says how sure the decoder was of its words, the
    no-speech probability whether there were words at all; either alone lets a hallucination on silence
    through."""
    if not avg_logprobs:
        return 0.0, {}
    logprob = float(np.mean(avg_logprobs))
    no_speech = max(no_speech_probs, default=0.0)
    confidence = math.exp(min(0.0, logprob)) * (1.0 - min(1.0, max(0.0, no_speech)))
    return confidence, {"avg_logprob": logprob, "no_speech_prob": no_speech}
