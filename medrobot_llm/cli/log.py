"""``medrobot log``: read an audit log (``show``), check its hash chain (``verify``), check it by replaying its
commands (``replay``), and turn it into an MCAP file robotics viewers open (``export``).

A replay feeds the logged commands, in their logged order, to a fresh supervisor driving an in-memory
robot. The planner's answers and the robot's step results are taken from the log too, so the only thing
re-computed is the supervisor's own behaviour: if its state history comes out different, either the
log was tampered with or the supervisor's rules changed since the log was written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medrobot_llm.core.plan import Plan
    from medrobot_llm.core.validator import WorldState

__all__ = ["ReplayReport", "register", "replay_records"]

_INTERRUPTED = ("halted", "cancelled")


def register(sub: Any) -> None:
    p = sub.add_parser("log", help="show or replay an audit log",
                       description="Read the supervisor's audit log (JSON lines).")
    inner = p.add_subparsers(dest="log_command", metavar="ACTION")
    show = inner.add_parser("show", help="pretty-print an audit log",
                            description="Print every record of FILE, one line each, with control characters escaped; "
                            "the log is verified as it is read: a record that is not as written is marked '!!' and "
                            "the exit code is 1 (a torn last line is reported, exit 0).")
    show.add_argument("file", type=Path)
    show.add_argument("--kind", action="append", help="only records of this kind (repeatable)")
    show.add_argument("--json", action="store_true", help="print one JSON object: records and problems")
    show.set_defaults(func=_show)
    ver = inner.add_parser(
        "verify", help="check the log's hash chain, sequence and ending",
        description="Check that no record of FILE was edited, deleted, inserted or reordered. Exit 0: intact and "
        "closed cleanly; 1: tampered or damaged; 2: intact but an end is not final (a torn last line, or a session "
        "without its close record: the writer crashed, was killed or is still running, or records were cut); 3: no "
        "hash chain (written before logs were chained); 4: the file cannot be read as a log; 5: the file is empty "
        "(no record yet).")
    ver.add_argument("file", type=Path)
    ver.add_argument("--json", action="store_true", help="print one JSON object with the verdict")
    ver.set_defaults(func=_verify)
    rep = inner.add_parser("replay", help="replay the logged commands and report any difference",
                           description="Replay FILE's commands against a fresh supervisor with an in-memory robot "
                           "whose step results come from the log; exit 0 if the state history is the same, 1 if not.")
    rep.add_argument("file", type=Path)
    rep.add_argument("--wait", type=_wait_seconds, default=2.0, metavar="S",
                     help=f"seconds to wait for the replay to catch up, 0 to {MAX_WAIT_S:g} (2)")
    rep.add_argument("--json", action="store_true", help="print one JSON object with the comparison")
    rep.set_defaults(func=_replay)
    exp = inner.add_parser("export", help="write the log (and a recording's images) as one MCAP file",
                           description="Write FILE's records, the telemetry and the images its steps saved as ROS 2 "
                           "messages in one MCAP file, which Foxglove and Lichtblick open (needs the mcap extra). "
                           "Exit 0 when the log verifies intact and every picture it names is in the file, 1 when "
                           "the log is not intact (edited, or its end is not final: problems says which) or a picture "
                           "is missing or is not the file the log hashed (the rest is written), 2 when nothing could "
                           "be written.")
    exp.add_argument("file", type=Path)
    exp.add_argument("--mcap", type=Path, required=True, metavar="OUT",
                     help="the MCAP file to write: a new (or empty) file, never the log itself, another file, a "
                     "FIFO or a device; missing folders are created, with a note on stderr")
    exp.add_argument("--record", type=Path, metavar="DIR",
                     help="the run's --record folder: its frames, and its images if they moved from the logged paths")
    exp.add_argument("--json", action="store_true", help="print one JSON object: topics, counts, images")
    exp.set_defaults(func=_export)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


#: the longest ``log replay --wait``: a replay waits this long per record at most, and a timer takes no more
MAX_WAIT_S = 3600.0


def _wait_seconds(text: str) -> float:
    """A usage error for a wait no timer can use: negative, not a number, or endless."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.0 <= value <= MAX_WAIT_S:   # also false for nan
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds from 0 to {MAX_WAIT_S:g}")
    return value


def _load(path: Path, as_json: bool) -> Any:
    from medrobot_llm.safety.audit import AuditLogError, read_log

    try:
        return read_log(path)
    except (OSError, AuditLogError) as exc:
        _fail(path, f"cannot read {path}: {_reason(exc)}", as_json)
        return None


def _reason(exc: BaseException) -> str:
    return (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)


def _fail(path: Path, msg: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"path": str(path), "error": msg}))
    else:
        print(f"medrobot log: {msg}", file=sys.stderr)


def _verify(args: argparse.Namespace) -> int:
    from medrobot_llm.safety.audit import AuditLogError
    from medrobot_llm.safety.audit_verify import UNREADABLE_CODE, verify_file

    try:
        report = verify_file(args.file)
    except (OSError, AuditLogError) as exc:
        _fail(args.file, f"cannot read {args.file}: {_reason(exc)}", args.json)
        return UNREADABLE_CODE
    if args.json:
        print(json.dumps({"path": str(args.file), **report.to_json()}, ensure_ascii=False))
    else:
        print(report.render())
    return report.verdict.code


def _show(args: argparse.Namespace) -> int:
    from medrobot_llm.safety.audit import (AuditLogError, as_record, format_record, parse_lines, printable,
                                           read_bytes)
    from medrobot_llm.safety.audit_verify import Verdict, verify_bytes

    try:
        data = read_bytes(args.file)
    except (OSError, AuditLogError) as exc:
        _fail(args.file, f"cannot read {args.file}: {_reason(exc)}", args.json)
        return 2
    # the verifier reads the same bytes: a record it finds edited is marked where a reader sees it
    report = verify_bytes(data)
    problems = parse_lines(data.split(b"\n")).problems() + [f"chain: {p}" for p in report.problems]
    numbered = [(n, rec) for n, line in enumerate(data.split(b"\n"), start=1)
                if line.strip() and (rec := as_record(line)) is not None]
    shown = [(n, r) for n, r in numbered if not args.kind or r.get("kind") in args.kind]
    code = 1 if report.verdict is Verdict.TAMPERED else 0
    if args.json:
        print(json.dumps({"path": str(args.file), "count": len(shown), "records": [r for _, r in shown],
                          "problems": problems, "verify": report.to_json()}, ensure_ascii=False))
        return code
    for n, rec in shown:
        mark = f"  !! line {n} is not as written (see below)" if n in report.broken_lines else ""
        print(format_record(rec) + mark)
    for problem in problems:
        print(f"!! {printable(problem)}")
    if report.verdict is Verdict.TAMPERED:
        print(f"!! {report.render().splitlines()[0]}: `medrobot log verify {args.file}` says more")
    return code


def _replay(args: argparse.Namespace) -> int:
    from medrobot_llm.safety.audit import AuditLogError
    from medrobot_llm.safety.audit_verify import Verdict, verify_file

    log = _load(args.file, args.json)
    if log is None:
        return 2
    try:
        chain = verify_file(args.file)
    except (OSError, AuditLogError) as exc:
        _fail(args.file, f"cannot read {args.file}: {_reason(exc)}", args.json)
        return 2
    try:
        report = replay_records(log.records, wait_s=args.wait)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # a damaged field (a plan that is no plan, a clock that is no number): say so, never a traceback
        _fail(args.file, f"cannot replay {args.file}: a record is damaged ({type(exc).__name__}: {exc}); "
              f"`medrobot log verify {args.file}` tells where", args.json)
        return 1
    if chain.verdict is Verdict.TAMPERED:
        report.differences[:0] = [f"hash chain: {p}" for p in chain.problems]
    unchained = [f"no hash chain (written before the audit log chained its records): {len(chain.unchained)} "
                 "record(s)"] if chain.unchained else []
    report.problems[:0] = [*chain.incomplete, *unchained, *chain.notes]
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print(report.render())
    return 0 if report.identical else 1


def _export(args: argparse.Namespace) -> int:
    from medrobot_llm.cli.mcap_output import MCAP_ERRORS, mcap_error, report_export
    from medrobot_llm.cli.outputs import check_outputs
    from medrobot_llm.safety.audit import AuditLogError
    from medrobot_llm.safety.audit_verify import Verdict, verify_file

    problem, notes = check_outputs("log export", {"--mcap": args.mcap}, reads={"FILE": args.file})
    if problem:
        print(problem, file=sys.stderr)
        return 2

    log = _load(args.file, args.json)
    if log is None:
        return 2
    try:
        chain = verify_file(args.file)
    except (OSError, AuditLogError) as exc:
        _fail(args.file, f"cannot read {args.file}: {_reason(exc)}", args.json)
        return 2
    try:
        from medrobot_llm.recording.export import export_records

        summary = export_records(log.records, args.mcap, record_dir=args.record)
    except MCAP_ERRORS as exc:
        print(mcap_error("log export", exc), file=sys.stderr)
        return 2
    for note in notes:
        print(note, file=sys.stderr)
    # what is written is what the log holds; a log that is not intact must not leave as a clean recording
    intact = chain.verdict is Verdict.INTACT
    verdict = [] if intact else [f"the log is not intact ({chain.render().splitlines()[0]}); "
                                 f"`medrobot log verify {args.file}` says where"]
    problems = [*verdict, *(f"chain: {p}" for p in chain.problems), *(f"end: {i}" for i in chain.incomplete),
                *log.problems()]
    report_export(summary, as_json=args.json, problems=problems)
    return 0 if summary.complete and intact else 1


@dataclass
class ReplayReport:
    sessions: int = 0
    inputs: int = 0
    original: list[tuple[str, str, str]] = field(default_factory=list)
    replayed: list[tuple[str, str, str]] = field(default_factory=list)
    original_steps: list[str] = field(default_factory=list)
    replayed_steps: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {"identical": self.identical, "sessions": self.sessions, "inputs": self.inputs,
                "differences": self.differences, "problems": self.problems,
                "original_states": [list(t) for t in self.original],
                "replayed_states": [list(t) for t in self.replayed],
                "original_steps": self.original_steps, "replayed_steps": self.replayed_steps}

    def render(self) -> str:
        head = (f"replayed {self.inputs} command(s) in {self.sessions} session(s): {len(self.original)} state "
                f"change(s) logged, {len(self.replayed)} replayed")
        lines = [head]
        lines += [f"  problem: {p}" for p in self.problems]
        if self.identical:
            lines.append("identical: the supervisor reproduces the logged state history and steps")
        else:
            lines.append(f"{len(self.differences)} difference(s):")
            lines += [f"  - {d}" for d in self.differences]
        return "\n".join(lines)


class _ReplayPlanner:
    """Answers each command with the plan the log says the original planner gave it."""

    name = "replay"

    def __init__(self, answers: list[tuple[str, dict[str, Any]]], report: ReplayReport) -> None:
        self._answers = list(answers)
        self._report = report

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        from medrobot_llm.core.plan import Plan
        from medrobot_llm.core.reasons import Reason

        if not self._answers:
            self._report.differences.append(f"no logged plan for the command {text!r}")
            return Plan.refused(domain, "no logged plan", Reason.NOT_LOGGED)
        logged_text, plan = self._answers.pop(0)
        if logged_text != text:
            self._report.differences.append(f"the logged plan answers {logged_text!r}, not {text!r}")
        return Plan.model_validate(plan)


def _sessions(records: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    for rec in records:
        if rec.get("kind") == "session":
            out.append([rec])
        elif out:
            out[-1].append(rec)
    return out


def replay_records(records: Sequence[dict[str, Any]], *, wait_s: float = 2.0) -> ReplayReport:
    """Replay every session in ``records``; the report lists where the replay departs from the log.

    A session without a close record was cut short (its writer killed, or a log from before close records):
    its supervisor may have gone one state or step past its last record, so the replay of that session is
    held to the logged prefix, and what it did beyond is a note, not a difference."""
    from medrobot_llm.safety.audit import CLOSED_KIND

    report = ReplayReport()
    sessions = _sessions(records)
    if not sessions:
        report.differences.append("the log has no session record; nothing to replay")
        return report
    for session in sessions:
        report.sessions += 1
        marks = (len(report.original), len(report.replayed), len(report.original_steps), len(report.replayed_steps))
        _replay_session(session, report, wait_s)
        if not any(r.get("kind") == CLOSED_KIND for r in session):
            _hold_to_prefix(report, marks)
    if report.original != report.replayed:
        first = next((i for i, (a, b) in enumerate(zip(report.original, report.replayed, strict=False)) if a != b),
                     min(len(report.original), len(report.replayed)))
        a = report.original[first] if first < len(report.original) else None
        b = report.replayed[first] if first < len(report.replayed) else None
        report.differences.append(f"state change {first + 1}: logged {_fmt(a)}, replayed {_fmt(b)}")
    if report.original_steps != report.replayed_steps:
        report.differences.append(f"steps sent: logged {report.original_steps}, replayed {report.replayed_steps}")
    return report


def _hold_to_prefix(report: ReplayReport, marks: tuple[int, int, int, int]) -> None:
    """Drop what the replay of one cut session did past the log's end, if up to there it matched the log."""
    o, r, os_, rs = marks
    for logged, replayed, start_l, start_r, what in ((report.original, report.replayed, o, r, "state change(s)"),
                                                     (report.original_steps, report.replayed_steps, os_, rs,
                                                      "step(s) sent")):
        mine, theirs = logged[start_l:], replayed[start_r:]
        extra = len(theirs) - len(mine)
        if extra > 0 and theirs[:len(mine)] == mine:
            del replayed[start_r + len(mine):]
            report.problems.append(f"session {report.sessions}: the replay made {extra} {what} past the log's "
                                   "end, where its writer stopped")


def _fmt(t: tuple[str, str, str] | None) -> str:
    return "nothing" if t is None else f"{t[0]} -> {t[1]} ({t[2]})"


def _replay_session(records: list[dict[str, Any]], report: ReplayReport, wait_s: float) -> None:
    from medrobot_llm.safety.audit import AuditLog
    from medrobot_llm.backends.base import FailureKind, StepResult
    from medrobot_llm.backends.memory import ManualClock, MemoryBackend, Outcome
    from medrobot_llm.core.plan import Control, Plan
    from medrobot_llm.safety.supervisor import InvalidTransition, Supervisor, SupervisorError

    head = records[0]
    domain = str(head.get("domain"))
    config = head.get("config") or {}
    world = (head.get("world") or {}).get("facts") or {}
    clock = ManualClock(float(head.get("clock", 0.0)))
    backend = MemoryBackend(domain, world, default=Outcome.hold(), clock=clock)
    # the log says when the watchdog fired; a replayed heartbeat must not race it
    backend.stop_heartbeat()
    answers = []
    for i, rec in enumerate(records):
        if rec.get("kind") == "command" and rec.get("op") == "text":
            answer = next((r for r in records[i + 1:] if r.get("kind") == "plan" and r.get("text") == rec.get("text")),
                          None)
            if answer is not None:
                answers.append((str(rec.get("text")), answer["plan"]))
    audit = AuditLog(None)
    sup = Supervisor(backend, _ReplayPlanner(answers, report), audit=audit, clock=clock, watchdog_period_s=None,
                     confirm_timeout_s=float(config.get("confirm_timeout_s", 30.0)),
                     step_timeout_s=float(config.get("step_timeout_s", 60.0)),
                     heartbeat_timeout_s=float(config.get("heartbeat_timeout_s", 1.0)), reset_wait_s=wait_s)
    backend.observer = lambda: sup.state

    def caught_up(n: int) -> bool:
        with sup._cond:
            return sup._cond.wait_for(lambda: len(sup.history) >= n, wait_s)

    n_states = 0
    sent_here = 0
    ops: dict[str, Callable[[dict[str, Any]], Any]] = {
        "text": lambda r: sup.command(str(r.get("text")), source=str(r.get("source"))),
        "plan": lambda r: sup.submit_plan(Plan.model_validate(r.get("plan")), source=str(r.get("source"))),
        "confirm": lambda r: sup.confirm(r.get("step_index"), source=str(r.get("source"))),
        "deny": lambda r: sup.deny(source=str(r.get("source"))),
        "pause": lambda r: sup.pause(source=str(r.get("source"))),
        "resume": lambda r: sup.resume(source=str(r.get("source"))),
        "cancel": lambda r: sup.cancel(source=str(r.get("source"))),
        "stop": lambda r: sup.stop(str(r.get("reason") or "operator stop"), source=str(r.get("source"))),
        "reset": lambda r: sup.reset(source=str(r.get("source"))),
        "status": lambda r: sup.control(Control.STATUS, source=str(r.get("source"))),
    }
    try:
        for rec in records[1:]:
            kind = rec.get("kind")
            if kind == "state":
                n_states += 1
                report.original.append((str(rec.get("from")), str(rec.get("to")), str(rec.get("trigger"))))
                if rec.get("cause") in ("watchdog", "robot"):
                    caught_up(n_states - 1)
                    backend.wait_sent(sent_here, wait_s)
                    clock.set(float(rec.get("clock", clock())))
                    if rec.get("cause") == "robot":
                        backend.halt(str(rec.get("reason")))  # the robot's own halt, which the supervisor latched on
                    sup.tick()
                continue
            if kind == "step_sent":
                report.original_steps.append(str(rec.get("skill")))
                sent_here += 1
                continue
            if kind == "command":
                op = str(rec.get("op"))
                if op not in ops:
                    report.differences.append(f"record {rec.get('seq')}: unknown command {op!r}")
                    continue
                report.inputs += 1
                if not (caught_up(int(rec.get("n_states", 0))) and backend.wait_sent(sent_here, wait_s)):
                    report.differences.append(f"record {rec.get('seq')} ({op}): the replay did not reach state "
                                              f"change {rec.get('n_states')} and step {sent_here} in time")
                clock.set(float(rec.get("clock", clock())))
                try:
                    ops[op](rec)
                except (InvalidTransition, SupervisorError):
                    pass  # refused in the replay as (the state history will tell) in the original
                continue
            if kind == "step_result" and rec.get("failure") not in _INTERRUPTED:
                clock.set(float(rec.get("clock", clock())))
                if not (backend.wait_sent(sent_here, wait_s) and backend.wait_holding(wait_s)):
                    report.differences.append(f"record {rec.get('seq')}: step {rec.get('skill')} never reached "
                                              "the robot in the replay")
                    continue
                failure = FailureKind(rec.get("failure", "none"))
                backend.release(StepResult(success=bool(rec.get("success")), failure=failure,
                                           message=str(rec.get("message", "")), outcome=rec.get("outcome") or {}))
        caught_up(n_states)
        backend.wait_sent(sent_here, wait_s)   # a step the log shows sent, the replay must send before it ends
    finally:
        history = list(sup.history)
        sent = [str(r.get("skill")) for r in audit.records if r.get("kind") == "step_sent"]
        sup.close(timeout=wait_s)
    report.replayed.extend((c.source.value, c.dest.value, c.trigger) for c in history)
    report.replayed_steps.extend(sent)
