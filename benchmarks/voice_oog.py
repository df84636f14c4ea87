"""Out-of-grammar rejection: does the offline engine tell a command from talk that is not one?

Two sets, each of addressed commands ("robot, scan the liver") and operating-room talk that is not a command
(half of it addressed too: "robot, what time is it"), made with espeak-ng:
- ``dev``: the commands the recogniser was tuned on (tests/_voice_corpus.py COMMANDS), en-us at 150 words a
  minute, and the DEV_TALK list below. The rejection margin was tuned on this set only.
- ``held-out``: the HELD_OUT commands and the HELD_OUT_TALK list, in two other voices and speeds; never
  looked at while tuning.
For each utterance: the transcript, whether the grammar decode reads as a moving plan, the phone-loop margin
(``PocketSphinxRecognizer._phone_margin``) and whether the engine rejected it as not a command.
Run: python benchmarks/voice_oog.py [--set dev|held-out|both] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _voice_corpus import COMMANDS, HELD_OUT, Utterance, synthesize  # noqa: E402

from medrobot_llm.consoles.voice.asr import PocketSphinxRecognizer, load_wav  # noqa: E402
from medrobot_llm.planning.rule.planner import RulePlanner  # noqa: E402

DEV_TALK = (
    "could you pass me the scissors please", "can we get some more light over here", "the patient is stable",
    "what is the blood pressure now", "let's wait for the anaesthetist", "I think we are running late today",
    "has anyone seen my glasses", "turn the music down a little", "we need another pack of swabs",
    "the table feels a bit low", "how long until the next case", "nice work everyone",
    "robot what time is it", "robot can you hear me", "robot good morning", "robot how are you today",
    "robot tell me a joke", "robot I need a coffee", "robot the weather is nice", "robot thank you very much",
)
HELD_OUT_TALK = (
    "suction please", "is the consent form signed", "check the drain output", "can someone call the ward",
    "count the instruments before we close", "the monitor is beeping again", "hand me the forceps",
    "we will start in five minutes", "did the lab call back", "open another suture",
    "robot are you ready", "robot say hello", "robot where is the nurse", "robot play some music",
    "robot what is your name", "robot the patient is asleep",
)


def corpus(name: str, folder: Path) -> list[tuple[Utterance, bool]]:
    """(utterance, is a command) for one set."""
    if name == "dev":
        cmds = [(d, t) for d in COMMANDS for t in COMMANDS[d][:10]]
        talk, voices = DEV_TALK, (("en-us", 150),)
    else:
        cmds = [(d, t) for d in HELD_OUT for t in HELD_OUT[d][:8]]
        talk, voices = HELD_OUT_TALK, (("en+m3", 135), ("en", 170))
    out: list[tuple[Utterance, bool]] = []
    for k, (domain, text) in enumerate(cmds):
        v, s = voices[k % len(voices)]
        out.append((Utterance(domain, f"robot {text}", v, s, folder / f"{name}_cmd_{k:02d}.wav"), True))
    domains = list(COMMANDS)
    for k, text in enumerate(talk):
        v, s = voices[k % len(voices)]
        out.append((Utterance(domains[k % 3], text, v, s, folder / f"{name}_talk_{k:02d}.wav"), False))
    return out


def moving(domain: str, text: str) -> bool:
    plan = RulePlanner().plan(domain, text).to_json()
    return plan.get("status") == "ok" and bool(plan.get("steps"))


def evaluate(name: str, folder: Path) -> dict[str, Any]:
    items = corpus(name, folder)
    synthesize([u for u, _ in items], workers=2)
    recognizers = {d: PocketSphinxRecognizer(d) for d in COMMANDS}
    rows = []
    for u, is_command in items:
        t0 = time.perf_counter()
        tr = recognizers[u.domain].transcribe(load_wav(u.path))
        rows.append({"text": u.text, "command": is_command, "heard": tr.text, "voice": u.voice,
                     "margin": tr.details.get("phone_margin", 0.0), "rejected": tr.not_command,
                     "right_plan": moving(u.domain, tr.text) and RulePlanner().plan(u.domain, tr.text).to_json()
                     ["steps"] == RulePlanner().plan(u.domain, u.text.removeprefix("robot ")).to_json()["steps"],
                     "moving": moving(u.domain, tr.text), "decode_s": round(time.perf_counter() - t0, 3)})
    cmds = [r for r in rows if r["command"]]
    right = sum(r["right_plan"] for r in cmds)
    talk = [r for r in rows if not r["command"]]
    return {
        "set": name, "commands": len(cmds), "talk": len(talk),
        "commands_rejected": sum(r["rejected"] for r in cmds), "commands_right_plan": right,
        "commands_right_plan_kept": sum(r["right_plan"] and not r["rejected"] for r in cmds),
        "talk_moving_before": sum(r["moving"] for r in talk),
        "talk_moving_after": sum(r["moving"] and not r["rejected"] for r in talk),
        "decode_s_mean": round(sum(r["decode_s"] for r in rows) / len(rows), 3),
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=("dev", "held-out", "both"), default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="medrobot-oog-") as tmp:
        for name in (("dev", "held-out") if args.set == "both" else (args.set,)):
            res = evaluate(name, Path(tmp))
            if args.json:
                print(json.dumps(res))
                continue
            for r in res["rows"]:
                print(f"{'CMD ' if r['command'] else 'TALK'} {r['margin']:8.3f} {'REJ' if r['rejected'] else '   '} "
                      f"{'MOVE' if r['moving'] else '    '} {r['text']!r} -> {r['heard']!r}")
            print({k: v for k, v in res.items() if k != "rows"})


if __name__ == "__main__":
    main()
