"""The skill server's e-stop path: a press halts the robot on the e-stop thread alone, a ``false`` releases
nothing, the supervisor's signed release does; and the e-stop thread gets the highest priority the OS grants.
(The ordering of halts and releases, without ROS: tests/test_ros_gate.py.)"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from medrobot_llm.backends.ros.priority import (
    Granted,
    raise_priority,
    reception_threads,
    threads_of_this_process,
)


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
def test_a_stop_halts_the_robot_while_the_main_executor_never_runs_and_only_a_signed_release_frees_it(
        tmp_path: Path) -> None:
    """The e-stop thread spins on its own: a skill server whose main executor never runs still halts, a
    ``false`` on the e-stop topic from anyone leaves it halted, a heartbeat without a later release too, and
    the supervisor's release (a beat signed with the graph secret) frees it."""
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

    from medrobot_interfaces.msg import Heartbeat as HeartbeatMsg

    from medrobot_llm.backends.ros.common import (
        TOPIC_ESTOP, TOPIC_HEARTBEAT, TOPIC_ROBOT_STATUS, latched_qos, reliable_qos,
    )
    from medrobot_llm.backends.ros.env import unique_domain_id
    from medrobot_llm.backends.ros.signed import heartbeat_msg
    from medrobot_llm.backends.ros.skill_server import SkillServerNode
    from medrobot_llm.safety import keys
    from medrobot_llm.safety.heartbeat import Heartbeat, HeartbeatSigner

    def until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:
            time.sleep(0.005)
        return pred()

    keys.init_keys(tmp_path / "keys")
    claim = unique_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        context = Context()
        rclpy.init(context=context)
        # never added to an executor: only its e-stop thread runs (so each stop publishes exactly one status)
        server = SkillServerNode(context=context, domain="ultrasound", real_time_factor=0.0,
                                 keys_dir=str(tmp_path / "keys"))
        signer = HeartbeatSigner(keys.load_graph_secret(tmp_path / "keys"), graph=server.graph)
        operator = Node("medrobot_test_operator", context=context)
        statuses: list[dict[str, object]] = []
        operator.create_subscription(String, TOPIC_ROBOT_STATUS, lambda m: statuses.append(json.loads(m.data)),
                                     reliable_qos(5))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(operator)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        try:
            pub = operator.create_publisher(Bool, TOPIC_ESTOP, latched_qos(5))
            beats = operator.create_publisher(HeartbeatMsg, TOPIC_HEARTBEAT, reliable_qos(10))
            assert until(lambda: pub.get_subscription_count() >= 1 and beats.get_subscription_count() >= 1
                         and operator.count_publishers(TOPIC_ROBOT_STATUS) >= 1)

            heard: dict[int, bool] = {}  # seq -> whether that beat released the robot
            take = server.core.on_heartbeat

            def on_heartbeat(wire: str) -> tuple[Heartbeat, bool]:
                hb, released = take(wire)
                heard[hb.seq] = released
                return hb, released

            server.core.on_heartbeat = on_heartbeat  # type: ignore[method-assign]

            def beat_released(hb: Heartbeat) -> bool:
                beats.publish(heartbeat_msg(hb))
                assert until(lambda: hb.seq in heard), f"beat {hb.seq} never reached the e-stop thread"
                return heard[hb.seq]

            assert not beat_released(signer.beat()) and not server.core.watchdog.check().halted
            pub.publish(Bool(data=True))
            assert until(lambda: len(statuses) >= 1), "no status after the stop"
            assert server.scene.halted and statuses[0]["halted"], "not halted by the e-stop thread alone"
            assert server.core.halt_reason == f"e-stop on {TOPIC_ESTOP}"
            pub.publish(Bool(data=False))  # anyone's release of their button is not the supervisor's reset
            assert until(lambda: len(statuses) >= 2), "the false was never handled"
            assert server.scene.halted and statuses[1]["halted"], "a false on the e-stop topic freed the robot"
            assert not beat_released(signer.beat()) and server.scene.halted, \
                "a beat without a release after the stop freed the robot"
            assert beat_released(signer.release()) and not server.scene.halted, "the supervisor's release was lost"
            assert until(lambda: len(statuses) >= 3), "no status after the release"
            assert statuses[-1]["halted"] is False and statuses[-1]["supervisor"]["alive"] is True  # type: ignore[index]
            # the status timer (called here: the main executor never runs) reports the heartbeat alive, then lost
            # once the window has passed: rclpy refuses a log call site whose severity changes, which would end
            # the spin of a real server
            server._tick()
            window = server.core.watchdog.window_s
            server.core.watchdog.clock = lambda: time.time() + window + 0.5
            server._tick()
            assert until(lambda: statuses[-1]["supervisor"]["alive"] is False), statuses[-1]  # type: ignore[index]
        finally:
            executor.shutdown(timeout_sec=1.0)
            spin.join(2.0)
            operator.destroy_node()
            server.close()
            server.destroy_node()
            rclpy.try_shutdown(context=context)
            claim.release()


@pytest.mark.ros
@pytest.mark.parametrize("problem", ["missing", "too open"])
def test_a_skill_server_without_a_usable_graph_key_does_not_start(tmp_path: Path, problem: str) -> None:
    """Never an open graph: an unusable key stops the node with a message that says what to do."""
    from tests._ros_helpers import require_ros

    require_ros()
    import rclpy
    from rclpy.context import Context

    from medrobot_llm.backends.ros.env import unique_domain_id
    from medrobot_llm.backends.ros.skill_server import SkillServerNode
    from medrobot_llm.safety import keys

    folder = tmp_path / "keys"
    expected = r"medrobot skill server: .*(graph.key|no such key folder).*medrobot keys init"
    if problem == "too open":
        keys.init_keys(folder)
        (folder / keys.GRAPH_FILE).chmod(0o644)
        expected = r"medrobot skill server: .*graph.key: .*chmod 600"
    claim = unique_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        context = Context()
        rclpy.init(context=context)
        try:
            with pytest.raises(SystemExit, match=expected):
                SkillServerNode(context=context, domain="ultrasound", keys_dir=str(folder))
        finally:
            rclpy.try_shutdown(context=context)
            claim.release()


@pytest.mark.ros
@pytest.mark.sim
def test_the_estop_thread_spins_when_the_os_grants_some_reception_threads_more_than_others(tmp_path: Path) -> None:
    """Its log says what each thread got, at info or warning: rclpy refuses one call site with two severities,
    and that error ended the e-stop thread before it spun."""
    from tests._ros_helpers import require_ros

    require_ros()
    import time

    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node
    from std_msgs.msg import Bool

    import medrobot_llm.backends.ros.skill_server as skill_server
    from medrobot_llm.backends.ros.common import TOPIC_ESTOP, latched_qos
    from medrobot_llm.backends.ros.env import unique_domain_id
    from medrobot_llm.safety import keys

    asked: list[int] = []

    def alternating(tid: int) -> Granted:
        asked.append(tid)
        return Granted(True, 99, None) if len(asked) % 2 == 0 else Granted(False, None, -5)

    keys.init_keys(tmp_path / "keys")
    claim = unique_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        mp.setattr(skill_server, "raise_priority", alternating)
        context = Context()
        rclpy.init(context=context)
        server = skill_server.SkillServerNode(context=context, domain="ultrasound", real_time_factor=0.0,
                                              keys_dir=str(tmp_path / "keys"))
        operator = Node("medrobot_test_operator", context=context)
        try:
            pub = operator.create_publisher(Bool, TOPIC_ESTOP, latched_qos(5))
            deadline = time.monotonic() + 10
            while (pub.get_subscription_count() < 1 or len(asked) < 3) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(asked) >= 3, f"fewer than two reception threads to raise: {asked}"
            pub.publish(Bool(data=True))
            while not server.scene.halted and time.monotonic() < deadline:
                time.sleep(0.005)
            assert server.scene.halted, "the e-stop thread did not survive its own log lines"
        finally:
            operator.destroy_node()
            server.close()
            server.destroy_node()
            rclpy.try_shutdown(context=context)
            claim.release()
