"""Random interleavings of commands, confirmations, e-stops, resets, time and backend failures.

The robot runs in lockstep (every control step needs a permit) and each rule waits until the executor
is parked again, so an interleaving hypothesis finds is replayed exactly when it shrinks it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from medrobot_llm.backends.base import FailureKind
from medrobot_llm.backends.memory import Outcome
from medrobot_llm.core.plan import Plan
from medrobot_llm.safety.supervisor import LATCHED, InvalidTransition, SupervisorState

from _helpers_supervisor import (
    US_SCAN,
    XRAY_MOTION,
    XRAY_SHOT_FIRST,
    XRAY_TWO_SHOTS,
    Rig,
    check_confirmations,
    check_log,
    make_rig,
    ok,
    table_dest,
)

S = SupervisorState

PLANS: dict[str, list[Plan]] = {
    "xray": [XRAY_TWO_SHOTS, XRAY_MOTION, XRAY_SHOT_FIRST, ok("xray", "park")],
    "ultrasound": [
        US_SCAN,
        ok("ultrasound", ("lift_probe", {}), ("home", {})),
        ok("ultrasound", ("move_to_window", {"organ": "kidney", "side": "left"}), ("make_contact", {}),
           ("set_force", {"force_n": 12}), ("fan", {}), ("lift_probe", {})),
        ok("ultrasound", ("set_force", {"force_n": 5}), ("capture", {"label": "again"})),
    ],
}
OUTCOMES = [
    Outcome.ok(),
    Outcome.ok(steps=1),
    Outcome.limit(FailureKind.FORCE_LIMIT, at=2),
    Outcome.limit(FailureKind.WORKSPACE_LIMIT, at=1),
    Outcome.limit(FailureKind.COLLISION, at=2),
    Outcome.error(at=1),
    Outcome.raises(),
    Outcome.hang(),
    Outcome.stall(at=1),
]
WORDS = ["plan 0", "plan 1", "stop", "pause", "resume", "cancel", "confirm", "deny", "status", "dance"]


class SupervisorMachine(RuleBasedStateMachine):
    rig: Rig

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self.checked_motion = 0
        self.checked_sent = 0

    @initialize(domain=st.sampled_from(sorted(PLANS)))
    def start(self, domain: str) -> None:
        answers = {f"plan {i}": p for i, p in enumerate(PLANS[domain])}
        self.rig = make_rig(domain, answers=answers, steps_per_skill=2, confirm_timeout_s=30, step_timeout_s=20,
                            heartbeat_timeout_s=5)
        self.domain = domain

    def teardown(self) -> None:
        if hasattr(self, "rig"):
            self.rig.close()

    # ------------------------------------------------------------------------------------------ helpers
    def _settled(self) -> None:
        self.rig.settle()

    def _expect(self, trigger: str, action: Any) -> Any:
        """Call ``action``; it may raise InvalidTransition only if the table forbids ``trigger`` here."""
        before = self.rig.sup.state
        try:
            out = action()
        except InvalidTransition:
            assert table_dest(before, trigger) is None, f"{trigger} refused in {before}, the table allows it"
            assert self.rig.sup.state is before
            out = None
        self._settled()
        return out

    # ------------------------------------------------------------------------------------------ rules
    @rule(i=st.integers(0, 3))
    def submit(self, i: int) -> None:
        self._expect("plan", lambda: self.rig.sup.submit_plan(PLANS[self.domain][i]))

    @rule(word=st.sampled_from(WORDS))
    def say(self, word: str) -> None:
        self.rig.sup.command(word)
        if word == "stop":
            self._stopped()
        self._settled()

    @rule(which=st.sampled_from(["plain", "asked", "other"]))
    def confirm(self, which: str) -> None:
        q = self.rig.sup.pending
        index = None if which == "plain" or q is None else q.step_index + (which == "other")
        reply = self._expect("confirm", lambda: self.rig.sup.confirm(index))
        if reply is not None and which == "other":
            assert not reply.accepted

    @rule(intent=st.sampled_from(["pause", "resume", "cancel", "deny"]))
    def control(self, intent: str) -> None:
        self._expect(intent, getattr(self.rig.sup, intent))

    @rule()
    def stop(self) -> None:
        reply = self.rig.sup.stop("random stop")
        assert reply.accepted and self.rig.sup.state is S.ESTOP and self.rig.backend.halted
        self._stopped()
        self._settled()

    @rule()
    def reset(self) -> None:
        reply = self._expect("reset", self.rig.sup.reset)
        if reply is not None and reply.accepted:
            self.stopped_at = None
            assert self.rig.sup.state is S.IDLE and not self.rig.backend.halted

    @rule(k=st.integers(1, 4))
    def robot_runs(self, k: int) -> None:
        self.rig.run_steps(k)

    @rule(outcome=st.sampled_from(OUTCOMES))
    def script_next_step(self, outcome: Outcome) -> None:
        self.rig.backend.script(outcome)

    @rule(dt=st.sampled_from([0.5, 6.0, 31.0]))
    def time_passes(self, dt: float) -> None:
        self.rig.clock.advance(dt)
        self.rig.sup.tick()
        self._settled()

    @precondition(lambda self: self.domain == "ultrasound")
    @rule(probe=st.sampled_from(["away", "hovering", "contact"]))
    def world_drifts(self, probe: str) -> None:
        self.rig.backend.set_fact("probe", probe)

    def _stopped(self) -> None:
        if self.stopped_at is None:
            self.stopped_at = (len(self.rig.backend.motion), len(self.rig.backend.sent))

    # ------------------------------------------------------------------------------------------ invariants
    @invariant()
    def nothing_moves_unless_executing(self) -> None:
        b = self.rig.backend
        for m in b.motion[self.checked_motion:]:
            assert m.state is S.EXECUTING, f"{m.skill} moved while {m.state}"
        for s in b.sent[self.checked_sent:]:
            assert s.state is S.EXECUTING, f"{s.step.skill} sent while {s.state}"
        self.checked_motion, self.checked_sent = len(b.motion), len(b.sent)

    @invariant()
    def after_stop_nothing_moves_until_reset(self) -> None:
        if self.stopped_at is not None:
            assert self.rig.sup.state is S.ESTOP and self.rig.backend.halted
            assert (len(self.rig.backend.motion), len(self.rig.backend.sent)) == self.stopped_at

    @invariant()
    def halted_exactly_when_latched(self) -> None:
        assert self.rig.backend.halted == (self.rig.sup.state in LATCHED)

    @invariant()
    def a_question_exactly_when_awaiting(self) -> None:
        sup = self.rig.sup
        assert (sup.pending is not None) == (sup.state is S.AWAITING_CONFIRMATION)
        if sup.state in (S.IDLE, S.ESTOP, S.FAULT):
            assert sup.plan is None

    @invariant()
    def the_log_is_gap_free_and_matches_the_history(self) -> None:
        check_log(self.rig.audit.records, self.rig.sup)
        check_confirmations(self.rig.audit.records)


SupervisorMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSupervisorInterleavings = SupervisorMachine.TestCase
