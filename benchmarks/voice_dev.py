"""Whisper's right-plan rate on the voice benchmark's **dev** items only: the place to tune a recogniser.

Dev items are ``voice_bench.py``'s commands and talk whose text AND voice are both not ``held_out()``; held-out
items are never synthesized or decoded here, so tuning on this script cannot see them. Each variant is a
``WhisperRecognizer`` with its options (``--variant name:key=value,key=value``), heard on the same audio; a
right plan is the bench's (``plan_key`` of the heard text equals the said text's, confidence at the threshold,
no stop, or a stop for a said stop); talk counts as a false action when it is heard as a stop or a moving plan.
No pocketsphinx stop pass: this measures Whisper's words, not the console's stop net.

With ``--agree``, each variant is also paired with pocketsphinx as ``--asr agree`` pairs them (pocketsphinx
decoded once per utterance, each variant's own Whisper transcript reused).

Run: python benchmarks/voice_dev.py [--limit 80] [--agree] [--variant free:rescore=false --variant rescored:]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from voice_bench import TALK, Item, build_items, held_out, plan_key, synthesize  # noqa: E402

from medrobot_llm.consoles.voice.agree import AgreementRecognizer  # noqa: E402
from medrobot_llm.consoles.voice.asr import PocketSphinxRecognizer, Transcript, stop_phrase  # noqa: E402
from medrobot_llm.consoles.voice.audio import Audio, load_wav  # noqa: E402
from medrobot_llm.consoles.voice.console import DEFAULT_THRESHOLD  # noqa: E402
from medrobot_llm.planning.rule.planner import RulePlanner  # noqa: E402


def dev_items(limit: int | None = None) -> list[Item]:
    """The dev commands (hash order, the first ``limit``) and all dev talk."""
    items = sorted(build_items(600, 0, len(TALK)), key=Item.key)
    dev = [i for i in items if not held_out(i.voice_id) and not held_out(i.text)]
    commands = [i for i in dev if i.kind == "command"][:limit]
    return commands + [i for i in dev if i.kind == "talk"]


class _Heard:
    """A recogniser that has already heard the utterance: agreement reuses each engine's transcript."""

    def __init__(self, name: str, transcript: Transcript) -> None:
        self.name = name
        self.transcript = transcript

    def transcribe(self, audio: Audio) -> Transcript:
        return self.transcript


def _option(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    if value == "none":
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, opts = spec.partition(":")
    kwargs = {k: _option(v) for k, _, v in (o.partition("=") for o in opts.split(",") if o)}
    return name, kwargs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="dev commands to use (hash order); all by default")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:K=V,...",
                    help="a WhisperRecognizer with these options (default: free:rescore=false and rescored:)")
    ap.add_argument("--agree", action="store_true", help="also each variant in agreement with pocketsphinx")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "medrobot-voice-dev")
    ap.add_argument("--rows", type=Path, help="write every row (JSON lines) to FILE")
    args = ap.parse_args()
    from medrobot_llm.consoles.voice.whisper import WhisperRecognizer

    args.cache.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(v) for v in (args.variant or ["free:rescore=false", "rescored:"])]
    planner = RulePlanner()
    items = dev_items(args.limit)
    recs = {(name, d): WhisperRecognizer(d, cpu_threads=1, **kw)
            for name, kw in variants for d in {i.domain for i in items}}
    rows: list[dict[str, Any]] = []
    sink = args.rows.open("w", encoding="utf-8") if args.rows else None
    sphinx = {d: PocketSphinxRecognizer(d) for d in {i.domain for i in items}} if args.agree else {}
    names = [name for name, _ in variants] + [f"agree+{name}" for name, _ in variants if args.agree]
    for n, item in enumerate(items):
        audio = load_wav(synthesize(item, args.cache))
        said = planner.plan(item.domain, item.text)
        heard_by: dict[str, tuple[Transcript, float]] = {}
        if args.agree:
            t0 = time.perf_counter()
            heard_by["pocketsphinx"] = (sphinx[item.domain].transcribe(audio), time.perf_counter() - t0)
        for name in names:
            t0 = time.perf_counter()
            if name.startswith("agree+"):
                own = name.removeprefix("agree+")
                tr = AgreementRecognizer(item.domain, _Heard("pocketsphinx", heard_by["pocketsphinx"][0]),
                                         _Heard("whisper", heard_by[own][0]), planner).transcribe(audio)
                dt = heard_by["pocketsphinx"][1] + heard_by[own][1]
            else:
                tr = recs[name, item.domain].transcribe(audio)
                dt = time.perf_counter() - t0
                heard_by[name] = (tr, dt)
            heard = planner.plan(item.domain, tr.text)
            acts = tr.confidence >= DEFAULT_THRESHOLD and not tr.stop and not tr.not_command
            if stop_phrase(item.text) is not None:
                right = tr.stop
            else:
                right = acts and plan_key(heard) == plan_key(said)
            moves = acts and bool(heard.to_json().get("steps")) and plan_key(heard) != plan_key(said)
            rows.append({"variant": name, "kind": item.kind, "domain": item.domain, "text": item.text,
                         "voice": item.voice_id, "heard": tr.text, "raw": tr.raw, "confidence": tr.confidence,
                         "right": right, "wrong_move": moves, "false_action": item.kind == "talk" and (
                             tr.stop or moves), "decode_s": dt, "note": tr.note})
            if sink is not None:
                sink.write(json.dumps(rows[-1]) + "\n")
                sink.flush()
        print(f"\r[voice_dev] {n + 1}/{len(items)}   ", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    options = dict(variants)
    for name in names:
        kw = options.get(name, options.get(name.removeprefix("agree+")))
        mine = [r for r in rows if r["variant"] == name]
        cmds = [r for r in mine if r["kind"] == "command"]
        talk = [r for r in mine if r["kind"] == "talk"]
        print(f"{name} {json.dumps(kw)}: right plan {sum(r['right'] for r in cmds)}/{len(cmds)} "
              f"({100.0 * sum(r['right'] for r in cmds) / max(1, len(cmds)):.1f} %), wrong moving plans "
              f"{sum(r['wrong_move'] for r in cmds)}, talk false actions {sum(r['false_action'] for r in talk)}/"
              f"{len(talk)}, decode {sum(r['decode_s'] for r in mine) / max(1, len(mine)):.2f} s per utterance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
