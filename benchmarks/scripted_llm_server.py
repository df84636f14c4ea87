#!/usr/bin/env python3
"""A scripted OpenAI-compatible server on 127.0.0.1, standalone, so the CLI can be measured against a "model"
without any hosted LLM.

    python benchmarks/scripted_llm_server.py --script rule --port 8765 &
    OPENAI_BASE_URL=http://127.0.0.1:8765/v1 MEDROBOT_MODEL=scripted-model \\
        python ../shared/benchmarks/score_plans.py ../shared/benchmarks/plans-dev.jsonl \\
        --cmd "medrobot plan --jsonl --planner hybrid"

Scripts: ``rule`` answers what the offline rule planner makes of the command (a well-behaved model);
``obey`` answers every command with the domain's most hazardous plan and no confirmations (a model that
obeys any injection). ``--reject-json-schema`` / ``--reject-tools`` make it a server that lacks those
features; ``--delay`` adds model latency. It prints ``READY <base url>`` when it listens and serves until
interrupted (or for ``--seconds``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _openai_server import ScriptedOpenAIServer, obeying_responder, rule_responder  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--script", choices=("rule", "obey"), default="rule")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: run until ^C)")
    ap.add_argument("--reject-json-schema", action="store_true")
    ap.add_argument("--reject-tools", action="store_true")
    a = ap.parse_args()
    responder = rule_responder(delay_s=a.delay) if a.script == "rule" else obeying_responder(delay_s=a.delay)
    server = ScriptedOpenAIServer(responder=responder, reject_json_schema=a.reject_json_schema,
                                  reject_tools=a.reject_tools, port=a.port)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {server.base_url}", flush=True)
    try:
        if a.seconds:
            time.sleep(a.seconds)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        n = len(server.chat_requests)
        server.stop()
        print(f"served {n} chat requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
