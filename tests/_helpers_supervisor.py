"""Shared pieces of the supervisor tests: a scripted planner, ready-made plans, a lockstep rig and log checks.

A rig is closed by the test session's ``_close_supervisor_rigs`` fixture (conftest) after the test that made
it, whatever the test's outcome; test bodies need not close rigs themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from medrobot_llm.safety.audit import AuditLog
from medrobot_llm.backends.memory import ManualClock, MemoryBackend
from medrobot_llm.core.plan import Control, Plan, PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.supervisor import TRANSITIONS, Supervisor, SupervisorState
from medrobot_llm.core.validator import WorldState

S = SupervisorState


def ok(domain: str, *steps: tuple[str, dict[str, Any]] | str) -> Plan:
    out = [Step(skill=s, args={}) if isinstance(s, str) else Step(skill=s[0], args=s[1]) for s in steps]
    return Plan(status=PlanStatus.OK, domain=domain, steps=out)


#: plans whose hazards and preconditions cover the interesting cases in each domain
XRAY_TWO_SHOTS = ok("xray", ("move_to_view", {"anatomy": "pelvis"}), "take_shot",
                    ("adjust", {"axis": "tilt", "amount": 5}), "take_shot")
XRAY_MOTION = ok("xray", ("move_to_view", {"anatomy": "knee", "side": "left"}),
                 ("adjust", {"axis": "orbit", "amount": 10}), "park")
XRAY_SHOT_FIRST = ok("xray", "take_shot")
US_SCAN = ok("ultrasound", ("move_to_window", {"organ": "liver"}), ("make_contact", {"force_n": 8}),
             ("sweep", {"direction": "caudal"}), ("capture", {"label": "liver"}), ("lift_probe", {}))
SURGERY_LIFT = ok("surgery", ("locate", {"object": "needle"}), ("grasp", {"arm": "psm1", "object": "needle"}),
                  ("lift", {"arm": "psm1", "height_mm": 10}))


class ScriptedPlanner:
    """Answers known texts with given plans; control words become control plans; anything else is refused.

    ``block`` makes the next call wait on an event, so a test can hold the supervisor in PLANNING."""

    name = "scripted"

    def __init__(self, answers: Mapping[str, Plan] | None = None) -> None:
        self.answers = dict(answers or {})
        self.calls: list[str] = []
        self.block: threading.Event | None = None
        self.entered = threading.Event()

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        self.calls.append(text)
        gate, self.block = self.block, None
        if gate is not None:
            self.entered.set()
            gate.wait(10)
        if text in self.answers:
            return self.answers[text]
        try:
            return Plan.of_control(domain, Control(text))
        except ValueError:
            return Plan.refused(domain, f"not understood: {text!r}", Reason.NOT_UNDERSTOOD)


@dataclass
class Rig:
    sup: Supervisor
    backend: MemoryBackend
    clock: ManualClock
    audit: AuditLog
    planner: ScriptedPlanner

    def settle(self, timeout: float = 5.0) -> None:
        settle(self.sup, self.backend, timeout)

    def run_steps(self, n: int = 1) -> None:
        """Manual mode: let ``n`` control steps happen, then wait until everything is blocked again."""
        self.backend.permit(n)
        self.settle()

    def finish_step(self) -> None:
        """Manual mode: grant control steps until the step in flight ends."""
        sent = len(self.backend.results)
        for _ in range(1000):
            if len(self.backend.results) > sent or not self.backend.executing:
                break
            self.run_steps(1)
        self.settle()

    def drive(self, *, confirm: bool = True, limit: int = 500) -> None:
        """Manual mode: run the plan to its end, confirming whatever is asked when ``confirm``."""
        for _ in range(limit):
            self.settle()
            st = self.sup.state
            if st is S.AWAITING_CONFIRMATION and confirm:
                self.sup.confirm()
            elif st is S.EXECUTING:
                self.backend.permit(1)
            else:
                return
        raise AssertionError(f"the plan did not end (state {self.sup.state})")

    def sent(self) -> list[tuple[int, str]]:
        return [(r["step"], r["skill"]) for r in self.audit.records if r["kind"] == "step_sent"]

    def close(self) -> None:
        self.backend.unstall()
        self.sup.close(timeout=2.0)


#: rigs made since the last ``close_rigs``; conftest closes them after every test, so a body never has to
_OPEN: list[Rig] = []


def close_rigs() -> None:
    """Close every rig made since the last call, newest first."""
    while _OPEN:
        _OPEN.pop().close()


def make_rig(domain: str = "xray", *, manual: bool = True, facts: Mapping[str, Any] | None = None,
             audit: AuditLog | None = None, steps_per_skill: int = 3, answers: Mapping[str, Plan] | None = None,
             **sup_kwargs: Any) -> Rig:
    clock = ManualClock(1000.0)
    backend = MemoryBackend(domain, facts, manual=manual, clock=clock, steps_per_skill=steps_per_skill)
    audit = audit if audit is not None else AuditLog(None)
    planner = ScriptedPlanner(answers)
    sup_kwargs.setdefault("watchdog_period_s", None)
    sup_kwargs.setdefault("reset_wait_s", 2.0)
    sup = Supervisor(backend, planner, audit=audit, clock=clock, **sup_kwargs)
    backend.observer = lambda: sup.state
    rig = Rig(sup, backend, clock, audit, planner)
    _OPEN.append(rig)
    return rig


def until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Bounded wait for something another thread will do; never a timed assertion."""
    deadline = time.monotonic() + timeout
    done = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        done.wait(0.0005)
    return True


def settle(sup: Supervisor, backend: MemoryBackend, timeout: float = 5.0) -> None:
    """Wait until the executor cannot move on without the test: parked in the supervisor or the backend."""
    assert until(lambda: sup.worker_parked or backend.parked is not None, timeout), \
        f"the executor did not settle (state {sup.state}, backend parked {backend.parked})"


def table_dest(state: SupervisorState, trigger: str | None) -> SupervisorState | None:
    """Where the table sends ``trigger`` from ``state``; None if it does not allow it."""
    for row in TRANSITIONS:
        if row.trigger == trigger and state in row.sources:
            return row.dest
    return None


# ---------------------------------------------------------------------------------------------- log checks
def check_log(records: list[dict[str, Any]], sup: Supervisor) -> None:
    """The audit log is gap-free and its state records are exactly the supervisor's history, chained."""
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "sequence numbers have a gap or repeat"
    states = [r for r in records if r["kind"] == "state"]
    assert [(r["from"], r["to"], r["trigger"]) for r in states] == \
        [(c.source.value, c.dest.value, c.trigger) for c in sup.history]
    prev = S.IDLE.value
    for r in states:
        assert r["from"] == prev, f"state record {r['seq']} starts from {r['from']}, previous ended in {prev}"
        prev = r["to"]
    assert prev == sup.state.value


def check_confirmations(records: list[dict[str, Any]]) -> None:
    """Every contact/radiation step sent had its own accepted confirmation since it was last sent."""
    confirmed: set[tuple[int, int]] = set()
    for r in records:
        if r["kind"] == "confirmation" and r["accepted"]:
            confirmed.add((r["run"], r["step"]))
        if r["kind"] == "step_sent":
            key = (r["run"], r["step"])
            if r["hazard"] in ("contact", "radiation"):
                assert r["confirmed"] and key in confirmed, f"step {key} ({r['skill']}) sent without its confirmation"
                confirmed.discard(key)
            assert r["state"] == S.EXECUTING.value
