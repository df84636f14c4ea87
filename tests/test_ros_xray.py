"""End to end over real DDS on the X-ray graph: every exposure waits for /medrobot/confirm; no means no."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from medrobot_llm.safety.machine import SupervisorState
from tests._ros_helpers import RosGraph, ros_graph

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosGraph]:
    with ros_graph("xray", tmp_path_factory.mktemp("ros_xray")) as g:
        yield g


@pytest.fixture
def at_rest(graph: RosGraph) -> RosGraph:
    """The shared graph, its supervisor IDLE and its robot free, whatever ran before: the tests run in any order."""
    graph.at_rest()
    return graph


def test_denied_exposure_is_never_taken_and_confirmed_one_is(at_rest: RosGraph) -> None:
    graph = at_rest
    remote = graph.remote
    since = graph.n_events()
    reply = remote.command("AP of the pelvis and take a shot")
    assert reply.accepted, reply
    assert remote.wait_for("AWAITING_CONFIRMATION", timeout=20), remote.status()
    assert "exposure 1 of 1" in remote.status()["question"]["text"]
    reply = remote.deny()
    assert reply.accepted and reply.state is SupervisorState.IDLE, reply
    assert [e["skill"] for e in graph.events_of("step_sent", since)] == ["move_to_view"]
    assert remote.status()["world"]["facts"]["image"] is False

    since = graph.n_events()
    reply = remote.command("lateral of the sacrum then take a shot")
    assert reply.accepted, reply
    assert remote.wait_for("AWAITING_CONFIRMATION", timeout=20), remote.status()
    reply = remote.confirm()
    assert reply.accepted, reply
    assert remote.wait_status(lambda s: s["state"] == "IDLE" and "done" in s["reason"], timeout=20), remote.status()
    shots = [e for e in graph.events_of("step_result", since) if e["skill"] == "take_shot"]
    assert len(shots) == 1 and shots[0]["success"], shots
    assert remote.status()["world"]["facts"]["image"] is True


def test_a_confirmation_without_a_question_is_refused(at_rest: RosGraph) -> None:
    graph = at_rest
    reply = graph.remote.confirm()
    assert not reply.accepted and "nothing to confirm" in reply.message, reply
    assert graph.remote.status()["state"] == "IDLE"
