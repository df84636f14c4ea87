"""What the offline recogniser listens for while the console waits for an answer (a read-back or a step's
question): only the answer phrases and the stop phrases, since nothing else can be said then that the console
would take.

Decoded with the whole command grammar plus the stop-only pass, an answer was heard wrong in both directions:
espeak-ng's "confirm" came out as "undo" (and a second look heard "whoa": the e-stop latched), flite's "yes" as
"yeah" with the stop-only pass finding "whoa" explained it as well (a false stop). Two things did it. The audio
around a short answer is mostly silence (a ``--wav`` file's padding, the segmenter's tail), which the decoder fits
with words and its per-frame scores drown in: cut to the loud part, "confirm" beat "undo" by 1 per frame and
flite's "yes" was "yes". And a stop is now weighed against the answers themselves, in two grammars of their own,
instead of against the command the big grammar forced the answer into.
"""

from __future__ import annotations

import numpy as np

from medrobot_llm.consoles.voice.audio import SAMPLE_RATE
from medrobot_llm.consoles.voice.frames import TAKING_BACK
from medrobot_llm.consoles.voice.spoken import spoken_phrases
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import CONTROL_PHRASES

__all__ = ["ANSWER_KINDS", "NO_STOP_TOLERANCE", "STOP_TOLERANCE", "answer_jsgf", "is_answer", "is_yes", "stop_answers",
           "trim_to_speech"]

#: the control kinds an answer is: a yes or a no. The other controls that take a yes back ("wait", "cancel") may follow
#: one in the same breath ("yes, no", "yes. wait, no."); said alone they are no answer, and the command grammar, which
#: holds them, hears them (``is_answer``). As answers of their own they fitted stops: a reverberant "abort" fitted
#: "hold" 0.7 per frame better than itself
ANSWER_KINDS = ("confirm", "deny")
_REPLIES = frozenset(tuple(tokenize(p)) for kind in ANSWER_KINDS for p in CONTROL_PHRASES[kind])
_YES = frozenset(tuple(tokenize(p)) for p in CONTROL_PHRASES["confirm"])
_BACKS = frozenset(tuple(tokenize(p)) for kind in TAKING_BACK for p in CONTROL_PHRASES[kind])

#: how much worse per frame than the best answer (each scored alone) the best stop phrase may explain the audio and
#: still be taken, when that answer is a yes. A stop heard as a yes moves the robot, a yes heard as a stop only stops
#: it, so a near tie goes to the stop. Chosen on dev voices and dev phrases only (benchmarks/voice_answers.py, 347
#: stops, 152 answers): the dev stops whose best answer was a yes lay at -0.51 per frame at worst (flite's "estop" in
#: noise at 22.05 kHz); right yeses lay up to -0.57, and every yes within the tolerance is a false stop
STOP_TOLERANCE = 0.55
#: the same when the best answer is no yes: a stop heard as "no" drops the plan as the stop would but latches
#: nothing, and narrowband stops fitted a no far better than themselves (espeak-ng's "estop" at 8 kHz: 1.36 per
#: frame, "stop stop": 1.11; "whoa" fits any vowel without a sibilant), so the stop is taken far more readily, at the
#: price of most dev denials (a no) heard as a stop
NO_STOP_TOLERANCE = 1.4
#: a frame is loud when its mean magnitude is at least this share of the loudest frame's (and above
#: ``_FLOOR``); the answer is cut to the loud frames and ``_KEEP_S`` either side
_LOUD_SHARE = 0.02
_FLOOR = 30.0
_KEEP_S = 0.05
_FRAME = SAMPLE_RATE // 100


def answer_jsgf(wake: tuple[str, ...]) -> str:
    """The answers' grammar: one answer, and up to two phrases that take a yes back ("yes, no", "yes. wait, no."),
    the wake word allowed before it; no stop phrase (stops have their own grammar and are weighed against it)."""
    replies = " | ".join(spoken_phrases([p for kind in ANSWER_KINDS for p in CONTROL_PHRASES[kind]]))
    back = " | ".join(spoken_phrases([p for kind in TAKING_BACK for p in CONTROL_PHRASES[kind]]))
    lead = f"[ {' '.join(wake)} ] " if wake else ""
    return (f"#JSGF V1.0;\ngrammar answers;\npublic <answer> = {lead}<reply> [ <back> [ <back> ] ];\n"
            f"<reply> = {replies};\n<back> = {back};\n")


def is_answer(text: str, wake: tuple[str, ...]) -> bool:
    """Whether ``text`` (the command grammar's transcript) is what the answers' grammar can say, after the wake
    word; anything else there ("go to lateral view of the chest", "cancel") means the utterance was no answer."""
    words = tokenize(text)
    while words and words[0] in wake:
        words = words[1:]
    ends = {i for i in range(1, len(words) + 1) if tuple(words[:i]) in _REPLIES}
    for _ in range(2):
        ends |= {i for j in ends for i in range(j + 1, len(words) + 1) if tuple(words[j:i]) in _BACKS}
    return bool(words) and len(words) in ends


def is_yes(text: str, wake: tuple[str, ...]) -> bool:
    """Whether the answers' grammar's ``text`` is a yes: one confirm phrase, after the wake word, nothing taking it
    back."""
    words = tokenize(text)
    while words and words[0] in wake:
        words = words[1:]
    return tuple(words) in _YES


def stop_answers(stop_vs_answer: float, yes: bool) -> bool:
    """Whether the stop phrase is the answer: ``stop_vs_answer`` is how much better per frame the best stop
    explains the audio than the best answer (negative when worse; infinite when no answer path was found), ``yes``
    whether that answer is a yes."""
    return stop_vs_answer >= -(STOP_TOLERANCE if yes else NO_STOP_TOLERANCE)


def trim_to_speech(samples: np.ndarray) -> np.ndarray:
    """The utterance cut to its loud frames (``_KEEP_S`` either side); unchanged when nothing is loud."""
    x = np.asarray(samples)
    n = len(x) // _FRAME
    if n == 0:
        return x
    level = np.abs(x[:n * _FRAME].astype(np.float64)).reshape(n, _FRAME).mean(axis=1)
    loud = np.flatnonzero(level >= max(level.max() * _LOUD_SHARE, _FLOOR))
    if len(loud) == 0:
        return x
    keep = int(_KEEP_S * SAMPLE_RATE)
    return x[max(0, loud[0] * _FRAME - keep):min(len(x), (loud[-1] + 1) * _FRAME + keep)]
