"""``RemoteSupervisor``: the supervisor's command surface, over the graph (the consoles' ``--ros`` mode).

It publishes signed operator messages (``safety.operator``, with this operator's key) on ``/medrobot/command``
(command, cancel, stop), ``/medrobot/confirm`` (confirm, deny) and ``/medrobot/reset`` (reset), true on
``/medrobot/estop``, and follows ``/medrobot/state`` and ``/medrobot/events``. It implements
``SupervisorClient`` as ``Supervisor`` does: each command answers with the ``Reply`` the supervisor node sent
back (refusals name why), and listeners get the typed events of ``/medrobot/events``. ``stop`` never waits
for anything before publishing.

Command, confirm, deny and reset answer the nonce of the state they were given in (``SupervisorState.nonce``):
a confirmation names the question it saw, so it can never confirm one asked later. Cancel and stop phrases are
recognised here and sent as their own kinds, which the supervisor handles at once, never behind a command
being planned. A command whose reply does not come in time is withdrawn with a signed cancel, so it cannot
run later. The events topic can run ahead of ``/medrobot/state``, so a question already shown may take a
moment to appear in the state: it is waited for briefly, never assumed.

State and events are two topics, and DDS orders messages within a topic only. A state message names the
last record it reflects (``records_through``); it is applied only once that record came in on the events
stream (or after ``HOLD_S``, should events be lost), so whoever sees "IDLE, all steps done" also has
every step result of that plan.

Both topics are unsigned, so what is shown or believed must be sealed for this operator (``safety.asked``): a
state whose question has no valid seal is dropped whole, a ``question`` event waits until a sealed state asks
the same question, and a reply counts only if sealed and newer than the state seen when it was asked for. A
confirmation signs the digest of the question shown, which the supervisor compares with its own.

Seals and operator MACs cover the graph: this console's ROS domain and the graph id its ``medrobot bringup`` wrote
in the keys folder (``safety.graph_id``), never taken from the graph, so a question or a reply relayed from another
graph on the same domain id (a copy of the keys folder) is never shown or believed. The file counts only while a
running bringup holds it (a copied one is stale), and it is read again while the console waits for the supervisor
and whenever it changed (a stat before signing and before checking a seal), so a bringup started after the console,
or restarted under it, is followed. A console on another host is given the id (``graph_id``, ``--graph-id``) and
keeps it: after that bringup restarts, the console is restarted with the new id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from std_msgs.msg import Bool, String

from medrobot_interfaces.msg import OperatorMessage as OperatorMsg
from medrobot_interfaces.msg import SupervisorState as StateMsg

from medrobot_llm.core.clock import Clock
from medrobot_llm.backends.ros.common import (TOPIC_COMMAND, TOPIC_CONFIRM, TOPIC_ESTOP, TOPIC_EVENTS, TOPIC_RESET, TOPIC_STATE,
                      NodeRunner, latched_qos, reliable_qos)
from medrobot_llm.backends.ros.graph_follow import FollowedGraph
from medrobot_llm.backends.ros.signed import operator_msg
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import CONTROL_PHRASES
from medrobot_llm.safety import keys
from medrobot_llm.safety.asked import SEALS_KEY, question_digest, reply_digest, seal_matches
from medrobot_llm.safety.events import EventListener, QuestionEvent, ReplyEvent, SupervisorEvent, parse_event
from medrobot_llm.safety.operator import OperatorKind, OperatorSigner
from medrobot_llm.safety.operator_gate import DEFAULT_COMMAND_WINDOW_S
from medrobot_llm.safety.machine import LATCHED, SupervisorError, SupervisorState
from medrobot_llm.safety.replies import Reply

__all__ = ["COMMAND_TIMEOUT_S", "RemoteSupervisor"]

_LOG = logging.getLogger(__name__)

#: the longest a state waits for the records it follows (lost events must not freeze the state)
HOLD_S = 0.5
#: question events kept while no sealed state asks them (a forger's flood must not grow without bound)
MAX_UNSEALED = 8
#: how long a command waits for its reply: the supervisor's planning window, plus time for the reply to travel
COMMAND_TIMEOUT_S = DEFAULT_COMMAND_WINDOW_S + 5.0


def _phrases(intent: str) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(tokenize(p)) for p in CONTROL_PHRASES[intent])


#: said alone, these are the operator's cancel and stop: sent as their own kinds, never planned
_LOCAL_CONTROLS = {OperatorKind.STOP: _phrases("stop"), OperatorKind.CANCEL: _phrases("cancel")}


def local_control(text: str) -> OperatorKind | None:
    words = tuple(t for t in tokenize(text) if any(c.isalnum() for c in t))
    return next((kind for kind, phrases in _LOCAL_CONTROLS.items() if words in phrases), None)


class RemoteSupervisor:
    """Signs as ``operator`` (default ``keys.default_operator()``) with its key from ``keys_dir`` (default
    ``keys.default_dir()``); a missing or unusable key raises ``KeyFileError`` before anything is published.
    ``clock`` measures how long a state has been held (``HOLD_S``); a test drives it by hand."""

    #: what a command answers when the supervisor node did not
    NO_ANSWER = "the supervisor did not answer over ROS (is `medrobot bringup` running?)"
    #: how long a stop waits to see ESTOP in /medrobot/state; the stop itself is published before any wait
    STOP_SEEN_S = 3.0
    #: how long a confirmation of a given step waits for its question to show in /medrobot/state
    QUESTION_SEEN_S = 2.0
    #: how often the graph id file is read again while waiting for the supervisor
    GRAPH_POLL_S = 0.25

    def __init__(self, name: str = "medrobot_console", *, operator: str | None = None, keys_dir: Path | None = None,
                 graph_id: str | None = None, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.operator = operator or keys.default_operator()
        key = keys.load_operator_key(self.operator, keys_dir)
        self._key = key  # also checks the supervisor's seal on the questions it asks (safety.asked)
        self._runner = NodeRunner(name)
        node = self._runner.node
        self.node = node
        try:
            self._graph = FollowedGraph(keys_dir or keys.default_dir(), node.context.get_domain_id(), graph_id)
        except BaseException:
            self._runner.close()
            raise
        self._signer = OperatorSigner(self.operator, key, graph=self.graph)
        self._cond = threading.Condition()
        self._state: dict[str, Any] | None = None
        self._state_msg: Any = None
        self._listeners: list[EventListener] = []
        self._waiters: list[tuple[Callable[[ReplyEvent], bool], list[ReplyEvent]]] = []
        self._seen_seq: int | None = None  # the last record seen on the events stream (this session)
        self._session = ""
        self._held: tuple[dict[str, Any], Any, int, float] | None = None  # status, msg, through, held since
        #: question events not shown yet: each waits for a sealed state asking the same (digest, event)
        self._unsealed: list[tuple[str, QuestionEvent]] = []
        self._command = node.create_publisher(OperatorMsg, TOPIC_COMMAND, reliable_qos(10))
        self._confirm = node.create_publisher(OperatorMsg, TOPIC_CONFIRM, reliable_qos(10))
        self._estop = node.create_publisher(Bool, TOPIC_ESTOP, latched_qos(5))
        self._reset = node.create_publisher(OperatorMsg, TOPIC_RESET, reliable_qos(10))
        node.create_subscription(StateMsg, TOPIC_STATE, self._on_state, latched_qos(1))
        node.create_subscription(String, TOPIC_EVENTS, self._on_event, reliable_qos(200))

    @property
    def graph(self) -> str:
        """The graph this console signs for, and checks seals with, now (``FollowedGraph``)."""
        return self._graph.current()

    # ---------------------------------------------------------------- incoming
    def _on_state(self, msg: Any) -> None:
        try:
            status = json.loads(msg.status_json) if msg.status_json else {}
        except ValueError:
            status = {}
        status.update({"state": msg.state, "plan_id": msg.plan_id, "session": msg.session, "seq": msg.seq,
                       "estop_latched": msg.estop_latched, "halted": msg.halted, "nonce": msg.nonce})
        try:
            status["world"] = json.loads(msg.world_json) if msg.world_json else None
            status["telemetry"] = json.loads(msg.telemetry_json) if msg.telemetry_json else {}
        except ValueError:
            pass
        if status.get("question") is not None:
            digest = self._sealed(status, msg)
            if digest is None:  # never shown, never confirmed: the state is dropped whole
                _LOG.warning("dropped a /medrobot/state whose question the supervisor did not seal for operator %r "
                             "on graph %s", self.operator, self.graph)
                return
            status["question_digest"] = digest
        through = status.get("records_through")
        shown: list[QuestionEvent] = []
        with self._cond:
            if not isinstance(through, int) or msg.session != self._session or self._seen_seq is None:
                # a state without the field, or the first one of a supervisor: nothing earlier to wait for
                self._session = msg.session
                self._seen_seq = through if isinstance(through, int) else None
                shown = self._apply(status, msg)
            else:
                now = self.clock()
                since = self._held[3] if self._held is not None else now
                if through <= self._seen_seq or now - since >= HOLD_S:
                    shown = self._apply(status, msg)
                else:
                    self._held = (status, msg, through, since)
        self._deliver(shown)

    def _sealed(self, status: dict[str, Any], msg: Any) -> str | None:
        """The digest of the state's question if the supervisor sealed it for this operator, else None."""
        seals = status.get("question_seals")
        try:
            digest = question_digest(status["question"])
        except ValueError:
            return None
        claimed = seals.get(self.operator) if isinstance(seals, dict) else None
        return digest if seal_matches(self._key, claimed, graph=self.graph, session=msg.session, nonce=msg.nonce,
                                      digest=digest) \
            else None

    def _reply_sealed(self, rec: dict[str, Any]) -> bool:
        """Whether the supervisor of the session followed sealed this reply for this operator."""
        seals = rec.get(SEALS_KEY)
        claimed = seals.get(self.operator) if isinstance(seals, dict) else None
        with self._cond:
            session = self._session
        return bool(session) and seal_matches(self._key, claimed, graph=self.graph, session=session, nonce="",
                                              digest=reply_digest(rec))

    def _apply(self, status: dict[str, Any], msg: Any) -> list[QuestionEvent]:
        """Make ``status`` the current state (caller holds ``_cond``); returns the question events it seals, for
        the caller to deliver once it let go of the lock."""
        self._state, self._state_msg, self._held = status, msg, None
        self._cond.notify_all()
        digest = status.get("question_digest")
        shown = [event for d, event in self._unsealed if d == digest]
        self._unsealed = [(d, event) for d, event in self._unsealed if d != digest]
        return shown

    def _deliver(self, events: list[QuestionEvent]) -> None:
        for event in events:
            self._notify(event)

    def _notify(self, event: SupervisorEvent) -> None:
        with self._cond:
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn(event)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the others
                _LOG.exception("a /medrobot/events listener failed")

    def _on_event(self, msg: String) -> None:
        try:
            rec = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(rec, dict):
            return
        event = parse_event(rec)
        if isinstance(event, ReplyEvent) and not self._reply_sealed(rec):
            _LOG.warning("dropped a /medrobot/events reply the supervisor did not seal for operator %r on graph %s",
                         self.operator, self.graph)
            return
        with self._cond:
            if isinstance(event, ReplyEvent):
                for match, slot in self._waiters:
                    if not slot and match(event):
                        slot.append(event)
            if isinstance(event, QuestionEvent):
                # the events topic is unsigned too: a question is shown only once a state the supervisor sealed
                # asks the same (now, or when that state comes in)
                digest = question_digest(event.model_dump())
                if self._state is None or self._state.get("question_digest") != digest:
                    self._unsealed = [*self._unsealed[-(MAX_UNSEALED - 1):], (digest, event)]
                    event = None
            self._cond.notify_all()
        if event is not None:
            self._notify(event)
        seq = rec.get("seq")
        shown: list[QuestionEvent] = []
        if isinstance(seq, int) and not isinstance(seq, bool):
            # after the listeners: a state released here finds its records already delivered to them
            with self._cond:
                if self._seen_seq is not None and seq > self._seen_seq:
                    self._seen_seq = seq
                held = self._held
                if held is not None and self._seen_seq is not None and held[2] <= self._seen_seq:
                    shown = self._apply(held[0], held[1])
        self._deliver(shown)

    # ---------------------------------------------------------------- waiting
    def status(self) -> dict[str, Any]:
        """The supervisor's last published status (``{"state": "UNKNOWN"}`` before the first one)."""
        with self._cond:
            return dict(self._state) if self._state else {"state": "UNKNOWN"}

    def wait_for(self, *states: str, timeout: float | None = 5.0) -> bool:
        names = {getattr(s, "value", s) for s in states}
        with self._cond:
            return self._cond.wait_for(lambda: self._state is not None and self._state["state"] in names, timeout)

    def wait_status(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any] | None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self._state is not None and pred(self._state), timeout)
            return dict(self._state) if ok and self._state else None

    def wait_ready(self, timeout: float = 20.0) -> bool:
        """Until the supervisor reports its skill server (hearing its heartbeat) and planner, and it hears us."""
        deadline = time.monotonic() + timeout
        while True:
            self._graph.current(reread=True)  # a bringup started after this console, or restarted, writes it now
            left = deadline - time.monotonic()
            if self.wait_status(lambda s: bool(s.get("skill_server")) and bool(s.get("planner")),
                                max(0.0, min(left, self.GRAPH_POLL_S))) is not None:
                break
            if left <= 0:
                return False
        while time.monotonic() < deadline:
            if (self.node.count_subscribers(TOPIC_COMMAND) and self.node.count_subscribers(TOPIC_CONFIRM)
                    and self.node.count_subscribers(TOPIC_RESET) and self.node.count_subscribers(TOPIC_ESTOP) >= 2):
                self._graph.current(reread=True)
                return True
            time.sleep(0.02)
        return False

    def _ask(self, publish: Callable[[], None], match: Callable[[ReplyEvent], bool], timeout: float) -> Reply:
        slot: list[ReplyEvent] = []
        with self._cond:
            before = self._state_msg.seq if self._state_msg is not None else -1

        def fresh(r: ReplyEvent) -> bool:  # an older sealed reply, replayed, came with an older state
            return r.state_seq is not None and r.state_seq > before and match(r)

        entry = (fresh, slot)
        with self._cond:
            self._waiters.append(entry)
        deadline = time.monotonic() + timeout
        try:
            publish()
            with self._cond:
                self._cond.wait_for(lambda: bool(slot), timeout)
                if slot and slot[0].state_seq is not None:
                    # the reply's own state (or a later one) before returning: status() is never older
                    want = slot[0].state_seq
                    self._cond.wait_for(lambda: self._state_msg is not None and self._state_msg.seq >= want,
                                        max(0.0, deadline - time.monotonic()))
        finally:
            with self._cond:
                self._waiters.remove(entry)
        if not slot:
            return self._refused(self.NO_ANSWER)
        return Reply.from_json(slot[0].model_dump(include={"accepted", "state", "message", "plan", "question"}))

    def _known_state(self) -> SupervisorState:
        """The state the supervisor last published; there is none before it was first heard from."""
        name = self.status().get("state")
        try:
            return SupervisorState(name)
        except ValueError:
            raise SupervisorError(f"{self.NO_ANSWER}: no state heard from it yet") from None

    def _refused(self, why: str) -> Reply:
        return Reply(False, self._known_state(), why)

    # ---------------------------------------------------------------- commands
    def _send(self, publisher: Any, kind: OperatorKind, answers: str = "", body: str = "") -> Callable[[], None]:
        """What publishes one signed message of ``kind`` (signed when published, so its stamp is fresh, for the
        graph the file names then)."""
        def publish() -> None:
            self._signer.graph = self.graph
            publisher.publish(operator_msg(self._signer.sign(kind, answers, body)))

        return publish

    def _nonce(self, status: dict[str, Any] | None = None) -> str:
        nonce = (status or self.status()).get("nonce")
        return nonce if isinstance(nonce, str) else ""

    def command(self, text: str, *, source: str = "ros", timeout: float = COMMAND_TIMEOUT_S) -> Reply:
        """Plan and run ``text``; a cancel or stop phrase is sent as its own kind. ``source`` is for the protocol:
        over ROS the supervisor logs ``operator:<name>``. A command not answered in time is withdrawn."""
        control = local_control(text)
        if control is OperatorKind.STOP:
            return self.stop(f"operator said {text!r}")
        if control is OperatorKind.CANCEL:
            return self.cancel(timeout=min(timeout, 5.0))
        reply = self._ask(self._send(self._command, OperatorKind.COMMAND, self._nonce(), text),
                          lambda r: r.op == "command" and r.text == text, timeout)
        if reply.accepted or reply.message != self.NO_ANSWER:
            return reply
        withdrawn = self.cancel(timeout=min(timeout, 5.0))
        return self._refused(f"{self.NO_ANSWER}; sent a cancel so it cannot run later "
                             f"({'withdrawn' if withdrawn.accepted else withdrawn.message}){self._graph.hint()}")

    def cancel(self, *, timeout: float = 5.0) -> Reply:
        """Withdraw the command being planned and cancel the run, whatever the supervisor has open."""
        return self._ask(self._send(self._command, OperatorKind.CANCEL), lambda r: r.op == "cancel", timeout)

    def confirm(self, step_index: int | None = None, *, source: str = "ros", timeout: float = 5.0) -> Reply:
        status = self.status()
        if step_index is not None:
            def asking(s: dict[str, Any]) -> bool:
                q = s.get("question")
                return isinstance(q, dict) and q.get("step_index") == step_index

            status = self.wait_status(asking, self.QUESTION_SEEN_S) or self.status()
            question = status.get("question")
            asked = question.get("step_index") if isinstance(question, dict) else None
            if asked is None:
                return self._refused("there is no question to answer")
            if asked != step_index:
                return self._refused(f"that confirmation is for step {step_index + 1}, but the question is now "
                                     f"about step {int(asked) + 1}; nothing confirmed")
        # the digest of the question shown (sealed, or the state was dropped): a yes to anything else is refused
        digest = status.get("question_digest")
        return self._ask(self._send(self._confirm, OperatorKind.CONFIRM, self._nonce(status),
                                    digest if isinstance(digest, str) else ""),
                         lambda r: r.op == "confirm", timeout)

    def deny(self, *, source: str = "ros", timeout: float = 5.0) -> Reply:
        status = self.status()
        digest = status.get("question_digest")
        return self._ask(self._send(self._confirm, OperatorKind.DENY, self._nonce(status),
                                    digest if isinstance(digest, str) else ""), lambda r: r.op == "deny", timeout)

    def stop(self, reason: str = "operator stop", *, source: str = "ros") -> Reply:
        """E-stop: publish true on the latched e-stop topic, now (the skill server halts on it directly), and a
        signed stop naming this operator; then say whether the supervisor was seen to latch it."""
        self._estop.publish(Bool(data=True))
        self._send(self._command, OperatorKind.STOP)()
        if self.wait_for(SupervisorState.ESTOP, timeout=self.STOP_SEEN_S):
            return Reply(True, SupervisorState.ESTOP,
                         "e-stop published on /medrobot/estop; the supervisor latched it")
        state = self.status().get("state")
        return self._refused(f"e-stop published on /medrobot/estop, but the supervisor still reports {state} after "
                             f"{self.STOP_SEEN_S:g} s. USE THE HARDWARE E-STOP if anything moves")

    def reset(self, *, source: str = "ros", timeout: float = 5.0) -> Reply:
        """Operator reset: release our e-stop press (false, so late joiners do not find it pressed; it releases
        nothing), then send a signed reset bound to the latched state's nonce; accepted once the supervisor is
        out of ESTOP/FAULT/RECOVERING."""
        status = self.status()
        state = self._known_state()
        if state not in LATCHED:
            return self._refused(f"nothing to reset: the supervisor is {state.value}, not ESTOP or FAULT")
        self._estop.publish(Bool(data=False))
        deadline = time.monotonic() + timeout
        reply = self._ask(self._send(self._reset, OperatorKind.RESET, self._nonce(status)),
                          lambda r: r.op == "reset", timeout)
        after = None
        if reply.accepted:
            after = self.wait_status(lambda s: s["state"] not in (*LATCHED, SupervisorState.RECOVERING),
                                     max(0.0, deadline - time.monotonic()))
        if after is None:
            now = self.status()
            why = reply.message if not reply.accepted else (now.get("reason") or "no reason given")
            return self._refused(f"reset refused: the supervisor is still {now.get('state')} ({why})")
        return Reply(True, SupervisorState(after["state"]), "reset: ready")

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        with self._cond:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> RemoteSupervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
