"""Attack 20: does a ``--wav`` file queued after a confirmed plan starve the PyBullet backend?

    python tests/attackers/voice_decode_ahead.py [TRIALS]

The README says ``--wav`` files are decoded ahead while a plan runs, so a stop later in the stream halts the
plan. In the attack (2 shared cores, load average 6-10) every confirmed moving plan with any file after its "yes"
ended in FAULT "backend heartbeat lost: no sign of life for 1.6-2.3 s during step 1" (8 of 8: xray and
ultrasound, a trailing "yes", "stop" or command), and the same plan with nothing after its "yes" ran its first
step (3 of 3). So the stop a recording says mid-plan never meets a running plan, and a contact step's question
is never asked. This is timing: a strict xfail would pass on an idle machine, so it is a script, not a test.
It prints, per trial, the final state and the first step's result with and without one file after the "yes".
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def _say(folder: Path, name: str, text: str) -> Path:
    """espeak-ng en-us at 140 wpm, 16 kHz mono 16-bit, padded as a --wav recording is."""
    raw, out = folder / f"{name}.raw.wav", folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(raw), "--", text], check=True, timeout=60)
    subprocess.run(["sox", "-R", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out), "pad", "0.3", "0.5"],
                   check=True, timeout=60, capture_output=True)
    return out


def _first_step(wavs: list[Path]) -> tuple[str, str]:
    """The supervisor's final state and the first step's result of the one plan run from these files."""
    argv = [sys.executable, "-m", "medrobot_llm.cli", "voice", "--domain", "ultrasound", "--json"]
    for wav in wavs:
        argv += ["--wav", str(wav)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    for line in proc.stdout.splitlines():
        outcome = json.loads(line).get("outcome") if line.startswith("{") else None
        if outcome and outcome.get("steps"):
            step = outcome["steps"][0]
            return str(outcome.get("state")), f"{step.get('result')} {step.get('reason') or ''}".strip()
    return "no plan ran", proc.stdout[-300:]


def main(argv: list[str]) -> None:
    trials = int(argv[0]) if argv else 1
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        command = _say(folder, "scan", "robot, scan the right kidney")
        yes = _say(folder, "yes", "yes")
        stop = _say(folder, "stop", "stop")
        for trial in range(trials):
            for label, wavs in (("nothing after yes", [command, yes]), ("a stop after yes", [command, yes, stop])):
                state, step = _first_step(wavs)
                print(json.dumps({"trial": trial, "case": label, "state": state, "step1": step}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
