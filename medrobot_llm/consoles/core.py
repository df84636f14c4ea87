"""The text console's logic, apart from any terminal: lines in, supervisor records in, lines out.

The console decides nothing about safety. It forwards what the person types to the supervisor (or to a
ROS client with the same methods) and renders the supervisor's own records: the plan before anything
moves, each question, each step's result, the e-stop. Kept free of terminal code so the same core
drives the prompt_toolkit front end, ``--json`` and piped input, and unit tests can run it directly.
Here are what a typed line means, the state the prompt and status line show, and piped input; how each
record and answer is worded is in ``output``.

Two things are decided here because only the console knows them: a typed ``stop`` (or Ctrl-C) goes to
``stop`` straight away, without the planner; and a ``y`` answers the very question that was shown
(its step index goes with the confirmation), so a late or stray answer cannot confirm another step.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from medrobot_llm.consoles.output import ConsoleOutput, format_telemetry
from medrobot_llm.core.command_set import load_command_set
from medrobot_llm.core.plan import Control, PlanStatus
from medrobot_llm.language.text import fold_text
from medrobot_llm.language.words import CONTROL_PHRASES
from medrobot_llm.planning.admission import clean_with_reason
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.machine import LATCHED, RUNNING
from medrobot_llm.safety.machine import SupervisorState as S
from medrobot_llm.safety.protocol import SupervisorClient

__all__ = [
    "ConsoleCore",
    "completion_words",
    "history_path",
    "line_intent",
    "RUNNING_STATES",
]

#: the supervisor's state names as the records carry them (plain strings, also from ROS)
RUNNING_STATES = frozenset(s.value for s in RUNNING)
LATCHED_STATES = frozenset(s.value for s in LATCHED)
#: words the console answers itself; everything else is a command for the planner
CONSOLE_WORDS: Mapping[str, str] = {
    "help": "this text",
    "status": "where the supervisor is and why",
    "stop": "e-stop now, latched (Ctrl-C does the same while anything runs)",
    "reset": "recover after an e-stop or a fault, when it is safe",
    "y / n": "answer the confirmation question shown (its step only)",
    "quit": "leave the console (Ctrl-D too); a running plan is cancelled",
}
_QUIT = frozenset({"quit", "exit", "bye"})
_HELP = frozenset({"help", "?", "commands"})
_CONSOLE_STATUS = frozenset({"status"})
_RESET = frozenset({"reset", "recover", "reset the e-stop", "reset estop"})
_SOURCE = "console"
_PUNCT = re.compile(r"[^a-z0-9' ]+")


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower().replace("-", " ")).split())


_STOP = frozenset(_norm(p) for p in CONTROL_PHRASES["stop"])
_CONFIRM = frozenset(_norm(p) for p in CONTROL_PHRASES["confirm"]) | {"y"}
_DENY = frozenset(_norm(p) for p in CONTROL_PHRASES["deny"]) | {"n"}
_OTHER_CONTROL = frozenset(_norm(p) for k, ps in CONTROL_PHRASES.items() if k not in ("confirm", "deny")
                           for p in ps)


def line_intent(line: str, domain: str | None = None) -> str:
    """What a typed line is to a console before any planner reads it: ``stop``, ``quit``, ``help``, ``status``,
    ``reset``, ``confirm``, ``deny``, ``control`` (pause, resume, cancel) or ``command``. The text console reads
    its lines and the web console its command box by this, so both hear the same control phrases.

    The line is folded as the planners fold it (full-width letters, zero-width characters). With ``domain``, a
    line the supervisor's rule planner reads as a confirmation or a denial ("please confirm", "confirm the
    exposure") is one here too: a console that must not take typed answers then refuses every wording the
    supervisor would take, not just the exact phrases; and a line it reads as a stop is a stop, in any wording."""
    word = _norm(fold_text(line))
    if word in _STOP or line.strip().lower() == "e-stop":
        return "stop"
    for intent, words in (("quit", _QUIT), ("help", _HELP), ("status", _CONSOLE_STATUS), ("reset", _RESET),
                          ("confirm", _CONFIRM), ("deny", _DENY), ("control", _OTHER_CONTROL)):
        if word in words:
            return intent
    if domain is not None:
        plan = RulePlanner().plan(domain, line)
        if plan.status is PlanStatus.CONTROL and plan.control is not None:
            return _CONTROL_INTENT[plan.control]
    return "command"


#: what a line the rule planner reads as a control is to a console: a "please stop" typed while a question is
#: open must stop like "stop" does, not be refused as an answer
_CONTROL_INTENT: Mapping[Control, str] = {Control.STOP: "stop", Control.CONFIRM: "confirm", Control.DENY: "deny",
                                          Control.STATUS: "status", Control.PAUSE: "control",
                                          Control.RESUME: "control", Control.CANCEL: "control"}


#: how a piped line of each intent waits (``ConsoleCore.kind_of``); a command, and ``status``, wait for the run
_SCRIPT_WAIT: Mapping[str, str] = {"stop": "now", "quit": "now", "help": "now", "reset": "now", "control": "now",
                                   "confirm": "answer", "deny": "answer"}


def completion_words(domain: str) -> list[str]:
    """Every word worth completing in ``domain``: skills, tasks, entity values (organs, anatomy, views, arms,
    sides...) with their synonyms, control words and the console's own words, all from ``skills/``."""
    cs = load_command_set(domain)
    names: set[str] = set(cs.skills) | set(cs.tasks)
    phrases: set[str] = set()
    for skill in cs.skills.values():
        phrases.update(skill.synonyms)
    for task in cs.tasks.values():
        phrases.update(task.synonyms)
    for entity in cs.entities.values():
        for value_name, value in entity.values.items():
            names.add(value_name)
            phrases.update(value.synonyms)
            phrases.update(value.levels or ())
    for control in CONTROL_PHRASES.values():
        phrases.update(control)
    phrases.update(w for key in CONSOLE_WORDS for w in key.split(" / "))
    words = set(names)
    for phrase in phrases:
        words.update(w for w in phrase.lower().split() if len(w) >= 3 and w.replace("'", "").isalnum())
    return sorted(words)


def history_path(domain: str, env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/medrobot/console-DOMAIN.history`` (``~/.cache`` when the variable is unset)."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "medrobot" / f"console-{domain}.history"


class ConsoleCore(ConsoleOutput):
    """One console session over one client. ``emit`` receives each output line (text, or one JSON object per
    line with ``json_mode``), from the caller's thread and from the client's event thread."""

    def __init__(self, client: SupervisorClient, domain: str, *, emit: Callable[[str], None], json_mode: bool = False,
                 feedback_interval_s: float = 0.2, clock: Callable[[], float] = time.monotonic,
                 background: bool = False) -> None:
        self.client = client
        #: commands are planned and submitted on a thread of their own, so the prompt keeps reading: a ``stop``
        #: typed while a slow planner (an LLM) thinks acts at once instead of after the answer (issue 16)
        self.background = background
        self._working: str | None = None
        self.domain = domain
        self.json_mode = json_mode
        self.feedback_interval_s = feedback_interval_s
        self.clock = clock
        self._emit_raw = emit
        self._emit_lock = threading.Lock()
        self._cond = threading.Condition()
        self._unsubscribe: Callable[[], None] | None = None
        self.state = S.IDLE.value
        self.reason = ""
        self.run_id: int | None = None
        self.steps: list[dict[str, Any]] = []
        self.step_index: int | None = None
        self.progress = 0.0
        self.telemetry: dict[str, Any] = {}
        self.pending: dict[str, Any] | None = None
        self.images: list[str] = []
        self._last_feedback_out = -1e9

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Follow the client's records and take its present state as the starting point."""
        self._unsubscribe = self.client.subscribe(self.on_event)
        status = self.client.status()
        with self._cond:
            self.state = str(status.get("state", self.state))
            self.reason = str(status.get("reason") or "")
            question = status.get("question")
            if isinstance(question, dict) and "step_index" in question:
                self.pending = dict(question)
            telemetry = status.get("telemetry")
            if isinstance(telemetry, dict):
                self.telemetry = dict(telemetry)
        if question := self.pending:
            self._out(f"CONFIRM? {question.get('text')}", kind="question", **question)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ------------------------------------------------------------------ what the front end shows
    def prompt_text(self) -> str:
        with self._cond:
            q = self.pending
            if q is not None:
                return f"confirm step {int(q['step_index']) + 1} ({q.get('skill')})? [y/n] > "
            return f"medrobot {self.domain} [{self.state}]> "

    def status_line(self) -> str:
        """State, current step and progress, and the last telemetry (contact force, gantry axes...)."""
        with self._cond:
            parts = [self.state]
            if self.pending is not None:
                parts.append(f"waiting for y/n on step {int(self.pending['step_index']) + 1} ({self.pending.get('skill')})")
            elif self.step_index is not None and self.steps and self.state in RUNNING_STATES:
                i = self.step_index
                skill = self.steps[i].get("skill") if i < len(self.steps) else "?"
                parts.append(f"step {i + 1}/{len(self.steps)} {skill} {self.progress:.0%}")
            elif self.state in LATCHED_STATES:
                parts.append(f"{self.reason} - type 'reset' when safe")
            tele = format_telemetry(self.telemetry)
            if tele:
                parts.append(tele)
            return " | ".join(parts)

    # ------------------------------------------------------------------ input
    def handle_line(self, line: str) -> bool:
        """Act on one typed line; returns False when the console should end."""
        raw = line.strip()
        if not raw:
            return True
        intent = line_intent(raw, self.domain)
        if self.json_mode:
            self._json({"kind": "input", "text": raw})
        if intent == "quit":
            self.leave()
            return False
        if intent == "stop":
            self._stop("operator typed stop at the console")
            return True
        if intent == "help":
            self._help()
            return True
        if intent == "status":
            self._status()
            return True
        if intent == "reset":
            self._call(raw, lambda: self.client.reset(source=_SOURCE), quiet_ok=True)
            return True
        with self._cond:
            question = self.pending
        if question is not None and intent == "confirm":
            step = int(question["step_index"])
            self._call(raw, lambda: self.client.confirm(step, source=_SOURCE), quiet_ok=True)
            return True
        if question is not None and intent == "deny":
            self._call(raw, lambda: self.client.deny(source=_SOURCE), quiet_ok=True)
            return True
        text, why = clean_with_reason(raw)
        if text is None:
            self._out(f"REFUSED: {why}", kind="reply", input=raw, accepted=False, message=why)
            return True
        if not self.background:
            self._command(text)
            return True
        with self._cond:
            working = self._working
            if working is None:
                self._working = text
        if working is not None:
            self._out(f"still working on {working!r}: type 'stop' to halt everything now, or wait for its answer",
                      kind="hint", input=raw)
            return True
        threading.Thread(target=self._command, args=(text,), name="medrobot-console-command", daemon=True).start()
        return True

    def _command(self, text: str) -> None:
        try:
            reply = self._call(text, lambda: self.client.command(text, source=_SOURCE))
            if reply is not None and reply.accepted:
                with self._cond:
                    self.state = reply.state.value
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._working = None
                self._cond.notify_all()

    @property
    def working(self) -> str | None:
        """The command being planned and submitted in the background, if any."""
        with self._cond:
            return self._working

    def leave(self) -> None:
        """Quit or Ctrl-D: a plan still under way is cancelled first, so nothing keeps moving once nobody
        watches (over ROS the graph would otherwise go on without this console)."""
        if self.busy():
            self._out("leaving with a plan under way: cancelling it", kind="hint")
            self._call("cancel", lambda: self.client.command("cancel", source=_SOURCE), quiet_ok=True)
        self._out("bye", kind="quit")

    def interrupt(self) -> None:
        """Ctrl-C: while anything is under way it latches the e-stop at once; at rest it only says how to leave."""
        if self.state not in (S.IDLE, *LATCHED_STATES) or self.busy():
            self._stop("Ctrl-C at the console")
        else:
            self._out("(Ctrl-C: nothing is moving; type 'quit' or press Ctrl-D to leave)", kind="hint")

    def busy(self) -> bool:
        """Whether a plan is under way, asking the client (the events may lag a little behind)."""
        try:
            state = str(self.client.status().get("state", self.state))
        except Exception:  # noqa: BLE001 - no answer: assume the worst, a plan may be running
            return True
        return state in RUNNING_STATES

    # ------------------------------------------------------------------ piped input (--json, scripts)
    def kind_of(self, line: str) -> str:
        """How a scripted line waits: ``now`` (stop, control words, console words), ``answer`` (y/n: for the
        question to be asked) or ``command`` (for the previous run to end)."""
        if not _norm(fold_text(line)):   # no words: nothing it could wait for
            return "now"
        return _SCRIPT_WAIT.get(line_intent(line, self.domain), "command")

    def wait_ready(self, line: str, timeout: float) -> bool:
        """Hold a scripted line until it can mean what it says; False if ``timeout`` passed first."""
        kind = self.kind_of(line)
        if kind == "now":
            return True
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            with self._cond:
                if kind == "answer" and self.pending is not None:
                    return True
            state = self._client_state()
            if state not in RUNNING_STATES:
                return True
            if kind == "command" and state in (S.AWAITING_CONFIRMATION, S.PAUSED) and self._parked_for_input():
                return True
            with self._cond:
                self._cond.wait(0.05)
        return False

    def finish(self, timeout: float) -> None:
        """End of piped input: let the run end; a question nobody is left to answer is denied."""
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            state = self._client_state()
            if state not in RUNNING_STATES:
                return
            if state == S.AWAITING_CONFIRMATION and self._parked_for_input():
                self._out("end of input with a question open: denied, plan dropped", kind="hint")
                self._call("no", lambda: self.client.deny(source=_SOURCE))
                return
            if state == S.PAUSED:
                self._out("end of input while paused: plan cancelled", kind="hint")
                self._call("cancel", lambda: self.client.command("cancel", source=_SOURCE))
                return
            with self._cond:
                self._cond.wait(0.05)
        self._stop(f"the run did not end within {timeout:g} s of the end of input")

    def run_script(self, lines: Iterable[str], timeout: float) -> None:
        """Piped input, in order: each line waits as ``kind_of`` says. A ``stop`` that arrives while an earlier
        line is still waiting, or still being planned, does not queue behind it: it acts at once."""
        queue: list[str | None] = []
        gate = threading.Condition()
        waiting = [False]

        def read() -> None:
            try:
                for line in lines:
                    stops = line_intent(line, self.domain) == "stop"   # read before the lock: a planner reads it
                    with gate:
                        jump = waiting[0] and stops
                        if not jump:
                            queue.append(line)
                            gate.notify_all()
                    if jump:
                        self.handle_line(line)
            finally:
                with gate:
                    queue.append(None)
                    gate.notify_all()

        reader = threading.Thread(target=read, name="medrobot-console-input", daemon=True)
        reader.start()
        while True:
            with gate:
                gate.wait_for(lambda: bool(queue))
                line = queue.pop(0)
                if line is None:
                    break
                waiting[0] = True
            try:
                ready = self.wait_ready(line, timeout)
            finally:
                with gate:
                    waiting[0] = False
            if not ready:
                self._stop(f"waited {timeout:g} s for the run to end before {line.strip()!r}")
            with gate:
                waiting[0] = True  # planning this line may take long (an LLM): a stop meanwhile must not wait
            try:
                if not self.handle_line(line):
                    return
            finally:
                with gate:
                    waiting[0] = False
        self.finish(timeout)

    def _parked_for_input(self) -> bool:
        with self._cond:
            return self.pending is not None or self.state == S.PAUSED

    def _client_state(self) -> str:
        try:
            return str(self.client.status().get("state", self.state))
        except Exception:  # noqa: BLE001
            return self.state

    # ------------------------------------------------------------------ supervisor records
    def on_event(self, event: ev.SupervisorEvent) -> None:
        """One supervisor record (from the client's thread): update the status line, show what matters."""
        with self._cond:
            self._track(event)
            self._cond.notify_all()
        if self.json_mode:
            if not isinstance(event, ev.FeedbackEvent) or self._feedback_due():
                self._json(event.record())
            return
        self._show(event)

    def _track(self, event: ev.SupervisorEvent) -> None:
        """What the status line, the prompt and the y/n answers need to know; called with the lock held."""
        match event:
            case ev.FeedbackEvent():
                self.progress = float(event.progress or 0.0)
                self.step_index = event.step
                if event.telemetry:
                    self.telemetry = dict(event.telemetry)
            case ev.StateEvent():
                self.state = event.to
                self.reason = event.reason or ""
                if self.state != S.AWAITING_CONFIRMATION:
                    self.pending = None
            case ev.RunEvent():
                self.run_id = event.run
                self.steps = list(event.steps)
                self.step_index, self.progress, self.images = 0, 0.0, []
            case ev.StepSentEvent():
                self.step_index, self.progress = event.step, 0.0
            case ev.StepResultEvent():
                self.images += event.image_paths()
            case ev.QuestionEvent():
                self.pending = {"run": event.run, "step_index": event.step_index, "skill": event.skill,
                                "hazard": event.hazard, "text": event.text}
            case ev.ConfirmationEvent() if event.accepted:
                self.pending = None
            case ev.EstopEvent():
                self.pending = None
            case ev.RunEndEvent():
                self.step_index, self.pending = None, None
            case _:
                pass

    # ------------------------------------------------------------------ helpers
    def _stop(self, reason: str) -> None:
        try:
            reply = self.client.stop(reason, source=_SOURCE)
        except Exception as exc:  # noqa: BLE001 - say it loudly; the person must use the hardware stop
            self._out(f"*** THE STOP DID NOT GO THROUGH ({type(exc).__name__}: {exc}). USE THE HARDWARE E-STOP. ***",
                      kind="error", input="stop", message=str(exc))
            return
        with self._cond:
            self.pending = None
        if self.json_mode:
            self._json({"kind": "reply", "input": "stop", **reply.to_json()})
        else:
            self._out(f"E-STOP sent: {reason}" if reply.accepted else f"E-STOP: {reply.message}")

    def _help(self) -> None:
        cs = load_command_set(self.domain)
        if self.json_mode:
            self._json({"kind": "help", "console": dict(CONSOLE_WORDS),
                        "skills": {n: s.summary for n, s in cs.skills.items()},
                        "tasks": {n: t.summary for n, t in cs.tasks.items()}})
            return
        lines = [f"{cs.title}: type a command in plain words, e.g. one of these skills:"]
        lines += [f"  {name:<16} {spec.summary} [{spec.hazard.value}]" for name, spec in cs.skills.items()]
        lines += [f"  {name:<16} {task.summary}" for name, task in cs.tasks.items()]
        lines.append("Console words:")
        lines += [f"  {word:<16} {what}" for word, what in CONSOLE_WORDS.items()]
        lines.append("Also: pause, resume, cancel. Tab completes skill, organ, anatomy, view and arm names.")
        self._out("\n".join(lines))

    def _status(self) -> None:
        try:
            status = self.client.status()
        except Exception as exc:  # noqa: BLE001
            self._out(f"status unavailable: {exc}", kind="error", message=str(exc))
            return
        if self.json_mode:
            self._json({"kind": "status", **status})
            return
        self._out(f"{status.get('state')}: {status.get('message') or status.get('reason') or ''}".rstrip(": "))
        tele = format_telemetry(self.telemetry)
        if tele:
            self._out(f"  last telemetry: {tele}")
