"""Every (state, trigger) pair: allowed ones go where the table says, all others raise. No silent transitions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from transitions import MachineError

from medrobot_llm import cli
from medrobot_llm.backends.memory import Outcome
from medrobot_llm.safety.machine import (
    GUARD_HELP,
    GUARDS,
    ROBOT_HALT,
    ROBOT_HALT_EXPECTED,
    ROBOT_HALT_HELP,
    STATE_HELP,
    TRANSITIONS,
    TRIGGER_HELP,
    Effect,
    Guard,
    Row,
    Trigger,
    build_machine,
    mermaid_diagram,
)
from medrobot_llm.safety.supervisor import InvalidTransition, Reply, Supervisor, SupervisorState
from medrobot_llm.safety.supervisor_core import MachineModel

from _helpers_supervisor import XRAY_MOTION, XRAY_SHOT_FIRST, Rig, check_log, make_rig, table_dest

S = SupervisorState
STATES = list(SupervisorState)
#: every trigger there is, not only those the table uses: a trigger added without a row fails here
TRIGGERS = list(Trigger)


def _bare_machine(passing: bool, initial: SupervisorState = S.IDLE) -> tuple[MachineModel, Any]:
    """The bare table: every guard answers ``passing`` and every effect does nothing."""
    model = MachineModel()
    machine = build_machine(model, guards=lambda guard: (lambda event: passing),
                            effects={e: (lambda event: None) for e in Effect}, initial=initial)
    return model, machine


# ------------------------------------------------------------------------------------------------- machine
@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda t: t.value)
@pytest.mark.parametrize("state", STATES, ids=lambda s: s.value)
def test_machine_pair(state: SupervisorState, trigger: Trigger) -> None:
    model, machine = _bare_machine(True, state)
    dest = table_dest(state, trigger)
    if dest is None:
        with pytest.raises(MachineError):
            machine.events[trigger.value].trigger(model)
        assert model.state is state
    else:
        assert machine.events[trigger.value].trigger(model) is True
        assert model.state is dest


@pytest.mark.parametrize("row", [r for r in TRANSITIONS if r.guards], ids=lambda r: r.trigger.value)
def test_a_failing_guard_refuses_and_changes_nothing(row: Row) -> None:
    for state in row.sources:
        model, machine = _bare_machine(False, state)
        assert machine.events[row.trigger.value].trigger(model) is False
        assert model.state is state


def test_no_auto_transitions_and_unknown_triggers_do_not_exist() -> None:
    model, machine = _bare_machine(True)
    assert not hasattr(model, "to_EXECUTING")
    assert "to_EXECUTING" not in machine.events and set(machine.events) == {t.value for t in Trigger}


def test_every_trigger_has_exactly_one_row() -> None:
    assert sorted(row.trigger.value for row in TRANSITIONS) == sorted(t.value for t in Trigger)


def test_the_machine_is_not_built_without_an_effect() -> None:
    with pytest.raises(ValueError, match="drop_plan"):
        build_machine(MachineModel(), guards=lambda guard: (lambda event: True),
                      effects={e: (lambda event: None) for e in Effect if e is not Effect.DROP_PLAN})


DISALLOWED = [(s, t) for s in STATES for t in [*(t.value for t in TRIGGERS), "fly"] if table_dest(s, t) is None]


@pytest.mark.parametrize(("state", "trigger"), DISALLOWED, ids=lambda x: x.value if isinstance(x, S) else x)
def test_supervisor_refuses_every_pair_the_table_does_not_allow(state: SupervisorState, trigger: str) -> None:
    rig = make_rig()
    try:
        sup = rig.sup
        sup._machine.set_state(state, model=sup._model)
        with pytest.raises(InvalidTransition) as err:
            sup._fire(trigger)
        assert sup.state is state and sup.history == []
        assert (trigger in str(err.value)) and (state.value in str(err.value) or trigger == "fly")
    finally:
        rig.close()


def test_the_table_is_documented_and_its_references_resolve() -> None:
    assert set(TRIGGER_HELP) == set(TRIGGERS) and set(STATE_HELP) == set(STATES) == set(ROBOT_HALT_HELP)
    assert set(GUARDS) == set(Guard) == set(GUARD_HELP) and all(callable(check) for check in GUARDS.values())
    assert {row.effect for row in TRANSITIONS if row.effect is not None} == set(Effect)
    assert all(row.help for row in TRANSITIONS)
    sources_of_recovering = {s for row in TRANSITIONS if row.dest is S.RECOVERING for s in row.sources}
    assert sources_of_recovering == {S.ESTOP, S.FAULT}
    # only an operator reset leaves the latched states, except to the other latched state
    for row in TRANSITIONS:
        for s in row.sources:
            if s in (S.ESTOP, S.FAULT):
                assert row.dest in (S.ESTOP, S.FAULT, S.RECOVERING)


# ------------------------------------------------------------------------------------------------- API
def _reach(state: SupervisorState) -> tuple[Rig, Callable[[], None]]:
    facts = {"view_set": True} if state is S.AWAITING_CONFIRMATION else None
    rig = make_rig("xray", facts=facts, answers={"go": XRAY_MOTION})
    sup, cleanup = rig.sup, (lambda: None)
    if state is S.PLANNING:
        gate = threading.Event()
        rig.planner.block = gate
        t = threading.Thread(target=sup.command, args=("go",))
        t.start()
        assert rig.planner.entered.wait(5)

        def cleanup() -> None:
            gate.set()
            t.join(5)
    elif state in (S.EXECUTING, S.PAUSED):
        sup.submit_plan(XRAY_MOTION)
        rig.settle()
        if state is S.PAUSED:
            sup.pause()
            rig.settle()
    elif state is S.AWAITING_CONFIRMATION:
        sup.submit_plan(XRAY_SHOT_FIRST)
        rig.settle()
    elif state is S.ESTOP:
        sup.stop("test")
        rig.settle()
    elif state is S.FAULT:
        rig.backend.script(Outcome.raises())
        sup.submit_plan(XRAY_MOTION)
        assert sup.wait_for(S.FAULT)
        rig.settle()
    assert sup.state is state
    return rig, cleanup


OPS: dict[str, tuple[str | None, Callable[[Supervisor], Reply]]] = {
    "text": ("plan", lambda s: s.command("go")),
    "plan": ("plan", lambda s: s.submit_plan(XRAY_MOTION)),
    "confirm": ("confirm", lambda s: s.confirm()),
    "deny": ("deny", lambda s: s.deny()),
    "pause": ("pause", lambda s: s.pause()),
    "resume": ("resume", lambda s: s.resume()),
    "cancel": ("cancel", lambda s: s.cancel()),
    "stop": ("estop", lambda s: s.stop()),
    "reset": ("reset", lambda s: s.reset()),
    "status": (None, lambda s: s.control("status")),
}
#: where a command ends once the machine has taken every step it implies (the worker included)
FOLLOW_ON = {"plan": S.EXECUTING, "reset": S.IDLE}


def _api_cases() -> Iterator[tuple[SupervisorState, str]]:
    for state in STATES:
        if state is S.RECOVERING:
            continue  # transient inside reset(); its pairs are covered by the machine tests
        for op in OPS:
            yield state, op


@pytest.mark.parametrize(("state", "op"), list(_api_cases()), ids=lambda x: x.value if isinstance(x, S) else x)
def test_api_pair(state: SupervisorState, op: str) -> None:
    rig, cleanup = _reach(state)
    sup = rig.sup
    trigger, call = OPS[op]
    try:
        before = len(sup.history)
        dest = table_dest(state, trigger) if trigger else None
        if trigger is None:
            reply = call(sup)
            assert reply.accepted and sup.state is state and len(sup.history) == before
        elif dest is None and op == "text":
            reply = call(sup)  # a text command is planned anyway (it could be "stop"), then refused
            assert not reply.accepted and sup.state is state and len(sup.history) == before
        elif dest is None:
            with pytest.raises(InvalidTransition):
                call(sup)
            assert sup.state is state and len(sup.history) == before
        else:
            reply = call(sup)
            assert reply.accepted, reply.message
            rig.settle()
            assert sup.history[before].trigger == trigger and sup.history[before].dest is dest
            assert sup.state is FOLLOW_ON.get(trigger, dest)
        check_log(rig.audit.records, sup)
    finally:
        cleanup()
        rig.close()


@pytest.mark.parametrize("state", [s for s in STATES if s is not S.RECOVERING], ids=lambda s: s.value)
def test_robot_halt_pair(state: SupervisorState) -> None:
    """A halt the robot reports on its own, in each state, does what ``ROBOT_HALT_HELP`` says (RECOVERING, held
    inside reset(): tests/test_supervisor_robot_halt.py)."""
    assert ROBOT_HALT_HELP[state].startswith("nothing") is (state in ROBOT_HALT_EXPECTED)
    rig, cleanup = _reach(state)
    sup = rig.sup
    try:
        before, reason = len(sup.history), sup.reason
        rig.backend.halt("e-stop on /medrobot/estop")  # the robot's own latch: the supervisor ordered nothing
        if state is S.EXECUTING:  # a step runs: its end tells the halt
            assert sup.wait_for(S.ESTOP)
        sup.tick()
        sup.tick()
        if state in ROBOT_HALT_EXPECTED:
            assert sup.state is state and len(sup.history) == before and sup.reason == reason
        else:
            assert sup.state is S.ESTOP and [c.trigger for c in sup.history[before:]] == ["estop"]
            assert sup.reason.startswith(ROBOT_HALT) and sup.reason.endswith("e-stop on /medrobot/estop")
            assert [r.get("source") for r in rig.audit.records if r["kind"] == "estop"] == ["robot"]
            assert sup.plan is None and sup.pending is None
        cleanup()
        rig.settle()
        assert sup.state is (state if state in ROBOT_HALT_EXPECTED else S.ESTOP)
        discarded = [r for r in rig.audit.records if r["kind"] == "plan_discarded"]
        assert len(discarded) == (state is S.PLANNING)  # the plan came after the latch
        check_log(rig.audit.records, sup)
    finally:
        cleanup()
        rig.close()


# ------------------------------------------------------------------------------------------------- diagram
def test_the_diagram_in_the_docs_is_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["diagram", "--check"]) == 0, "docs/supervisor.md is stale: run `medrobot diagram`"


def test_the_diagram_draws_every_transition_of_the_table() -> None:
    text = mermaid_diagram()
    assert text.startswith("stateDiagram-v2")
    for row in TRANSITIONS:
        for s in row.sources:
            line = next((x for x in text.splitlines() if x.strip().startswith(f"{s.value} --> {row.dest.value}:")),
                        None)
            assert line is not None and row.trigger.value in line


def test_diagram_check_fails_on_a_stale_file(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "supervisor.md"
    path.write_text("hand-drawn\n")
    assert cli.main(["diagram", "--check", "--output", str(path), "--json"]) == 1
    assert '"up_to_date": false' in capsys.readouterr().out
    assert cli.main(["diagram", "--output", str(path), "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["diagram", "--check", "--output", str(path)]) == 0
