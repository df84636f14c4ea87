"""``medrobot``: one entry point, one sub-command per job.

Sub-commands live in their own modules and register themselves; importing one must stay cheap (no
rclpy, pybullet or openai at import time) so ``medrobot --help`` and ``medrobot plan`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: sub-command modules, in the order ``--help`` lists them
COMMANDS: tuple[str, ...] = (
    "plan",
    "skills",
    "run",
    "console",
    "voice",
    "web",
    "bench",
    "log",
    "diagram",
    "render",
    "bringup",
    "record",
    "keys",
)


def build_parser() -> argparse.ArgumentParser:
    from medrobot_llm import __version__

    parser = argparse.ArgumentParser(
        prog="medrobot",
        description="Language to safe robot plans: plan, validate, supervise and execute commands for "
        "surgery, ultrasound and X-ray robots (PyBullet sim or ROS 2).",
        epilog="Every command takes --json and then prints JSON only. Try: medrobot plan --domain ultrasound "
        "\"scan the left kidney\"",
    )
    parser.add_argument("--version", action="version", version=f"medrobot_llm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"medrobot_llm.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"medrobot_llm.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
