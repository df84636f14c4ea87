"""End to end over real DDS: the ultrasound graph as separate processes (``medrobot bringup``).

The tests share one graph (starting it costs seconds) but not its history: each starts from a supervisor
at rest and puts the probe where it needs it (away, or on the skin), so they pass in any order: a scan
with a confirmation, an e-stop mid-motion, a cancel mid-motion, rogue and malformed goals. Killing the
skill server breaks a graph, so that test starts one of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medrobot_llm.safety.capability import CapabilityMinter
from medrobot_llm.safety.machine import SupervisorState
from tests._ros_helpers import RogueClient, RosGraph, moved, ros_graph, tip

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

LONG_SWEEP = "sweep 100 mm medial at 1 mm/s"


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosGraph]:
    with ros_graph("ultrasound", tmp_path_factory.mktemp("ros_us")) as g:
        yield g


@pytest.fixture
def at_rest(graph: RosGraph) -> RosGraph:
    """The shared graph, its supervisor IDLE and its robot free, whatever ran before."""
    graph.at_rest()
    return graph


@pytest.fixture
def away(at_rest: RosGraph) -> RosGraph:
    """The shared graph at rest with the probe away from the patient, as a fresh graph starts."""
    _probe_to(at_rest, "away")
    return at_rest


@pytest.fixture
def in_contact(at_rest: RosGraph) -> RosGraph:
    """The shared graph at rest with the probe on the skin, where sweeps can start."""
    _probe_to(at_rest, "contact")
    return at_rest


def _run(graph: RosGraph, text: str) -> None:
    """Run ``text`` through the supervisor to a finished plan, confirming each question it asks."""
    since = graph.n_events()
    reply = graph.remote.command(text)
    assert reply.accepted, reply
    for _ in range(10):
        e = graph.wait_event(lambda e: e.get("kind") in ("question", "run_end"), since, timeout=30)
        assert e is not None, f"{text!r} did not end; status {graph.remote.status()}"
        if e["kind"] == "run_end":
            assert e["outcome"] == "finish", e
            break
        with graph.lock:
            since = graph.events.index(e, since) + 1
        reply = graph.remote.confirm()
        assert reply.accepted, reply
    assert graph.remote.wait_for("IDLE", timeout=10), graph.remote.status()
    assert graph.wait_fresh(lambda s: not s["busy"], timeout=5), graph.robot_status()


def _probe_to(graph: RosGraph, where: str) -> None:
    """Move the probe ``away`` or into ``contact`` through the supervisor, as an operator would."""
    status = graph.wait_robot(lambda s: bool(s.get("world")), timeout=5)
    assert status is not None, "no robot status with a world state"
    probe = status["world"]["facts"]["probe"]
    if probe == where:
        return
    if where == "away":
        if probe == "contact":
            _run(graph, "lift the probe")
        _run(graph, "go home")
    else:
        _run(graph, "go to the left kidney and make contact")
    probe = graph.wait_robot(lambda s: s["world"]["facts"]["probe"] == where, timeout=5)
    assert probe is not None, f"the probe is not {where}: {graph.robot_status()}"


def _start_long_sweep(graph: RosGraph, text: str = LONG_SWEEP) -> int:
    """Send a 100 s (sim time) sweep and return once the probe is moving; the event index before it."""
    since = graph.n_events()
    reply = graph.remote.command(text)
    assert reply.accepted, reply
    fb = graph.wait_event(lambda e: e.get("kind") == "feedback" and e.get("progress", 0) > 0.02, since, timeout=15)
    assert fb is not None, f"no motion feedback; status {graph.remote.status()}"
    return since


def _still(graph: RosGraph, window: float = 0.4) -> None:
    """The probe tip does not move over ``window`` seconds of robot status.

    Both samples are statuses built from now on, ``window`` apart on the skill server's clock: on a loaded
    machine a 20 Hz status can be built and arrive late, and one built before the stop proves nothing."""
    first = graph.wait_fresh(lambda s: True, timeout=3.0)
    assert first is not None, "no robot status for 3 s"
    last = graph.wait_fresh(lambda s: True, timeout=3.0 + window, after=first["mono"] + window)
    assert last is not None, "no robot status for 3 s after the window"
    assert not moved(tip(first), tip(last)), f"the probe kept moving: {tip(first)} -> {tip(last)}"


def test_the_graph_is_three_processes_on_loopback_and_its_own_domain(graph: RosGraph) -> None:
    """``medrobot bringup`` started each node as its own process, from the bringup parameters file, with DDS
    discovery on loopback and the test's ROS_DOMAIN_ID."""
    from medrobot_llm.cli.bringup import NODES, default_params_file

    pids = {graph.pid(n) for n in NODES}
    assert len(pids) == 3 and graph.bringup.pid not in pids
    for node, module in NODES.items():
        proc = Path("/proc") / str(graph.pid(node))
        argv = proc.joinpath("cmdline").read_bytes().decode().split("\0")
        assert module in argv and argv[argv.index("--params-file") + 1] == str(default_params_file())
        env = dict(kv.split("=", 1) for kv in proc.joinpath("environ").read_bytes().decode().split("\0") if "=" in kv)
        assert env["ROS_DOMAIN_ID"] == str(graph.ros_domain_id), node
        assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST", node


def test_scan_waits_for_confirm_then_moves_the_robot(away: RosGraph) -> None:
    graph = away
    remote = graph.remote
    assert remote.status()["state"] == "IDLE"
    start = tip(graph.robot_status())
    since = graph.n_events()
    reply = remote.command("scan the left kidney")
    assert reply.accepted and reply.plan is not None, reply
    assert [s.skill for s in reply.plan.steps] == ["move_to_window", "make_contact", "sweep"]
    assert remote.wait_for("AWAITING_CONFIRMATION", timeout=20), remote.status()
    st = remote.status()
    assert "make_contact" in st["question"]["text"]
    assert st["world"]["facts"]["probe"] == "hovering"
    time.sleep(0.3)  # nothing is sent while the question is open
    sent = [e["skill"] for e in graph.events_of("step_sent", since)]
    assert sent == ["move_to_window"], sent
    assert moved(start, tip(graph.robot_status()), tol=1.0), "move_to_window did not move the probe"

    reply = remote.confirm()
    assert reply.accepted, reply
    assert remote.wait_status(lambda s: s["state"] == "IDLE" and "done" in s["reason"], timeout=20), remote.status()
    results = graph.events_of("step_result", since)
    assert [(r["skill"], r["success"]) for r in results] == [("move_to_window", True), ("make_contact", True),
                                                             ("sweep", True)], results
    st = remote.status()
    assert st["world"]["facts"]["probe"] == "contact"
    assert graph.wait_robot(lambda s: s["world"]["facts"]["probe"] == "contact" and not s["busy"])
    assert graph.robot_status()["telemetry"]["force_n"] > 2.0


def test_estop_mid_motion_halts_the_robot_and_latches(in_contact: RosGraph) -> None:
    graph = in_contact
    remote = graph.remote
    since = _start_long_sweep(graph)
    reply = remote.stop()
    assert reply.accepted and reply.state is SupervisorState.ESTOP, remote.status()
    assert remote.wait_for("ESTOP", timeout=3), remote.status()
    assert graph.wait_fresh(lambda s: s["halted"] and not s["busy"], timeout=3), graph.robot_status()
    _still(graph)
    result = graph.wait_event(lambda e: e.get("kind") == "step_result", since, timeout=5)
    assert result is not None and not result["success"] and result["failure"] == "halted", result
    # the step's halt is recorded before the end of its run
    end = graph.wait_event(lambda e: e.get("kind") == "run_end", since, timeout=5)
    assert end is not None and end["outcome"] == "estop", end
    kinds = [e["kind"] for e in graph.events[since:] if e.get("kind") in ("step_result", "run_end")]
    assert kinds == ["step_result", "run_end"], kinds
    # latched: nothing runs until a reset
    reply = remote.command("sweep 10 mm caudal")
    assert not reply.accepted and "latched" in reply.message, reply
    _still(graph, 0.2)
    reply = remote.reset()
    assert reply.accepted and reply.state is SupervisorState.IDLE, (reply, remote.status())
    assert graph.wait_robot(lambda s: not s["halted"], timeout=3)


def test_estop_pressed_and_released_at_once_stays_latched_until_an_explicit_reset(at_rest: RosGraph) -> None:
    """True then false on /medrobot/estop within a few ms: the supervisor latches once and stays ESTOP (the
    release resets nothing, and its own halt/release echoes are not taken for an operator's); the robot
    stays halted; only the reset on /medrobot/reset recovers, and nothing re-latches after it."""
    from std_msgs.msg import Bool

    from medrobot_llm.backends.ros.common import TOPIC_ESTOP, latched_qos

    graph = at_rest
    remote = graph.remote
    assert remote.wait_for("IDLE", timeout=5), remote.status()
    pub = remote.node.create_publisher(Bool, TOPIC_ESTOP, latched_qos(5))
    try:
        deadline = time.monotonic() + 5
        while pub.get_subscription_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pub.get_subscription_count() >= 2, "the supervisor and skill server do not hear the e-stop"
        since = graph.n_events()
        pub.publish(Bool(data=True))
        time.sleep(0.003)
        pub.publish(Bool(data=False))
        assert remote.wait_for("ESTOP", timeout=3), remote.status()
        time.sleep(1.0)
        settled = graph.n_events()
        time.sleep(1.0)
        with graph.lock:
            after = [e.get("kind") for e in graph.events[settled:]]
            records = [e for e in graph.events[since:] if isinstance(e.get("seq"), int)]
        assert after == [], f"the supervisor kept recording after it settled: {after[:20]}"
        assert len(records) <= 6, [r["kind"] for r in records]
        changes = [(e["from"], e["to"]) for e in graph.events_of("state", since)]
        assert changes == [("IDLE", "ESTOP")], changes
        st = remote.status()
        assert st["state"] == "ESTOP" and st["estop_latched"] and st["halted"], st
        robot = graph.wait_fresh(lambda s: s["halted"], timeout=2)
        assert robot is not None, f"the release freed the robot of a latched supervisor: {graph.robot_status()}"
    finally:
        remote.node.destroy_publisher(pub)
    reply = remote.command("sweep 10 mm caudal")
    assert not reply.accepted and "/medrobot/reset" in reply.message, reply
    since = graph.n_events()
    reply = remote.reset()
    assert reply.accepted and reply.state is SupervisorState.IDLE, (reply, remote.status())
    assert graph.wait_robot(lambda s: not s["halted"], timeout=3), graph.robot_status()
    time.sleep(0.5)
    assert remote.status()["state"] == "IDLE", remote.status()
    changes = [(e["from"], e["to"]) for e in graph.events_of("state", since)]
    assert changes == [("ESTOP", "RECOVERING"), ("RECOVERING", "IDLE")], changes


def test_cancel_mid_motion_cancels_the_goal_and_stops_the_robot(in_contact: RosGraph) -> None:
    graph = in_contact
    remote = graph.remote
    # 20 s of motion: a sweep that would leave the skin is refused before it moves (~34 mm lateral of here)
    since = _start_long_sweep(graph, "sweep 20 mm lateral at 1 mm/s")
    reply = remote.command("cancel")
    assert reply.accepted and reply.state is SupervisorState.IDLE, reply
    result = graph.wait_event(lambda e: e.get("kind") == "step_result", since, timeout=5)
    assert result is not None and result["failure"] == "cancelled", result
    assert "did not confirm" not in result["message"], result  # the skill server itself ended the goal
    assert graph.wait_fresh(lambda s: not s["busy"], timeout=3)
    _still(graph)
    assert remote.status()["state"] == "IDLE"


def test_goal_from_another_node_is_refused(in_contact: RosGraph) -> None:
    graph = in_contact
    rogue = RogueClient(graph)
    try:
        before = tip(graph.robot_status())
        refusals = graph.robot_status()["refusals"]
        args = json.dumps({"direction": "caudal", "distance_mm": 30, "speed_mm_s": 20})
        # while the supervisor is idle: no capability, no motion (the state grants nothing)
        accepted, result = rogue.send(plan_id="rogue:1", step_index=0, skill="sweep", args_json=args,
                                      domain="ultrasound")
        no_capability = "the goal carries no capability; only the supervisor may start motion"
        assert accepted and not result.success and result.failure_kind == "invalid"
        assert result.message.startswith("refused") and no_capability in result.message, result.message
        # while it executes a plan: the real plan id and the current step, and the next step (not released);
        # what the state says grants nothing
        _start_long_sweep(graph)
        plan_id = graph.remote.status()["plan_id"]
        for step in (0, 1):
            accepted, result = rogue.send(plan_id=plan_id, step_index=step, skill="sweep", args_json=args,
                                          domain="ultrasound")
            assert not result.success and no_capability in result.message, result.message
        # a capability made up without the graph secret is no better than none
        forged = CapabilityMinter(b"x" * 32).mint(plan_id=plan_id, step_index=1, skill="sweep", args=args,
                                                  domain="ultrasound")
        accepted, result = rogue.send(plan_id=plan_id, step_index=1, skill="sweep", args_json=args,
                                      domain="ultrasound", capability=forged.to_wire())
        assert not result.success and "does not verify" in result.message, result.message
        assert graph.remote.command("cancel").accepted
        assert graph.wait_fresh(lambda s: not s["busy"], timeout=3)
        _still(graph, 0.2)
        assert graph.robot_status()["refusals"] >= refusals + 3
        assert moved(before, tip(graph.robot_status()), tol=0.05)  # only the supervisor's sweep moved it
    finally:
        rogue.close()


@pytest.mark.parametrize("args_json, why", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"distance_mm": NaN}', "not valid JSON"),
])
def test_malformed_args_json_is_refused_with_a_message(at_rest: RosGraph, args_json: str, why: str) -> None:
    graph = at_rest
    rogue = RogueClient(graph)
    try:
        before = tip(graph.robot_status())
        accepted, result = rogue.send(plan_id="x:1", step_index=0, skill="sweep", args_json=args_json,
                                      domain="ultrasound")
        assert accepted and not result.success and result.failure_kind == "invalid"
        assert result.message.startswith("refused") and why in result.message, result.message
        assert not moved(before, tip(graph.robot_status()))
    finally:
        rogue.close()


def test_killing_the_skill_server_sends_the_supervisor_to_fault(tmp_path: Path) -> None:
    import os
    import signal

    # what the supervisor does without a skill server, before bringup would stop the graph
    with ros_graph("ultrasound", tmp_path, options=["--on-node-exit", "keep"]) as graph:
        _probe_to(graph, "contact")
        _start_long_sweep(graph)
        t0 = time.monotonic()
        os.killpg(graph.pid("medrobot_skill_server"), signal.SIGKILL)
        assert graph.remote.wait_for("FAULT", timeout=5), graph.remote.status()
        st = graph.remote.status()
        assert "heartbeat" in st["reason"], st["reason"]
        assert time.monotonic() - t0 < 5
        assert st["halted"]
