"""What the capability, operator, heartbeat and robot status checks share: one canonical encoding, one MAC, one
refusal, one freshness rule for numbered senders.

The Fast DDS of the PyPI wheels has no DDS Security, so anything on the graph can publish anything; the
authority of a message has to be inside it. Each kind of signed message starts its encoding with its own
purpose tag, so a MAC made for a heartbeat can never pass as a capability even though both use the graph
secret. Nothing is signed with the graph secret itself: every MAC that gives authority on a graph uses that
graph's key (``graph_key``), so what one graph's supervisor, skill server or planner signed verifies on no other
graph of the same user, though one keys folder serves them all. The encoding is JSON of a flat list (strings and integers only): unambiguous, and the same bytes in
any language that writes JSON without spaces and with ASCII escapes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any

from medrobot_llm.core.clock import Clock
from medrobot_llm.core.reasons import Reason

__all__ = ["GRAPH_PURPOSE", "MAC_HEX", "MAX_INSTANCES", "MAX_WIRE_CHARS", "NONCE_HEX", "Freshness", "NumberedSender", "Untrusted",
           "canonical", "graph_key", "is_hex", "is_instance", "mac", "mac_matches", "millis", "signed_for_other_graph",
           "wall_clock"]

#: the purpose tag of a graph key's derivation: no message MAC can be a graph key, nor a graph key a MAC
GRAPH_PURPOSE = "medrobot.graph.v1"
#: HMAC-SHA256 as lowercase hex
MAC_HEX = 64
#: nonces are 16 random bytes as hex: never repeated by chance within the life of a graph
NONCE_HEX = 32
#: no signed message is near this (a goal's args are bounded at 16 KiB): longer is refused before it is parsed
MAX_WIRE_CHARS = 64 * 1024

#: sender instances whose last sequence number a ``Freshness`` remembers; each restart of a sender makes one more
MAX_INSTANCES = 64

#: the stamps cross processes (supervisor, skill server, consoles), so the default clock is the one they share;
#: tests pass a ``ManualClock`` instead
wall_clock: Clock = time.time


class Untrusted(Exception):
    """A signed message that is refused; ``code`` says which check, ``claimed`` who the sender said it was.

    The claimed identity is not proven (a refused message proves nothing) but the audit log records it anyway:
    it is what a reviewer needs to see who was impersonated, or which console is misconfigured.
    """

    def __init__(self, code: Reason, message: str, *, claimed: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.claimed = claimed

    def to_json(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message, "claimed": self.claimed}


def canonical(purpose: str, fields: list[str | int]) -> bytes:
    """The bytes a MAC covers: the purpose tag, then every field in a fixed order."""
    return json.dumps([purpose, *fields], ensure_ascii=True, separators=(",", ":")).encode("ascii")


def mac(key: bytes, purpose: str, fields: list[str | int]) -> str:
    return hmac.new(key, canonical(purpose, fields), hashlib.sha256).hexdigest()


def graph_key(secret: bytes, graph: str) -> bytes:
    """The key of one graph: HMAC(secret, its identity), derived by each end from the graph it runs on.

    Two bringups of one user on two ROS domains share ``graph.key`` (one keys folder is the default); the
    key derived for each is different, so a capability, heartbeat, result or planner answer copied from one
    graph to the other fails its MAC there (issue 15, second blind attack).
    """
    return hmac.new(secret, canonical(GRAPH_PURPOSE, [graph]), hashlib.sha256).digest()


def signed_for_other_graph(secret: bytes, graph: str, purpose: str, fields: list[str | int], claimed: str,
                           named: str) -> bool:
    """Whether a MAC that failed on ``graph`` is genuine for the graph ``named`` in the message: the holder of
    the secret signed it for another graph (a relay, or two graphs wired together), not a forger. Only then
    may a refusal say "signed for another graph"; the named graph alone is the sender's word."""
    return named != graph and mac_matches(graph_key(secret, named), purpose, fields, claimed)


def mac_matches(key: bytes, purpose: str, fields: list[str | int], claimed: str) -> bool:
    """Constant-time, so how long a refusal takes says nothing about how much of a forged MAC was right."""
    return hmac.compare_digest(mac(key, purpose, fields).encode("ascii"), claimed.encode("ascii", "replace"))


def millis(seconds: float) -> int:
    """Stamps travel as integer milliseconds: a float's text is not the same in every language."""
    return int(round(seconds * 1000))


def is_hex(value: Any, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdef" for c in value)


def is_instance(value: Any) -> bool:
    """A sender instance's id as a numbered message may carry it: bounded, so a forger cannot make ``Freshness``
    remember megabytes."""
    return isinstance(value, str) and 0 < len(value) <= 64


class Freshness:
    """Whether a signed message of a numbered sender is new: stamped within a window of now (either way: a stamp
    ahead is no more this machine's clock than one long past), and numbered above the last message taken from the
    same sender instance.

    A MAC proves who signed a message, not that it was signed just now: a recorded one replayed verifies too. The
    sequence number refuses a copy of a message already taken; the window refuses one from an instance long gone,
    whose numbers this end never saw (it started after that instance died). A sender that restarts is a new
    instance with a count of its own, taken at once. ``what`` names the message in refusals, ``unit`` one of them.
    The caller owns the clock and the window (a test may move either).
    """

    def __init__(self, what: str, unit: str) -> None:
        self.what = what
        self.unit = unit
        self._last_seq: dict[str, int] = {}
        self._lock = threading.Lock()

    def check_stamp(self, instance: str, seq: int, stamp_ms: int, *, now: float, window_s: float) -> None:
        """Nothing if ``stamp_ms`` is within ``window_s`` of ``now``; else ``Untrusted(STALE_MESSAGE)``."""
        skew_ms = millis(now) - stamp_ms
        if abs(skew_ms) > millis(window_s):
            raise Untrusted(Reason.STALE_MESSAGE, f"ignored {self.what} {seq} of {instance[:16]!r}: stamped "
                            f"{skew_ms / 1000:+.3f} s from now (window {window_s:g} s)", claimed=instance)

    def take(self, instance: str, seq: int) -> None:
        """Count ``seq`` as the instance's last, if it is after the last one taken; else ``Untrusted(REPLAYED)``."""
        with self._lock:
            last = self._last_seq.get(instance, 0)
            if seq <= last:
                raise Untrusted(Reason.REPLAYED, f"ignored {self.what} {seq} of {instance[:16]!r}: not after "
                                f"{self.unit} {last}", claimed=instance)
            if instance not in self._last_seq and len(self._last_seq) >= MAX_INSTANCES:
                self._last_seq.pop(next(iter(self._last_seq)))  # the oldest instance: its messages are long stale
            self._last_seq[instance] = seq


class NumberedSender:
    """What every signer of numbered messages (heartbeats, robot status) holds: its graph's key, an instance id
    that a restart renews (so ``Freshness`` counts the new instance from zero instead of refusing it as a replay),
    the clock its stamps come from, and its last sequence number behind one lock: numbers taken in one order
    and sent in another would be refused at the other end."""

    def __init__(self, secret: bytes, *, graph: str = "", instance: str | None = None,
                 clock: Clock = wall_clock) -> None:
        self._key = graph_key(secret, graph)
        self.instance = instance or secrets.token_hex(8)
        self.clock = clock
        self._seq = 0
        self._lock = threading.Lock()
