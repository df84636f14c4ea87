"""What the two ROS benchmarks share: a skill server process and an in-process supervisor node.

The skill server runs as its own process over real DDS on loopback, on a claimed ROS_DOMAIN_ID; the
supervisor node runs in the benchmark's process so the benchmark can time inside its backend. Both hold
the keys of a temporary folder of the run's own (the graph secret, and the default operator's key for
whatever acts as the console), never the user's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrobot_llm.backends.ros.nodes import SKILL_SERVER
from medrobot_llm.backends.ros.env import INSTALL_HINT, child_env, unique_domain_id
from medrobot_llm.safety import keys

__all__ = ["RoundTrips", "Supervised", "cpu_seconds", "percentiles", "plain_action_round_trips",
           "supervised_skill_server"]

_ECHO_ACTION = "/medrobot_bench/echo"


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    s = sorted(samples_ms)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, int(round(p * (len(s) - 1)))))]

    return {"n": len(s), "p50_ms": q(0.5), "p90_ms": q(0.9), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": s[-1]}


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, every thread) a process used so far; this process by default.

    Latency on a shared machine says as much about the other work as about ours; the CPU a goal costs does
    not depend on the load, so the benchmarks report it beside the times."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


@dataclass(frozen=True)
class Supervised:
    """The in-process supervisor node, and the skill server process it drives."""

    node: Any
    server_pid: int


@dataclass(frozen=True)
class RoundTrips:
    """Round trips (ms) and the CPU (ms per goal, both processes) they took."""

    samples_ms: list[float]
    cpu_ms_per_goal: float


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C to a server's process group, then SIGKILL if it has not ended within 5 s."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def supervised_skill_server(domain: str, real_time_factor: float, log: Path) -> Iterator[Supervised]:
    """Yield an in-process ``SupervisorNode`` connected to a skill server process for ``domain``; the keys
    folder both use is the node's ``keys_dir`` parameter."""
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from medrobot_llm.backends.ros.supervisor_node import SupervisorNode
    except ImportError as exc:
        raise SystemExit(f"ROS 2 is not importable here ({exc}): {INSTALL_HINT}") from None
    claim = unique_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(claim.domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = child_env(claim.domain_id)
    folder = tempfile.TemporaryDirectory(prefix="medrobot_bench_keys_")
    keys_dir = Path(folder.name) / "keys"
    keys.init_keys(keys_dir, [keys.default_operator()])
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [env["MEDROBOT_ROS_PYTHON"], "-m", SKILL_SERVER.module, "--ros-args",
             "-p", f"{SKILL_SERVER.name}:domain:={domain}",
             "-p", f"{SKILL_SERVER.name}:real_time_factor:={float(real_time_factor)!r}",
             "-p", f"{SKILL_SERVER.name}:keys_dir:={keys_dir}"],
            env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    node = SupervisorNode(domain=domain, keys_dir=str(keys_dir))
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
        yield Supervised(node, proc.pid)
    finally:
        executor.shutdown(timeout_sec=1.0)
        spin.join(2.0)
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
        _interrupt(proc)
        claim.release()
        folder.cleanup()
        print(f"(skill server log: {log})", file=sys.stderr)


def plain_action_round_trips(steps: int, warm: int = 20) -> RoundTrips:
    """Round trips of an ``ExecuteSkill`` goal to a server that succeeds at once, nothing of ours in between.

    The floor under the supervised round trip: rclpy's own goal / accept / get-result / result exchange
    between two processes on this machine, with the same executors the nodes use and the skill server's
    ``RESULT_KEPT_S`` (each status message lists every goal kept).
    """
    try:
        import rclpy
        from medrobot_interfaces.action import ExecuteSkill
        from rclpy.action.client import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
    except ImportError as exc:
        raise SystemExit(f"ROS 2 is not importable here ({exc}): {INSTALL_HINT}") from None
    claim = unique_domain_id()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = child_env(claim.domain_id)
    proc = subprocess.Popen([env["MEDROBOT_ROS_PYTHON"], "-m", "medrobot_llm.backends.ros.bench"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=claim.domain_id)
    node = Node("medrobot_bench_echo_client", context=context)
    client: Any = ActionClient(node, ExecuteSkill, _ECHO_ACTION)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    out: list[float] = []
    cpu_from = 0.0
    try:
        if not client.wait_for_server(timeout_sec=30):
            raise SystemExit("the plain action server did not come up")
        for i in range(steps + warm):
            if i == warm:
                cpu_from = cpu_seconds() + cpu_seconds(proc.pid)
            done = threading.Event()

            def on_goal(future: Any, done: threading.Event = done) -> None:
                future.result().get_result_async().add_done_callback(lambda _f: done.set())

            t0 = time.perf_counter()
            client.send_goal_async(ExecuteSkill.Goal()).add_done_callback(on_goal)
            if not done.wait(5):
                raise SystemExit("a plain action goal got no result within 5 s")
            out.append((time.perf_counter() - t0) * 1000)
            done.wait(0.005)  # the supervised benchmark's steps do not come back to back either
        cpu = cpu_seconds() + cpu_seconds(proc.pid) - cpu_from
    finally:
        executor.shutdown(timeout_sec=1.0)
        spin.join(2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        _interrupt(proc)
        claim.release()
    return RoundTrips(out[warm:], cpu * 1000 / max(1, steps))


def _echo_server() -> None:
    import rclpy
    from medrobot_interfaces.action import ExecuteSkill
    from rclpy.action.server import ActionServer
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.node import Node

    from medrobot_llm.backends.ros.common import RESULT_KEPT_S

    def execute(goal: Any) -> Any:
        goal.succeed()
        return ExecuteSkill.Result(success=True)

    rclpy.init()
    node = Node("medrobot_bench_echo")
    ActionServer(node, ExecuteSkill, _ECHO_ACTION, execute, result_timeout=RESULT_KEPT_S)  # as the skill server
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    _echo_server()
