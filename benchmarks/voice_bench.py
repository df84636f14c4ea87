"""Multi-voice benchmark of the voice console's recognisers (issue 17): its own command, never a test.

Speech is made by three synthesizers from Debian's packages (espeak-ng variants, flite voices, festival
voices) at three speaking rates, recorded at 8, 11.025, 16 and 22.05 kHz, clean, with sox white noise, and with
sox reverb. Texts are the commands of ``benchmarks/suite/tasks.jsonl``, the stop phrases of the command set, and
operating-room talk that is not a command (written here). Every engine and mode (pocketsphinx, whisper, agree)
hears the same audio, and prints:

- right plan (the transcript's plan equals the said text's plan: the same status, refusal or question code, steps
  with their arguments and control; the confidence clears the threshold, no stop, not judged "not a command"),
  separately for tuned and held-out voices and commands. A refused command counts as right only when it is
  refused for the same reason: "inject saline" heard as "advance thirty nine then pull the vessel" is not right,
  although both plans have no steps;
- moving plans that differ from what was said, before read-back, and after it: the console reads every plan
  from speech back and runs it only on a "yes"; an operator who confirms only a read-back that says what they
  said lets through exactly the wrong plans whose read-back (``render_plan``) reads the same as the right one;
- stop recall per sample rate and per speaking rate;
- false actions on silence, noise and non-command speech (a stop, or a plan with steps, above threshold), and
  stops heard in commands (safe, but a console that stops on every command is useless);
- mean decode time per utterance.

**Held-out split (fixed, by hash):** a command text or a voice is held out when the first byte of
sha256("heldout:" + text-or-voice-id) is below 86 (a third). Held-out items must never be looked at while
tuning a recogniser; they are reported on their own. Audio is cached under ``--cache`` keyed by (text, voice,
speaking rate, sample rate, effect). Progress goes to stderr.

Run: python benchmarks/voice_bench.py [--commands 40 --stops 10 --talk 12 --engines pocketsphinx,whisper,agree]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _voice_corpus import noise_clips  # noqa: E402

from medrobot_llm.consoles.voice.agree import AgreementRecognizer, plan_signature  # noqa: E402
from medrobot_llm.consoles.voice.asr import PocketSphinxRecognizer, Recognizer, Transcript, stop_phrase  # noqa: E402
from medrobot_llm.consoles.voice.audio import Audio, load_wav  # noqa: E402
from medrobot_llm.consoles.render import render_plan  # noqa: E402
from medrobot_llm.consoles.voice.console import DEFAULT_THRESHOLD  # noqa: E402
from medrobot_llm.core.plan import Plan  # noqa: E402
from medrobot_llm.core.reasons import Reason  # noqa: E402
from medrobot_llm.language.words import CONTROL_PHRASES  # noqa: E402
from medrobot_llm.planning.rule.planner import RulePlanner  # noqa: E402

SUITE = Path(__file__).resolve().parent / "suite" / "tasks.jsonl"
DOMAINS = ("surgery", "ultrasound", "xray")
#: (synthesizer, voice); several of each synthesizer
VOICES: tuple[tuple[str, str], ...] = (
    ("espeak-ng", "en-us"), ("espeak-ng", "en"), ("espeak-ng", "en+f3"), ("espeak-ng", "en+m3"),
    ("espeak-ng", "en-gb-x-rp"), ("espeak-ng", "en-gb-scotland"), ("espeak-ng", "en+f2"),
    ("flite", "kal"), ("flite", "awb"), ("flite", "rms"), ("flite", "slt"),
    ("festival", "kal_diphone"), ("festival", "ked_diphone"), ("festival", "cmu_us_slt_arctic_hts"),
)
#: speaking rate as a duration factor: slow, normal, fast (espeak-ng: 175 words a minute / factor)
RATES = (1.25, 1.0, 0.8)
SAMPLE_RATES = (8000, 11025, 16000, 22050)
EFFECTS = ("clean", "noise", "reverb")
#: operating-room talk that is not a command: requests to staff, small talk, remarks about the patient
TALK = (
    "could you pass me the scissors please", "can someone dim the lights a little", "nurse, more suction here",
    "how was your weekend", "did anyone see the game last night", "I need a coffee after this one",
    "the patient's blood pressure is a bit low", "her heart rate looks fine", "the table feels a little high",
    "let's wait for the anaesthetist", "page radiology when you get a chance", "is the next patient ready",
    "thanks everyone, good work", "can you tell me the time", "he has a history of diabetes",
    "check the drip, it looks empty", "the music is too loud", "write that down in the notes",
    "let me know when the family arrives", "this retractor is heavy", "could you adjust my gown",
    "we're running late today", "the left side looks a bit swollen", "open another pack of gauze",
)

#: refusals of what was said outside any command set (an injection attempt, a word, skill or value no skill file
#: has, text not understood): a closed grammar cannot say them, so "not a command" is a right answer to them
REJECT_CODES = frozenset(c.value for c in (Reason.INJECTION, Reason.UNKNOWN_WORD, Reason.UNKNOWN_SKILL,
                                           Reason.UNKNOWN_VALUE, Reason.NOT_UNDERSTOOD))


def held_out(name: str) -> bool:
    """The fixed split: a third of texts and voices, by hash, never used for tuning."""
    return hashlib.sha256(f"heldout:{name}".encode()).digest()[0] < 86


@dataclass(frozen=True)
class Item:
    kind: str  # command, stop, talk, noise
    domain: str
    text: str
    voice: tuple[str, str]
    rate: float
    sample_rate: int
    effect: str

    @property
    def voice_id(self) -> str:
        return f"{self.voice[0]}:{self.voice[1]}"

    def key(self) -> str:
        return hashlib.sha256(json.dumps([self.text, self.voice_id, self.rate, self.sample_rate, self.effect])
                              .encode()).hexdigest()[:20]


def _rotate(seq: tuple[Any, ...], name: str, salt: str) -> Any:
    return seq[int(hashlib.sha256(f"{salt}:{name}".encode()).hexdigest(), 16) % len(seq)]


def _by_hash(texts: list[str], salt: str) -> list[str]:
    return sorted(texts, key=lambda t: hashlib.sha256(f"{salt}:{t}".encode()).hexdigest())


def build_items(n_commands: int, n_stops: int, n_talk: int) -> list[Item]:
    """Commands and talk: one voice, rate, sample rate and effect each, rotated by hash; stops: every
    sample rate and every speaking rate for each stop phrase (stop recall is reported per rate)."""
    suite = [json.loads(line) for line in SUITE.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_text = {r["text"]: r["domain"] for r in suite if r.get("domain") in DOMAINS}
    items: list[Item] = []
    for text in _by_hash(list(by_text), "cmd")[:n_commands]:
        items.append(Item("command", by_text[text], text, _rotate(VOICES, text, "v"), _rotate(RATES, text, "r"),
                          _rotate(SAMPLE_RATES, text, "s"), _rotate(EFFECTS, text, "e")))
    stops = _by_hash(sorted(set(CONTROL_PHRASES["stop"])), "stop")[:n_stops]
    for k, text in enumerate(stops):
        for sr in SAMPLE_RATES:
            for rate in RATES:
                name = f"{text}:{sr}:{rate}"
                items.append(Item("stop", DOMAINS[k % 3], text, _rotate(VOICES, name, "v"), rate, sr,
                                  _rotate(EFFECTS, name, "e")))
    for k, text in enumerate(_by_hash(list(TALK), "talk")[:n_talk]):
        items.append(Item("talk", DOMAINS[k % 3], text, _rotate(VOICES, text, "v"), _rotate(RATES, text, "r"),
                          _rotate(SAMPLE_RATES, text, "s"), _rotate(EFFECTS, text, "e")))
    return items


def _run(argv: list[str], stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True, timeout=120, capture_output=True)


def synthesize(item: Item, cache: Path) -> Path:
    """The item's audio, made once: synthesize, then sox to the sample rate with the effect.

    Written under names of this process and renamed into place at the end: shards and the other voice benchmarks
    share the cache, and one of them read another's half-written file as the item's audio."""
    final = cache / f"{item.key()}.wav"
    if final.exists():
        return final
    part = f"{item.key()}.{os.getpid()}.{threading.get_ident()}"
    out = cache / f"{part}.wav"
    raw = cache / f"{part}.raw.wav"
    synth, voice = item.voice
    if synth == "espeak-ng":
        _run(["espeak-ng", "-v", voice, "-s", str(round(175 / item.rate)), "-w", str(raw), item.text])
    elif synth == "flite":
        _run(["flite", "-voice", voice, "--setf", f"duration_stretch={item.rate}", "-t", item.text, "-o", str(raw)])
    else:
        _run(["text2wave", "-o", str(raw), "-eval", f"(voice_{voice})",
              "-eval", f"(Parameter.set 'Duration_Stretch {item.rate})"], stdin=item.text)
    chain = ["sox", "-R", str(raw), "-r", str(item.sample_rate), "-c", "1", "-b", "16"]
    if item.effect == "reverb":
        _run([*chain, str(out), "reverb", "40", "50", "60"])
    elif item.effect == "noise":
        clean = cache / f"{part}.clean.wav"
        _run([*chain, str(clean), "norm", "-3"])
        noise = cache / f"{part}.noise.wav"
        _run(["sox", "-R", str(clean), str(noise), "synth", "whitenoise", "vol", "0.03"])
        _run(["sox", "-R", "-m", str(clean), str(noise), str(out)])
        clean.unlink()
        noise.unlink()
    else:
        _run([*chain, str(out)])
    raw.unlink()
    os.replace(out, final)
    return final


class _Memo:
    """A recogniser that decodes each audio source once and times it, so agree reuses both engines' decodes."""

    def __init__(self, inner: Recognizer) -> None:
        self.inner = inner
        self.name = inner.name
        self.cache: dict[str, tuple[Transcript, float]] = {}

    def transcribe(self, audio: Audio) -> Transcript:
        if audio.source not in self.cache:
            t0 = time.perf_counter()
            tr = self.inner.transcribe(audio)
            self.cache[audio.source] = (tr, time.perf_counter() - t0)
        return self.cache[audio.source][0]


def make_engines(names: list[str], domain: str, planner: RulePlanner) -> dict[str, Recognizer]:
    from medrobot_llm.consoles.voice.whisper import WhisperRecognizer

    sphinx = PocketSphinxRecognizer(domain)
    ps = _Memo(sphinx)
    out: dict[str, Recognizer] = {}
    # as ``medrobot voice --asr whisper`` has it: pocketsphinx's stop-only pass beside Whisper (in agree it is
    # redundant, pocketsphinx having heard the same pass first, and only its time is counted twice)
    wh = (_Memo(WhisperRecognizer(domain, cpu_threads=1, stop_check=sphinx.stop_only))
          if {"whisper", "agree"} & set(names) else None)
    if "pocketsphinx" in names:
        out["pocketsphinx"] = ps
    if wh is not None and "whisper" in names:
        out["whisper"] = wh
    if wh is not None and "agree" in names:
        out["agree"] = AgreementRecognizer(domain, ps, wh, planner)
    return out


def _decode_s(engines: dict[str, Recognizer], source: str) -> float:
    return sum(m.cache[source][1] for m in engines.values() if isinstance(m, _Memo) and source in m.cache)


def _says_stop(text: str) -> bool:
    """The text holds a stop phrase, so a stop heard in it is right ("stop!", "... and turn off the emergency stop"):
    the console stops on a stop said anywhere, as the planner does."""
    return stop_phrase(text) is not None


def _right(said: Plan | None, tr: Transcript, same_plan_acted: bool) -> bool:
    """A said stop ("stop!") is right when a stop is heard, which the console acts on before any plan; a command
    refused for what it says outside any command set (``REJECT_CODES``) also when it is rejected as not a
    command, the only answer a closed grammar can give it (``voice_coverage.py``); anything else when its plan
    is heard and acted on."""
    if said is None:
        return same_plan_acted
    data = said.to_json()
    if data.get("control") == "stop":
        return bool(tr.stop and tr.confidence >= DEFAULT_THRESHOLD / 2)
    if data.get("status") == "refused" and data.get("code") in REJECT_CODES and tr.not_command and not tr.stop:
        return True
    return same_plan_acted


def plan_key(plan: Plan) -> str:
    """What must be equal for a heard plan to be the said one: the steps and control (``plan_signature``), and
    the status and its code, so that a refusal heard as another refusal is not a right plan."""
    data = plan.to_json()
    return json.dumps([data.get("status"), data.get("code"), plan_signature(plan)])


def evaluate(items: list[Item], cache: Path, engine_names: list[str],
             progress: Callable[[str], None], with_noise: bool = True, rows_to: Path | None = None) -> dict[str, Any]:
    """Every engine on every item; with ``rows_to``, each row is also appended there as it is made, so a run cut
    short still has its figures (``--from-json``)."""
    planner = RulePlanner()
    engines = {d: make_engines(engine_names, d, planner) for d in DOMAINS}
    rows: list[dict[str, Any]] = []
    clips = [(name, clip) for name, clip in noise_clips().items()] if with_noise else []
    total = len(items) + len(clips) * len(DOMAINS)
    done = 0
    work: list[tuple[Item | None, str, Audio]] = [
        (None, domain, Audio(clip, f"noise:{name}:{domain}")) for domain in DOMAINS for name, clip in clips]
    for item in items:
        work.append((item, item.domain, load_wav(synthesize(item, cache))))
        progress(f"synthesized {len(work) - len(clips) * len(DOMAINS)}/{len(items)}")
    sink = rows_to.open("a", encoding="utf-8") if rows_to is not None else None
    for item, domain, audio in work:
        if item is not None:
            audio = Audio(audio.samples, item.key())
        for mode in engine_names:
            rec = engines[domain][mode]
            tr = rec.transcribe(audio)
            said_plan = planner.plan(domain, item.text) if item else None
            said = plan_key(said_plan) if said_plan is not None else ""
            plan = planner.plan(domain, tr.text)
            heard, moves = plan_key(plan), bool(plan.to_json().get("steps"))
            acts = tr.confidence >= DEFAULT_THRESHOLD and not tr.stop and not tr.not_command
            wrong_move = acts and moves and heard != said
            rows.append({
                "mode": mode, "kind": item.kind if item else "noise", "domain": domain,
                "text": item.text if item else audio.source, "voice": item.voice_id if item else "",
                "rate": item.rate if item else 1.0, "sample_rate": item.sample_rate if item else 16000,
                "effect": item.effect if item else "noise",
                "held_voice": held_out(item.voice_id) if item else False,
                "held_text": held_out(item.text) if item else False,
                "transcript": tr.text, "confidence": tr.confidence,
                "stop": bool(tr.stop and tr.confidence >= DEFAULT_THRESHOLD / 2),
                "right": _right(said_plan, tr, heard == said and acts),
                "wrong_move": wrong_move,
                "wrong_after_readback": wrong_move and said_plan is not None
                and render_plan(plan) == render_plan(said_plan),
                "not_command": tr.not_command, "note": tr.note, "details": tr.details,
                "said_stop": _says_stop(item.text) if item else False,
                "decode_s": _decode_s(engines[domain], audio.source) if mode == "agree" else
                _decode_s({mode: rec}, audio.source),
            })
            if sink is not None:
                sink.write(json.dumps(rows[-1]) + "\n")
                sink.flush()
        done += 1
        progress(f"decoded {done}/{total}")
    if sink is not None:
        sink.close()
    return summarise(rows)


def _pct(rows: list[dict[str, Any]], key: str) -> str:
    return f"{100.0 * sum(r[key] for r in rows) / len(rows):.0f} % of {len(rows)}" if rows else "n/a"


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows, "modes": {}}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        cmds = [r for r in mine if r["kind"] == "command"]
        groups = {
            "tuned voice, tuned command": [r for r in cmds if not r["held_voice"] and not r["held_text"]],
            "held-out voice": [r for r in cmds if r["held_voice"]],
            "held-out command": [r for r in cmds if r["held_text"]],
            "held-out voice and command": [r for r in cmds if r["held_voice"] and r["held_text"]],
        }
        stops = [r for r in mine if r["kind"] == "stop"]
        stop_recall: dict[str, str] = {}
        for sr in SAMPLE_RATES:
            stop_recall[f"{sr} Hz"] = _pct([r for r in stops if r["sample_rate"] == sr], "stop")
        for rate in RATES:
            stop_recall[f"duration x{rate}"] = _pct([r for r in stops if r["rate"] == rate], "stop")
        for synth in dict.fromkeys(s for s, _ in VOICES):
            stop_recall[synth] = _pct([r for r in stops if r["voice"].startswith(f"{synth}:")], "stop")
        stop_recall["held-out voices"] = _pct([r for r in stops if r["held_voice"]], "stop")
        false: dict[str, int] = defaultdict(int)
        n_false: dict[str, int] = defaultdict(int)
        for r in mine:
            if r["kind"] in ("talk", "noise"):
                n_false[r["kind"]] += 1
                false[r["kind"]] += int(r["stop"] or r["wrong_move"])
        out["modes"][mode] = {
            "right_plan": {k: _pct(v, "right") for k, v in groups.items()},
            "moving_plans_not_said": {k: sum(r["wrong_move"] for r in v) for k, v in groups.items()},
            "after_readback": {k: sum(r.get("wrong_after_readback", False) for r in v) for k, v in groups.items()},
            "stops_in_commands": f"{sum(r['stop'] for r in cmds if not _says_stop(r['text']))} of "
                                 f"{sum(not _says_stop(r['text']) for r in cmds)}",
            "stop_recall": stop_recall,
            "stops_heard_as_moving_plan": f"{sum(r['wrong_move'] for r in stops)} of {len(stops)}",
            "false_actions": {k: f"{false[k]} of {n_false[k]}" for k in n_false},
            "mean_decode_s": round(float(np.mean([r["decode_s"] for r in mine])), 3) if mine else None,
        }
    return out


def _rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows: list[dict[str, Any]] = json.loads(text)["rows"]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", type=int, default=600, help="command texts from the suite (hash order)")
    ap.add_argument("--stops", type=int, default=20, help="stop phrases, each at every sample rate and speed")
    ap.add_argument("--talk", type=int, default=len(TALK), help="non-command utterances")
    ap.add_argument("--engines", default="pocketsphinx,whisper,agree")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "medrobot-voice-bench")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write every row and figure to FILE")
    ap.add_argument("--from-json", type=Path, nargs="+", metavar="FILE",
                    help="print the figures of earlier --json or --rows files (the shards of one run, together)")
    ap.add_argument("--rows", type=Path, metavar="FILE", help="append every row to FILE (JSON lines) as it is made")
    ap.add_argument("--shard", default="0/1", metavar="K/N",
                    help="run only every N-th utterance from the K-th (0-based; silence and noise in shard 0), so "
                         "that N processes share a run; give their --json files to --from-json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.from_json:
        rows = [r for f in args.from_json for r in _rows(f)]
        res = summarise(rows)
        n = sum(1 for r in rows if r["mode"] == rows[0]["mode"] and r["kind"] != "noise")
    else:
        args.cache.mkdir(parents=True, exist_ok=True)
        k, n_shards = (int(x) for x in args.shard.split("/"))
        # in hash order, so that any prefix of a run (one cut short) mixes commands, stops and talk
        items = sorted(build_items(args.commands, args.stops, args.talk), key=Item.key)[k::n_shards]

        def progress(msg: str) -> None:
            print(f"\r[voice_bench] {msg}   ", end="", file=sys.stderr, flush=True)

        res = evaluate(items, args.cache, args.engines.split(","), progress, with_noise=k == 0, rows_to=args.rows)
        n = len(items)
        print(file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1), encoding="utf-8")
    voices = sorted({f"{s}:{v}" for s, v in VOICES})
    print(f"{n} utterances + silence/noise; held-out voices: "
          f"{', '.join(v for v in voices if held_out(v))}; wall {time.perf_counter() - t0:.0f} s")
    for mode, fig in res["modes"].items():
        print(f"\n== {mode}")
        for k, v in fig["right_plan"].items():
            print(f"  right plan      {k:28s} {v}  (moving plans not said: {fig['moving_plans_not_said'][k]}, "
                  f"after read-back: {fig['after_readback'][k]})")
        print(f"  stop recall     {json.dumps(fig['stop_recall'])}; stops heard as a moving plan: "
              f"{fig['stops_heard_as_moving_plan']}")
        print(f"  false actions   {json.dumps(fig['false_actions'])}; stops heard in commands: "
              f"{fig['stops_in_commands']}")
        print(f"  mean decode     {fig['mean_decode_s']} s per utterance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
