"""Signed operator messages: who commands, confirms, denies, resets, cancels or stops, and what they answer.

Issue 15 showed a bare ``Bool`` on ``/medrobot/confirm`` confirming an exposure for anyone, an ``Empty`` on
``/medrobot/reset`` un-halting the robot for anyone, and a "yes" typed while no question showed confirming a
question asked 13 s later. Each operator message here carries the operator's identity (the name of its key),
the nonce of the question or plan it answers (which the supervisor announced), a per-operator counter and a
timestamp, under an HMAC with that operator's key. The supervisor's verifier refuses an unknown operator, a bad
MAC, a stamp outside the window, a counter not above the last one it accepted, and an answer to anything but
the question or plan open now; every refusal names the claimed sender for the audit.

The MAC also covers the graph the console knows it is on (``env.graph_identity``, with the id its bringup wrote
in the keys folder; it is not on the wire, which ``medrobot_interfaces`` fixes): one operator's key serves every
graph of one user, and a message relayed to another graph, even a cancel, must be refused there.

A console's counter starts from the clock in milliseconds, so a restarted console still counts above what
the supervisor saw from it; a restarted supervisor forgets counters, but the window and the nonces (new
ones for every question of every supervisor) bound what an old message could still do.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from medrobot_llm.core.clock import Clock
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.keys import OPERATOR_NAME
from medrobot_llm.safety.signing import (
    MAC_HEX, MAX_WIRE_CHARS, Untrusted, is_hex, mac, mac_matches, millis, wall_clock,
)

__all__ = [
    "BOUND_KINDS",
    "DEFAULT_WINDOW_S",
    "MAX_BODY_CHARS",
    "PURPOSE",
    "OperatorKind",
    "OperatorMessage",
    "OperatorSigner",
    "OperatorVerifier",
]

PURPOSE = "medrobot.operator.v1"
#: how far a message's stamp may be from the supervisor's clock, either way
DEFAULT_WINDOW_S = 5.0
#: a command's text; the planner's own admission limit is lower, this only bounds what is hashed
MAX_BODY_CHARS = 8192


class OperatorKind(str, Enum):
    COMMAND = "command"
    CONFIRM = "confirm"
    DENY = "deny"
    RESET = "reset"
    CANCEL = "cancel"
    STOP = "stop"


#: kinds that act on one thing the supervisor has open (a question, a latched state, its current state for a
#: new command) and must name it; cancel and stop only ever make the robot safer, so a stale one still counts
BOUND_KINDS: frozenset[OperatorKind] = frozenset(
    {OperatorKind.COMMAND, OperatorKind.CONFIRM, OperatorKind.DENY, OperatorKind.RESET})


@dataclass(frozen=True)
class OperatorMessage:
    kind: OperatorKind
    operator: str
    answers: str  # the nonce the supervisor announced for the question, plan or state this acts on
    counter: int
    stamp_ms: int
    body: str = ""  # a command's text; empty for the other kinds
    mac: str = ""

    def fields(self, graph: str) -> list[str | int]:
        """What the MAC covers: every wire field but the MAC, then the graph it was signed for."""
        return [self.kind.value, self.operator, self.answers, self.counter, self.stamp_ms, self.body, graph]

    def to_wire(self) -> str:
        return json.dumps({**self.__dict__, "kind": self.kind.value}, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_wire(cls, text: str) -> OperatorMessage:
        """Parse without trusting; the refusal names whatever operator the message claims, if any."""
        if len(text) > MAX_WIRE_CHARS:
            raise Untrusted(Reason.MALFORMED, f"refused: the operator message is longer than {MAX_WIRE_CHARS} "
                            "characters")
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            raise Untrusted(Reason.MALFORMED, "refused: the operator message is not JSON") from None
        claimed = raw.get("operator", "") if isinstance(raw, dict) else ""
        claimed = claimed[:64] if isinstance(claimed, str) else ""
        names = set(cls.__dataclass_fields__)
        if not isinstance(raw, dict) or set(raw) != names:
            raise Untrusted(Reason.MALFORMED, f"refused: an operator message has exactly the fields {sorted(names)}",
                            claimed=claimed)
        for name in cls.__dataclass_fields__:
            kind = int if name in ("counter", "stamp_ms") else str
            if type(raw[name]) is not kind:
                raise Untrusted(Reason.MALFORMED, f"refused: the operator message's {name} is not of type "
                                f"{kind.__name__}", claimed=claimed)
        try:
            raw["kind"] = OperatorKind(raw["kind"])
        except ValueError:
            raise Untrusted(Reason.MALFORMED, f"refused: {raw['kind'][:32]!r} is not an operator message kind "
                            f"({', '.join(k.value for k in OperatorKind)})", claimed=claimed) from None
        if not OPERATOR_NAME.fullmatch(raw["operator"]) or not is_hex(raw["mac"], MAC_HEX) \
                or len(raw["body"]) > MAX_BODY_CHARS or len(raw["answers"]) > 128:
            raise Untrusted(Reason.MALFORMED, "refused: the operator message's identity, MAC, answer or text does "
                            "not have its shape", claimed=claimed)
        return cls(**raw)


class OperatorSigner:
    """A console's side: signs with its operator key, counting up from the clock so restarts keep counting up."""

    def __init__(self, operator: str, key: bytes, *, graph: str, clock: Clock = wall_clock) -> None:
        if not OPERATOR_NAME.fullmatch(operator):
            raise ValueError(f"operator name {operator!r} is not a key identity")
        self.operator = operator
        self._key = key
        self.graph = graph
        self.clock = clock
        self._counter = 0
        self._lock = threading.Lock()

    def sign(self, kind: OperatorKind, answers: str = "", body: str = "") -> OperatorMessage:
        with self._lock:
            now = millis(self.clock())
            self._counter = max(self._counter + 1, now)
            msg = OperatorMessage(kind, self.operator, answers, self._counter, now, body)
        return replace(msg, mac=mac(self._key, PURPOSE, msg.fields(self.graph)))


class OperatorVerifier:
    """The supervisor's side: a keyring of operator keys, the last counter of each, one window; thread-safe.

    ``graph`` is the supervisor's graph; ``other_graphs`` are graphs it can name in a refusal (``other_graph``)
    when a message's MAC is genuine for one of them, e.g. the domain-only identity a console uses when it found
    no graph id file. A message signed for any other graph fails ``bad_signature``: nothing on the wire names it.
    """

    def __init__(self, keyring: dict[str, bytes], *, graph: str, other_graphs: tuple[str, ...] = (),
                 window_s: float = DEFAULT_WINDOW_S, clock: Clock = wall_clock) -> None:
        self._keyring = dict(keyring)
        self.graph = graph
        self.other_graphs = tuple(g for g in other_graphs if g != graph)
        self.window_s = window_s
        self.clock = clock
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def verify(self, wire: str, *, open_nonce: str | None) -> OperatorMessage:
        """The message if it may act now, else ``Untrusted`` (with the claimed operator) naming the check.

        ``open_nonce`` is what the supervisor has open for this message to act on (the question asked, the
        latched state, the current state for a command); None when nothing is open, so no bound message passes.
        """
        msg = OperatorMessage.from_wire(wire)
        who = msg.operator
        key = self._keyring.get(who)
        if key is None:
            raise Untrusted(Reason.UNKNOWN_OPERATOR, f"refused {msg.kind.value} from {who!r}: no such operator in "
                            "the supervisor's keyring", claimed=who)
        if not mac_matches(key, PURPOSE, msg.fields(self.graph), msg.mac):
            named = next((g for g in self.other_graphs if mac_matches(key, PURPOSE, msg.fields(g), msg.mac)), None)
            if named is not None:
                raise Untrusted(Reason.OTHER_GRAPH, f"refused {msg.kind.value} from {who!r}: it was signed for "
                                f"another graph ({named!r}; this is {self.graph!r}): the console does not know this "
                                "bringup's graph id (no running bringup holds the graph-<ROS domain id>.json of its "
                                "keys folder); on another host, restart the console with --graph-id and the id this "
                                "bringup printed", claimed=who)
            raise Untrusted(Reason.BAD_SIGNATURE, f"refused {msg.kind.value} claiming to be from {who!r}: the MAC "
                            "does not verify with that operator's key for this graph; if it is that operator's "
                            "console, it signs for another graph id (an earlier start of this bringup, or another "
                            f"bringup's --graph-id; this is {self.graph!r}): restart the console, with --graph-id "
                            "and the id this bringup printed if it runs on another host", claimed=who)
        age_ms = millis(self.clock()) - msg.stamp_ms
        if abs(age_ms) > millis(self.window_s):
            when = f"{age_ms / 1000:.1f} s old" if age_ms > 0 else f"{-age_ms / 1000:.1f} s ahead of the supervisor"
            raise Untrusted(Reason.STALE_MESSAGE, f"refused {msg.kind.value} from {who!r}: it is {when} (window "
                            f"{self.window_s:g} s); send it again", claimed=who)
        with self._lock:
            last = self._last.get(who, -1)
            if msg.counter <= last:
                raise Untrusted(Reason.REPLAYED, f"refused {msg.kind.value} from {who!r}: counter {msg.counter} is "
                                f"not above the last accepted ({last}); a message is accepted once", claimed=who)
            self._last[who] = msg.counter  # authentic and fresh: spent, whatever it answers
        if msg.kind in BOUND_KINDS and (open_nonce is None or msg.answers != open_nonce):
            what = "nothing is open" if open_nonce is None else "another question or plan is open now"
            raise Untrusted(Reason.NOT_OPEN, f"refused {msg.kind.value} from {who!r}: it answers "
                            f"{msg.answers[:12] or '(nothing)'}, but {what}", claimed=who)
        return msg

    def operators(self) -> list[str]:
        return sorted(self._keyring)

    @staticmethod
    def describe(msg: OperatorMessage) -> dict[str, Any]:
        """What the audit log records of an accepted message (never its MAC)."""
        return {"kind": msg.kind.value, "operator": msg.operator, "answers": msg.answers, "counter": msg.counter,
                "stamp_ms": msg.stamp_ms}
