"""``medrobot plan`` / ``medrobot skills`` as users and scripts call them: real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

MEDROBOT = [sys.executable, "-m", "medrobot_llm.cli"]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*MEDROBOT, *args], input=stdin, capture_output=True, timeout=60)


def plan_json(*args: str) -> dict[str, Any]:
    proc = run("plan", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    obj: dict[str, Any] = json.loads(proc.stdout)
    return obj


def test_json_contract() -> None:
    obj = plan_json("--domain", "ultrasound", "scan the left kidney")
    # the contract's fields in their order, then the fields added since (never renamed, never moved before them)
    assert list(obj)[:8] == ["status", "domain", "steps", "control", "reason", "question", "needs_confirmation",
                             "code"]
    assert obj["status"] == "ok" and obj["needs_confirmation"] == [1] and obj["code"] is None
    assert obj["steps"][0] == {"skill": "move_to_window", "args": {"organ": "kidney", "side": "left"}}


def test_human_output_marks_hazards() -> None:
    proc = run("plan", "--domain", "xray", "AP of the pelvis and take a shot")
    out = proc.stdout.decode()
    assert proc.returncode == 0
    assert "1. move_to_view" in out and "2. take_shot" in out and "RADIATION" in out


def test_refusal_and_question_are_printed() -> None:
    assert b"REFUSED" in run("plan", "--domain", "surgery", "cut the vessel").stdout
    assert b"QUESTION" in run("plan", "--domain", "ultrasound", "scan the kidney").stdout


def test_refusal_and_question_carry_a_code() -> None:
    refused = plan_json("--domain", "surgery", "lift the needle 8 cm with psm1")
    assert (refused["status"], refused["code"]) == ("refused", "out_of_range")
    asked = plan_json("--domain", "xray", "take an AP of the knee")
    assert (asked["status"], asked["code"]) == ("clarify", "missing")
    assert plan_json("--domain", "xray", "halt")["code"] is None


def test_jsonl_stream() -> None:
    lines = [{"domain": "surgery", "text": "stop"}, {"domain": "xray", "text": "take a shot"},
             {"domain": "nowhere", "text": "x"}, {"text": "no domain"}]
    feed = "".join(json.dumps(x) + "\n" for x in lines).encode() + b"not json\n" + b"\xff\xfe bad bytes\n"
    proc = run("plan", "--jsonl", stdin=feed)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(out) == 6
    assert out[0]["status"] == "control" and out[0]["control"] == "stop"
    assert out[1]["status"] == "ok"
    assert out[0]["code"] is None and out[1]["code"] is None
    assert all(o["status"] == "refused" and o["reason"] for o in out[2:])
    assert [o["code"] for o in out[2:]] == ["unknown_domain", "unknown_domain", "malformed", "invalid_text"]


@pytest.mark.parametrize(("text", "code"), [
    ("", "empty"),
    ("   ", "empty"),
    ("scan\x07 the liver", "invalid_text"),
    ("scan the liver ".ljust(100_000, "x"), "too_long"),
], ids=["empty", "blank", "bell", "100KB"])
def test_bad_text(text: str, code: str) -> None:
    obj = plan_json("--domain", "ultrasound", text)
    assert obj["status"] == "refused" and obj["reason"] and obj["code"] == code


def test_non_utf8_argument() -> None:
    proc = subprocess.run([*MEDROBOT, "plan", "--json", "--domain", "surgery", os.fsdecode(b"grab \xff\xfe")],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["code"] == "invalid_text"


def test_hundred_kb_on_stdin() -> None:
    feed = json.dumps({"domain": "xray", "text": "take a shot " * 9000}).encode() + b"\n"
    proc = run("plan", "--jsonl", stdin=feed)
    assert proc.returncode == 0 and json.loads(proc.stdout)["code"] == "too_long"


def test_usage_errors_exit_2() -> None:
    unknown = run("plan", "--domain", "dentistry", "x")
    assert unknown.returncode == 2 and b"choose one of" in unknown.stderr
    assert run("plan", "--domain", "xray").returncode == 2
    assert run("plan", "take a shot").returncode == 2
    assert run("plan", "--bogus").returncode == 2
    assert run("skills", "--domain", "dentistry").returncode == 2


def test_help_everywhere() -> None:
    proc = run("--help")
    assert proc.returncode == 0 and b"plan" in proc.stdout and b"skills" in proc.stdout
    assert run("plan", "--help").returncode == 0


def test_skills_json_schema_and_table() -> None:
    proc = run("skills", "--domain", "xray", "--json")
    schema = json.loads(proc.stdout)
    assert set(schema["$defs"]) >= {"take_shot", "adjust"}
    assert schema["$defs"]["take_shot"]["x-needs-confirmation"] is True
    table = run("skills", "--domain", "surgery").stdout.decode()
    assert "retract" in table and "CONTACT" in table and "1..30 mm" in table


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=3), max_leaves=12)
_LINE = st.one_of(
    st.binary(max_size=60).filter(lambda b: b"\n" not in b and b.strip()),
    _JSONISH.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda d, t: json.dumps({"domain": d, "text": t}).encode(),
              st.sampled_from(["xray", "surgery", "ultrasound", "mars", 7, None]), _JSONISH),
    st.integers(min_value=1, max_value=60000).map(lambda n: b'{"domain": "xray", "text": ' + b"[" * n + b"]" * n
                                                  + b"}"),
)


def _answered(raw: bytes) -> bool:
    """A line the stream must answer: anything but a blank line (blank as Python reads text)."""
    try:
        return bool(raw.decode("utf-8").strip())
    except UnicodeDecodeError:
        return True


@settings(max_examples=15, deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=6))
def test_a_stream_answers_every_line_whatever_it_holds_and_a_halt_after_it(lines: list[bytes]) -> None:
    """No line, however malformed or deeply nested, ends the stream: every non-blank line gets one plan object,
    in order, and a stop said after them is still heard."""
    stdin = b"\n".join(lines) + b'\n{"domain": "xray", "text": "halt"}\n'
    proc = run("plan", "--jsonl", stdin=stdin)
    assert proc.returncode == 0, proc.stderr[-1000:]
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(out) == sum(1 for raw in lines if _answered(raw)) + 1
    assert out[-1]["status"] == "control" and out[-1]["control"] == "stop"


@pytest.mark.parametrize("escaped", ["\\ud800", "\\udfff halt", "scan \\udc80 the liver", "\\ud83d"])
def test_a_lone_surrogate_is_refused_as_invalid_text(escaped: str) -> None:
    """A JSON escape can carry half of a surrogate pair, which is no text and cannot be encoded: it is refused
    by name (it used to raise out of the length check and end the stream)."""
    stdin = ('{"domain": "xray", "text": "' + escaped + '"}\n{"domain": "xray", "text": "halt"}\n').encode()
    proc = run("plan", "--jsonl", stdin=stdin)
    first, second = (json.loads(line) for line in proc.stdout.decode().splitlines())
    assert (first["status"], first["code"]) == ("refused", "invalid_text")
    assert second["control"] == "stop"
