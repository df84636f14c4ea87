"""The supervisor's state machine as data: the states, the triggers, the guards and one table of rows.

The machine, the docs diagram and the tests all read ``TRANSITIONS``, so the rules that keep people safe
are stated once. Rows name their guards and effects by enum member, never by attribute name: a guard is a
function of this module over a ``MachineContext`` (what it may read of the supervisor), an effect is
supplied by whoever builds the machine, and ``build_machine`` refuses to build with one missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Protocol

from transitions import EventData
from transitions.extensions.locking import LockedMachine

from medrobot_llm.backends.base import SkillBackend
from medrobot_llm.core.plan import PlanStatus
from medrobot_llm.safety.executor import Executor, Run
from medrobot_llm.safety.replies import Question

__all__ = [
    "GUARDS",
    "GUARD_HELP",
    "LATCHED",
    "ROBOT_HALT",
    "ROBOT_HALT_EXPECTED",
    "ROBOT_HALT_HELP",
    "RUNNING",
    "STATE_HELP",
    "TRANSITIONS",
    "TRIGGER_HELP",
    "WITH_PLAN",
    "Effect",
    "Guard",
    "InvalidTransition",
    "MachineContext",
    "Row",
    "StateChange",
    "SupervisorError",
    "SupervisorState",
    "Trigger",
    "allowed_sources",
    "bind_guards",
    "build_machine",
    "mermaid_diagram",
    "supervisor_doc",
]


class SupervisorState(str, Enum):
    IDLE = "IDLE"
    PLANNING = "PLANNING"
    AWAITING_CONFIRMATION = "AWAITING_CONFIRMATION"
    EXECUTING = "EXECUTING"
    PAUSED = "PAUSED"
    ESTOP = "ESTOP"
    FAULT = "FAULT"
    RECOVERING = "RECOVERING"


class Trigger(StrEnum):
    """What can happen to the supervisor; a ``StrEnum`` so logs and messages show the bare name."""

    PLAN = "plan"
    ACCEPT = "accept"
    REJECT = "reject"
    ASK = "ask"
    CONFIRM = "confirm"
    DENY = "deny"
    EXPIRE = "expire"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    FINISH = "finish"
    ABORT = "abort"
    ESTOP = "estop"
    FAULT = "fault"
    RESET = "reset"
    RECOVERED = "recovered"


class Guard(Enum):
    """A condition a row needs; the value is the label the diagram shows."""

    PLAN_VALIDATED = "validated"
    STEP_NEEDS_CONFIRMATION = "step to confirm"
    ANSWERS_QUESTION = "same step"
    QUESTION_FRESH = "not expired"
    QUESTION_EXPIRED = "timed out"
    PLAN_COMPLETE = "all steps done"
    NO_STEP_IN_FLIGHT = "no step running"
    BACKEND_READY = "backend un-halted"


class Effect(Enum):
    """What happens once a row changed the state; the supervisor supplies one callback per member."""

    PLAN = "plan"
    ACCEPT = "accept"
    ASK = "ask"
    CONFIRM = "confirm"
    PAUSE = "pause"
    DROP_PLAN = "drop_plan"
    ESTOP = "estop"
    FAULT = "fault"
    RESET = "reset"


S = SupervisorState
_ALL = tuple(SupervisorState)
#: states in which a plan is held (and a ``cancel`` drops it)
WITH_PLAN = (S.EXECUTING, S.AWAITING_CONFIRMATION, S.PAUSED)
#: states in which nothing may move until an operator resets
LATCHED = frozenset({S.ESTOP, S.FAULT})
#: states in which a plan is under way, so a new command is refused as busy
RUNNING = frozenset({S.PLANNING, *WITH_PLAN})
#: states in which the robot is halted on the supervisor's word (ESTOP, FAULT) or still reporting the halt it is being
#: released from (RECOVERING): a halt the robot reports there is no news. In every other state it is a stop nobody
#: told the supervisor of, and latches ESTOP (``ROBOT_HALT_HELP``)
ROBOT_HALT_EXPECTED = frozenset({*LATCHED, S.RECOVERING})
#: how the reason of such an ESTOP starts (what the robot said of its halt follows, when it says)
ROBOT_HALT = "the robot reported a halt the supervisor did not order"


@dataclass(frozen=True)
class Row:
    """One rule: ``trigger`` moves ``sources`` to ``dest`` if every guard holds, then runs ``effect``."""

    trigger: Trigger
    sources: tuple[SupervisorState, ...]
    dest: SupervisorState
    help: str
    guards: tuple[Guard, ...] = ()
    effect: Effect | None = None


#: The supervisor's rules: one row per trigger.
TRANSITIONS: tuple[Row, ...] = (
    Row(Trigger.PLAN, (S.IDLE,), S.PLANNING, "a text command or a ready plan arrives", effect=Effect.PLAN),
    Row(Trigger.ACCEPT, (S.PLANNING,), S.EXECUTING, "the plan passed validation against the backend's world state",
        (Guard.PLAN_VALIDATED,), Effect.ACCEPT),
    Row(Trigger.REJECT, (S.PLANNING,), S.IDLE,
        "refused, a clarification question, invalid, a control intent, or a robot that has not reported yet"),
    Row(Trigger.ASK, (S.EXECUTING,), S.AWAITING_CONFIRMATION, "the next step needs its own confirmation",
        (Guard.STEP_NEEDS_CONFIRMATION,), Effect.ASK),
    Row(Trigger.CONFIRM, (S.AWAITING_CONFIRMATION,), S.EXECUTING, "the operator confirms the step that was asked about",
        (Guard.ANSWERS_QUESTION, Guard.QUESTION_FRESH), Effect.CONFIRM),
    Row(Trigger.DENY, (S.AWAITING_CONFIRMATION,), S.IDLE, "the operator says no: the plan is dropped",
        effect=Effect.DROP_PLAN),
    Row(Trigger.EXPIRE, (S.AWAITING_CONFIRMATION,), S.IDLE,
        "no answer within the confirmation timeout: the plan is dropped", (Guard.QUESTION_EXPIRED,), Effect.DROP_PLAN),
    Row(Trigger.PAUSE, (S.EXECUTING, S.AWAITING_CONFIRMATION), S.PAUSED, "hold still now; the plan position is kept",
        effect=Effect.PAUSE),
    Row(Trigger.RESUME, (S.PAUSED,), S.EXECUTING,
        "go on from the kept position (asking again before a hazardous step)"),
    Row(Trigger.CANCEL, (S.PLANNING, *WITH_PLAN), S.IDLE, "drop the plan and stop motion (not latched)",
        effect=Effect.DROP_PLAN),
    Row(Trigger.FINISH, (S.EXECUTING,), S.IDLE, "the last step succeeded", (Guard.PLAN_COMPLETE,), Effect.DROP_PLAN),
    Row(Trigger.ABORT, (S.EXECUTING,), S.IDLE, "a step's preconditions no longer hold against the robot's world state",
        effect=Effect.DROP_PLAN),
    Row(Trigger.ESTOP, _ALL, S.ESTOP, "`stop` (from anyone), or a halt the robot reports that the supervisor did not "
        "order: halt now, latched", effect=Effect.ESTOP),
    Row(Trigger.FAULT, _ALL, S.FAULT,
        "step failure, limit violation, timeout, lost heartbeat, or an exception in a callback", effect=Effect.FAULT),
    Row(Trigger.RESET, (S.ESTOP, S.FAULT), S.RECOVERING, "operator reset after an e-stop or fault",
        (Guard.NO_STEP_IN_FLIGHT,), Effect.RESET),
    Row(Trigger.RECOVERED, (S.RECOVERING,), S.IDLE, "the backend is un-halted and reports its world state",
        (Guard.BACKEND_READY,)),
)

STATE_HELP: Mapping[SupervisorState, str] = {
    S.IDLE: "no plan; ready for a command",
    S.PLANNING: "a command is being turned into a plan and validated against the current world state",
    S.AWAITING_CONFIRMATION: "the next step is contact, radiation or a class in confirm_hazards; nothing moves "
                             "until that step is confirmed",
    S.EXECUTING: "steps are released to the backend one by one",
    S.PAUSED: "motion stopped, plan position kept; `resume` re-sends the interrupted step",
    S.ESTOP: "e-stop latched: the backend is halted until an operator resets",
    S.FAULT: "something failed (a step, the backend, the heartbeat, a callback): halted until reset",
    S.RECOVERING: "operator reset: the halt is cleared and the backend checked before going back to IDLE",
}

#: what a halt the robot reports, and the supervisor did not order, does in each state (the watchdog looks every pass)
ROBOT_HALT_HELP: Mapping[SupervisorState, str] = {
    S.IDLE: "latches ESTOP",
    S.PLANNING: "latches ESTOP; the plan is discarded when it comes",
    S.AWAITING_CONFIRMATION: "latches ESTOP; the plan is dropped",
    S.EXECUTING: "between steps: latches ESTOP, the plan is dropped; while a step runs, that step's end says how it "
                 "ended (halted: ESTOP; a limit: FAULT)",
    S.PAUSED: "latches ESTOP; the plan is dropped",
    S.ESTOP: "nothing more: the robot is halted on the supervisor's word",
    S.FAULT: "nothing more: the robot is halted on the supervisor's word",
    S.RECOVERING: "nothing: the robot is being released and may report its halt until it is; back in IDLE, a halt "
                  "still reported once `heartbeat_timeout_s` has passed latches ESTOP",
}

TRIGGER_HELP: Mapping[Trigger, str] = {row.trigger: row.help for row in TRANSITIONS}
GUARD_HELP: Mapping[Guard, str] = {g: g.value for g in Guard}


def allowed_sources(trigger: str) -> list[SupervisorState]:
    return [s for row in TRANSITIONS if row.trigger == trigger for s in row.sources]


class SupervisorError(RuntimeError):
    """Base of the supervisor's own errors."""


class InvalidTransition(SupervisorError):
    """A command the current state does not allow; nothing changed."""

    def __init__(self, trigger: Trigger | str, state: SupervisorState, detail: str = "") -> None:
        name = trigger.value if isinstance(trigger, Trigger) else trigger
        self.trigger = name
        self.state = state
        sources = allowed_sources(name)
        if sources:
            allowed = ", ".join(s.value for s in sources)
            msg = f"cannot {name} while {state.value} (only from {allowed})"
        else:
            msg = f"unknown command {name!r}"
        super().__init__(msg + (f": {detail}" if detail else ""))


@dataclass(frozen=True)
class StateChange:
    """One entry of the supervisor's history, as its ``state`` record tells it."""

    source: SupervisorState
    dest: SupervisorState
    trigger: Trigger
    reason: str
    at: float


# ==================================================================== guards
class MachineContext(Protocol):
    """What the guards may read of the supervisor, and how they say why they refused."""

    clock: Callable[[], float]
    confirm_timeout_s: float
    backend: SkillBackend

    @property
    def pending(self) -> Question | None: ...

    @property
    def current_run(self) -> Run | None: ...

    @property
    def executor(self) -> Executor: ...

    def refuse(self, why: str, *, expired: bool = False) -> None:
        """Keep the sentence the command's reply gives when this guard said no."""
        ...


def _plan_validated(ctx: MachineContext, event: EventData) -> bool:
    run = event.kwargs.get("run")
    return isinstance(run, Run) and run.validated and run.plan.status is PlanStatus.OK


def _step_needs_confirmation(ctx: MachineContext, event: EventData) -> bool:
    q, run = event.kwargs.get("question"), ctx.current_run
    return isinstance(q, Question) and run is not None and q.run == run.id and q.step_index == run.index \
        and q.step_index in run.confirm


def _answers_question(ctx: MachineContext, event: EventData) -> bool:
    q, given = ctx.pending, event.kwargs.get("step_index")
    if q is None:
        ctx.refuse("there is no question to answer")
        return False
    if given is not None and given != q.step_index:
        ctx.refuse(f"that confirmation is for step {given + 1}, but the question is about step "
                   f"{q.step_index + 1} ({q.skill}); nothing confirmed")
        return False
    return True


def _question_fresh(ctx: MachineContext, event: EventData) -> bool:
    q = ctx.pending
    if q is not None and ctx.clock() > q.expires_at:
        ctx.refuse(f"the question about step {q.step_index + 1} expired after {ctx.confirm_timeout_s:g} s",
                   expired=True)
        return False
    return True


def _question_expired(ctx: MachineContext, event: EventData) -> bool:
    q = ctx.pending
    return q is not None and ctx.clock() > q.expires_at


def _plan_complete(ctx: MachineContext, event: EventData) -> bool:
    run = ctx.current_run
    return run is not None and run.index >= len(run.steps)


def _no_step_in_flight(ctx: MachineContext, event: EventData) -> bool:
    if ctx.executor.idle:
        return True
    ctx.refuse("the last step has not ended (the backend has not returned); cannot reset yet")
    return False


def _backend_ready(ctx: MachineContext, event: EventData) -> bool:
    if ctx.backend.halted:
        ctx.refuse("the backend is still halted")
        return False
    ctx.backend.world_state()
    return True


GuardCheck = Callable[[MachineContext, EventData], bool]

GUARDS: Mapping[Guard, GuardCheck] = {
    Guard.PLAN_VALIDATED: _plan_validated,
    Guard.STEP_NEEDS_CONFIRMATION: _step_needs_confirmation,
    Guard.ANSWERS_QUESTION: _answers_question,
    Guard.QUESTION_FRESH: _question_fresh,
    Guard.QUESTION_EXPIRED: _question_expired,
    Guard.PLAN_COMPLETE: _plan_complete,
    Guard.NO_STEP_IN_FLIGHT: _no_step_in_flight,
    Guard.BACKEND_READY: _backend_ready,
}

Condition = Callable[[EventData], bool]
EffectCallback = Callable[[EventData], None]


def bind_guards(ctx: MachineContext) -> Callable[[Guard], Condition]:
    """The guards of ``GUARDS`` reading ``ctx``, as the machine calls them."""

    def bind(guard: Guard) -> Condition:
        check = GUARDS[guard]
        return lambda event: check(ctx, event)

    return bind


def build_machine(model: Any, *, guards: Callable[[Guard], Condition],
                  effects: Mapping[Effect, EffectCallback],
                  lock: Any | None = None,
                  on_exception: Callable[[EventData], None] | None = None,
                  on_enter: Callable[[EventData], None] | None = None,
                  initial: SupervisorState = S.IDLE) -> LockedMachine:
    """The machine for ``TRANSITIONS`` driving ``model``; every effect a row names must be in ``effects``."""
    missing = {row.effect for row in TRANSITIONS if row.effect is not None} - set(effects)
    if missing:
        raise ValueError(f"no callback for the effects {sorted(e.value for e in missing)}")
    rows: list[dict[str, Any]] = []
    for row in TRANSITIONS:
        spec: dict[str, Any] = {"trigger": row.trigger.value, "source": list(row.sources), "dest": row.dest}
        if row.guards:
            spec["conditions"] = [guards(g) for g in row.guards]
        if row.effect is not None:
            spec["after"] = effects[row.effect]
        rows.append(spec)
    machine = LockedMachine(
        model=model,
        states=list(_ALL),
        initial=initial,
        transitions=rows,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        send_event=True,
        on_exception=on_exception,
        machine_context=[lock] if lock is not None else None,
    )
    if on_enter is not None:
        for s in _ALL:
            machine.get_state(s.name).add_callback("enter", on_enter)
    return machine


# ==================================================================== the diagram, from the table
def _guard_labels(row: Row) -> list[str]:
    return [GUARD_HELP[g] for g in row.guards]


def mermaid_diagram() -> str:
    """A Mermaid state diagram of ``TRANSITIONS``; transitions sharing source and target share an arrow."""
    edges: dict[tuple[str, str], list[str]] = {}
    for row in TRANSITIONS:
        guards = _guard_labels(row)
        label = row.trigger.value + (f" [{', '.join(guards)}]" if guards else "")
        for source in row.sources:
            edges.setdefault((source.value, row.dest.value), []).append(label)
    lines = ["stateDiagram-v2", f"    [*] --> {S.IDLE.value}"]
    for (src, dst), labels in edges.items():
        lines.append(f"    {src} --> {dst}: {' / '.join(labels)}")
    for s in sorted(LATCHED, key=lambda x: x.value):
        lines.append(f"    class {s.value} latched")
    lines.append("    classDef latched fill:#fdd,stroke:#c00")
    return "\n".join(lines) + "\n"


def supervisor_doc() -> str:
    """The whole of ``docs/supervisor.md``: generated, so it cannot drift from the table."""
    out = [
        "# Safety supervisor state machine",
        "",
        f"<!-- Generated by `medrobot diagram` from TRANSITIONS in {__name__.replace('.', '/')}.py. Do not edit. -->",
        "",
        ("Every command, confirmation, e-stop and step result goes through this machine. A trigger not "
         "listed for the current state raises `InvalidTransition` and changes nothing; an exception in any "
         "callback ends in FAULT with the backend halted. ESTOP and FAULT are latched until `reset`."),
        "",
        "```mermaid",
        mermaid_diagram().rstrip("\n"),
        "```",
        "",
        "## States",
        "",
        "| state | meaning |",
        "| --- | --- |",
    ]
    out += [f"| `{s.value}` | {STATE_HELP[s]} |" for s in _ALL]
    out += ["", "## Transitions", "", "| trigger | from | to | guards | when |", "| --- | --- | --- | --- | --- |"]
    for row in TRANSITIONS:
        sources = "any" if len(row.sources) == len(_ALL) else ", ".join(f"`{s.value}`" for s in row.sources)
        guards = ", ".join(_guard_labels(row)) or "—"
        out.append(f"| `{row.trigger.value}` | {sources} | `{row.dest.value}` | {guards} | {row.help} |")
    out += ["", "## A halt the robot reports", "",
            ("Anyone may press the e-stop, and the robot may hear a press the supervisor did not (sent before "
             "discovery matched it, or lost). So a halt the robot reports that the supervisor did not order (no "
             "stop, no fault of its own since the last reset) is an e-stop: the watchdog fires `estop` with the "
             f"reason `{ROBOT_HALT}`, and only a `reset` releases it."),
            "", "| state | a halt the robot reports |", "| --- | --- |"]
    out += [f"| `{s.value}` | {ROBOT_HALT_HELP[s]} |" for s in _ALL]
    out.append("")
    return "\n".join(out)
