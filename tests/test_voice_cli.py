"""``medrobot voice`` end to end with ``--asr openai`` against a real HTTP transcription server on 127.0.0.1.

The server answers with scripted transcripts, so these tests pin down what the console does with what it
heard: the stop fast path, the confidence threshold, and that only a step's own phrase confirms radiation.
The audio sent is real speech made by espeak-ng; the server checks it received a WAV file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.voice, pytest.mark.sim]


class _Transcriber:
    """Answers each POST /v1/audio/transcriptions with the next scripted (text, avg_logprob)."""

    def __init__(self, script: list[tuple[str, float]]) -> None:
        self.script = list(script)
        self.bodies: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.bodies.append(body)
                if not self.path.endswith("/audio/transcriptions") or not owner.script:
                    self.send_response(404)
                    self.end_headers()
                    return
                text, logprob = owner.script.pop(0)
                payload = json.dumps({"text": text, "language": "en", "duration": 1.0, "segments": [
                    {"id": 0, "start": 0.0, "end": 1.0, "text": text, "avg_logprob": logprob,
                     "no_speech_prob": 0.01, "tokens": [], "temperature": 0.0, "seek": 0,
                     "compression_ratio": 1.0}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Made once for the module: the CLI only reads them, and what it heard comes from the scripted server."""
    folder = tmp_path_factory.mktemp("voice-cli")
    paths = []
    for k, text in enumerate(["take a shot", "confirm shot", "stop"]):
        path = folder / f"u{k}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, timeout=30)
        paths.append(path)
    yield paths


def voice(server: _Transcriber, domain: str, files: list[Path], *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    argv = [sys.executable, "-m", "medrobot_llm.cli", "voice", "--domain", domain, "--asr", "openai", "--json",
            *extra]
    for f in files:
        argv += ["--wav", str(f)]
    env = {**__import__("os").environ, "MEDROBOT_ASR_BASE_URL": server.url, "MEDROBOT_ASR_API_KEY": "test"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.strip()], proc.stderr


def _of(recs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in recs if r.get("kind", "utterance") == kind]


def test_a_spoken_shot_fires_only_after_its_read_back_and_its_own_confirmation_phrase(wavs: list[Path]) -> None:
    server = _Transcriber([("Robot, AP of the pelvis and take a shot.", -0.1), ("Yes.", -0.1),
                           ("Confirm shot.", -0.1)])
    try:
        rc, recs, err = voice(server, "xray", [wavs[0], wavs[1], wavs[1]])
    finally:
        server.close()
    assert all(b"RIFF" in body and b"WAVE" in body for body in server.bodies)
    readback, = _of(recs, "readback")
    assert "take_shot" in readback["text"] and "pelvis" in readback["text"]
    answers = _of(recs, "answer")
    assert [a["action"] for a in answers] == ["confirm", "confirm"], recs
    command = recs[-1]
    assert command["transcript"] == "Robot AP of the pelvis and take a shot" and command["confidence"] > 0.8
    assert command["outcome"]["exposures"] == 1 and command["outcome"]["success"], (recs, err)
    assert [s["skill"] for s in command["plan"]["steps"]] == ["move_to_view", "take_shot"]
    assert command["plan"]["code"] is None
    assert rc == 0


def test_speech_not_addressed_to_the_robot_is_ignored(wavs: list[Path]) -> None:
    server = _Transcriber([("AP of the pelvis and take a shot", -0.1), ("confirm shot", -0.1)])
    try:
        rc, recs, _ = voice(server, "xray", wavs[:2], "--yes")
    finally:
        server.close()
    assert [r["action"] for r in recs] == ["ignored", "ignored"] and rc == 0, recs


def test_push_to_talk_takes_every_wav_as_pressed(wavs: list[Path]) -> None:
    server = _Transcriber([("scan the liver", -0.1), ("yes", -0.1)])
    try:
        rc, recs, err = voice(server, "ultrasound", wavs[:2], "--yes", "--push-to-talk")
    finally:
        server.close()
    assert recs[-1]["action"] == "command" and recs[-1]["outcome"]["success"], (recs, err)
    assert rc == 0


def test_a_read_back_that_is_not_confirmed_moves_nothing(wavs: list[Path]) -> None:
    server = _Transcriber([("robot scan the liver", -0.1), ("no", -0.1)])
    try:
        rc, recs, _ = voice(server, "ultrasound", wavs[:2], "--yes")
    finally:
        server.close()
    assert recs[-1]["action"] == "discarded" and rc == 1, recs


def test_a_refused_utterance_carries_the_refusal_code(wavs: list[Path]) -> None:
    server = _Transcriber([("robot take eight shots of the pelvis", -0.1)])
    try:
        rc, recs, _ = voice(server, "xray", wavs[:1], "--yes")
    finally:
        server.close()
    plan = recs[0]["plan"]
    assert (plan["status"], plan["code"]) == ("refused", "exposure_limit"), recs
    assert recs[0]["outcome"]["exposures"] == 0 and rc == 1
    assert not _of(recs, "readback"), "a refusal moves nothing, so it is not read back"


@pytest.mark.parametrize("answer", ["yes", "go ahead", "confirm spin", "don't confirm the shot"])
def test_yes_or_another_steps_phrase_never_fires_the_tube(wavs: list[Path], answer: str) -> None:
    server = _Transcriber([("robot AP of the pelvis and take a shot", -0.1), ("yes", -0.1), (answer, -0.05)])
    try:
        rc, recs, _ = voice(server, "xray", [wavs[0], wavs[1], wavs[1]], "--yes")
    finally:
        server.close()
    answer_rec, command = _of(recs, "answer")[-1], recs[-1]
    assert answer_rec["action"] == "deny" and "confirm shot" in answer_rec["message"]
    assert command["outcome"]["exposures"] == 0 and not command["outcome"]["success"]
    assert rc == 1


def test_yes_flag_alone_does_not_confirm_radiation(wavs: list[Path]) -> None:
    server = _Transcriber([("robot lateral of the sacrum and take a shot", -0.1), ("yes", -0.1)])
    try:
        rc, recs, _ = voice(server, "xray", wavs[:2], "--yes")
    finally:
        server.close()
    last_answer = _of(recs, "answer")[-1]
    assert last_answer["action"] == "deny" and "no answer" in last_answer["message"]
    assert recs[-1]["outcome"]["exposures"] == 0 and rc == 1


def test_stop_latches_the_estop_before_any_planning(wavs: list[Path]) -> None:
    server = _Transcriber([("Stop!", -0.3), ("robot scan the liver", -0.1), ("yes", -0.1)])
    try:
        rc, recs, _ = voice(server, "ultrasound", [wavs[2], wavs[0], wavs[1]], "--yes")
    finally:
        server.close()
    stop, after = recs[0], recs[-1]
    assert stop["action"] == "stop" and stop["plan"] is None and stop["state"] == "ESTOP"
    assert after["outcome"]["steps"] == [] or all(s["result"] != "success" for s in after["outcome"]["steps"])
    assert after["outcome"]["state"] == "ESTOP" and rc == 1


def test_low_confidence_asks_to_repeat_and_does_nothing(wavs: list[Path]) -> None:
    server = _Transcriber([("robot scan the liver", -2.5)])
    try:
        rc, recs, _ = voice(server, "ultrasound", wavs[:1], "--yes")
    finally:
        server.close()
    assert len(recs) == 1 and recs[0]["action"] == "repeat" and "repeat" in recs[0]["message"]
    assert recs[0]["plan"] is None and recs[0]["confidence"] < 0.6 and rc == 0


def test_contact_step_is_confirmed_by_a_spoken_yes(wavs: list[Path]) -> None:
    server = _Transcriber([("robot scan the liver", -0.1), ("yes", -0.1), ("yes", -0.1)])
    try:
        rc, recs, err = voice(server, "ultrasound", [wavs[0], *[wavs[1]] * 2])
    finally:
        server.close()
    assert [a["action"] for a in _of(recs, "answer")] == ["confirm"] * 2, "the read-back, then the contact step"
    assert recs[-1]["outcome"]["success"], (recs, err)
    assert rc == 0


def test_mic_without_portaudio_says_what_to_install() -> None:
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        proc = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "voice", "--domain", "xray", "--mic"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "pip install sounddevice" in proc.stderr and "portaudio" in proc.stderr
    else:
        pytest.fail("this test checks the message for a machine without PortAudio; PortAudio is installed here")
