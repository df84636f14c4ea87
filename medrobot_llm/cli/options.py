"""Command-line options that several sub-commands share, built from the command set.

The domains are a fact of ``skills/`` (``core.command_set.DOMAINS``); a ``choices=`` tuple or a help
sentence typed into each sub-command would go stale the day a domain is added, so they all come from here.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from medrobot_llm.core.command_set import DOMAINS, Hazard

__all__ = ["SESSION_ERRORS", "add_confirm_motion_argument", "add_domain_argument", "add_operator_arguments",
           "add_ros_arguments", "add_seed_argument", "confirm_hazards", "domain_names", "session_error"]


def domain_names(last: str = "or") -> str:
    """The domains as prose for help and error text (``a, b or c``)."""
    *head, tail = DOMAINS
    return f"{', '.join(head)} {last} {tail}" if head else tail


def add_domain_argument(parser: argparse.ArgumentParser, *flags: str, required: bool = True,
                        help: str | None = None) -> None:
    """``--domain`` (plus ``flags``, e.g. ``-d``), restricted to the command set's domains."""
    parser.add_argument("--domain", *flags, required=required, choices=DOMAINS, help=help)


#: seeds a scene's RNG accepts (numpy's, from 0 to 2**32 - 1)
MAX_SEED = 2**32 - 1


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..{MAX_SEED}")
    return value


def add_seed_argument(parser: argparse.ArgumentParser, help: str = "scene randomisation seed (default 0)") -> None:
    """``--seed``, checked where it is read: a negative seed used to end in numpy's traceback."""
    parser.add_argument("--seed", type=_seed, default=0, help=help)


#: the shortest time a question may stay open: a person reads it, and an exposure's Confirm arms after 0.6 s
MIN_CONFIRM_TIMEOUT_S = 2.0


def _confirm_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not MIN_CONFIRM_TIMEOUT_S <= value <= 3600.0:
        raise argparse.ArgumentTypeError(f"{text} is outside {MIN_CONFIRM_TIMEOUT_S:g}..3600 s: shorter drops "
                                         "every question before anyone can answer it")
    return value


def add_confirm_timeout_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--confirm-timeout``, checked where it is read: 0, a negative number or nan defeated every question."""
    parser.add_argument("--confirm-timeout", type=_confirm_timeout, default=60.0, metavar="S", help=help)


def add_confirm_motion_argument(parser: argparse.ArgumentParser, *, default: bool, where: str = "") -> None:
    """``--confirm-motion`` / ``--no-confirm-motion``: ask before every motion step too (the gantry moving to a
    view, the probe to a pose), as "Take a shot!" asks for the view before the exposure. ``default`` differs by
    console: the web page is built around its Confirm button, a terminal or a benchmark is not."""
    parser.add_argument("--confirm-motion", action=argparse.BooleanOptionalAction, default=default,
                        help="ask for a confirmation before each motion step, not only contact and radiation "
                        f"steps (default {'on' if default else 'off'}){where}")


def confirm_hazards(args: argparse.Namespace) -> tuple[str, ...]:
    """The supervisor's ``confirm_hazards`` that ``--confirm-motion`` stands for."""
    return (Hazard.MOTION.value,) if args.confirm_motion else ()


def add_ros_arguments(parser: argparse.ArgumentParser, help: str) -> None:
    """``--ros`` (``help`` says what the console then talks to) and ``--ros-wait``, as ``cli.session.open_client``
    reads them."""
    parser.add_argument("--ros", action="store_true", help=help)
    parser.add_argument("--ros-wait", type=float, default=20.0, metavar="S",
                        help="--ros: how long to wait for the supervisor on the graph (default 20)")


def add_operator_arguments(parser: argparse.ArgumentParser) -> None:
    """``--operator``, ``--keys`` and ``--graph-id``: who a ``--ros`` console signs as, where its key is, and for
    which graph (docs/trust.md)."""
    from medrobot_llm.safety.keys import KEYS_ENV

    parser.add_argument("--operator", metavar="NAME", default=None,
                        help="--ros: the operator this console signs as, i.e. the key operator-NAME.key "
                        "(default: your login name, as `medrobot keys init` names it)")
    parser.add_argument("--keys", type=Path, metavar="DIR", default=None,
                        help=f"--ros: the keys folder (default: ${KEYS_ENV}, else ~/.config/medrobot/keys)")
    parser.add_argument("--graph-id", type=_graph_id, metavar="ID", default=None,
                        help="--ros: the graph id `medrobot bringup` printed, for a console on another host (a "
                        "copy of the keys folder holds no id a console trusts); default: the id a running bringup "
                        "holds in the keys folder, followed across restarts")


def _graph_id(text: str) -> str:
    """An id as bringup draws it; anything else fails here, with the option's name, not deep in the ROS client."""
    from medrobot_llm.safety.graph_id import GRAPH_ID

    if not GRAPH_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a graph id (16 lowercase hex digits, as `medrobot "
                                         "bringup` prints it)")
    return text


def _session_errors() -> tuple[type[BaseException], ...]:
    from medrobot_llm.safety.audit import AuditLogError

    return (OSError, AuditLogError)


#: what opening a session's files (--record, --log) may raise: a user's path, answered with a sentence
SESSION_ERRORS = _session_errors()


def session_error(command: str, exc: BaseException) -> str:
    return (f"medrobot {command}: cannot open what --record or --log names: {exc}; "
            "give a folder (--record) and a file (--log) that you can write")
