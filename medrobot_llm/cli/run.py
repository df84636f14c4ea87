"""``medrobot run``: one command, planned, validated, supervised and executed in the PyBullet scene."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrobot_llm.safety.events import (EstopEvent, QuestionEvent, StepResultEvent, StepSentEvent, SupervisorEvent,
                                        ValidationEvent)

if TYPE_CHECKING:
    from medrobot_llm.cli.outputs import RunRecording
    from medrobot_llm.core.reasons import Reason
    from medrobot_llm.planning.base import Planner

__all__ = ["TERMINATING", "Terminated", "register"]

#: the signals a run ends on as it does on Ctrl-C: a service manager's stop, a closed terminal
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import add_domain_argument, add_seed_argument
    from medrobot_llm.planning.factory import add_planner_arguments

    p = sub.add_parser(
        "run",
        help="plan, validate, supervise and execute a command in the PyBullet scene",
        description="Plan TEXT, validate it, and let the safety supervisor release its steps to the domain's "
        "PyBullet scene (headless unless --gui). Contact and radiation steps wait for a confirmation: "
        "--yes gives it; otherwise you are asked on the terminal (and, without a terminal, the step is "
        "denied). Exit code 0 when every step succeeded, 1 when the plan was refused, needed a "
        "clarification or did not finish, or the --mcap file could not be written, 2 for a usage error (a bad "
        "path is refused before anything moves). Missing folders above --log, --mcap and --record are "
        "created, with a note on stderr.",
        epilog="example: medrobot run --domain ultrasound --yes \"scan the left kidney and capture\"",
    )
    p.add_argument("text", help="the command, e.g. \"lateral of the sacrum and take a shot\"")
    add_domain_argument(p)
    p.add_argument("--yes", action="store_true", help="confirm every contact/radiation step the plan asks about")
    p.add_argument("--gui", action="store_true", help="open the PyBullet window (needs a display)")
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object only")
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="save captured images / radiographs and a rendered frame after each step into a new folder "
                   "DIR/run-NNN of this run's own (never over an earlier run's); the log names each file and its "
                   "SHA-256")
    p.add_argument("--log", type=Path, metavar="FILE",
                   help="append the supervisor's audit log (JSON lines) to FILE, a new file or an audit log; "
                   "replay with `medrobot log`")
    p.add_argument("--mcap", type=Path, metavar="FILE",
                   help="write the run (records, telemetry, images) as it goes to FILE, a new (or empty) file, as "
                   "MCAP for Foxglove or Lichtblick (needs the mcap extra); a file that cannot be written stops "
                   "the recording, not the run, and the exit code is then 1")
    add_seed_argument(p)
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="stop the robot if the run has not ended after S seconds (default 300)")
    add_planner_arguments(p)
    p.set_defaults(func=_run)


def _ask(question: Any) -> bool:
    if not sys.stdin.isatty():
        print(f"  {question.text} -- no terminal to ask on: denied (pass --yes to confirm)", file=sys.stderr)
        return False
    try:
        answer = input(f"  {question.text} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _progress(event: SupervisorEvent) -> None:
    match event:
        case StepSentEvent():
            print(f"  step {event.step + 1}: {event.skill} ...", file=sys.stderr, flush=True)
        case StepResultEvent():
            verdict = "ok" if event.success else f"FAILED ({event.failure}): {event.message}"
            print(f"  step {event.step + 1}: {event.skill} {verdict}", file=sys.stderr, flush=True)
        case EstopEvent():
            print(f"  E-STOP: {event.reason}", file=sys.stderr, flush=True)
        case _:
            pass


def _run(args: argparse.Namespace) -> int:
    from medrobot_llm.planning.factory import close_planner, make_planner

    try:
        planner = make_planner(args)
    except ValueError as exc:
        print(f"medrobot run: {exc}", file=sys.stderr)
        return 2
    caught = _catch_termination()
    try:
        return _run_planned(args, planner)
    except Terminated as stop:
        name = signal.Signals(stop.signum).name
        print(f"medrobot run: stopped by {name}: the robot was stopped and the log closed", file=sys.stderr)
        return 128 + stop.signum
    finally:
        close_planner(planner)   # its --llm-audit log ends with a close record, as the run's own does
        for signum, handler in caught.items():
            if handler is not None:   # None: a handler set outside Python, which cannot be put back from here
                signal.signal(signum, handler)


class Terminated(BaseException):
    """SIGTERM or SIGHUP during a run: unwound like Ctrl-C, so the supervisor stops the robot and the log is
    closed with its close record, instead of the process dying where it stands (a log that reads as killed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _catch_termination() -> dict[int, Any]:
    """Turn SIGTERM and SIGHUP into ``Terminated`` on the main thread; the handlers it replaced, to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, _frame: object) -> None:
        for s in TERMINATING:   # a second signal must not cut the unwinding short
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(signum)

    return {s: signal.signal(s, stop) for s in TERMINATING}


def _run_planned(args: argparse.Namespace, planner: Planner) -> int:
    from medrobot_llm.consoles.render import render_plan
    from medrobot_llm.planning.admission import clean_command
    from medrobot_llm.core.plan import Plan
    from medrobot_llm.safety.supervisor import SupervisorState
    from medrobot_llm.cli.options import SESSION_ERRORS, session_error
    from medrobot_llm.cli.outputs import check_outputs
    from medrobot_llm.session import Session, always

    text, refusal = clean_command(args.text)
    if text is None:
        assert refusal is not None
        code, why = refusal
        refused = {"success": False, "state": SupervisorState.IDLE.value,
                   "plan": Plan.refused(args.domain, why, code).to_json(),
                   "steps": [], "exposures": 0, "images": [], "reason": why}
        if args.log is not None and not _audit_refusal(args, code, why):
            return 2
        print(json.dumps(refused) if args.json else f"REFUSED: {why}")
        return 1
    problem, notes = check_outputs("run", {"--log": args.log, "--mcap": args.mcap, "--record": args.record})
    if problem:
        print(problem, file=sys.stderr)
        return 2
    # the MCAP file first: a path it refuses stops the run before a log or a recording folder is made
    recording = _open_recording(args) if args.mcap is not None else None
    if args.mcap is not None and recording is None:
        return 2
    for note in notes:
        print(note, file=sys.stderr)
    try:
        session = Session(args.domain, planner, seed=args.seed, gui=args.gui, record_dir=args.record,
                          audit_path=args.log, keep_records=args.mcap is not None)
    except BaseException as exc:
        if recording is not None:
            recording.recorder.discard()
        if isinstance(exc, ImportError):
            print(f"medrobot run needs pybullet ({exc}); run `make setup`", file=sys.stderr)
            return 2
        if isinstance(exc, SESSION_ERRORS):
            print(session_error("run", exc), file=sys.stderr)
            return 2
        raise
    shown: dict[str, bool] = {"plan": False}

    def on_event(event: SupervisorEvent) -> None:
        if recording is not None:
            recording.heard(event, session.audit.records)
        if args.json:
            return
        if isinstance(event, ValidationEvent) and event.ok and not shown["plan"]:
            shown["plan"] = True
            print(render_plan(Plan.model_validate(event.plan)), flush=True)
        if isinstance(event, QuestionEvent) and args.yes:
            print(f"  {event.text} -> yes (--yes)", file=sys.stderr, flush=True)
        _progress(event)

    try:
        with session:
            outcome = session.run(text, confirm=always if args.yes else _ask, timeout_s=args.timeout,
                                  on_event=on_event)
    except BaseException:
        if recording is not None:  # an interrupted run is worth its recording most: keep what happened so far
            _record(recording, session.audit.records, [])
        raise
    summary = _record(recording, session.audit.records, outcome.frames) if recording is not None else None
    if args.json:
        print(json.dumps(outcome.to_json() | ({"mcap": summary} if summary is not None else {})))
    else:
        plan = outcome.plan or {}
        if plan.get("status") in ("refused", "clarify"):
            print(render_plan(Plan.model_validate(plan)))
        if outcome.success:
            print(f"SUCCESS: {len(outcome.steps)} step(s) done in {outcome.sim_time_s:.1f} s of sim time "
                  f"({outcome.wall_s:.1f} s wall); supervisor {outcome.state}")
        elif plan.get("status") == "ok":
            print(f"NOT DONE: {outcome.reason}; supervisor {outcome.state}")
        for image in outcome.images:
            print(f"image: {image}")
        if outcome.exposures:
            print(f"exposures: {outcome.exposures}")
        if outcome.frames:
            print(f"frames: {len(outcome.frames)} in {Path(outcome.frames[0]).parent}")
        if summary is not None:
            print(f"mcap: {summary['messages']} message(s) on {len(summary['topics'])} topic(s) in {summary['mcap']}"
                  + (" (incomplete: see the error above)" if "error" in summary else ""))
    return 0 if outcome.success and (summary is None or "error" not in summary) else 1


def _audit_refusal(args: argparse.Namespace, code: Reason, why: str) -> bool:
    """A command refused for its characters goes into --log as one refused for its meaning does (no planner
    saw it, so no session starts); False, with the sentence said, when the log cannot be written."""
    from medrobot_llm.cli.options import SESSION_ERRORS, session_error
    from medrobot_llm.planning.admission import refusal_fields
    from medrobot_llm.safety.audit import AuditLog

    try:
        with AuditLog(args.log) as log:
            log.append("command_refused", source="run", domain=args.domain, **refusal_fields(args.text, code, why))
    except SESSION_ERRORS as exc:
        print(session_error("run", exc), file=sys.stderr)
        return False
    return True


def _open_recording(args: argparse.Namespace) -> RunRecording | None:
    """The MCAP file, claimed before anything moves so a path that cannot be written stops the run first."""
    from medrobot_llm.cli.mcap_output import MCAP_ERRORS, mcap_error
    from medrobot_llm.cli.outputs import RunRecording

    try:
        from medrobot_llm.recording.export import McapRecorder

        return RunRecording(McapRecorder(args.mcap, domain=args.domain, record_dir=args.record))
    except MCAP_ERRORS as exc:
        print(mcap_error("run", exc), file=sys.stderr)
        return None


def _record(recording: RunRecording, records: list[dict[str, Any]], frames: list[str]) -> dict[str, Any]:
    """The rest of the run's audit records, its frames, and the file's end; a failure is said on stderr."""
    summary = recording.finish(records, frames)
    for missing in recording.recorder.summary.missing + recording.recorder.summary.changed:
        print(f"medrobot run: image not found (or not as logged) for the MCAP file: {missing}", file=sys.stderr)
    if "error" in summary:
        print(f"medrobot run: {summary['error']}", file=sys.stderr)
    return summary
