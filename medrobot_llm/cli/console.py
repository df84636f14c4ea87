"""``medrobot console``: the interactive text console (prompt_toolkit), over the in-process sim or ROS.

All the behaviour is in ``consoles.core.ConsoleCore``; this module only wires a terminal to it: history,
completion, the live status line, Ctrl-C as an e-stop key. Without a terminal (or with ``--json``) it
reads lines from stdin instead, so scripts can drive it the same way a person does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrobot_llm.safety.protocol import SupervisorClient

if TYPE_CHECKING:
    from medrobot_llm.consoles.core import ConsoleCore

__all__ = ["register"]


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import (add_confirm_motion_argument, add_confirm_timeout_argument,
                                          add_domain_argument, add_operator_arguments, add_ros_arguments,
                                          add_seed_argument)
    from medrobot_llm.planning.factory import add_planner_arguments
    from medrobot_llm.consoles.core import CONSOLE_WORDS

    words = "\n".join(f"  {word:<8} {what}" for word, what in CONSOLE_WORDS.items())
    p = sub.add_parser(
        "console",
        help="interactive text console: type commands, see the plan, confirm, watch it run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Type commands in plain words; the supervisor decides, the console only shows and asks.\n"
        "- The plan is shown before anything moves; each contact or radiation step asks y/n, for that step only.\n"
        "- The bottom line is live: supervisor state, current step and progress, contact force or gantry pose.\n"
        "- `stop`, or Ctrl-C while anything runs, latches the e-stop at once; `reset` recovers when it is safe.\n"
        "- Tab completes skill, organ, anatomy, view and arm names (from skills/); history is kept per domain.\n"
        "By default the domain's PyBullet scene runs in this process. With --ros the console drives a running\n"
        "`medrobot bringup` graph instead: commands go to /medrobot/command, y/n to /medrobot/confirm, stop to\n"
        "/medrobot/estop, reset to /medrobot/reset, and the screen follows /medrobot/state and /medrobot/events.\n"
        "Without a terminal, or with --json, it reads one line per command on stdin: a y/n line waits for its\n"
        "question, a command for the previous run to end, and `stop` acts at once.\n\n"
        f"words the console answers itself:\n{words}",
        epilog="examples:\n"
        "  medrobot console --domain ultrasound\n"
        "  medrobot console --domain xray --record out/    # keep the images and a frame per step\n"
        "  medrobot bringup --domain ultrasound &  medrobot console --domain ultrasound --ros\n"
        "  printf 'scan the left kidney\\ny\\n' | medrobot console --domain ultrasound --json",
    )
    add_domain_argument(p, help="which robot and command set")
    add_ros_arguments(p, "talk to the supervisor over ROS 2 (/medrobot/command, /medrobot/confirm, /medrobot/estop, "
                      "/medrobot/state) instead of running the scene in-process")
    p.add_argument("--json", action="store_true",
                   help="read commands on stdin and print one JSON object per event line (supervisor records, "
                   "replies) only")
    p.add_argument("--gui", action="store_true", help="open the PyBullet window (needs a display)")
    p.add_argument("--record", type=Path, metavar="DIR", help="save images and a frame after each step into a new folder DIR/run-NNN")
    p.add_argument("--log", type=Path, metavar="FILE", help="append the supervisor's audit log (JSON lines) to FILE")
    add_seed_argument(p)
    add_operator_arguments(p)
    add_confirm_timeout_argument(p, "a confirmation question not answered within S seconds drops the plan (default 60, at least 2)")
    add_confirm_motion_argument(p, default=False, where="; with --ros the supervisor's own setting decides "
                                "(`medrobot bringup --confirm-motion`)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="piped input: stop the robot if a run has not ended S seconds after the next line waits "
                   "for it (default 600)")
    p.add_argument("--history", type=Path, metavar="FILE",
                   help="history file (default $XDG_CACHE_HOME/medrobot/console-DOMAIN.history)")
    add_planner_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medrobot_llm.cli.session import open_client

    with contextlib.ExitStack() as stack:
        made = open_client("console", args, stack, gui=args.gui)
        if isinstance(made, str):
            print(made, file=sys.stderr)
            return 2
        client, _ = made
        if not args.json and sys.stdin.isatty() and sys.stdout.isatty():
            return _interactive(client, args)
        return _piped(client, args)


def _piped(client: SupervisorClient, args: argparse.Namespace) -> int:
    from medrobot_llm.consoles.core import ConsoleCore

    def emit(line: str) -> None:
        print(line, flush=True)

    core = ConsoleCore(client, args.domain, emit=emit, json_mode=args.json)
    core.start()
    try:
        core.run_script(sys.stdin, args.timeout)
    except KeyboardInterrupt:
        core.interrupt()
        return 130
    finally:
        time.sleep(0.2)  # let the last records of the run reach the screen before the session closes
        core.close()
    return 0


def _interactive(client: SupervisorClient, args: argparse.Namespace) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
    from prompt_toolkit.patch_stdout import patch_stdout

    from medrobot_llm.consoles.core import ConsoleCore, completion_words, history_path

    holder: dict[str, Any] = {}

    def emit(line: str) -> None:
        print(line, flush=True)
        prompt_session = holder.get("session")
        if prompt_session is not None and prompt_session.app.is_running:
            prompt_session.app.invalidate()

    core: ConsoleCore = ConsoleCore(client, args.domain, emit=emit, background=True)
    bindings = KeyBindings()

    @bindings.add("c-c")
    def _ctrl_c(event: KeyPressEvent) -> None:
        event.current_buffer.reset()
        core.interrupt()

    path = args.history or history_path(args.domain, os.environ)
    history: FileHistory | InMemoryHistory
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        history = FileHistory(str(path))
    except OSError as exc:
        print(f"(no history file: {exc})", file=sys.stderr)
        history = InMemoryHistory()
    prompt_session: PromptSession[str] = PromptSession(
        history=history,
        completer=WordCompleter(completion_words(args.domain), ignore_case=True),
        key_bindings=bindings,
        bottom_toolbar=lambda: " " + core.status_line(),
        refresh_interval=0.25,
    )
    holder["session"] = prompt_session
    with patch_stdout(raw=True):
        print(f"medrobot console - {args.domain}" + (" over ROS 2" if args.ros else " (PyBullet scene)") +
              ". Type a command, 'help', or 'quit'.", flush=True)
        core.start()
        try:
            while True:
                try:
                    line = prompt_session.prompt(core.prompt_text)
                except KeyboardInterrupt:
                    core.interrupt()
                    continue
                except EOFError:
                    core.leave()
                    break
                try:
                    if not core.handle_line(line):
                        break
                except KeyboardInterrupt:
                    core.interrupt()
        finally:
            core.close()
    return 0
