"""``medrobot bringup --confirm-motion`` over real DDS: the supervisor node asks for the view before the gantry
moves, with the same signed, nonce-bound /medrobot/confirm as an exposure; one question per step, and no means no."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from medrobot_llm.safety.machine import SupervisorState
from tests._ros_helpers import RosGraph, ros_graph

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosGraph]:
    with ros_graph("xray", tmp_path_factory.mktemp("ros_confirm_motion"), options=["--confirm-motion"]) as g:
        yield g


def asked(graph: RosGraph, step: int) -> dict[str, object]:
    status = graph.remote.wait_status(lambda s: isinstance(q := s.get("question"), dict) and q["step_index"] == step,
                                      timeout=20)
    assert status is not None, graph.remote.status()
    question: dict[str, object] = status["question"]
    return question


def test_the_view_is_confirmed_before_the_gantry_moves_then_the_exposure(graph: RosGraph) -> None:
    remote = graph.remote
    graph.at_rest()
    since = graph.n_events()
    assert remote.command("lateral of the sacrum and take a shot").accepted
    view = asked(graph, 0)
    assert (view["skill"], view["hazard"]) == ("move_to_view", "motion"), view
    assert graph.events_of("step_sent", since) == [], "the gantry moved before the view was confirmed"
    # a confirmation for the exposure while the view is asked about confirms nothing
    early = remote.confirm(1)
    assert not early.accepted and graph.events_of("step_sent", since) == [], early
    assert remote.confirm(0).accepted
    shot = asked(graph, 1)
    assert (shot["skill"], shot["hazard"]) == ("take_shot", "radiation"), shot
    sent = graph.events_of("step_sent", since)
    assert [(e["skill"], e["confirmed"]) for e in sent] == [("move_to_view", True)], sent
    reply = remote.deny()
    assert reply.accepted and reply.state is SupervisorState.IDLE, reply
    assert [e["skill"] for e in graph.events_of("step_sent", since)] == ["move_to_view"]


def test_a_denied_view_moves_nothing(graph: RosGraph) -> None:
    remote = graph.remote
    graph.at_rest()
    since = graph.n_events()
    assert remote.command("AP of the pelvis and take a shot").accepted
    assert asked(graph, 0)["hazard"] == "motion"
    assert remote.deny().accepted
    assert remote.wait_for("IDLE", timeout=10), remote.status()
    assert graph.events_of("step_sent", since) == []
