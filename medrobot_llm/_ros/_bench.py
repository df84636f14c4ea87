"""What the two ROS benchmarks share: a skill server process and an in-process supervisor node.

The skill server runs as its own process over real DDS on loopback, on a claimed ROS_DOMAIN_ID; the
supervisor node runs in the benchmark's process so the benchmark can time inside its backend.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._env import INSTALL_HINT, child_env, unique_domain_id

__all__ = ["percentiles", "supervised_skill_server"]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    s = sorted(samples_ms)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, int(round(p * (len(s) - 1)))))]

    return {"n": len(s), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": s[-1]}


@contextmanager
def supervised_skill_server(domain: str, real_time_factor: float, log: Path) -> Iterator[Any]:
    """Yield an in-process ``SupervisorNode`` connected to a skill server process for ``domain``."""
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from ._supervisor_node import SupervisorNode
    except ImportError as exc:
        raise SystemExit(f"ROS 2 is not importable here ({exc}): {INSTALL_HINT}") from None
    claim = unique_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(claim.domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = child_env(claim.domain_id)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [env["MEDROBOT_ROS_PYTHON"], "-m", "medrobot_llm._ros._skill_server", "--ros-args",
             "-p", f"medrobot_skill_server:domain:={domain}",
             "-p", f"medrobot_skill_server:real_time_factor:={float(real_time_factor)!r}"],
            env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    node = SupervisorNode(domain=domain)
    executor = SingleThreadedExecutor()  # as `medrobot bringup` runs the supervisor (spin_node)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + 40
        while not node.backend.connected:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the skill server did not come up; see {log}")
            time.sleep(0.05)
        yield node
    finally:
        executor.shutdown(timeout_sec=1.0)
        spin.join(2.0)
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        claim.release()
        print(f"(skill server log: {log})", file=sys.stderr)
