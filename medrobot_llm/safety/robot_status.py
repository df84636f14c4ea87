"""The skill server's signed ``/medrobot/robot_status``: the supervisor believes the robot's report from the robot only.

The supervisor's picture of the robot comes from this report: whether a skill server is alive at all, its halt
latch, and the world state every plan is validated against. The blind attack of session 19 showed what an
unsigned report allows a keyless node: re-publishing the last report of a skill server that died kept it looking
alive (the supervisor accepted the next command as running instead of latching FAULT), and a copied report taken
as a first one made a supervisor with no skill server ready. So the skill server signs each report the way the
supervisor signs its heartbeat (``safety.heartbeat``): its instance id (random per process), a sequence number,
a stamp, and every field of the report, with the key of its graph (``signing.graph_key``). The supervisor takes a
report only if the MAC verifies, the stamp is in the window and the number is above the last one of that instance
(``signing.Freshness``); a skill server that restarts is a new instance and is heard at once.

The report stays a ``std_msgs/String`` of JSON with the same fields, plus one more, ``signature`` (``instance``,
``seq``, ``stamp_ms``, ``mac``): whatever reads the topic for the fields (the recorder, the tests, a console)
reads it as before. The MAC covers the report as canonical JSON (keys sorted, no spaces, ASCII escapes) without
its signature: re-encoding what was parsed gives those bytes back exactly, so the verifier needs no raw text.
"""

from __future__ import annotations

import json
from typing import Any

from medrobot_llm.core.clock import Clock
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.signing import (
    MAC_HEX, MAX_WIRE_CHARS, Freshness, NumberedSender, Untrusted, graph_key, is_hex, is_instance, mac, mac_matches,
    millis, wall_clock,
)

__all__ = ["PURPOSE", "SIGNATURE", "StatusSigner", "StatusVerifier"]

PURPOSE = "medrobot.robot_status.v1"
#: the field of a report that holds its signature
SIGNATURE = "signature"
_SIGNATURE_FIELDS = frozenset({"instance", "seq", "stamp_ms", "mac"})


def _body(status: dict[str, Any]) -> str:
    """The bytes a report's MAC covers, the same from the dict the signer built and from the one a verifier parsed."""
    return json.dumps(status, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _fields(instance: str, seq: int, stamp_ms: int, body: str) -> list[str | int]:
    return [instance, seq, stamp_ms, body]


class StatusSigner(NumberedSender):
    """The skill server's side: numbered, stamped, signed reports of one instance.

    Call ``sign`` and publish under one lock: reports numbered in one order and sent in another would be refused
    as replays (the later-numbered one arrives first)."""

    def sign(self, status_json: str) -> str:
        """The wire form of the report ``status_json`` (a JSON object without a ``signature`` field)."""
        status = json.loads(status_json)
        if not isinstance(status, dict) or SIGNATURE in status:
            raise ValueError(f"a robot status is a JSON object without a {SIGNATURE!r} field")
        with self._lock:
            self._seq += 1
            seq = self._seq
        stamp_ms = millis(self.clock())
        signature = {"instance": self.instance, "seq": seq, "stamp_ms": stamp_ms,
                     "mac": mac(self._key, PURPOSE, _fields(self.instance, seq, stamp_ms, _body(status)))}
        return json.dumps({**status, SIGNATURE: signature}, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


class StatusVerifier:
    """The supervisor's side: ``offer`` returns a report (without its signature) only if it is genuine, fresh and
    in order; otherwise it raises ``Untrusted`` with the reason, and nothing is remembered of it.

    ``window_s``: how far a stamp may be from now (the supervisor passes the age at which it takes the robot for
    silent: an older report says nothing current). ``clock`` judges stamps: the signer's clock (the wall clock,
    shared by the processes), not the supervisor's.
    """

    def __init__(self, secret: bytes, *, window_s: float, graph: str = "", clock: Clock = wall_clock) -> None:
        self._key = graph_key(secret, graph)
        self.graph = graph
        self.window_s = window_s
        self.clock = clock
        self._fresh = Freshness("robot status", "status")

    def offer(self, wire: str) -> dict[str, Any]:
        if len(wire) > MAX_WIRE_CHARS:
            raise Untrusted(Reason.MALFORMED, f"ignored robot status: longer than {MAX_WIRE_CHARS} characters")
        try:
            status = json.loads(wire)
        except (ValueError, RecursionError):
            raise Untrusted(Reason.MALFORMED, "ignored robot status: not JSON") from None
        if not isinstance(status, dict):
            raise Untrusted(Reason.MALFORMED, "ignored robot status: not a JSON object")
        sig = status.pop(SIGNATURE, None)
        if not isinstance(sig, dict) or set(sig) != _SIGNATURE_FIELDS or not is_instance(sig["instance"]) \
                or type(sig["seq"]) is not int or type(sig["stamp_ms"]) is not int or not is_hex(sig["mac"], MAC_HEX):
            raise Untrusted(Reason.MALFORMED, f"ignored robot status: its {SIGNATURE!r} does not have the fields "
                            "instance, seq, stamp_ms and mac with their types (unsigned: not a skill server of this "
                            "version)")
        instance, seq, stamp_ms = sig["instance"], sig["seq"], sig["stamp_ms"]
        try:
            body = _body(status)
        except ValueError:  # NaN or infinity: a signer never sends them (allow_nan=False)
            raise Untrusted(Reason.MALFORMED, "ignored robot status: a number that is not finite",
                            claimed=instance) from None
        if not mac_matches(self._key, PURPOSE, _fields(instance, seq, stamp_ms, body), sig["mac"]):
            raise Untrusted(Reason.BAD_SIGNATURE, f"ignored robot status {seq} of {instance[:16]!r}: the MAC does not "
                            f"verify with the key of this graph ({self.graph!r}): forged, altered, or signed for "
                            "another graph", claimed=instance)
        self._fresh.check_stamp(instance, seq, stamp_ms, now=self.clock(), window_s=self.window_s)
        self._fresh.take(instance, seq)
        return status
