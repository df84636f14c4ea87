"""The skill server's e-stop path without ROS: what a message on /medrobot/estop does to the latch, what a
repeated stop leaves in the status, and how the e-stop thread gets the highest priority the OS grants."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.backends.ros.priority import (
    Granted,
    raise_priority,
    reception_threads,
    threads_of_this_process,
)
from medrobot_llm.core.clock import ManualClock
from medrobot_llm.safety.gate import EstopAction, FollowedState, SkillServerCore, estop_action

ESTOP = FollowedState("ESTOP", "s:1", 0, "s", 100.0)
IDLE = FollowedState("IDLE", "", 0, "s", 100.0)


def _never_asked() -> bool:
    raise AssertionError("the sender was looked up although it cannot change the answer")


@pytest.mark.parametrize("halted", [False, True])
def test_a_press_always_halts_whoever_sent_it(halted: bool) -> None:
    assert estop_action(True, halted, _never_asked) is EstopAction.HALT


def test_only_the_supervisors_release_frees_a_halted_robot() -> None:
    """Whatever state the robot has heard so far: a press and a release milliseconds apart arrive before the
    supervisor's ESTOP state, and the release must not free the robot (the race test_ros_e2e caught)."""
    assert estop_action(False, True, lambda: False) is EstopAction.KEEP
    assert estop_action(False, True, lambda: True) is EstopAction.RELEASE
    assert estop_action(False, False, _never_asked) is EstopAction.NOTHING


def test_a_second_stop_while_latched_keeps_when_and_why_the_robot_stopped() -> None:
    clock = ManualClock(10.0)
    core = SkillServerCore(MemoryBackend("ultrasound", clock=clock), clock=clock)
    core.halt("e-stop on /medrobot/estop")
    clock.advance(0.2)
    core.halt("the supervisor's echo of the same stop")
    assert core.backend.halted
    assert (core.halted_at, core.halt_reason) == (10.0, "e-stop on /medrobot/estop")
    status = core.status()
    assert status["halted"] and status["halted_at"] == 10.0
    core.clear_halt()
    clock.advance(1.0)
    core.halt("a new stop after the reset")
    assert (core.halted_at, core.halt_reason) == (11.2, "a new stop after the reset")


class FakeOs:
    """The OS calls ``raise_priority`` makes, refusing what ``refuse`` names."""

    def __init__(self, *refuse: str) -> None:
        self.refuse = set(refuse)
        self.calls: list[tuple[str, int, int]] = []

    def _call(self, kind: str, tid: int, value: int) -> None:
        self.calls.append((kind, tid, value))
        if f"{kind} {value}" in self.refuse or kind in self.refuse:
            raise PermissionError(errno.EPERM, "Operation not permitted")

    def fifo(self, tid: int, priority: int) -> None:
        self._call("fifo", tid, priority)

    def nice(self, tid: int, value: int) -> None:
        self._call("nice", tid, value)


def _raise(fake: FakeOs) -> Granted:
    return raise_priority(7, fifo=fake.fifo, nice=fake.nice, fifo_priorities=[99, 10], nice_values=[-20, -5])


def test_the_highest_realtime_priority_when_the_os_grants_it() -> None:
    fake = FakeOs()
    g = _raise(fake)
    assert g.realtime and g.priority == 99 and g.raised
    assert fake.calls == [("fifo", 7, 99)]
    assert g.sentence("the e-stop thread") == "the e-stop thread runs SCHED_FIFO at priority 99"


def test_the_rtprio_limit_when_the_top_priority_is_refused() -> None:
    fake = FakeOs("fifo 99")
    g = _raise(fake)
    assert g.realtime and g.priority == 10
    assert g.refused == ("SCHED_FIFO 99: Operation not permitted",)


def test_a_nice_value_when_no_realtime_priority_is_allowed_and_the_log_says_so() -> None:
    fake = FakeOs("fifo", "nice -20")
    g = _raise(fake)
    assert not g.realtime and g.nice == -5 and g.raised
    assert [c[0] for c in fake.calls] == ["fifo", "fifo", "nice", "nice"]
    sentence = g.sentence("the e-stop thread")
    assert "nice -5, not real-time" in sentence and "SCHED_FIFO 99: Operation not permitted" in sentence


def test_nothing_granted_is_said_with_every_refusal() -> None:
    g = _raise(FakeOs("fifo", "nice"))
    assert not g.raised and g.priority is None and g.nice is None
    sentence = g.sentence("the e-stop thread")
    assert sentence.startswith("the e-stop thread runs at the default priority: could not raise it")
    assert sentence.count("Operation not permitted") == 4


def test_nothing_to_try_is_said_too() -> None:
    g = raise_priority(7, fifo=FakeOs().fifo, nice=FakeOs().nice, fifo_priorities=[], nice_values=[])
    assert not g.raised and "not supported here" in g.sentence("x")


def test_the_reception_threads_are_fast_dds_transport_listeners_only() -> None:
    threads = [(1, "python3"), (2, "dds.shm.wdog"), (3, "dds.ev.0"), (4, "dds.udp.23912"), (5, "dds.shm.23913"),
               (6, "dds.asyn.0.0"), (7, "dds.tls.request"), (8, "dds.shm.7001"), (9, "dds.tcp.5100"), (10, "dds.shm.")]
    assert reception_threads(threads) == [4, 5, 8, 9]


def test_threads_of_this_process_reads_proc(tmp_path: Path) -> None:
    for tid, name in [(11, "python3"), (12, "dds.shm.7001")]:
        (tmp_path / str(tid)).mkdir()
        (tmp_path / str(tid) / "comm").write_text(name + "\n")
    (tmp_path / "gone").mkdir()  # not a thread id
    assert sorted(threads_of_this_process(tmp_path)) == [(11, "python3"), (12, "dds.shm.7001")]
    assert threads_of_this_process(tmp_path / "missing") == []


@pytest.mark.ros
@pytest.mark.sim
def test_a_stop_halts_the_robot_while_the_main_executor_never_runs() -> None:
    """The e-stop thread spins on its own: a skill server whose main executor never runs still halts, and a
    release from a node that is not the followed supervisor leaves a latched robot halted."""
    from tests._ros_helpers import require_ros

    require_ros()
    import json
    import threading
    import time
    from collections.abc import Callable

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import Bool, String

    from medrobot_llm.backends.ros.common import TOPIC_ESTOP, TOPIC_ROBOT_STATUS, latched_qos, reliable_qos
    from medrobot_llm.backends.ros.env import unique_domain_id
    from medrobot_llm.backends.ros.skill_server import SkillServerNode

    def until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:
            time.sleep(0.005)
        return pred()

    claim = unique_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        context = Context()
        rclpy.init(context=context)
        # never added to an executor: only its e-stop thread runs (so each stop publishes exactly one status)
        server = SkillServerNode(context=context, domain="ultrasound", real_time_factor=0.0)
        operator = Node("medrobot_test_operator", context=context)
        statuses: list[dict[str, object]] = []
        operator.create_subscription(String, TOPIC_ROBOT_STATUS, lambda m: statuses.append(json.loads(m.data)),
                                     reliable_qos(5))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(operator)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        try:
            server.core.on_state(ESTOP)  # as if the supervisor it follows had latched
            pub = operator.create_publisher(Bool, TOPIC_ESTOP, latched_qos(5))
            assert until(lambda: pub.get_subscription_count() >= 1
                         and operator.count_publishers(TOPIC_ROBOT_STATUS) >= 1)
            pub.publish(Bool(data=True))
            assert until(lambda: len(statuses) >= 1), "no status after the stop"
            assert server.scene.halted and statuses[0]["halted"], "not halted by the e-stop thread alone"
            assert server.core.halt_reason == f"e-stop on {TOPIC_ESTOP}"
            pub.publish(Bool(data=False))  # the operator's release is not the supervisor's reset
            assert until(lambda: len(statuses) >= 2), "the release was never handled"
            assert server.scene.halted and statuses[1]["halted"], \
                "a release from a node that is not the supervisor freed a latched robot"
        finally:
            executor.shutdown(timeout_sec=1.0)
            spin.join(2.0)
            operator.destroy_node()
            server.close()
            server.destroy_node()
            rclpy.try_shutdown(context=context)
            claim.release()
