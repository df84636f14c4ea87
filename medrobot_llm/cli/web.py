"""``medrobot web``: the operator console in the browser, over the in-process sim or a ROS graph.

All the behaviour is in ``consoles.web`` (the hub decides what a request does, the app checks who sends it);
this module wires them to a socket and uvicorn. The first line on stdout is the URL with its one-time token,
and nothing else is written to stdout before it: the scene's C library prints at start, so the session is made
with stdout pointed at stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medrobot_llm.consoles.voice.asr import Recognizer
    from medrobot_llm.safety.protocol import SupervisorClient
    from medrobot_llm.session import Session

__all__ = ["register"]


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import (add_confirm_motion_argument, add_confirm_timeout_argument,
                                          add_domain_argument, add_operator_arguments, add_ros_arguments,
                                          add_seed_argument)
    from medrobot_llm.consoles.voice.console import DEFAULT_THRESHOLD
    from medrobot_llm.consoles.voice.engines import ENGINES
    from medrobot_llm.planning.factory import add_planner_arguments

    p = sub.add_parser(
        "web",
        help="operator console in the browser: plan, confirm, stop, images and the audit log on one page",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve one local page for one operator; the supervisor decides, the page shows and asks.\n"
        "- A command box with history, and push-to-talk (the same speech engines and read-back as `medrobot\n"
        "  voice`: a spoken plan moves only after its read-back is confirmed; not with --ros).\n"
        "- The plan as steps with their arguments, hazard class and the words each argument came from.\n"
        "- Confirm / Deny bound to the question shown (a click for an older question does nothing); an\n"
        "  exposure is not confirmed by the keyboard shortcut alone.\n"
        "- STOP (or Space anywhere on the page) latches the e-stop at once; Reset recovers when it is safe.\n"
        "- Live state, step, progress, force or gantry pose, the scene frame, the latest B-mode capture and\n"
        "  radiograph, and the tail of the audit log.\n"
        "Security: binds 127.0.0.1 unless --host names another address and --allow-remote says so; the printed\n"
        "URL carries a one-time token that becomes an HttpOnly session cookie; Host and Origin are checked;\n"
        "every body is validated. With --ros every command is signed with the operator's key (docs/trust.md).\n"
        "The first line on stdout is `medrobot web: open http://HOST:PORT/?token=TOKEN`. Ctrl-C ends it.",
        epilog="examples:\n"
        "  medrobot web --domain xray                 # then open the printed URL\n"
        "  medrobot web --domain ultrasound --port 8765 --record out/\n"
        "  medrobot bringup --domain ultrasound &  medrobot web --domain ultrasound --ros",
    )
    add_domain_argument(p, help="which robot and command set")
    add_ros_arguments(p, "drive the supervisor of a running `medrobot bringup` graph over ROS 2 instead of the "
                      "PyBullet scene in this process (commands signed as --operator)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; another needs --allow-remote)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default 0: a free one)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow --host to be an address other machines can reach (the page has no TLS: use a "
                   "trusted network or an SSH tunnel)")
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="keep the images and a frame per step in a new folder DIR/run-NNN (default: a temporary "
                   "folder, removed at the end)")
    p.add_argument("--log", type=Path, metavar="FILE", help="append the supervisor's audit log (JSON lines) to FILE")
    add_seed_argument(p)
    add_operator_arguments(p)
    p.add_argument("--asr", choices=ENGINES, default="pocketsphinx",
                   help="speech recogniser for push-to-talk (default pocketsphinx; see `medrobot voice --help`)")
    p.add_argument("--asr-model", metavar="PATH_OR_NAME", help="Whisper model for --asr whisper/agree")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="C",
                   help=f"act only on transcripts with confidence >= C (default {DEFAULT_THRESHOLD})")
    add_confirm_timeout_argument(p, "a question not answered within S seconds drops the plan (default 60, at least 2)")
    add_confirm_motion_argument(p, default=True, where="; with --ros the supervisor's own setting decides "
                                "(`medrobot bringup --confirm-motion`)")
    add_planner_arguments(p)
    p.set_defaults(func=_run)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Whatever C code prints to stdout meanwhile goes to stderr, so the URL stays the first stdout line."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _run(args: argparse.Namespace) -> int:
    from medrobot_llm.cli.session import open_client

    if not _loopback(args.host) and not args.allow_remote:
        print(f"medrobot web: --host {args.host} can be reached from other machines; the page has no TLS. Add "
              "--allow-remote if that is what you want (a trusted network), or use an SSH tunnel to 127.0.0.1",
              file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"medrobot web: --port {args.port} is not a port (0 picks a free one)", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        with _stdout_to_stderr():
            made = open_client("web", args, stack, record_always=True)
        if isinstance(made, str):
            print(made, file=sys.stderr)
            return 2
        client, session = made
        return _serve(args, client, session, _recognizer(args, session, stack))


def _recognizer(args: argparse.Namespace, session: Session | None,
                stack: contextlib.ExitStack) -> Recognizer | None:
    """Push-to-talk's engine, loaded now so the first utterance (maybe a stop) is not held up; without it the
    page works by typing, and says why the talk button does nothing. It decodes in a process of its own
    (``consoles.voice.worker``): a decode holds the GIL, and the server's Stop must not wait behind it."""
    planner = session.supervisor.planner if session is not None else None
    if planner is None:
        return None
    import functools
    import pickle

    from medrobot_llm.consoles.voice.audio import AsrError
    from medrobot_llm.consoles.voice.engines import make_recognizer
    from medrobot_llm.consoles.voice.worker import in_own_process

    try:
        with _stdout_to_stderr():
            worker = in_own_process(functools.partial(make_recognizer, args.asr, args.domain, planner,
                                                      model=args.asr_model))
    except (AsrError, ImportError, RuntimeError, ValueError, pickle.PicklingError, TypeError,
            AttributeError) as exc:
        print(f"medrobot web: push-to-talk is off: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    stack.callback(worker.close)
    return worker


def _serve(args: argparse.Namespace, client: SupervisorClient, session: Session | None,
           recognizer: Recognizer | None) -> int:
    import uvicorn

    from medrobot_llm.consoles.web.app import Access, create_app
    from medrobot_llm.consoles.web.hub import WebHub
    from medrobot_llm.consoles.web.speech import SpeechInput

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(16)  # before the URL is printed: a client that opens it at once waits in the backlog
    except OSError as exc:
        sock.close()
        print(f"medrobot web: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    frames = session.record_dir / "frames" if session is not None and session.record_dir is not None else None
    hub = WebHub(client, args.domain, session=session, frames_dir=frames)
    hub.start()
    access = Access(args.host, int(sock.getsockname()[1]))
    speech = SpeechInput(hub, recognizer, threshold=args.threshold) if recognizer is not None else None
    app = create_app(hub, access, speech)
    print(f"medrobot web: open {access.url}", flush=True)
    print(f"medrobot web: {args.domain}" + (" over ROS 2" if args.ros else " (PyBullet scene in this process)")
          + ("" if speech else "; push-to-talk is off") + ". Ctrl-C to stop the server.", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="auto"))
    caught: list[int] = []

    def note(sig: int, _frame: object) -> None:
        caught.append(sig)

    # uvicorn shuts down on SIGINT / SIGTERM, then raises the signal again under the handlers it found: these
    # take it, so the session below is still closed (scene closed, audit log sealed) and the exit is clean
    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        hub.close()
        sock.close()
    if caught:
        print(f"medrobot web: {signal.Signals(caught[0]).name}: shutting down", file=sys.stderr)
    return 0
