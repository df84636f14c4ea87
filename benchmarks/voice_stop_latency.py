"""Voice stop latency: from the end of a spoken stop to the e-stop latched, on a live stream.

Issue 17's target is "a stop latches the e-stop within 1 s of the end of the word". That is a figure of the
machine as much as of the code (the decode shares the CPU with whatever runs), so it is measured here and not
asserted in a test. Each trial streams one stop utterance of ``voice_bench.py``'s stop items (its voices, speaking
rates, sample rates and effects; audio cached the same way) in real time, 30 ms blocks, through the voice-activity
segmenter and ``VoiceConsole``'s listening thread as the microphone path does, followed by quiet until the e-stop
latches or 10 s pass. The word ends at the last sample above a tenth of the utterance's peak (so a noise floor or a
reverb tail does not count as speech).

Prints, per sample rate and overall: how many trials latched, how many of them by the recogniser's first look (before
the command grammar's decode), and the latency p50 / p90 / max over those; the ones that did not latch are listed (recognition, not latency: stop recall is ``voice_bench.py``'s figure).

With ``--breakdown`` nothing is timed by the clock: the stream is fed at once, every hand-over of the segmenter is
decoded in order as the console's listening thread does, and each trial gives the audio after the word's end that the
segmenter had taken when it handed over what was heard as the stop (a property of the audio and the segmenter, not of
the machine), the CPU time of that decode (``time.process_time``, far less blurred by other processes than the wall
clock), and when it ends with the decodes of the earlier hand-overs queued before it: the latency on an idle core.

    python benchmarks/voice_stop_latency.py [--stops 6] [--engine pocketsphinx|whisper|agree] [--json FILE] [--breakdown]
                                            [--split all|dev|held-out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from voice_bench import SAMPLE_RATES, Item, build_items, held_out, synthesize  # noqa: E402

from medrobot_llm.backends.memory import MemoryBackend  # noqa: E402
from medrobot_llm.consoles.voice.asr import FIRST_LOOK, Recognizer  # noqa: E402
from medrobot_llm.consoles.voice.audio import SAMPLE_RATE, load_wav  # noqa: E402
from medrobot_llm.consoles.voice.console import DEFAULT_STOP_THRESHOLD, Glancing, VoiceConsole  # noqa: E402
from medrobot_llm.consoles.voice.engines import make_recognizer  # noqa: E402
from medrobot_llm.consoles.voice.segment import utterances  # noqa: E402
from medrobot_llm.planning.rule.planner import RulePlanner  # noqa: E402
from medrobot_llm.session import Session  # noqa: E402

_BLOCK = 480
_LEAD_S = 0.5
_CAP_S = 10.0


def engine_for(name: str, domain: str, planner: RulePlanner) -> Recognizer:
    """One loaded engine per domain, as ``medrobot voice --asr NAME`` builds it: loading a model takes seconds,
    which a console pays once at start-up, not per utterance."""
    return make_recognizer(name, domain, planner, cpu_threads=1)


def trial(item: Item, samples: np.ndarray, recognizer: Recognizer, planner: RulePlanner) -> dict[str, Any]:
    """Stream ``samples`` (16 kHz) in real time into a fresh console; the latency from the word's end to the latch."""
    speech, tail = _word_and_tail(samples)
    latched = threading.Event()
    stamps: dict[str, float] = {}

    def blocks() -> Iterator[np.ndarray]:
        t0 = time.monotonic()
        for i in range(0, len(speech), _BLOCK):
            time.sleep(max(0.0, t0 + (i + _BLOCK) / SAMPLE_RATE - time.monotonic()))
            block = speech[i:i + _BLOCK]
            yield np.concatenate([block, np.zeros(_BLOCK - len(block), np.int16)])
        stamps["word_end"] = time.monotonic()
        rest = np.concatenate([tail, np.zeros(int(_CAP_S * SAMPLE_RATE), np.int16)])
        for i in range(0, len(rest) - _BLOCK + 1, _BLOCK):
            if latched.is_set():
                return
            time.sleep(max(0.0, stamps["word_end"] + (i + _BLOCK) / SAMPLE_RATE - time.monotonic()))
            yield rest[i:i + _BLOCK]

    with Session(item.domain, planner, backend=MemoryBackend(item.domain)) as session:
        def on_event(e: Any) -> None:
            if e.kind == "estop" and not latched.is_set():
                stamps["latched"] = time.monotonic()
                latched.set()

        session.supervisor.subscribe(on_event)
        records = VoiceConsole(session, recognizer, lambda _: None, gated=False).run(utterances(blocks()))
    first = next((r for r in records if "transcript" in r), {})
    heard = first.get("transcript")
    out: dict[str, Any] = {"text": item.text, "voice": item.voice_id, "held_out_voice": held_out(item.voice_id),
                           "rate": item.rate, "sample_rate": item.sample_rate, "effect": item.effect,
                           "latched": latched.is_set(), "heard": heard, "note": first.get("note", "")}
    if latched.is_set():
        out["latency_s"] = round(stamps["latched"] - stamps["word_end"], 3)
    return out


def _word_and_tail(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lead of quiet and the word up to its end (its last sample above a tenth of the peak), and what follows."""
    peak = int(np.abs(samples).max()) if len(samples) else 0
    loud = np.flatnonzero(np.abs(samples) > max(peak // 10, 1))
    end = (loud[-1] + 1) if len(loud) else 0
    return np.concatenate([np.zeros(int(_LEAD_S * SAMPLE_RATE), np.int16), samples[:end]]), samples[end:]


def breakdown(samples: np.ndarray, recognizer: Recognizer) -> dict[str, Any]:
    """The parts of the latency without the clock, so that a loaded machine does not blur them: how much audio after
    the word's end the segmenter had taken when it handed over what was heard as the stop, and the CPU time of that
    decode. Every hand-over is decoded in order, as the listening thread does (a glance by the first look alone, when
    the engine has one), so the decodes of earlier hand-overs that heard no stop delay it: ``latency_s`` is when the
    stop's decode ends on one idle core, in seconds after the word's end."""
    speech, tail = _word_and_tail(samples)
    stream = np.concatenate([speech, tail, np.zeros(int(_CAP_S * SAMPLE_RATE), np.int16)])
    fed = [0]

    def blocks() -> Iterator[np.ndarray]:
        for i in range(0, len(stream) - _BLOCK + 1, _BLOCK):
            fed[0] = i + _BLOCK
            yield stream[i:i + _BLOCK]

    done, looks = 0.0, 0
    for audio in utterances(blocks()):
        if audio.glance and not isinstance(recognizer, Glancing):
            continue
        wait_s = (fed[0] - len(speech)) / SAMPLE_RATE
        t0 = time.process_time()
        heard = recognizer.glance(audio) if isinstance(recognizer, Glancing) and audio.glance else (
            recognizer.transcribe(audio))
        cpu_s = time.process_time() - t0
        done, looks = max(done, wait_s) + cpu_s, looks + 1
        if heard is not None and heard.stop and heard.confidence >= DEFAULT_STOP_THRESHOLD:
            return {"segment_wait_s": round(wait_s, 3), "decode_cpu_s": round(cpu_s, 3), "latency_s": round(done, 3),
                    "stop": True, "glance": audio.glance, "looks": looks, "note": heard.note}
    return {"segment_wait_s": None, "decode_cpu_s": None, "latency_s": None, "stop": False, "glance": False,
            "looks": looks, "note": ""}


def _breakdown_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def q(values: list[float]) -> list[float]:
        return [round(float(v), 3) for v in np.percentile(values, [50, 90, 100])] if values else []

    heard = [r for r in rows if r["stop"]]
    fast = [r for r in heard if r["note"].startswith(FIRST_LOOK)]
    total = [r["latency_s"] for r in heard]
    return {"trials": len(rows), "stops": len(heard), "at_first_look": len(fast),
            "at_a_glance": sum(1 for r in heard if r["glance"]), "looks": sum(r["looks"] for r in rows),
            "segment_wait_s_p50_p90_max": q([r["segment_wait_s"] for r in heard]),
            "decode_cpu_s_p50_p90_max": q([r["decode_cpu_s"] for r in heard]),
            "first_look_cpu_s_p50_p90_max": q([r["decode_cpu_s"] for r in fast]),
            "latency_s_p50_p90_max": q(total), "latency_within_1s": sum(1 for t in total if t <= 1.0)}


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lat = sorted(r["latency_s"] for r in rows if r["latched"])
    fig: dict[str, Any] = {"trials": len(rows), "latched": len(lat),
                           "at_first_look": sum(1 for r in rows if r["latched"] and r["note"].startswith(FIRST_LOOK))}
    if lat:
        fig.update(p50_s=round(statistics.median(lat), 3), p90_s=round(lat[min(len(lat) - 1, int(0.9 * len(lat)))], 3),
                   max_s=lat[-1], within_1s=sum(1 for x in lat if x <= 1.0))
    return fig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stops", type=int, default=6, help="stop phrases (voice_bench.py's hash order), each at every "
                                                         "sample rate and speaking rate")
    ap.add_argument("--engine", default="pocketsphinx", choices=("pocketsphinx", "whisper", "agree"))
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "medrobot-voice-bench")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write every trial and figure to FILE")
    ap.add_argument("--breakdown", action="store_true",
                    help="no real time: the audio the segmenter waits for after the word and the decodes' CPU time")
    ap.add_argument("--split", choices=("all", "dev", "held-out"), default="all",
                    help="only the stops whose voice or text is (held-out) or is not (dev) held out")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    items = [i for i in build_items(0, args.stops, 0) if args.split == "all"
             or (held_out(i.voice_id) or held_out(i.text)) == (args.split == "held-out")]
    planner = RulePlanner()
    engines: dict[str, Recognizer] = {}
    rows: list[dict[str, Any]] = []
    for k, item in enumerate(items, 1):
        print(f"\r[voice_stop_latency] {k}/{len(items)} {item.text!r} {item.voice_id} {item.sample_rate} Hz   ",
              end="", file=sys.stderr, flush=True)
        if item.domain not in engines:
            engines[item.domain] = engine_for(args.engine, item.domain, planner)
        samples = load_wav(synthesize(item, args.cache)).samples
        rows.append({"text": item.text, "voice": item.voice_id, "sample_rate": item.sample_rate, "effect": item.effect,
                     **breakdown(samples, engines[item.domain])} if args.breakdown else
                    trial(item, samples, engines[item.domain], planner))
    print(file=sys.stderr)
    if args.breakdown:
        parts = {"all": _breakdown_figures(rows), **{f"{sr} Hz": _breakdown_figures(
            [r for r in rows if r["sample_rate"] == sr]) for sr in SAMPLE_RATES}}
        print(f"engine {args.engine}, {len(rows)} stops, no real time (after the word's end: audio the segmenter "
              "had taken at the hand-over heard as the stop; that decode's CPU time; when it ends after the decodes "
              "queued before it)")
        for name, fig in parts.items():
            print(f"  {name:10s} {json.dumps(fig)}")
        if args.json:
            args.json.write_text(json.dumps({"figures": parts, "rows": rows}, indent=1), encoding="utf-8")
        return 0
    figures = {"all": _figures(rows), **{f"{sr} Hz": _figures([r for r in rows if r["sample_rate"] == sr])
                                         for sr in SAMPLE_RATES}}
    print(f"engine {args.engine}, {len(rows)} stops streamed in real time (latency: end of the word -> e-stop latched)")
    for name, fig in figures.items():
        print(f"  {name:10s} {json.dumps(fig)}")
    for r in rows:
        if not r["latched"]:
            print(f"  not latched: {r['text']!r} by {r['voice']} at {r['sample_rate']} Hz, {r['effect']} "
                  f"(heard {r['heard']!r})")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "rows": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
