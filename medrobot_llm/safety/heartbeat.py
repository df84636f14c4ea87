"""The supervisor's authenticated heartbeat and the skill server's watchdog over it.

Issue 15's attack 4 killed the supervisor and drove the robot with goals of its own; a skill server that
counts whoever publishes ``/medrobot/state`` cannot tell. Here the supervisor signs a beat (its instance id,
a sequence number, a stamp) with the graph secret a few times a second, and the skill server's watchdog says
"halt and refuse everything" when no valid beat arrived within the window, and "back" only after a valid one
arrives again. A forged beat fails its MAC; a recorded beat replayed fails the sequence (per instance) or, from
an instance long gone, the stamp window; neither keeps a dead supervisor looking alive.

A beat also says when the supervisor last released the robot (``released_ms``, set by its reset): a halted
skill server frees the robot only on a valid beat whose release is later than the halt. A ``false`` on the
e-stop topic comes from anyone; a release inside a signed beat comes only from the supervisor, and a beat
from before the halt (DDS does not order two topics) cannot undo it.

Beats are signed with the key of the supervisor's graph (``signing.graph_key``): another graph's beats, copied
here by a node that hears both, fail the MAC, so they neither release this robot nor keep a dead supervisor
of this graph looking alive. A beat stamped ahead of the watchdog's clock by more than the window, or whose
release is later than its own stamp, is refused too: neither can come from a supervisor on this machine's clock.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace

from medrobot_llm.core.clock import Clock
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.signing import (
    MAC_HEX, MAX_WIRE_CHARS, Freshness, NumberedSender, Untrusted, graph_key, is_hex, is_instance, mac, mac_matches,
    millis, wall_clock,
)

__all__ = ["DEFAULT_WINDOW_S", "PURPOSE", "Heartbeat", "HeartbeatSigner", "Watch", "Watchdog"]

PURPOSE = "medrobot.heartbeat.v1"
#: the watchdog's window: a few beats at the supervisor's 5 Hz state rate
DEFAULT_WINDOW_S = 1.0


@dataclass(frozen=True)
class Heartbeat:
    instance: str  # random per supervisor process: its sequence numbers are its own
    seq: int
    stamp_ms: int
    released_ms: int = 0  # the supervisor's last release of the robot (its reset), 0 if never
    mac: str = ""

    def fields(self) -> list[str | int]:
        return [self.instance, self.seq, self.stamp_ms, self.released_ms]

    def to_wire(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_wire(cls, text: str) -> Heartbeat:
        if len(text) > MAX_WIRE_CHARS:
            raise Untrusted(Reason.MALFORMED, f"ignored heartbeat: longer than {MAX_WIRE_CHARS} characters")
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            raise Untrusted(Reason.MALFORMED, "ignored heartbeat: not JSON") from None
        if not isinstance(raw, dict) or set(raw) != set(cls.__dataclass_fields__) \
                or type(raw["seq"]) is not int or type(raw["stamp_ms"]) is not int \
                or type(raw["released_ms"]) is not int \
                or not is_instance(raw["instance"]) \
                or not is_hex(raw["mac"], MAC_HEX):
            raise Untrusted(Reason.MALFORMED, "ignored heartbeat: it does not have the fields instance, seq, "
                            "stamp_ms, released_ms and mac with their types")
        return cls(**raw)


class HeartbeatSigner(NumberedSender):
    """The supervisor's side: numbered, stamped beats of one instance."""

    def __init__(self, secret: bytes, *, graph: str = "", instance: str | None = None,
                 clock: Clock = wall_clock) -> None:
        super().__init__(secret, graph=graph, instance=instance, clock=clock)
        self._released_ms = 0

    def release(self) -> Heartbeat:
        """The supervisor's reset released the robot: from now on every beat says so; send this one at once."""
        with self._lock:
            self._released_ms = max(self._released_ms + 1, millis(self.clock()))
        return self.beat()

    def beat(self) -> Heartbeat:
        with self._lock:
            self._seq += 1
            # never stamped before its own release (two resets in one millisecond): the watchdog refuses that
            hb = Heartbeat(self.instance, self._seq, max(millis(self.clock()), self._released_ms), self._released_ms)
        return replace(hb, mac=mac(self._key, PURPOSE, hb.fields()))


@dataclass(frozen=True)
class Watch:
    """The watchdog's verdict: whether the robot must halt and refuse, and why (for the log and refusals)."""

    halted: bool
    code: Reason | None
    message: str
    instance: str = ""


class Watchdog:
    """The skill server's side; halted until the first valid beat, and whenever the last is older than the window.

    ``clock`` times arrivals and judges stamps: the same shared clock as the signer's (the wall clock by default).
    """

    def __init__(self, secret: bytes, *, graph: str = "", window_s: float = DEFAULT_WINDOW_S,
                 clock: Clock = wall_clock) -> None:
        self._key = graph_key(secret, graph)
        self.graph = graph
        self.window_s = window_s
        self.clock = clock
        self._fresh = Freshness("heartbeat", "beat")
        self._valid_at: float | None = None
        self._instance = ""
        self._reported: bool | None = None  # the halted flag transition() last reported
        self._lock = threading.Lock()

    def offer(self, wire: str) -> Heartbeat:
        """Take a beat if it is genuine, fresh and in order; otherwise ``Untrusted`` and nothing changes."""
        hb = Heartbeat.from_wire(wire)
        if not mac_matches(self._key, PURPOSE, hb.fields(), hb.mac):
            raise Untrusted(Reason.BAD_SIGNATURE, f"ignored heartbeat of {hb.instance[:16]!r}: the MAC does not "
                            f"verify with the key of this graph ({self.graph!r}): forged, or signed for another "
                            "graph", claimed=hb.instance)
        now = self.clock()
        self._fresh.check_stamp(hb.instance, hb.seq, hb.stamp_ms, now=now, window_s=self.window_s)
        if hb.released_ms > hb.stamp_ms:
            raise Untrusted(Reason.STALE_MESSAGE, f"ignored heartbeat {hb.seq} of {hb.instance[:16]!r}: its release "
                            f"is {(hb.released_ms - hb.stamp_ms) / 1000:.3f} s after its own stamp",
                            claimed=hb.instance)
        with self._lock:
            self._fresh.take(hb.instance, hb.seq)
            self._valid_at = now
            self._instance = hb.instance
        return hb

    def check(self) -> Watch:
        with self._lock:
            valid_at, instance = self._valid_at, self._instance
        if valid_at is None:
            return Watch(True, Reason.NO_HEARTBEAT, "halted: no valid supervisor heartbeat yet; every goal is "
                         "refused until a supervisor holding the graph secret is running")
        age = self.clock() - valid_at
        if age > self.window_s:
            return Watch(True, Reason.NO_HEARTBEAT, f"halted: the last valid supervisor heartbeat is {age:.2f} s old "
                         f"(window {self.window_s:g} s); every goal is refused until a valid one arrives", instance)
        return Watch(False, None, f"supervisor {instance[:16]} alive", instance)

    def transition(self) -> Watch | None:
        """For the server's timer: the verdict when it changed since the last call (halt once, back once)."""
        watch = self.check()
        with self._lock:
            if watch.halted is self._reported:
                return None
            self._reported = watch.halted
        return watch

    def require_alive(self) -> None:
        """For the gate: ``Untrusted(NO_HEARTBEAT)`` while halted."""
        watch = self.check()
        if watch.halted and watch.code is not None:
            raise Untrusted(watch.code, watch.message, claimed=watch.instance)
