"""The supervisor a console sub-command drives: an in-process ``Session`` (planner, scene, records, audit log) or,
with ``--ros``, a running graph's supervisor.

``console``, ``web`` and ``voice`` used to open these each in their own words; a fix to one (closing the planner
after the session, so an ``--llm-audit`` log ends with its close record) then had to be found and made in the
others. Everything opened here is closed by the caller's ``ExitStack``, in the reverse order it was opened.
Each function answers with what it opened or with the line to print on stderr (exit status 2).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrobot_llm.cli.options import SESSION_ERRORS, confirm_hazards, session_error

if TYPE_CHECKING:
    from medrobot_llm.planning.base import Planner
    from medrobot_llm.safety.protocol import SupervisorClient
    from medrobot_llm.session import Session

__all__ = ["open_client", "open_planner", "open_ros_client", "open_session"]


def open_planner(command: str, args: argparse.Namespace, stack: contextlib.ExitStack) -> Planner | str:
    """The planner the planner options name. Opened before the session, so it is closed after it: an
    ``--llm-audit`` log ends with its close record, not as if killed."""
    from medrobot_llm.planning.factory import close_planner, make_planner

    try:
        planner = make_planner(args)
    except ValueError as exc:
        return f"medrobot {command}: {exc}"
    stack.callback(close_planner, planner)
    return planner


def open_session(command: str, args: argparse.Namespace, planner: Planner, stack: contextlib.ExitStack, *,
                 record_dir: Path | None, gui: bool = False, **supervisor: Any) -> Session | str:
    """The domain's scene in this process under a supervisor, writing ``--log``; ``supervisor`` holds the options
    the command has for it (``confirm_timeout_s``, ``confirm_hazards``)."""
    from medrobot_llm.session import Session

    try:
        session = Session(args.domain, planner, seed=args.seed, gui=gui, record_dir=record_dir, audit_path=args.log,
                          **supervisor)
    except ImportError as exc:
        return f"medrobot {command}: needs the {args.domain} scene ({exc}); run `make setup`"
    except SESSION_ERRORS as exc:
        return session_error(command, exc)
    stack.callback(session.close)
    return session


def open_ros_client(command: str, args: argparse.Namespace, stack: contextlib.ExitStack) -> SupervisorClient | str:
    """The supervisor of a running ``medrobot bringup`` graph, signed for as ``--operator``, once it answers."""
    try:
        from medrobot_llm.backends.ros.remote import RemoteSupervisor
    except ImportError as exc:
        return (f"medrobot {command}: --ros needs the ROS 2 client medrobot_llm.backends.ros.remote.RemoteSupervisor, "
                f"which is not available here ({type(exc).__name__}: {exc}). Run `bash scripts/install_ros.sh` and "
                "start from a shell that sourced ros_ws/install/medrobot_env.sh")
    from medrobot_llm.safety.keys import KeyFileError

    try:
        remote = RemoteSupervisor(operator=args.operator, keys_dir=args.keys, graph_id=args.graph_id)
    except (KeyFileError, ValueError) as exc:
        return (f"medrobot {command}: over ROS 2 this console signs as an operator, and it cannot: {exc}. "
                f"`medrobot bringup --domain {args.domain}` creates the keys it uses")
    stack.callback(remote.close)
    if not remote.wait_ready(args.ros_wait):
        domain_id = os.environ.get("ROS_DOMAIN_ID") or "0"
        return (f"medrobot {command}: no supervisor answered over ROS 2 (ROS_DOMAIN_ID {domain_id}) on "
                f"/medrobot/state within {args.ros_wait:g} s; start the graph first with `medrobot bringup "
                f"--domain {args.domain}` (same ROS_DOMAIN_ID), or raise --ros-wait")
    return remote


def open_client(command: str, args: argparse.Namespace, stack: contextlib.ExitStack, *, gui: bool = False,
                record_always: bool = False) -> tuple[SupervisorClient, Session | None] | str:
    """What a console drives: the ``--ros`` graph's supervisor, or a session of its own in this process, with the
    console's ``--confirm-timeout`` and ``--confirm-motion``. ``record_always``: without ``--record``, the session
    records into a temporary folder, removed at the end (the web page shows the frames it saves)."""
    if args.ros:
        remote = open_ros_client(command, args, stack)
        return remote if isinstance(remote, str) else (remote, None)
    planner = open_planner(command, args, stack)
    if isinstance(planner, str):
        return planner
    record = args.record
    if record is None and record_always:
        record = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"medrobot-{command}-")))
    session = open_session(command, args, planner, stack, record_dir=record, gui=gui,
                           confirm_timeout_s=args.confirm_timeout, confirm_hazards=confirm_hazards(args))
    return session if isinstance(session, str) else (session.supervisor, session)
