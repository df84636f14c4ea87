"""Plan admission: a command becomes a plan, and a plan becomes a run only once it holds against the world.

The planner runs outside the lock (it may take seconds); what it returns is then checked, under the
lock, against the generation of the command it answers, the robot's domain and the world state the
backend reports now. Only a plan that passes all three is accepted.
"""

from __future__ import annotations

import time

from medrobot_llm.backends.base import BackendNotReady
from medrobot_llm.core.plan import Plan, PlanStatus
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.validator import WorldState, validate_plan
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.executor import Run
from medrobot_llm.safety.machine import LATCHED, SupervisorState, Trigger
from medrobot_llm.safety.replies import Reply
from medrobot_llm.safety.supervisor_core import SupervisorCore

__all__ = ["AdmissionMixin"]

S = SupervisorState
T = Trigger


class AdmissionMixin(SupervisorCore):
    """Planning a text command and admitting a plan (``_call_planner``, ``_accept``)."""

    def _busy_message(self) -> str:
        st = self.state
        if st in LATCHED:
            return f"{st.value} is latched ({self.reason}); say 'reset' first"
        if st is S.PLANNING:
            return "still planning the last command; say 'cancel' to drop it"
        return f"a plan is running ({self.describe()}); say 'cancel' or 'stop' first"

    def _call_planner(self, text: str) -> Plan:
        assert self.planner is not None
        world: WorldState | None
        try:
            world = self.backend.world_state()
        except Exception:  # noqa: BLE001 - plan without a state; validation below needs the state anyway
            world = None
        t0 = time.perf_counter()
        try:
            plan = self.planner.plan(self.domain, text, world)
            if not isinstance(plan, Plan):
                raise TypeError(f"the planner returned {type(plan).__name__}, not a Plan")
        except Exception as exc:  # noqa: BLE001 - a broken planner refuses; it must not move anything
            plan = Plan.refused(self.domain, f"the planner failed ({type(exc).__name__}: {exc})",
                                Reason.PLANNER_ERROR)
        self._log(ev.PlanEvent(text=text, plan=plan.to_json(), planner=getattr(self.planner, "name", None),
                               latency_ms=round((time.perf_counter() - t0) * 1000, 3)))
        return plan

    def _accept(self, plan: Plan, gen: int) -> Reply:
        with self._lock:
            if self.state is not S.PLANNING or gen != self._gen:
                self._log(ev.PlanDiscardedEvent(plan=plan.to_json(), state=self.state.value))
                return Reply(False, self.state, f"the plan came too late: the supervisor is {self.state.value} now",
                             plan)
            if plan.status is not PlanStatus.OK:
                why = plan.reason or plan.question or plan.status.value
                self._fire(T.REJECT, reason=f"{plan.status.value}: {why}")
                return Reply(False, self.state, why, plan)
            if plan.domain != self.domain:
                why = f"the plan is for {plan.domain}, this robot is {self.domain}"
                self._log(ev.ValidationEvent(ok=False, reason=why, plan=plan.to_json()))
                self._fire(T.REJECT, reason=why)
                return Reply(False, self.state, why, plan)
            try:
                world = self.backend.world_state()
            except BackendNotReady as exc:
                why = f"the robot is not ready yet ({exc}); nothing moved: say it again once it reports"
                self._log(ev.ValidationEvent(ok=False, reason=why, plan=plan.to_json()))
                self._fire(T.REJECT, reason=why)
                return Reply(False, self.state, why, plan)
            except Exception as exc:  # noqa: BLE001
                self._fire(T.FAULT, reason=f"the backend could not report its world state "
                           f"({type(exc).__name__}: {exc})")
                return Reply(False, self.state, self.reason, plan)
            checked = validate_plan(plan, world)
            ok = checked.status is PlanStatus.OK
            self._log(ev.ValidationEvent(ok=ok, plan=checked.to_json(), world=world.to_json(),
                                         reason=None if ok else (checked.reason or checked.question)))
            if not ok:
                why = checked.reason or checked.question or "invalid plan"
                self._fire(T.REJECT, reason=f"validation: {why}")
                return Reply(False, self.state, why, checked)
            confirm = set(checked.needs_confirmation)
            confirm |= {i for i, s in enumerate(checked.steps) if self._asks(s)}
            run = Run(next(self._run_ids), checked, frozenset(confirm), validated=True)
            self._fire(T.ACCEPT, run=run, reason=f"plan validated: {len(checked.steps)} step(s)")
            return Reply(self.state in (S.EXECUTING, S.AWAITING_CONFIRMATION), self.state,
                         "running: " + ", ".join(s.describe() for s in checked.steps), checked,
                         question=self._pending)
