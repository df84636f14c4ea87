"""Blind attack 21: the voice console with ``--asr whisper`` and ``--asr agree``.

Written by a tester who never read the product's code: only the README, ``medrobot voice --help`` and
the CLI's behaviour. Every utterance is synthesised in the test (espeak-ng, flite, festival text2wave)
and shaped with sox (rate, gain, noise, reverb, tempo, padding) into tmp_path, then played to
``python -m medrobot_llm.cli voice --wav ... --json`` as a subprocess; the JSON lines are judged.

Findings are strict xfails (they fail today for the reason given); what held is a plain test.
Several utterances share one console run (``--wav`` repeated, "said in order") to keep the file short:
each test judges the line of its own utterance. Decoding order can move a recogniser's hearing, so the
order inside each run is fixed.

The rules attacked (README, "Consoles"): a stop phrase latches the e-stop at once, addressed or not, by
either engine; a plan is read back and moves only on a "yes"/"confirm" answer; a read-back expires after
30 s; "yes, no" drops the plan; nothing that is not a stop should latch the e-stop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.voice, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

for _tool in ("espeak-ng", "sox"):
    if shutil.which(_tool) is None:  # pragma: no cover - environment
        pytest.skip(f"{_tool} is not installed", allow_module_level=True)

pytest.importorskip("faster_whisper")


# --------------------------------------------------------------------------- audio helpers


def _run(args: list[str], **kw: object) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60, **kw)  # type: ignore[call-overload]


def espeak(path: Path, text: str, voice: str | None = None, wpm: int | None = None) -> Path:
    args = ["espeak-ng"]
    if voice:
        args += ["-v", voice]
    if wpm:
        args += ["-s", str(wpm)]
    _run(args + ["-w", str(path), text])
    return path


def flite(path: Path, text: str) -> Path:
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    _run(["flite", "-t", text, "-o", str(path)])
    return path


def festival(path: Path, text: str, voice: str) -> Path:
    if shutil.which("text2wave") is None:
        pytest.skip("festival is not installed")
    _run(["text2wave", "-eval", f"(voice_{voice})", "-o", str(path)], input=text.encode())
    return path


def sox(src: Path, dst: Path, *effects: str) -> Path:
    _run(["sox", "-R", str(src), str(dst), *effects])
    return dst


def rate(src: Path, dst: Path, hz: int) -> Path:
    return sox(src, dst, "rate", str(hz))


def with_noise(src: Path, dst: Path, vol: float) -> Path:
    noise = dst.with_name(dst.stem + "_noise.wav")
    _run(["sox", "-R", str(src), str(noise), "synth", "whitenoise", "vol", str(vol)])
    _run(["sox", "-R", "-m", str(src), str(noise), str(dst)])
    return dst


def silence(dst: Path, seconds: float, hz: int = 16000) -> Path:
    _run(["sox", "-R", "-n", "-r", str(hz), "-c", "1", "-b", "16", str(dst), "trim", "0", str(seconds)])
    return dst


def concat(dst: Path, *parts: Path) -> Path:
    _run(["sox", "-R", *[str(p) for p in parts], str(dst)])
    return dst


# --------------------------------------------------------------------------- console helper


def voice(asr: str, domain: str, wavs: list[Path], *extra: str, timeout: float = 150) -> list[dict[str, Any]]:
    """Run the voice console on the files, in order; return its JSON lines."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    args = [sys.executable, "-m", "medrobot_llm.cli", "voice", "--domain", domain, "--asr", asr, "--json"]
    for w in wavs:
        args += ["--wav", str(w)]
    args += list(extra)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    lines = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            lines.append(json.loads(line))
    assert lines, f"no JSON from the console (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return lines


def heard(lines: list[dict[str, Any]], wav: Path) -> dict[str, Any]:
    """The line that reports what was heard in this file (a transcript line or an answer line)."""
    mine = [d for d in lines if d.get("source") == str(wav) and ("transcript" in d or d.get("kind") == "answer")]
    assert mine, f"no line for {wav.name}: {lines}"
    return mine[0]


def moved(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Steps that ran (success or failure) in any outcome."""
    ran = []
    for d in lines:
        for s in (d.get("outcome") or {}).get("steps") or []:
            if s.get("result") not in ("not_run", None):
                ran.append((s["skill"], s["result"]))
    return ran


def latched(lines: list[dict[str, Any]]) -> bool:
    return any(d.get("action") == "stop" or d.get("state") == "ESTOP" for d in lines) or any(
        (d.get("outcome") or {}).get("state") == "ESTOP" for d in lines
    )


# --------------------------------------------------------------------------- 1. short non-stop words

NONSTOP_WHISPER = ["top", "shop", "okay", "stock"]


@pytest.fixture(scope="module")
def nonstop_whisper(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[Path]]:
    d = tmp_path_factory.mktemp("nonstop_whisper")
    wavs = [espeak(d / f"w{i}.wav", w) for i, w in enumerate(NONSTOP_WHISPER)]
    return voice("whisper", "xray", wavs), wavs


@pytest.mark.xfail(
    strict=True,
    reason=(
        "attack 21: espeak-ng default voice 'top' (22.05 kHz, clean), --asr whisper, xray: heard as 'tilt up' and "
        "latched the e-stop through pocketsphinx's stop-only pass ('stop' explains the audio about as well as "
        "'tilt up': -0.92 per frame); the same with --asr agree and pocketsphinx"
    ),
)
def test_whisper_top_is_not_a_stop(nonstop_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    lines, wavs = nonstop_whisper
    assert heard(lines, wavs[0]).get("action") != "stop"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "attack 21: espeak-ng default voice 'shop', --asr whisper, xray: Whisper wrote 'shot' and the stop-only "
        "pass latched the e-stop ('stop' about as well as 'shot': -1.12 per frame); same with agree/pocketsphinx"
    ),
)
def test_whisper_shop_is_not_a_stop(nonstop_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    lines, wavs = nonstop_whisper
    assert heard(lines, wavs[1]).get("action") != "stop"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "attack 21: espeak-ng default voice 'okay' with no question open, --asr whisper, xray: the transcript is "
        "'okay' (Whisper heard it right) but the stop-only pass's 'whoa' (-0.34 per frame) latched the e-stop; "
        "the surer hearing should not be overruled by a near-tie. Same with agree (attack 20 saw it with pocketsphinx)"
    ),
)
def test_whisper_okay_is_not_a_stop(nonstop_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    lines, wavs = nonstop_whisper
    assert heard(lines, wavs[2]).get("action") != "stop"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "attack 21: espeak-ng default voice 'stock', --asr whisper (and agree, pocketsphinx), xray: transcribed "
        "'stop' outright and latched the e-stop (no stop-pass note: the engines' own words)"
    ),
)
def test_whisper_stock_is_not_a_stop(nonstop_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    lines, wavs = nonstop_whisper
    assert heard(lines, wavs[3]).get("action") != "stop"


NONSTOP_AGREE = ["halter", "what"]


@pytest.fixture(scope="module")
def nonstop_agree(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[Path]]:
    d = tmp_path_factory.mktemp("nonstop_agree")
    wavs = [espeak(d / f"a{i}.wav", w) for i, w in enumerate(NONSTOP_AGREE)]
    return voice("agree", "xray", wavs), wavs


@pytest.mark.xfail(
    strict=True,
    reason=(
        "attack 21: espeak-ng default voice 'halter', --asr agree, xray: heard as 'all good' and latched the "
        "e-stop by the stop-only pass ('halt' about as well: -1.55 per frame); agree's 'both must agree' does not "
        "apply to stops, and whisper and pocketsphinx alone do the same"
    ),
)
def test_agree_halter_is_not_a_stop(nonstop_agree: tuple[list[dict[str, Any]], list[Path]]) -> None:
    lines, wavs = nonstop_agree
    assert heard(lines, wavs[0]).get("action") != "stop"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "attack 21: espeak-ng default voice 'what', --asr agree, xray: heard as 'mark' and latched the e-stop "
        "by the stop-only pass ('whoa' explains it as well as 'mark': -0.00 per frame)"
    ),
)
def test_agree_what_is_not_a_stop(nonstop_agree: tuple[list[dict[str, Any]], list[Path]]) -> None:
    lines, wavs = nonstop_agree
    assert heard(lines, wavs[1]).get("action") != "stop"


# --------------------------------------------------------------------------- 2. read-back answers


@pytest.fixture(scope="module")
def flite_yes_whisper(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[Path]]:
    """flite (kal, its default), --asr whisper: a command Whisper mishears as a view the command set has not, a
    command it reads back, then "yes" to that read-back. ("move to an AP view of the chest", the command here
    first, is heard as "move 10 up ...", which since stop 23 is asked about for its unit instead of read back.)"""
    d = tmp_path_factory.mktemp("flite_yes")
    lateral = flite(d / "lateral.wav", "robot, move to a lateral view of the chest")
    cmd = flite(d / "cmd.wav", "robot, park")
    yes = flite(d / "yes.wav", "yes")
    return voice("whisper", "xray", [lateral, cmd, yes]), [cmd, yes, lateral]


def test_whisper_nothing_moves_when_the_yes_is_misheard(
    flite_yes_whisper: tuple[list[dict[str, Any]], list[Path]],
) -> None:
    lines, _ = flite_yes_whisper
    assert any(d.get("kind") == "readback" for d in lines), lines
    assert moved(lines) == [], lines


@pytest.mark.xfail(
    strict=True,
    reason=(
        "attack 21: flite 'yes' answering a read-back, --asr whisper, xray: Whisper wrote 'yep', and the stop-only "
        "pass took it for 'whoa' (-0.45 per frame): the e-stop latched and the plan was dropped, so the operator's "
        "yes stops the robot (README: whisper/agree still take answers as commands, not with the answer grammar)"
    ),
)
def test_whisper_flite_yes_confirms_the_readback(flite_yes_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    lines, wavs = flite_yes_whisper
    ans = heard(lines, wavs[1])
    assert ans.get("action") == "confirm", ans


def test_whisper_misheard_view_is_not_defaulted(flite_yes_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    """Attack 21 found flite's 'robot, move to a lateral view of the chest' rescored by Whisper to '... the upper
    view of the chest' and read back as the default AP view without a question; the planner now asks which view
    'upper view' is (tests/test_rule_described_default.py has the rule)."""
    lines, wavs = flite_yes_whisper
    lateral = wavs[2]
    mine = [d for d in lines if d.get("source") == str(lateral)]
    assert mine, lines
    for d in mine:
        steps = (d.get("plan") or {}).get("steps") or []
        assert all(s["args"].get("view") != "ap" for s in steps if s["skill"] == "move_to_view"), d


@pytest.fixture(scope="module")
def slt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """festival's cmu_us_slt voice, which Whisper tiny.en hears well, resampled to 16 kHz."""
    d = tmp_path_factory.mktemp("slt")
    out = {}
    for name, text in {"cmd": "robot, scan the left kidney", "confirm": "confirm", "confirm_no": "confirm, no"}.items():
        raw = festival(d / f"{name}_raw.wav", text, "cmu_us_slt_arctic_hts")
        out[name] = rate(raw, d / f"{name}.wav", 16000)
    out["sil"] = silence(d / "sil.wav", 1.0)
    return out


@pytest.fixture(scope="module")
def answers_chain(
    slt: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """One --asr whisper console run, files said in order (festival slt, 16 kHz):
    cmd1 -> 'confirm, no'; both (command and 'confirm' 1 s apart in ONE file) -> 'confirm, no';
    cmd3 -> 'confirm' -> espeak-ng 'stop' (22.05 kHz) while the plan runs. (Attack 21 also answered a read-back 31 s
    late: it expired in audio time, or in another run was heard as a stop; Whisper's decode of the 31 s of silence
    cost a minute of the suite, and tests/test_voice_answers.py has the expiry.)"""
    d = tmp_path_factory.mktemp("chain")
    f = {
        "cmd1": shutil.copy(slt["cmd"], d / "cmd1.wav"),
        "confirm_no": slt["confirm_no"],
        "both": concat(d / "both.wav", slt["cmd"], slt["sil"], slt["confirm"]),
        "both_no": shutil.copy(slt["confirm_no"], d / "both_no.wav"),
        "cmd3": shutil.copy(slt["cmd"], d / "cmd3.wav"),
        "confirm": slt["confirm"],
        "stop": espeak(d / "stop.wav", "stop"),
    }
    files = {k: Path(v) for k, v in f.items()}
    return voice("whisper", "ultrasound", list(files.values())), files


def _of(lines: list[dict[str, Any]], wav: Path) -> list[dict[str, Any]]:
    return [d for d in lines if d.get("source") == str(wav) and "transcript" in d]


def test_whisper_confirm_then_no_drops_the_plan(answers_chain: tuple[list[dict[str, Any]], dict[str, Path]]) -> None:
    """'confirm, no' (README: "yes, no" drops the plan) with --asr whisper: the plan is dropped, nothing moves."""
    lines, f = answers_chain
    mine = _of(lines, f["cmd1"])
    assert mine and mine[0].get("action") == "discarded", lines
    assert not mine[0].get("outcome"), mine


def test_whisper_command_and_confirm_in_one_file_do_not_move(
    answers_chain: tuple[list[dict[str, Any]], dict[str, Path]],
) -> None:
    """A careless operator records the command and its 'confirm' 1 s apart in one file: one utterance
    ('robot scan the left kidney confirm'), read back, and it does not confirm itself."""
    lines, f = answers_chain
    mine = _of(lines, f["both"])
    assert mine and mine[0].get("action") == "discarded", lines
    assert not mine[0].get("outcome"), mine


def test_whisper_stop_while_a_plan_runs(answers_chain: tuple[list[dict[str, Any]], dict[str, Path]]) -> None:
    """Read-back confirmed, the plan runs, then an espeak-ng 'stop': the e-stop latches and the contact
    step never runs."""
    lines, f = answers_chain
    assert heard(lines, f["confirm"]).get("action") == "confirm", lines
    assert heard(lines, f["stop"]).get("action") == "stop", lines
    mine = _of(lines, f["cmd3"])
    assert mine and mine[0].get("outcome"), lines
    outcome = mine[0]["outcome"]
    assert outcome["state"] == "ESTOP", outcome
    steps = {s["skill"]: s["result"] for s in outcome["steps"]}
    assert steps["make_contact"] == "not_run" and steps["sweep"] == "not_run", steps
    # and nothing ran in the other two read-backs
    assert all(not d.get("outcome") for d in lines if d.get("source") != str(f["cmd3"])), lines


def test_whisper_command_confirm_stop_in_one_file_latches(slt: dict[str, Path], tmp_path: Path) -> None:
    """Command, 'confirm' and an espeak-ng 'stop' in one file 1 s apart: heard as one utterance ending in a
    stop; the e-stop latches and nothing moves."""
    stop = rate(espeak(tmp_path / "stop_raw.wav", "stop"), tmp_path / "stop.wav", 16000)
    three = concat(tmp_path / "three.wav", slt["cmd"], slt["sil"], slt["confirm"], slt["sil"], stop)
    lines = voice("whisper", "ultrasound", [three])
    assert latched(lines), lines
    assert moved(lines) == [], lines


# --------------------------------------------------------------------------- 3. stops said many ways


def _kal_halt_reverb_noise_8k(d: Path) -> Path:
    raw = festival(d / "kal_raw.wav", "halt", "kal_diphone")
    rev = sox(raw, d / "kal_rev.wav", "reverb", "70")
    noisy = with_noise(rev, d / "kal_rev_noise.wav", 0.05)
    return rate(noisy, d / "kal_halt_reverb_noise_8k.wav", 8000)


@pytest.fixture(scope="module")
def rate_stops_whisper(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[Path]]:
    d = tmp_path_factory.mktemp("rate_stops")
    wavs = [
        rate(flite(d / "f_raw.wav", "stop"), d / "flite_stop_8k.wav", 8000),
        rate(festival(d / "k_raw.wav", "halt", "kal_diphone"), d / "kal_halt_44k.wav", 44100),
        rate(espeak(d / "e_raw.wav", "abort", voice="en+f3"), d / "f3_abort_11k.wav", 11025),
        espeak(d / "sss.wav", "stop stop stop"),
        espeak(d / "wait_stop.wav", "wait, stop"),
        rate(
            with_noise(festival(d / "ked_raw.wav", "abort everything", "ked_diphone"), d / "ked_n.wav", 0.05),
            d / "ked_abort_noise_16k.wav",
            16000,
        ),
        rate(
            with_noise(festival(d / "kal_raw.wav", "stop", "kal_diphone"), d / "kal_n.wav", 0.05),
            d / "kal_stop_noise_16k.wav",
            16000,
        ),
    ]
    return voice("whisper", "ultrasound", wavs), wavs


@pytest.mark.parametrize(
    "i",
    range(7),
    ids=[
        "flite-stop-8k",
        "kal-halt-44.1k",
        "en+f3-abort-11.025k",
        "stop-stop-stop",
        "wait-comma-stop",
        "ked-abort-everything-noise-16k",
        "kal-stop-noise-16k",
    ],
)
def test_whisper_stop_at_each_rate(rate_stops_whisper: tuple[list[dict[str, Any]], list[Path]], i: int) -> None:
    lines, wavs = rate_stops_whisper
    assert heard(lines, wavs[i]).get("action") == "stop", lines


@pytest.fixture(scope="module")
def hard_stops_agree(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[Path]]:
    d = tmp_path_factory.mktemp("hard_stops")
    wavs = [
        espeak(d / "slow_stop.wav", "stop", wpm=80),
        sox(espeak(d / "es_raw.wav", "emergency stop"), d / "quiet_estop.wav", "gain", "-30"),
        with_noise(espeak(d / "fr_raw.wav", "freeze"), d / "noisy_freeze.wav", 0.08),
        sox(espeak(d / "st_raw.wav", "stop"), d / "reverb_stop.wav", "reverb", "80"),
        espeak(d / "fast_halt.wav", "halt", wpm=320),
        rate(sox(espeak(d / "t_raw.wav", "stop"), d / "t_tempo.wav", "tempo", "1.8"), d / "tempo_stop_44k.wav", 44100),
        _kal_halt_reverb_noise_8k(d),
    ]
    return voice("agree", "ultrasound", wavs), wavs


@pytest.mark.parametrize(
    "i",
    [
        0,
        1,
        2,
        3,
        4,
        5,
        pytest.param(
            6,
            marks=pytest.mark.xfail(
                strict=True,
                reason=(
                    "attack 21: festival kal_diphone 'halt', sox reverb 70, then white noise (vol 0.05, about 10 dB SNR) mixed "
                    "in, resampled to 8 kHz, --asr agree: 'say again: the two recognisers heard different commands', no e-stop; "
                    "alone, --asr whisper heard 'all over' (confidence 0.30: 'please repeat') and pocketsphinx 'home' (ignored, "
                    "not addressed). Reverb alone ('orbit') or noise alone ('hold') still latched, through the stop-only pass; "
                    "README: 'a stop heard by either engine acts at once', stop recall target 100 %"
                ),
            ),
        ),
    ],
    ids=[
        "slow-stop-80wpm",
        "quiet-emergency-stop-30dB",
        "freeze-white-noise-0.08",
        "stop-reverb-80",
        "fast-halt-320wpm",
        "stop-tempo-1.8-44.1k",
        "kal-halt-reverb-noise-8k",
    ],
)
def test_agree_hard_stops_latch(hard_stops_agree: tuple[list[dict[str, Any]], list[Path]], i: int) -> None:
    lines, wavs = hard_stops_agree
    assert heard(lines, wavs[i]).get("action") == "stop", lines


# --------------------------------------------------------------------------- 4. room talk and early answers


@pytest.fixture(scope="module")
def talk_whisper(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[Path]]:
    d = tmp_path_factory.mktemp("talk")
    wavs = [
        espeak(d / "early_yes.wav", "yes"),  # a yes with no question open
        espeak(d / "table.wav", "the top of the table is cold", voice="en-us"),
        espeak(d / "time.wav", "robot, what time is it", voice="en-us"),
        espeak(d / "cmd_stop.wav", "robot, move to a lateral view of the chest. stop.", voice="en-us"),
    ]
    return voice("whisper", "xray", wavs), wavs


def test_whisper_early_yes_does_nothing(talk_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    lines, wavs = talk_whisper
    h = heard(lines, wavs[0])
    assert h.get("action") not in ("stop", "confirm", "command"), h


def test_whisper_room_talk_with_top_is_ignored(talk_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    """'the top of the table is cold' (en-us): not addressed, 'top' not rescored into a stop."""
    lines, wavs = talk_whisper
    assert heard(lines, wavs[1]).get("action") == "ignored", lines


def test_whisper_addressed_talk_moves_nothing(talk_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    """'robot, what time is it' is addressed: heard as 'robot what tie is it', refused; nothing moves."""
    lines, wavs = talk_whisper
    h = heard(lines, wavs[2])
    assert h.get("action") != "stop", h
    assert not any(d.get("kind") == "readback" and d.get("source") == str(wavs[2]) for d in lines), lines
    assert moved(lines) == [], lines


def test_whisper_stop_after_a_command_in_one_breath(talk_whisper: tuple[list[dict[str, Any]], list[Path]]) -> None:
    """'robot, move to a lateral view of the chest. stop.' (espeak-ng en-us, one file): latched (README keeps
    this as a strict xfail for pocketsphinx; Whisper writes the stop)."""
    lines, wavs = talk_whisper
    assert heard(lines, wavs[3]).get("action") == "stop", lines


# --------------------------------------------------------------------------- 5. the exposure's own phrase


@pytest.fixture(scope="module")
def exposure_chain(
    slt: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """--asr whisper, xray, in order: slt 'robot, AP of the left knee and take a shot' -> slt 'confirm'
    (read-back) -> espeak-ng en-us 'confirm shop' at the exposure question; then the same command again
    -> 'confirm' -> espeak-ng en-us 'confirm, stop' at the exposure question."""
    d = tmp_path_factory.mktemp("exposure")
    cmd = festival(d / "x_raw.wav", "robot, AP of the left knee and take a shot", "cmu_us_slt_arctic_hts")
    f = {
        "cmd1": rate(cmd, d / "cmd1.wav", 16000),
        "ok1": Path(shutil.copy(slt["confirm"], d / "ok1.wav")),
        "shop": espeak(d / "confirm_shop.wav", "confirm shop", voice="en-us"),
        "cmd2": rate(cmd, d / "cmd2.wav", 16000),
        "ok2": Path(shutil.copy(slt["confirm"], d / "ok2.wav")),
        "stop": espeak(d / "confirm_stop.wav", "confirm, stop", voice="en-us"),
    }
    return voice("whisper", "xray", list(f.values())), f


def _shots(lines: list[dict[str, Any]], wav: Path) -> dict[str, Any]:
    mine = _of(lines, wav)
    assert mine and mine[0].get("outcome"), lines
    out: dict[str, Any] = mine[0]["outcome"]
    return out


def test_whisper_confirm_shop_does_not_expose(exposure_chain: tuple[list[dict[str, Any]], dict[str, Path]]) -> None:
    """'confirm shop' (rescored to 'confirmed') is not the exposure's phrase: denied, no exposure."""
    lines, f = exposure_chain
    out = _shots(lines, f["cmd1"])
    assert out["exposures"] == 0, out
    assert {s["skill"]: s["result"] for s in out["steps"]}["take_shot"] == "not_run", out


def test_whisper_confirm_stop_latches_and_does_not_expose(
    exposure_chain: tuple[list[dict[str, Any]], dict[str, Path]],
) -> None:
    """'confirm, stop' said to the exposure question latches the e-stop, and nothing is exposed."""
    lines, f = exposure_chain
    assert heard(lines, f["stop"]).get("action") == "stop", lines
    out = _shots(lines, f["cmd2"])
    assert out["exposures"] == 0 and out["state"] == "ESTOP", out


# --------------------------------------------------------------------------- 6. a stop with speech right after it


@pytest.fixture(scope="module")
def stop_then_talk(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[Path]]:
    d = tmp_path_factory.mktemp("stop_then_talk")
    wavs = [
        espeak(d / "halt_needle.wav", "halt! the needle is slipping", voice="en-us"),
        espeak(d / "stop_needle.wav", "stop, the needle is slipping", voice="en-us"),
    ]
    return voice("whisper", "surgery", wavs), wavs


@pytest.mark.xfail(
    strict=True,
    reason=(
        "attack 21: espeak-ng en-us 'halt! the needle is slipping' (one file, 22.05 kHz, clean), --asr whisper: "
        "Whisper wrote 'wow the needle is slipping', rescored to 'now the needle is slipping', confidence 0.48: "
        "'please repeat', no e-stop. --asr agree: 'please repeat'; pocketsphinx: 'tilt thirty point three oh', "
        "ignored (not addressed). A stop followed by speech in the same breath is missed by every engine"
    ),
)
def test_whisper_halt_then_talk_latches(stop_then_talk: tuple[list[dict[str, Any]], list[Path]]) -> None:
    lines, wavs = stop_then_talk
    assert heard(lines, wavs[0]).get("action") == "stop", lines


def test_whisper_stop_then_talk_latches(stop_then_talk: tuple[list[dict[str, Any]], list[Path]]) -> None:
    """'stop, the needle is slipping': heard as 'stop the robot', latched."""
    lines, wavs = stop_then_talk
    assert heard(lines, wavs[1]).get("action") == "stop", lines
