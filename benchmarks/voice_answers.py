"""Answers heard as answers (issue 17): every answer phrase (the command set's confirm and deny phrases) and every
stop phrase, said by the voices of ``voice_bench.py`` and decoded as the console decodes an utterance while it waits
for an answer (``PocketSphinxRecognizer.answer``). Its own command, never a test.

Prints, for the dev set (voice and text both not ``held_out``) or the held-out set (either held out):
answers right (a confirm phrase heard as a plain yes, a deny phrase as anything but a yes or a stop), answers heard
as stops (a false stop: safe), stop recall per sample rate (target 100 %), stops heard as answers (target 0) and,
the one that moves a robot, anything but a confirm phrase heard as a yes (target 0). Stops are said at every sample
rate, by every voice of the set (or ``--stop-voices`` of them); each answer phrase by ``--voices`` of the voices (rotated by hash) at one sample rate, rotated too (speaking rate
and effect are rotated as ``voice_bench.py`` rotates them). Audio is made by ``voice_bench.synthesize`` into its
cache. Tune on ``--set dev`` only; ``--set held-out`` is run once, untuned.

Run: nice -n 5 python benchmarks/voice_answers.py --set dev [--rows rows.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from voice_bench import DOMAINS, EFFECTS, RATES, SAMPLE_RATES, VOICES, Item, _rotate, held_out, synthesize  # noqa: E402

from medrobot_llm.consoles.voice.answers import ANSWER_KINDS  # noqa: E402
from medrobot_llm.consoles.voice.asr import PocketSphinxRecognizer  # noqa: E402
from medrobot_llm.consoles.voice.audio import load_wav  # noqa: E402
from medrobot_llm.consoles.voice.console import DEFAULT_STOP_THRESHOLD, DEFAULT_THRESHOLD, is_plain_yes  # noqa: E402
from medrobot_llm.language.words import CONTROL_PHRASES  # noqa: E402

#: what is measured: the yes and the plain no of the answers (the other ways of not saying yes are decoded too)
SAID_KINDS = ("confirm", "deny", "stop")
assert set(SAID_KINDS) - {"stop"} <= set(ANSWER_KINDS)


def items(which: str, n_voices: int, n_stop_voices: int = len(VOICES)) -> list[tuple[str, Item]]:
    out: list[tuple[str, Item]] = []
    for kind in SAID_KINDS:
        for text in sorted(set(CONTROL_PHRASES[kind])):
            voices = [v for v in VOICES if (held_out(text) or held_out(f"{v[0]}:{v[1]}")) == (which == "held-out")]
            voices = sorted(voices, key=lambda v: _rotate(tuple(range(997)), f"{text}:{v}", "pick"))[
                :n_stop_voices if kind == "stop" else n_voices]
            for voice in voices:
                name = f"{kind}:{text}:{voice[0]}:{voice[1]}"
                rates = SAMPLE_RATES if kind == "stop" else (_rotate(SAMPLE_RATES, name, "s"),)
                for sr in rates:
                    out.append((kind, Item(kind, _rotate(DOMAINS, name, "d"), text, voice, _rotate(RATES, name, "r"),
                                           sr, _rotate(EFFECTS, f"{name}:{sr}", "e"))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=("dev", "held-out"), default="dev")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "medrobot-voice-bench")
    ap.add_argument("--rows", type=Path, help="append each row here as JSON lines")
    ap.add_argument("--voices", type=int, default=4, help="voices per answer phrase")
    ap.add_argument("--stop-voices", type=int, default=len(VOICES), help="voices per stop phrase (default: all)")
    ap.add_argument("--as-command", action="store_true",
                    help="decode as a command is decoded (transcribe), as every answer was before: the baseline")
    ap.add_argument("--kinds", default=",".join(SAID_KINDS), help="which of confirm, deny, stop")
    args = ap.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    work = [(kind, item) for kind, item in items(args.set, args.voices, args.stop_voices) if kind in args.kinds.split(",")]
    engines = {d: PocketSphinxRecognizer(d).load() for d in DOMAINS}
    rows: list[dict[str, Any]] = []
    for k, (kind, item) in enumerate(work):
        audio = load_wav(synthesize(item, args.cache))
        t0 = time.perf_counter()
        engine = engines[item.domain]
        heard = engine.transcribe(audio) if args.as_command else engine.answer(audio)
        row = {"kind": kind, "text": item.text, "voice": item.voice_id, "sr": item.sample_rate, "rate": item.rate,
               "effect": item.effect, "heard": heard.text, "stop": heard.stop and heard.confidence >= DEFAULT_STOP_THRESHOLD,
               "yes": not heard.stop and heard.confidence >= DEFAULT_THRESHOLD and is_plain_yes(heard.text),
               "confidence": heard.confidence, "note": heard.note, "s": round(time.perf_counter() - t0, 3),
               **heard.details}
        rows.append(row)
        if args.rows:
            with args.rows.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        print(f"[{k + 1}/{len(work)}] {kind} {item.text!r} {item.voice_id} {item.sample_rate}: {heard.text!r} "
              f"stop={row['stop']} yes={row['yes']}", file=sys.stderr)
    report(rows)
    return 0


def report(rows: list[dict[str, Any]]) -> None:
    confirm = [r for r in rows if r["kind"] == "confirm"]
    deny = [r for r in rows if r["kind"] == "deny"]
    stops = [r for r in rows if r["kind"] == "stop"]
    right = sum(r["yes"] for r in confirm) + sum(not r["yes"] and not r["stop"] for r in deny)
    answers = confirm + deny
    print(f"answers right: {right}/{len(answers)} ({100 * right / max(1, len(answers)):.1f} %): confirm heard as a yes "
          f"{sum(r['yes'] for r in confirm)}/{len(confirm)}, deny heard as a no {len(deny) - sum(r['yes'] or r['stop'] for r in deny)}/{len(deny)}")
    print(f"answers heard as stops: {sum(r['stop'] for r in answers)}/{len(answers)} "
          f"{Counter((r['text'], r['heard']) for r in answers if r['stop']).most_common(8)}")
    by_sr = {sr: [r for r in stops if r["sr"] == sr] for sr in sorted({r["sr"] for r in stops})}
    print("stop recall: " + ", ".join(f"{sr / 1000:g} kHz {sum(r['stop'] for r in rs)}/{len(rs)}"
                                      for sr, rs in by_sr.items()))
    missed = [r for r in stops if not r["stop"]]
    print(f"stops heard as answers: {len(missed)} {[(r['text'], r['voice'], r['sr'], r['heard']) for r in missed][:10]}")
    print(f"not a yes heard as a yes: {sum(r['yes'] for r in deny + stops)}")
    print(f"decode s per utterance: {sum(r['s'] for r in rows) / max(1, len(rows)):.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
