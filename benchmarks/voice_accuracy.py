"""Voice accuracy: espeak-ng speech through pocketsphinx and the rule planner, against the planner on the text.

Prints plan accuracy (the transcript's plan equals the text's plan and the confidence clears the threshold),
stop recall (a stop phrase heard with the stop threshold), false actions on silence and noise, and the mean
decode time. Run: python benchmarks/voice_accuracy.py [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _voice_corpus import commands, noise_clips, stops, synthesize  # noqa: E402

from medrobot_llm._asr import Audio, PocketSphinxRecognizer, load_wav  # noqa: E402
from medrobot_llm._rule_planner import RulePlanner  # noqa: E402
from medrobot_llm._voice import DEFAULT_THRESHOLD  # noqa: E402

_RECS: dict[str, PocketSphinxRecognizer] = {}


def _plan_key(domain: str, text: str) -> Any:
    plan = RulePlanner().plan(domain, text).to_json()
    return plan["status"], plan["steps"], plan["control"]


def decode(item: tuple[str, str, str]) -> dict[str, Any]:
    """(domain, text, wav) -> transcript, confidence, stop, decode seconds; one recogniser per process."""
    domain, text, path = item
    rec = _RECS.get(domain) or _RECS.setdefault(domain, PocketSphinxRecognizer(domain))
    audio = load_wav(path) if path.endswith(".wav") else Audio(__import__("numpy").load(path))
    if not rec._decoder:
        rec.transcribe(Audio(__import__("numpy").zeros(1600, dtype="int16")))
    t0 = time.perf_counter()
    tr = rec.transcribe(audio)
    return {"domain": domain, "text": text, "transcript": tr.text, "confidence": tr.confidence, "stop": tr.stop,
            "decode_s": time.perf_counter() - t0, "audio_s": audio.duration_s}


def evaluate(folder: Path, workers: int = 2) -> dict[str, Any]:
    cmds, stps = commands(folder), stops(folder)
    synthesize(cmds + stps)
    items = [(u.domain, u.text, str(u.path)) for u in cmds + stps]
    import numpy as np

    for name, clip in noise_clips().items():
        for domain in ("surgery", "xray"):
            p = folder / f"noise_{name}_{domain}.npy"
            np.save(p, clip)
            items.append((domain, f"<{name}>", str(p)))
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(decode, items))
    n_cmd, n_stop = len(cmds), len(stps)
    cmd_res, stop_res, noise_res = results[:n_cmd], results[n_cmd:n_cmd + n_stop], results[n_cmd + n_stop:]
    right = []
    for r in cmd_res:
        r["right"] = (r["confidence"] >= DEFAULT_THRESHOLD and not r["stop"]
                      and _plan_key(r["domain"], r["transcript"]) == _plan_key(r["domain"], r["text"]))
        right.append(r["right"])
    heard_stop = [r["stop"] and r["confidence"] >= DEFAULT_THRESHOLD / 2 for r in stop_res]
    false_actions = [r for r in noise_res if (r["stop"] and r["confidence"] >= DEFAULT_THRESHOLD / 2)
                     or r["confidence"] >= DEFAULT_THRESHOLD]
    decode_s = [r["decode_s"] for r in results]
    return {
        "commands": n_cmd, "plan_accuracy": 100.0 * sum(right) / n_cmd,
        "stops": n_stop, "stop_recall": 100.0 * sum(heard_stop) / n_stop,
        "noise_clips": len(noise_res), "false_actions": len(false_actions),
        "mean_decode_s": float(np.mean(decode_s)), "mean_audio_s": float(np.mean([r["audio_s"] for r in results])),
        "misses": [r for r in cmd_res if not r["right"]] + [r for r, ok in zip(stop_res, heard_stop) if not ok],
        "false": false_actions,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medrobot-voice-bench-") as tmp:
        res = evaluate(Path(tmp), args.workers)
    res["wall_s"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(res))
        return 0
    for m in res["misses"]:
        print(f"  miss [{m['domain']}] {m['text']!r} -> {m['transcript']!r} ({m['confidence']:.2f})")
    for m in res["false"]:
        print(f"  false action [{m['domain']}] {m['text']} -> {m['transcript']!r} ({m['confidence']:.2f})")
    print(f"plan accuracy   {res['plan_accuracy']:.1f} % of {res['commands']} commands")
    print(f"stop recall     {res['stop_recall']:.1f} % of {res['stops']} stops")
    print(f"false actions   {res['false_actions']} of {res['noise_clips']} silence/noise clips")
    print(f"mean decode     {res['mean_decode_s']:.2f} s per utterance (mean audio {res['mean_audio_s']:.2f} s); "
          f"wall {res['wall_s']:.0f} s with {args.workers} workers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
