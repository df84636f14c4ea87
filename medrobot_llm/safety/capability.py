"""Capabilities: the supervisor's signed permission for exactly one step, which a skill server spends once.

Issue 15's attacks 4 and 5 sent goals that the skill server ran because ``/medrobot/state`` said the
supervisor was executing; any node can publish a state. A capability moves that authority into the goal:
the supervisor (the only holder of the graph secret besides the skill servers) mints one for one plan id,
step, skill, canonical arguments, domain and, when it knows it, goal id, valid for a few seconds and
carrying a random nonce. The skill server admits a goal only if the capability is well-formed, its MAC
verifies, its fields are the goal's, it has not expired and its nonce was never spent; the state topic
becomes information, never authority.

The MAC is made with the key of the graph the supervisor runs on (``signing.graph_key``), and the capability
names that graph: graph B's skill server refuses a capability graph A's supervisor minted with the same
secret, and its audit says "signed for another graph" when the MAC is genuine for the graph it names.
"""

from __future__ import annotations

import heapq
import json
import secrets
import threading
from dataclasses import dataclass, replace
from typing import Any

from medrobot_llm.core.clock import Clock
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.signing import (
    MAC_HEX, MAX_WIRE_CHARS, NONCE_HEX, Untrusted, graph_key, is_hex, mac, mac_matches, millis,
    signed_for_other_graph, wall_clock,
)

__all__ = [
    "DEFAULT_TTL_S",
    "MAX_SPENT",
    "PURPOSE",
    "Capability",
    "CapabilityMinter",
    "CapabilityVerifier",
    "canonical_args",
]

PURPOSE = "medrobot.capability.v1"
#: long enough for a goal to cross DDS under load, short enough that a capture is useless soon after
DEFAULT_TTL_S = 5.0
#: nonces spent and not yet expired that a skill server remembers; one step runs at a time, so this is slack
MAX_SPENT = 4096
_BOUND = ("plan_id", "step_index", "skill", "args", "domain", "goal_id")


def canonical_args(args: str | dict[str, Any]) -> str:
    """One text per set of arguments (sorted keys, no spaces, ASCII), so the MAC does not depend on spelling."""
    value = json.loads(args or "{}", parse_constant=_no_constant) if isinstance(args, str) else args
    if not isinstance(value, dict):
        raise ValueError(f"arguments must be a JSON object, got {type(value).__name__}")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@dataclass(frozen=True)
class Capability:
    """The fields a capability binds, its expiry (ms on the shared clock), its nonce and its MAC."""

    plan_id: str
    step_index: int
    skill: str
    args: str  # canonical_args of the step's arguments
    domain: str
    goal_id: str  # hex UUID of the goal, "" when the supervisor mints before it knows it
    issued_ms: int  # when it was minted: a supervisor state stamped before it is older than the step it allows
    expires_ms: int
    nonce: str
    graph: str = ""  # the graph it was minted for (``env.graph_identity``): its key made the MAC
    mac: str = ""

    def fields(self) -> list[str | int]:
        return [self.plan_id, self.step_index, self.skill, self.args, self.domain, self.goal_id, self.issued_ms,
                self.expires_ms, self.nonce, self.graph]

    def to_wire(self) -> str:
        """The string a goal carries (the ExecuteSkill goal's capability field, once it has one)."""
        return json.dumps(self.__dict__, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_wire(cls, text: str) -> Capability:
        """Parse without trusting: a ``MALFORMED`` refusal unless every field has its type and shape."""
        if len(text) > MAX_WIRE_CHARS:
            raise Untrusted(Reason.MALFORMED, f"refused: the capability is longer than {MAX_WIRE_CHARS} characters")
        try:
            raw = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):  # deep nesting is not JSON we read
            raise Untrusted(Reason.MALFORMED, "refused: the capability is not JSON") from None
        names = set(cls.__dataclass_fields__)
        if not isinstance(raw, dict) or set(raw) != names:
            raise Untrusted(Reason.MALFORMED, f"refused: a capability has exactly the fields {sorted(names)}")
        ints = ("step_index", "issued_ms", "expires_ms")
        for name in cls.__dataclass_fields__:
            kind = int if name in ints else str
            if type(raw[name]) is not kind:
                raise Untrusted(Reason.MALFORMED, f"refused: the capability's {name} is not a{'n' * (kind is int)} "
                                f"{kind.__name__}")
        if not is_hex(raw["nonce"], NONCE_HEX) or not is_hex(raw["mac"], MAC_HEX):
            raise Untrusted(Reason.MALFORMED, "refused: the capability's nonce or MAC is not lowercase hex of its size")
        return cls(**raw)


class CapabilityMinter:
    """The supervisor's side: one capability per step it releases."""

    def __init__(self, secret: bytes, *, graph: str = "", ttl_s: float = DEFAULT_TTL_S,
                 clock: Clock = wall_clock) -> None:
        self._key = graph_key(secret, graph)
        self.graph = graph
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._nonce: str | None = None

    def draw_ahead(self) -> None:
        """Draw the next capability's nonce now. Reading the OS's randomness gives up the GIL, and the
        supervisor's other threads then ran their queued work between a step's start and its goal leaving;
        drawn after a goal went out, the next ``mint`` reads none."""
        with self._lock:
            if self._nonce is None:
                self._nonce = secrets.token_hex(NONCE_HEX // 2)

    def mint(self, *, plan_id: str, step_index: int, skill: str, args: str | dict[str, Any], domain: str,
             goal_id: str = "") -> Capability:
        with self._lock:
            nonce, self._nonce = self._nonce, None  # each nonce serves one capability
        now = self.clock()
        cap = Capability(plan_id=plan_id, step_index=step_index, skill=skill, args=canonical_args(args),
                         domain=domain, goal_id=goal_id, issued_ms=millis(now), expires_ms=millis(now + self.ttl_s),
                         nonce=nonce or secrets.token_hex(NONCE_HEX // 2), graph=self.graph)
        return replace(cap, mac=mac(self._key, PURPOSE, cap.fields()))


class CapabilityVerifier:
    """The skill server's side: admits each genuine capability for its goal exactly once; thread-safe."""

    def __init__(self, secret: bytes, *, graph: str = "", clock: Clock = wall_clock,
                 max_spent: int = MAX_SPENT) -> None:
        self._secret = secret  # only to tell a capability of another graph from a forgery
        self._key = graph_key(secret, graph)
        self.graph = graph
        self.clock = clock
        self.max_spent = max_spent
        self._spent: dict[str, int] = {}  # nonce -> its expiry (ms): forgotten once it could not pass anyway
        # the same, soonest expiry first: forgetting takes only what expired, not a pass over every spent nonce
        # per goal (at 150 goals/s and a 5 s lifetime that pass was over some 750)
        self._expiries: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def admit(self, wire: str, *, plan_id: str, step_index: int, skill: str, args: str | dict[str, Any],
              domain: str, goal_id: str) -> Capability:
        """The capability, spent; or ``Untrusted`` naming the first check it failed (in the module's order)."""
        what = f"plan {plan_id or '(none)'} step {step_index + 1} ({skill or '?'})"
        if not wire:
            raise Untrusted(Reason.NO_CAPABILITY, f"refused {what}: the goal carries no capability; only the "
                            "supervisor may start motion")
        cap = Capability.from_wire(wire)
        if not mac_matches(self._key, PURPOSE, cap.fields(), cap.mac):
            if signed_for_other_graph(self._secret, self.graph, PURPOSE, cap.fields(), cap.mac, cap.graph):
                raise Untrusted(Reason.OTHER_GRAPH, f"refused {what}: the capability was signed for another graph "
                                f"({cap.graph[:80]!r}; this is {self.graph!r}): copied from another graph's goal")
            raise Untrusted(Reason.BAD_SIGNATURE, f"refused {what}: the capability's MAC does not verify with this "
                            "graph's key (forged or altered)")
        try:
            goal_args = canonical_args(args)
        except (ValueError, RecursionError) as exc:
            raise Untrusted(Reason.MALFORMED, f"refused {what}: the goal's arguments: {exc}") from None
        goal = {"plan_id": plan_id, "step_index": step_index, "skill": skill, "args": goal_args, "domain": domain,
                "goal_id": goal_id if cap.goal_id else ""}
        differ = [name for name in _BOUND if getattr(cap, name) != goal[name]]
        if differ:
            raise Untrusted(Reason.CAPABILITY_MISMATCH, f"refused {what}: the capability was minted for another "
                            f"{', '.join(differ)}")
        now = millis(self.clock())
        with self._lock:
            while self._expiries and self._expiries[0][0] < now:
                _, gone = heapq.heappop(self._expiries)
                self._spent.pop(gone, None)
            if now > cap.expires_ms:
                raise Untrusted(Reason.EXPIRED, f"refused {what}: the capability expired "
                                f"{(now - cap.expires_ms) / 1000:.3f} s ago")
            if cap.nonce in self._spent:
                raise Untrusted(Reason.REPLAYED, f"refused {what}: this capability was already used; each admits "
                                "one goal")
            if len(self._spent) >= self.max_spent:
                raise Untrusted(Reason.TOO_MANY_CAPABILITIES, f"refused {what}: {len(self._spent)} capabilities are "
                                "spent and unexpired; none is forgotten early, so this one waits for them to expire")
            self._spent[cap.nonce] = cap.expires_ms
            heapq.heappush(self._expiries, (cap.expires_ms, cap.nonce))
        return cap
