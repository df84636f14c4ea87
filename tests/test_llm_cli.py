"""``medrobot plan --planner openai|hybrid`` end to end: a subprocess, the real client, the scripted server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _openai_server import ScriptedOpenAIServer, rule_responder


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=rule_responder()) as s:
        yield s


def _run(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MEDROBOT_"))}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "plan", *args], input=stdin, env=full,
                          capture_output=True, text=True, timeout=60, check=False)


def test_plan_openai_json(server: ScriptedOpenAIServer) -> None:
    out = _run(["--planner", "openai", "--domain", "xray", "--json", "take an AP shot of the pelvis"],
               {"OPENAI_BASE_URL": server.base_url, "MEDROBOT_MODEL": "scripted-model"})
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["status"] == "ok" and plan["needs_confirmation"] == [1]
    assert "structured output mode: json_schema" in out.stderr


def test_plan_hybrid_jsonl_with_flags(server: ScriptedOpenAIServer) -> None:
    before = len(server.chat_requests)
    lines = [{"domain": "ultrasound", "text": "scan the left kidney"}, {"domain": "surgery", "text": "qwzx blorp"}]
    out = _run(["--jsonl", "--planner", "hybrid", "--base-url", server.base_url, "--model", "scripted-model",
                "--llm-mode", "tools"], {}, "".join(json.dumps(x) + "\n" for x in lines))
    assert out.returncode == 0, out.stderr
    plans = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(p["status"], p["code"]) for p in plans] == [("ok", None), ("refused", "model_refused")]
    assert len(server.chat_requests) == before + 1
    assert "tools" in server.chat_requests[-1]


def test_openai_without_key_or_local_url_is_a_usage_error() -> None:
    out = _run(["--planner", "openai", "--domain", "xray", "--json", "take a shot"], {"MEDROBOT_MODEL": "gpt-x"})
    assert out.returncode == 2
    assert "OPENAI_API_KEY" in out.stderr and out.stdout == ""


def test_llm_audit_records_calls(server: ScriptedOpenAIServer, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    out = _run(["--planner", "openai", "--domain", "surgery", "--json", "--llm-audit", str(log),
                "pick up the needle with the right arm"],
               {"OPENAI_BASE_URL": server.base_url, "MEDROBOT_MODEL": "scripted-model"})
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    calls = [r for r in records if r.get("kind") == "llm_call"]
    assert len(calls) == 1
    for key in ("model", "mode", "latency_ms", "prompt_tokens", "completion_tokens", "attempt", "status"):
        assert key in calls[0]
    assert records[-1]["kind"] == "log_closed"    # a finished `plan` closes its log: it does not read as killed


def test_a_piped_console_closes_its_llm_audit_log(server: ScriptedOpenAIServer, tmp_path: Path) -> None:
    """Every command that makes a planner closes it: `console`, like `plan` and `run`, leaves an --llm-audit log
    that verifies as finished, not as killed."""
    log = tmp_path / "llm.jsonl"
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MEDROBOT_"))}
    full.update({"OPENAI_BASE_URL": server.base_url, "MEDROBOT_MODEL": "scripted-model"})
    out = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "console", "--domain", "xray", "--json",
                          "--planner", "openai", "--llm-audit", str(log)],
                         input="take an AP shot of the pelvis\nquit\n", env=full, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(r.get("kind") == "llm_call" for r in records)
    assert records[-1]["kind"] == "log_closed"
    verify = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "log", "verify", str(log)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
