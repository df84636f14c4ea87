"""A recogniser in a process of its own, so that decoding never stalls the robot's control loop.

pocketsphinx decodes an utterance in one C call that holds the GIL (a long command: seconds on a loaded machine;
a ticker thread of the same process was measured frozen for 7.9 s of an 11.9 s decode). In the voice console's
process that call froze every other thread with it: the PyBullet backend's sign of life, the supervisor's
watchdog, the listening thread. A plan that ran while a further utterance was decoded (``--wav`` files after the
"yes", or anything said at the microphone during a sweep) ended in FAULT "backend heartbeat lost" (issue 17's
blind attack: 8 of 8 at a load average of 6-10). In its own process the decode holds only that process's GIL;
the console's threads wait on a pipe, which releases it. The web console's push-to-talk needed the same for its
Stop button.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from typing import TypeVar
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from medrobot_llm.consoles.voice.asr import Recognizer, Transcript
from medrobot_llm.consoles.voice.audio import AsrError, Audio
from medrobot_llm.consoles.voice.console import Answering, Glancing

__all__ = ["AnsweringRecognizerProcess", "FullRecognizerProcess", "GlancingRecognizerProcess", "RecognizerProcess",
           "in_own_process"]

_T = TypeVar("_T")

#: the recogniser of a ``RecognizerProcess``, in that process
_WORKER: list[Recognizer] = []


def _start(factory: Callable[[], Recognizer]) -> tuple[str, bool, bool]:
    """Build the recogniser (the pool's first task, so that its error, an ``AsrError`` saying what is missing,
    comes back as it was raised); say its name, whether it can hear an utterance as an answer and whether it can
    glance at one for a stop. The worker's
    stdout is its stderr from here on: the console's stdout may be ``--json`` records, and a library's banner
    or warning must not land among them."""
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _WORKER.append(factory())
    return _WORKER[0].name, isinstance(_WORKER[0], Answering), isinstance(_WORKER[0], Glancing)


def _transcribe(audio: Audio) -> Transcript:
    return _WORKER[0].transcribe(audio)


def _answer(audio: Audio) -> Transcript:
    recognizer = _WORKER[0]
    if not isinstance(recognizer, Answering):
        raise AsrError(f"the {recognizer.name} recogniser cannot hear an utterance as an answer")
    return recognizer.answer(audio)


def _glance(audio: Audio) -> Transcript | None:
    recognizer = _WORKER[0]
    if not isinstance(recognizer, Glancing):
        raise AsrError(f"the {recognizer.name} recogniser has no glance for a stop")
    return recognizer.glance(audio)


class RecognizerProcess:
    """The proxy: ``transcribe`` runs in the worker. One worker, so utterances are decoded in the order they were
    heard, as they were in the console's process."""

    def __init__(self, pool: ProcessPoolExecutor, name: str) -> None:
        self._pool = pool
        self.name = name

    def transcribe(self, audio: Audio) -> Transcript:
        return self._call(_transcribe, audio)

    def _call(self, fn: Callable[[Audio], _T], audio: Audio) -> _T:
        try:
            return self._pool.submit(fn, audio).result()
        except BrokenProcessPool as exc:
            raise AsrError(f"the {self.name} recogniser's process ended ({exc}); nothing more can be heard: "
                           f"restart the console") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class AnsweringRecognizerProcess(RecognizerProcess):
    """The proxy of a recogniser that also hears answers (the console's ``Answering``). The console asks a
    recogniser what it can do by its type, so each set of abilities has a proxy type of its own."""

    def answer(self, audio: Audio) -> Transcript:
        return self._call(_answer, audio)


class GlancingRecognizerProcess(RecognizerProcess):
    """The proxy of a recogniser that can glance at an utterance's start for a stop (the console's ``Glancing``)."""

    def glance(self, audio: Audio) -> Transcript | None:
        return self._call(_glance, audio)


class FullRecognizerProcess(AnsweringRecognizerProcess, GlancingRecognizerProcess):
    """The proxy of a recogniser that does both (pocketsphinx)."""


#: the proxy type for (answers, glances)
_PROXIES: dict[tuple[bool, bool], type[RecognizerProcess]] = {
    (False, False): RecognizerProcess, (True, False): AnsweringRecognizerProcess,
    (False, True): GlancingRecognizerProcess, (True, True): FullRecognizerProcess}


def in_own_process(factory: Callable[[], Recognizer]) -> RecognizerProcess:
    """The recogniser ``factory`` (picklable) builds in a worker process, behind a proxy that offers what it
    offers. It is built now, so a missing model or package is an error at start, not at the first utterance
    (which may be a stop)."""
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        name, answers, glances = pool.submit(_start, factory).result()
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    return _PROXIES[answers, glances](pool, name)
