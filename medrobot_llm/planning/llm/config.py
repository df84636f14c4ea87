"""Where the LLM planner's endpoint, model, key and limits come from: flags, then environment, then a file.

The same settings must reach OpenAI and local servers (vLLM, llama.cpp server, Ollama) alike, so nothing
here assumes a vendor. This module is imported by every planning command's argument parser; it must stay
cheap (no ``openai`` import) so ``medrobot plan --planner rule`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_OPENAI_URL",
    "FALLBACKS",
    "MODES",
    "TOOL_STYLES",
    "LLMConfig",
    "LLMConfigError",
    "add_llm_arguments",
    "config_from_args",
    "load_config_file",
]

MODES: tuple[str, ...] = ("auto", "json_schema", "tools", "json")
FALLBACKS: tuple[str, ...] = ("none", "rule")
TOOL_STYLES: tuple[str, ...] = ("submit_plan", "per_skill")
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
#: a key local servers accept; the openai client refuses to start without one
LOCAL_PLACEHOLDER_KEY = "sk-no-key-needed"


class LLMConfigError(ValueError):
    """The LLM settings cannot work (no key for OpenAI, a bad file, a value out of range)."""


@dataclass(frozen=True)
class LLMConfig:
    """Everything the LLM planner needs to reach a model and to bound what it costs."""

    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api_key: str | None = None
    #: wall-clock seconds for one HTTP request, connect to last byte (not per read: a server that trickles
    #: bytes is cut off at the same time)
    timeout: float = 30.0
    #: transport retries on 429, 5xx, timeouts and connection errors (per model call)
    max_retries: int = 2
    #: times the validator's errors go back to the model before the command is refused
    repair_retries: int = 2
    mode: str = "auto"
    tool_style: str = "submit_plan"
    fallback: str = "none"
    temperature: float = 0.0
    max_tokens: int = 1024
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    #: consecutive failed requests that open the circuit, and how long it stays open
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0
    max_steps: int = 16
    #: JSON-lines audit log for llm_call records when no log is handed in (``medrobot plan``)
    audit_log: str | None = None

    @property
    def is_openai(self) -> bool:
        return self.base_url is None or self.base_url.rstrip("/") == DEFAULT_OPENAI_URL

    def resolved_key(self) -> str:
        """The API key; local servers get a placeholder because they ignore it but the client insists."""
        if self.api_key:
            return self.api_key
        if self.is_openai:
            raise LLMConfigError(
                f"no API key: set {self.api_key_env} (or --api-key-env NAME), or point --base-url / "
                "OPENAI_BASE_URL at a local OpenAI-compatible server"
            )
        return LOCAL_PLACEHOLDER_KEY

    def check(self) -> LLMConfig:
        if self.mode not in MODES:
            raise LLMConfigError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.fallback not in FALLBACKS:
            raise LLMConfigError(f"fallback {self.fallback!r}: choose one of {', '.join(FALLBACKS)}")
        if self.tool_style not in TOOL_STYLES:
            raise LLMConfigError(f"tool_style {self.tool_style!r}: choose one of {', '.join(TOOL_STYLES)}")
        if not (0 < self.timeout <= 600):
            raise LLMConfigError(f"timeout {self.timeout} s: must be in (0, 600]")
        for name in ("max_retries", "repair_retries"):
            value = getattr(self, name)
            if not (0 <= value <= 10):
                raise LLMConfigError(f"{name} {value}: must be in 0..10")
        if self.breaker_threshold < 1 or self.breaker_cooldown < 0:
            raise LLMConfigError("breaker_threshold must be at least 1 and breaker_cooldown not negative")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise LLMConfigError("backoff times must not be negative")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise LLMConfigError(f"base URL {self.base_url!r} must start with http:// or https://")
        return self

    def public(self) -> dict[str, Any]:
        """The settings as logged: never the key itself."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_key"}
        out["api_key_set"] = bool(self.api_key)
        return out


_FIELDS = {f.name: f for f in fields(LLMConfig)}


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for ``--planner openai|hybrid``; defaults are None so the environment and file can fill in."""
    g = parser.add_argument_group("LLM planner (--planner openai or hybrid)")
    g.add_argument("--base-url", default=None, metavar="URL",
                   help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 for vLLM, "
                   "http://127.0.0.1:11434/v1 for Ollama (default: $OPENAI_BASE_URL, else OpenAI)")
    g.add_argument("--model", default=None,
                   help="model name (default: $MEDROBOT_MODEL; a local server's first model if unset)")
    g.add_argument("--api-key-env", default=None, metavar="NAME",
                   help="environment variable holding the API key (default OPENAI_API_KEY); keys never go "
                   "on the command line")
    g.add_argument("--llm-timeout", dest="timeout", type=float, default=None, metavar="S", help="wall-clock seconds per request, connect to last byte, however the server paces "
                   "its answer (default 30)")
    g.add_argument("--llm-max-retries", dest="max_retries", type=int, default=None, metavar="N",
                   help="transport retries on 429/5xx/timeouts, with backoff (default 2)")
    g.add_argument("--llm-repair-retries", dest="repair_retries", type=int, default=None, metavar="N",
                   help="times the validator's errors go back to the model before refusing (default 2)")
    g.add_argument("--llm-config", default=None, metavar="FILE",
                   help="TOML, YAML or JSON file with any of these settings (default: $MEDROBOT_LLM_CONFIG)")
    g.add_argument("--llm-fallback", dest="fallback", choices=FALLBACKS, default=None,
                   help="when the endpoint fails: none = refuse (default), rule = offline planner, with a notice")
    g.add_argument("--llm-audit", dest="audit_log", default=None, metavar="FILE",
                   help="append llm_call records (tokens, latency, status) to this audit log "
                   "(default: $MEDROBOT_LLM_AUDIT)")
    g.add_argument("--llm-mode", dest="mode", choices=MODES, default=None,
                   help="structured output: auto tries json_schema, then tools, then plain JSON (default auto)")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a settings file; keys are the ``LLMConfig`` field names (dashes allowed)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise LLMConfigError(f"{p}: cannot read: {exc.strerror}") from exc
    import yaml

    try:
        if p.suffix == ".toml":
            raw: Any = tomllib.loads(text)
        elif p.suffix == ".json":
            raw = json.loads(text)
        else:
            raw = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise LLMConfigError(f"{p}: cannot parse: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LLMConfigError(f"{p}: expected a mapping of settings")
    section = raw.get("llm", raw)
    if not isinstance(section, dict):
        raise LLMConfigError(f"{p}: `llm` must be a mapping of settings")
    out: dict[str, Any] = {}
    for key, value in section.items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS:
            raise LLMConfigError(f"{p}: unknown setting {key!r} (known: {', '.join(sorted(_FIELDS))})")
        if name == "api_key":
            raise LLMConfigError(f"{p}: put the key in an environment variable and name it with api_key_env")
        out[name] = value
    return out


def _coerce(name: str, value: Any) -> Any:
    default = _FIELDS[name].default
    if value is None:
        return None
    try:
        if isinstance(default, bool):
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError) as exc:
        raise LLMConfigError(f"setting {name}: {value!r} is not a number") from exc
    return str(value)


def config_from_args(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> LLMConfig:
    """Merge the sources, most specific first: flags, then the environment, then the file, then defaults."""
    env = os.environ if env is None else env
    ns = vars(args) if args is not None else {}
    values: dict[str, Any] = {}
    file = ns.get("llm_config") or env.get("MEDROBOT_LLM_CONFIG")
    if file:
        values.update(load_config_file(file))
    env_map = {"base_url": "OPENAI_BASE_URL", "model": "MEDROBOT_MODEL", "timeout": "MEDROBOT_LLM_TIMEOUT",
               "mode": "MEDROBOT_LLM_MODE", "fallback": "MEDROBOT_LLM_FALLBACK", "audit_log": "MEDROBOT_LLM_AUDIT"}
    for name, var in env_map.items():
        if env.get(var):
            values[name] = env[var]
    for name in ("base_url", "model", "api_key_env", "timeout", "max_retries", "repair_retries", "fallback", "mode",
                 "audit_log"):
        if ns.get(name) is not None:
            values[name] = ns[name]
    cfg = replace(LLMConfig(), **{k: _coerce(k, v) for k, v in values.items()})
    key = env.get(cfg.api_key_env)
    if key:
        cfg = replace(cfg, api_key=key)
    if cfg.base_url:
        cfg = replace(cfg, base_url=cfg.base_url.rstrip("/"))
    return cfg.check()
