"""The client side of the bridge, on a real rclpy node: ``RemoteSupervisor`` never shows a state ahead of the
events it follows (two DDS topics, no common order; messages are handed to its callbacks in the worst order
DDS may deliver them), and ``GoalClient`` registers each goal once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from medrobot_llm.core.clock import ManualClock
from medrobot_llm.safety import events as ev
from tests._ros_helpers import require_ros

pytestmark = [pytest.mark.ros]


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock(100.0)


@pytest.fixture()
def remote(clock: ManualClock) -> Iterator[Any]:
    require_ros()
    from medrobot_llm.backends.ros.env import unique_domain_id
    from medrobot_llm.backends.ros.remote import RemoteSupervisor

    claim = unique_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        r = RemoteSupervisor("medrobot_test_remote", clock=clock)
        try:
            yield r
        finally:
            r.close()
            claim.release()


def state(seq: int, name: str, through: int, session: str = "s1", reason: str = "") -> Any:
    from medrobot_interfaces.msg import SupervisorState

    return SupervisorState(seq=seq, session=session, state=name, reason=reason,
                           status_json=json.dumps({"records_through": through, "reason": reason}))


def event(e: ev.SupervisorEvent, seq: int | None = None) -> Any:
    """``e`` as the supervisor node publishes it; ``seq``: the audit log's number (records only)."""
    from std_msgs.msg import String

    numbered = e.model_copy(update={"seq": seq, "clock": 0.0}) if seq is not None else e
    return String(data=json.dumps(numbered.record()))


def test_a_state_waits_for_the_records_it_reflects(remote: Any) -> None:
    seen_at_result: list[str] = []
    remote.subscribe(lambda e: seen_at_result.append(remote.status()["state"])
                     if isinstance(e, ev.StepResultEvent) else None)
    remote._on_state(state(1, "EXECUTING", 10))
    assert remote.status()["state"] == "EXECUTING"
    # the final state overtakes the step's result and the finish record
    remote._on_state(state(2, "IDLE", 12, reason="all 1 step(s) done"))
    assert remote.status()["state"] == "EXECUTING"
    assert not remote.wait_for("IDLE", timeout=0.05)
    remote._on_event(event(ev.StepResultEvent(run=1, step=0, skill="take_shot", success=True, failure="none",
                                              message="done", outcome={}), seq=11))
    assert remote.status()["state"] == "EXECUTING"
    # no seq: not a record
    remote._on_event(event(ev.FeedbackEvent(run=1, step=0, phase="done", progress=1.0, telemetry={})))
    remote._on_event(event(ev.StateEvent(source="EXECUTING", to="IDLE", trigger="finish",
                                         reason="all 1 step(s) done"), seq=12))
    assert remote.status()["state"] == "IDLE" and remote.status()["reason"] == "all 1 step(s) done"
    assert seen_at_result == ["EXECUTING"]  # listeners had the result before anyone could see IDLE


def test_a_state_is_not_held_forever_when_events_are_lost(remote: Any, clock: ManualClock) -> None:
    from medrobot_llm.backends.ros.remote import HOLD_S

    remote._on_state(state(1, "EXECUTING", 3))
    remote._on_state(state(2, "FAULT", 7))
    assert remote.status()["state"] == "EXECUTING"
    clock.advance(HOLD_S / 2)
    remote._on_state(state(3, "FAULT", 8))
    assert remote.status()["state"] == "EXECUTING"  # held since the first FAULT, not since this one
    clock.advance(HOLD_S / 2)
    remote._on_state(state(4, "FAULT", 9))
    assert remote.status()["state"] == "FAULT"


def test_a_new_supervisor_session_starts_afresh(remote: Any) -> None:
    remote._on_state(state(1, "EXECUTING", 100))
    remote._on_state(state(1, "IDLE", 4, session="s2"))  # restarted: its records start again
    assert remote.status()["state"] == "IDLE"
    remote._on_state(state(2, "EXECUTING", 4, session="s2"))
    assert remote.status()["state"] == "EXECUTING"


def test_goal_client_registers_each_goal_once_with_its_feedback_callback(remote: Any) -> None:
    """The stock rclpy 9.1.2 ``send_goal_async`` registers a second future outside its lock (two here)."""
    from medrobot_interfaces.action import ExecuteSkill

    from medrobot_llm.backends.ros.common import GoalClient

    client = GoalClient(remote.node, ExecuteSkill, "/medrobot_test/no_server")
    try:
        with pytest.raises(TypeError, match="Goal"):
            client.send_goal_async(ExecuteSkill.Result())
        futures = [client.send_goal_async(ExecuteSkill.Goal(skill="sweep"), feedback_callback=print) for _ in range(3)]
        assert len(client._futures) == 3 and len(client._pending_goal_requests) == 3
        assert set(client._pending_goal_requests.values()) == set(futures)
        assert len(client._feedback_callbacks) == 3
    finally:
        client.destroy()
