"""LLM settings: flags over environment over file over defaults; cheap to import; keys never in files."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from medrobot_llm.planning.llm.config import LLMConfig, LLMConfigError, add_llm_arguments, config_from_args


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_llm_arguments(p)
    return p.parse_args(list(argv))


def test_flags_exist_with_none_defaults() -> None:
    ns = _args()
    for name in ("base_url", "model", "api_key_env", "timeout", "max_retries", "repair_retries", "llm_config",
                 "fallback", "mode", "audit_log"):
        assert getattr(ns, name) is None


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    f = tmp_path / "llm.toml"
    f.write_text('[llm]\nmodel = "from-file"\ntimeout = 7\nrepair-retries = 1\nbase_url = "http://file:1/v1"\n')
    env = {"MEDROBOT_MODEL": "from-env", "OPENAI_BASE_URL": "http://env:2/v1/"}
    cfg = config_from_args(_args("--llm-config", str(f), "--llm-timeout", "3"), env)
    assert cfg.model == "from-env"
    assert cfg.base_url == "http://env:2/v1"
    assert cfg.timeout == 3.0 and cfg.repair_retries == 1
    assert cfg.max_retries == LLMConfig().max_retries
    cfg = config_from_args(_args("--llm-config", str(f), "--model", "from-flag"), env)
    assert cfg.model == "from-flag"


@pytest.mark.parametrize(("name", "text"), [
    ("c.yaml", "model: y\nmode: tools\n"),
    ("c.json", json.dumps({"model": "y", "mode": "tools"})),
    ("c.toml", 'model = "y"\nmode = "tools"\n'),
])
def test_file_formats(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    cfg = config_from_args(_args("--llm-config", str(tmp_path / name)), {})
    assert (cfg.model, cfg.mode) == ("y", "tools")


def test_config_file_from_environment(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("fallback: rule\n")
    cfg = config_from_args(_args(), {"MEDROBOT_LLM_CONFIG": str(tmp_path / "c.yaml")})
    assert cfg.fallback == "rule"


@pytest.mark.parametrize("text", ["api_key: sk-secret\n", "modle: x\n", "timeout: soon\n", "- a list\n"])
def test_bad_files_are_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(LLMConfigError):
        config_from_args(_args("--llm-config", str(tmp_path / "c.yaml")), {})


def test_key_comes_from_the_named_variable_and_is_never_logged() -> None:
    cfg = config_from_args(_args("--api-key-env", "MY_KEY"), {"MY_KEY": "sk-abc", "OPENAI_API_KEY": "sk-other"})
    assert cfg.resolved_key() == "sk-abc"
    assert "sk-abc" not in json.dumps(cfg.public())


def test_openai_needs_a_key_local_servers_do_not() -> None:
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        config_from_args(_args(), {}).resolved_key()
    local = config_from_args(_args("--base-url", "http://127.0.0.1:11434/v1"), {})
    assert local.resolved_key()


@pytest.mark.parametrize("argv", [["--llm-timeout", "0"], ["--llm-max-retries", "99"], ["--base-url", "ftp://x"]])
def test_impossible_values_are_refused(argv: list[str]) -> None:
    with pytest.raises(LLMConfigError):
        config_from_args(_args(*argv), {})


def test_config_module_imports_without_openai() -> None:
    code = "import sys, medrobot_llm.planning.llm.config; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_planner_module_imports_without_openai() -> None:
    code = "import sys, medrobot_llm.planning.llm.planner; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
