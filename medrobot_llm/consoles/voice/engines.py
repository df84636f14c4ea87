"""The recognisers ``medrobot voice --asr`` offers, made by name, so the CLI and the benchmarks agree on them."""

from __future__ import annotations

from medrobot_llm.consoles.voice.asr import PocketSphinxRecognizer, Recognizer
from medrobot_llm.consoles.voice.scored_asr import OpenAIRecognizer
from medrobot_llm.consoles.voice.grammar import DEFAULT_WAKE_WORD
from medrobot_llm.planning.base import Planner

__all__ = ["ENGINES", "make_recognizer"]

#: pocketsphinx: offline, grammar from skills/; whisper: offline faster-whisper; agree: both must plan the same;
#: openai: an OpenAI-compatible transcription endpoint
ENGINES = ("pocketsphinx", "whisper", "agree", "openai")


def make_recognizer(engine: str, domain: str, planner: Planner, *, model: str | None = None,
                    wake_word: str = DEFAULT_WAKE_WORD, cpu_threads: int = 0) -> Recognizer:
    """The recogniser for ``engine``. Whisper's model and pocketsphinx's decoder are loaded here, so a missing
    package or model is an AsrError before anything listens, and the first utterance (maybe a stop) is not
    held up by loading; ``model`` is a local directory or cached model name for Whisper; ``wake_word`` goes
    into pocketsphinx's grammar; ``cpu_threads`` for Whisper (0: CTranslate2's choice), so that benchmarks running
    several at once build the same engines with one thread each."""
    if engine not in ENGINES:
        raise ValueError(f"unknown speech recogniser {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "pocketsphinx":
        return PocketSphinxRecognizer(domain, wake_word=wake_word).load()
    if engine == "openai":
        return OpenAIRecognizer(domain)
    from medrobot_llm.consoles.voice.whisper import WhisperRecognizer

    pocketsphinx = PocketSphinxRecognizer(domain, wake_word=wake_word).load()
    if engine == "whisper":
        # pocketsphinx's stop-only pass listens beside Whisper: a missed stop is the one error no read-back catches
        whisper = WhisperRecognizer(domain, model=model, cpu_threads=cpu_threads, stop_check=pocketsphinx.stop_only,
                                    stop_glance=pocketsphinx.glance)
        whisper.load()
        return whisper
    from medrobot_llm.consoles.voice.agree import AgreementRecognizer

    # pocketsphinx is asked first and its own decode includes the stop-only pass
    whisper = WhisperRecognizer(domain, model=model, cpu_threads=cpu_threads)
    whisper.load()
    return AgreementRecognizer(domain, pocketsphinx, whisper, planner)
