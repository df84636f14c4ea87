"""Which planner a command runs with, chosen the same way wherever one is made.

The CLI sub-commands, the ROS planner node and the benchmark workers all build their planner from the same
flags, so ``--planner hybrid`` (or the node's ``planner:=hybrid``) means one thing everywhere.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medrobot_llm.planning.base import Planner

__all__ = ["PLANNERS", "add_planner_arguments", "close_planner", "make_planner"]

PLANNERS = ("rule", "openai", "hybrid")


def add_planner_arguments(parser: argparse.ArgumentParser) -> None:
    """The planner flags every planning command shares (plan, run, console, voice, bench)."""
    parser.add_argument("--planner", choices=PLANNERS, default="rule",
                        help="rule: the embedded offline planner (default); openai: an OpenAI-compatible "
                        "endpoint; hybrid: rule first, the model only for what it cannot parse")
    try:
        from medrobot_llm.planning.llm.config import add_llm_arguments
    except ModuleNotFoundError:
        return
    add_llm_arguments(parser)


def make_planner(args: argparse.Namespace) -> Planner:
    from medrobot_llm.planning.rule.planner import RulePlanner

    name = getattr(args, "planner", "rule")
    if name == "rule":
        return RulePlanner()
    from medrobot_llm.planning.hybrid import planner_from_args

    return planner_from_args(args)


def close_planner(planner: Planner) -> None:
    """Release what a planner opened for itself (the ``--llm-audit`` log, closed with its close record); a
    planner that opened nothing has no ``close``."""
    close = getattr(planner, "close", None)
    if callable(close):
        close()
