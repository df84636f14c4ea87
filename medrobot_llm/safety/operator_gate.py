"""The supervisor's door for operators: which signed message may act, on what, and what a refusal becomes.

The ROS supervisor node stays thin: it hands every operator message and every planner answer to this gate
and does what the verdict says. Deciding here, without ROS, lets each refusal path of issue 15 be tested
with a ``ManualClock``: an unsigned or forged message, a replay, an answer to a question no longer open, a
"yes" typed with no question showing, a command planned after its window, a plan answer without the
planner's signature, and a ``cancel`` that must never wait behind a command being planned.

The gate keeps the supervisor's nonce: one random value, renewed on every change of state, question or run,
that command, confirm, deny and reset must answer. It keeps at most one command being planned; a ``cancel``
withdraws it, so its plan, when it comes back, is dropped instead of run.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import ValidationError

from medrobot_llm.core.clock import Clock
from medrobot_llm.core.plan import Control, Plan, PlanStatus
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.events import UntrustedEvent
from medrobot_llm.safety.operator import MAX_BODY_CHARS, OperatorKind, OperatorMessage, OperatorVerifier
from medrobot_llm.safety.planned import verify_answer
from medrobot_llm.safety.signing import NONCE_HEX, Untrusted, wall_clock

__all__ = [
    "DEFAULT_COMMAND_WINDOW_S",
    "KINDS",
    "UNBOUND_CONTROLS",
    "Admitted",
    "Channel",
    "Dropped",
    "OperatorGate",
    "PlanAnswer",
    "Planned",
    "Pending",
    "Refusal",
    "operator_source",
]

#: how old a command may be when its plan comes back and is acted on (a slow LLM must not move the robot
#: long after the operator gave up; issue 15's attack 6)
DEFAULT_COMMAND_WINDOW_S = 30.0
#: withdrawn commands whose plan may still come back; one is planned at a time, so this is slack
_MAX_WITHDRAWN = 16


class Channel(str, Enum):
    """The operator topics, by what they carry (the node maps each ROS topic to one)."""

    COMMAND = "command"
    CONFIRM = "confirm"
    RESET = "reset"


#: the kinds each channel carries: a confirm sent on the command topic is malformed, not a confirmation
KINDS: dict[Channel, frozenset[OperatorKind]] = {
    Channel.COMMAND: frozenset({OperatorKind.COMMAND, OperatorKind.CANCEL, OperatorKind.STOP}),
    Channel.CONFIRM: frozenset({OperatorKind.CONFIRM, OperatorKind.DENY}),
    Channel.RESET: frozenset({OperatorKind.RESET}),
}

#: control intents planned from a command that act even if the supervisor moved on while it was planned:
#: none of them starts anything
UNBOUND_CONTROLS: frozenset[Control] = frozenset({Control.PAUSE, Control.CANCEL, Control.STOP, Control.STATUS})


@dataclass(frozen=True)
class Pending:
    """The one command being planned: bound to its operator message's MAC, the time and nonce it came with."""

    request_id: str
    text: str
    operator: str
    arrived: float
    nonce: str

    @property
    def source(self) -> str:
        return operator_source(self.operator)


def operator_source(operator: str) -> str:
    """How the audit log names an operator who acted (a command's or a confirmation's ``source``)."""
    return f"operator:{operator}"


@dataclass(frozen=True)
class Refusal:
    """Nothing acts; the console gets ``message`` as a refused reply to ``op``, the audit log gets ``event``."""

    op: str
    message: str
    text: str | None = None
    event: UntrustedEvent | None = None


@dataclass(frozen=True)
class Admitted:
    """An operator message that may act now; for a command, ``pending`` is what to ask the planner about;
    for a cancel, ``withdrawn`` is the command it took back (if one was being planned)."""

    msg: OperatorMessage
    pending: Pending | None = None
    withdrawn: Pending | None = None

    @property
    def source(self) -> str:
        return operator_source(self.msg.operator)


@dataclass(frozen=True)
class PlanAnswer:
    """The planner service's answer, as it came back (``PlanCommand`` response plus the request's fields)."""

    request_id: str
    domain: str
    text: str
    status: str
    plan_json: str
    signature: str


@dataclass(frozen=True)
class Planned:
    """A genuine, timely plan for the pending command: control intent or plan, for the supervisor to act on."""

    plan: Plan
    pending: Pending


@dataclass(frozen=True)
class Dropped:
    """The plan of a withdrawn command: never acted on, audited as discarded."""

    plan: Plan | None
    pending: Pending


class OperatorGate:
    """Thread-safe: the node's subscriptions and the planner's answers may come in on different threads."""

    def __init__(self, verifier: OperatorVerifier, graph_secret: bytes, *, domain: str, graph: str = "",
                 command_window_s: float = DEFAULT_COMMAND_WINDOW_S, clock: Clock = wall_clock,
                 make_nonce: Callable[[], str] = lambda: secrets.token_hex(NONCE_HEX // 2)) -> None:
        self._verifier = verifier
        self._secret = graph_secret
        self.graph = graph  # the planner's answers are signed with this graph's key
        self.domain = domain
        self.command_window_s = command_window_s
        self.clock = clock
        self._make_nonce = make_nonce
        self._lock = threading.Lock()
        self._nonce = make_nonce()
        self._seen: Any = None
        self._pending: Pending | None = None
        self._withdrawn: dict[str, Pending] = {}

    # ---------------------------------------------------------------- the nonce
    def observe(self, state: str, question: Any, run: Any) -> str:
        """The nonce for the supervisor as it is now: a new one whenever its state, question or run changed."""
        key = (state, json.dumps(question, sort_keys=True), run)
        with self._lock:
            if key != self._seen:
                self._seen = key
                self._nonce = self._make_nonce()
            return self._nonce

    @property
    def pending(self) -> Pending | None:
        return self._pending

    # ---------------------------------------------------------------- operator messages
    def receive(self, channel: Channel, wire: str, *, topic: str, open_nonce: str,
                asked: str | None = None) -> Admitted | Refusal:
        """Verify one operator message that came in on ``channel`` (``topic`` names it in the audit).

        ``asked`` is the digest (``asked.question_digest``) of the question open now, None if none is: a
        confirmation must carry it in its body, so the operator confirms what their console showed them, and a
        question reworded on the way to the console (the state is unsigned) confirms nothing."""
        try:
            msg = self._verifier.verify(wire, open_nonce=open_nonce)
        except Untrusted as refused:
            kind, body = _claimed(wire)
            return self._untrusted(topic, kind, refused, text=body if kind == OperatorKind.COMMAND.value else None)
        if msg.kind not in KINDS[channel]:
            wrong = Untrusted(Reason.MALFORMED, f"refused {msg.kind.value} from {msg.operator!r}: it does not go on "
                            f"{topic} (that topic carries {', '.join(sorted(k.value for k in KINDS[channel]))})",
                            claimed=msg.operator)
            return self._untrusted(topic, msg.kind.value, wrong, text=msg.body or None)
        if msg.kind is OperatorKind.CONFIRM and asked is not None \
                and not hmac.compare_digest(msg.body.encode("ascii", "replace"), asked.encode("ascii")):
            shown = Untrusted(Reason.NOT_ASKED, f"refused confirm from {msg.operator!r}: it answered a question the "
                              "supervisor did not ask (what the console showed is not the open question); nothing "
                              "confirmed", claimed=msg.operator)
            return self._untrusted(topic, msg.kind.value, shown)
        if msg.kind is OperatorKind.CANCEL:
            return Admitted(msg, withdrawn=self._withdraw())
        if msg.kind is not OperatorKind.COMMAND:
            return Admitted(msg)
        with self._lock:
            busy = self._pending
            if busy is None:
                self._pending = Pending(msg.mac, msg.body, msg.operator, self.clock(), open_nonce)
                return Admitted(msg, pending=self._pending)
        return Refusal("command", f"still planning {busy.text!r}; say cancel to drop it, then say this again",
                       text=msg.body)

    def _withdraw(self) -> Pending | None:
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                self._withdrawn[pending.request_id] = pending
                while len(self._withdrawn) > _MAX_WITHDRAWN:
                    self._withdrawn.pop(next(iter(self._withdrawn)))  # the oldest: its planner gave up long ago
            return pending

    def expire(self) -> Refusal | None:
        """For the node's timer: a command whose plan has not come back within the window is given up (its plan,
        should it still come, is dropped), so a hung planner cannot block every later command."""
        with self._lock:
            pending = self._pending
            if pending is None or self.clock() - pending.arrived <= self.command_window_s:
                return None
        withdrawn = self._withdraw()
        if withdrawn is not pending:
            return None
        return Refusal("command", f"the planner did not answer {pending.text!r} within {self.command_window_s:g} s; "
                       "nothing done, say it again", text=pending.text)

    def planner_failed(self, request_id: str, why: str) -> Refusal | None:
        """The planner could not be asked or did not answer: the command ends refused, naming why."""
        with self._lock:
            pending = self._pending if self._pending and self._pending.request_id == request_id else None
            if pending is not None:
                self._pending = None
            self._withdrawn.pop(request_id, None)
        if pending is None:
            return None
        return Refusal("command", why, text=pending.text)

    # ---------------------------------------------------------------- the planner's answers
    def answer(self, ans: PlanAnswer, *, topic: str, nonce_now: str) -> Planned | Dropped | Refusal | None:
        """What the planner's answer to one of our commands may do now; None for an answer to no command of
        ours (a late duplicate: nothing to act on or refuse)."""
        with self._lock:
            withdrawn = self._withdrawn.pop(ans.request_id, None)
            pending = self._pending if self._pending and self._pending.request_id == ans.request_id else None
            if pending is not None:
                self._pending = None
        if withdrawn is None and pending is None:
            return None
        owner = pending or withdrawn
        assert owner is not None
        try:
            verify_answer(self._secret, ans.signature, request_id=ans.request_id, domain=self.domain,
                          text=owner.text, status=ans.status, plan_json=ans.plan_json, graph=self.graph)
        except Untrusted as bad:
            bad.claimed = owner.operator
            return self._untrusted(topic, "plan", bad, text=owner.text)
        plan = _plan_of(ans.plan_json)
        if withdrawn is not None:
            return Dropped(plan, withdrawn)
        assert pending is not None
        if plan is None:
            return Refusal("command", f"the planner's answer to {pending.text!r} is not a plan; nothing done",
                           text=pending.text)
        age = self.clock() - pending.arrived
        if age > self.command_window_s:
            late = Untrusted(Reason.STALE_MESSAGE, f"refused {pending.text!r}: planned too late ({age:.1f} s after "
                            f"it was said, window {self.command_window_s:g} s); say it again",
                            claimed=pending.operator)
            return self._untrusted(topic, "command", late, text=pending.text)
        control = plan.control if plan.status is PlanStatus.CONTROL else None
        if nonce_now != pending.nonce and control not in UNBOUND_CONTROLS:
            moved = Untrusted(Reason.NOT_OPEN, f"refused {pending.text!r}: the supervisor moved on while it was being "
                            "planned; say it again if it still applies", claimed=pending.operator)
            return self._untrusted(topic, "command", moved, text=pending.text)
        return Planned(plan, pending)

    @staticmethod
    def _untrusted(topic: str, op: str, exc: Untrusted, text: str | None = None) -> Refusal:
        event = UntrustedEvent(topic=topic, op=op, claimed=exc.claimed, code=exc.code.value, reason=exc.message)
        reply_op = op if op in {k.value for k in OperatorKind} else "command"
        return Refusal(reply_op, f"{exc.message} ({exc.code.value})", text=text, event=event)


def _claimed(wire: str) -> tuple[str, str]:
    """The kind and text a refused message claims: the audit names the kind, the console's reply echoes the
    text it sent; nothing in them is trusted or acted on."""
    try:
        raw = json.loads(wire)
    except (ValueError, RecursionError):
        return "", ""
    if not isinstance(raw, dict):
        return "", ""
    kind, body = raw.get("kind"), raw.get("body")
    return (kind[:32] if isinstance(kind, str) else ""), (body[:MAX_BODY_CHARS] if isinstance(body, str) else "")


def _plan_of(plan_json: str) -> Plan | None:
    try:
        return Plan.model_validate(json.loads(plan_json))
    except (ValueError, ValidationError):
        return None
