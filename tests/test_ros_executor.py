"""``PoolExecutor``: each ready task goes to the thread pool once, and a callback's exception ends the spin.

rclpy 9.1.2's ``MultiThreadedExecutor`` submits a task that has not started yet again on every pass of its
wait loop; with the pool busy, its queue filled with thousands of copies while the callbacks behind them
(the skill server's status timer) waited for seconds. These tests hold the pool's only thread so a task
cannot start, spin many passes, and count what was queued.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests._ros_helpers import require_ros

pytestmark = [pytest.mark.ros]


@pytest.fixture()
def executor() -> Any:
    require_ros()
    import rclpy
    from rclpy.context import Context

    from medrobot_llm.backends.ros.common import PoolExecutor

    context = Context()
    rclpy.init(context=context)
    ex = PoolExecutor(num_threads=1, context=context)
    try:
        yield ex
    finally:
        ex.shutdown(timeout_sec=2.0)
        rclpy.try_shutdown(context=context)


def test_a_task_waiting_for_the_pool_is_queued_once(executor: Any) -> None:
    release = threading.Event()
    ran: list[str] = []
    executor._executor.submit(release.wait, 10.0)  # the pool's only thread is busy until released
    executor.create_task(lambda: ran.append("task"))
    for _ in range(50):
        executor.spin_once(timeout_sec=0.0)
    assert executor._executor._work_queue.qsize() == 1, "the waiting task was queued more than once"
    release.set()
    for _ in range(50):
        if ran:
            break
        executor.spin_once(timeout_sec=0.05)
    assert ran == ["task"]


def test_a_callback_exception_ends_the_spin_loudly(executor: Any) -> None:
    def boom() -> None:
        raise ValueError("callback bug")

    executor.create_task(boom)
    with pytest.raises(ValueError, match="callback bug"):
        for _ in range(100):
            executor.spin_once(timeout_sec=0.05)
