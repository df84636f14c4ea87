"""Shared by the ROS tests: a real graph over real DDS, always torn down, on a ROS_DOMAIN_ID of its own.

The graph is started with ``medrobot bringup --json`` (the command users run), in its own session, with a keys
folder of its own (``MEDROBOT_KEYS``: bringup creates the graph secret and the operator's key there); the
teardown stops it with SIGINT like Ctrl-C and then kills every process group it started, whatever
happened in the test. The test process itself talks to the graph through ``RemoteSupervisor``, signing as
that operator, and, as a rogue client, through its own action client; that needs rclpy in this process, so the ROS environment
must be sourced (``bash scripts/test.sh``). Without it the tests fail, saying how to get it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from medrobot_llm.safety.events import SupervisorEvent

ROOT = Path(__file__).resolve().parent.parent


def require_ros() -> None:
    """Fail (never skip) with the fix when rclpy or the built interfaces cannot be imported here."""
    from medrobot_llm.backends.ros.env import INSTALL_HINT, RosEnvError, load_ros_env

    try:
        load_ros_env()
    except RosEnvError as exc:
        pytest.fail(f"ROS 2 is not installed for this project: {exc}", pytrace=False)
    try:
        import rclpy  # noqa: F401
        from medrobot_interfaces.action import ExecuteSkill  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"ROS 2 is not importable in the test process ({exc}); the ROS environment is not sourced: "
                    f"{INSTALL_HINT}", pytrace=False)


@dataclass
class RosGraph:
    domain: str
    ros_domain_id: int
    info: dict[str, Any]
    bringup: subprocess.Popen[bytes]
    remote: Any
    status_log: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys_dir: Path | None = None  # the graph's keys: a test can sign as its operator, or as nobody's

    def pid(self, node: str) -> int:
        return int(self.info["nodes"][node]["pid"])

    def log(self, node: str) -> str:
        try:
            return Path(self.info["nodes"][node]["log"]).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def robot_status(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.status_log[-1]) if self.status_log else {}

    def wait_robot(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.robot_status()
            if s and pred(s):
                return s
            time.sleep(0.01)
        return None

    def wait_fresh(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0,
                   after: float | None = None) -> dict[str, Any] | None:
        """The first robot status built after ``after`` (now by default) that ``pred`` accepts.

        The latest status received can be older than anything the test did: under load the skill server's
        20 Hz tick waits behind its control thread, and a CI run took a status from before a sweep started for
        the robot at rest after its cancel. ``mono`` is the skill server's ``time.monotonic()`` at build time,
        the same clock as this process's on one host."""
        since = time.monotonic() if after is None else after
        return self.wait_robot(lambda s: float(s.get("mono", -1.0)) > since and pred(s), timeout)

    def at_rest(self) -> None:
        """Bring the supervisor to IDLE and the robot to free and still, whatever the test before left behind
        (a latched stop, a plan under way or waiting for a confirmation): each test starts from here, so none
        depends on which tests ran before it, or on whether they passed."""
        state = self.remote.status()["state"]
        deadline = time.monotonic() + 5.0
        while state not in ("ESTOP", "FAULT") and self.robot_status().get("halted") and time.monotonic() < deadline:
            # a halt the supervisor did not hear of (the last test's press, missed): it latches ESTOP on the
            # robot's report within a watchdog pass, and this test's reset must wait for that latch
            time.sleep(0.01)
            state = self.remote.status()["state"]
        if state in ("ESTOP", "FAULT"):
            self.remote.reset()
        elif state not in ("IDLE", "RECOVERING"):
            self.remote.command("cancel")
        assert self.remote.wait_for("IDLE", timeout=10), f"the supervisor did not come to rest: {self.remote.status()}"
        assert self.wait_fresh(lambda s: not s["busy"] and not s["halted"], timeout=5), \
            f"the robot did not come to rest: {self.robot_status()}"

    def events_of(self, kind: str, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events[since:] if e.get("kind") == kind]

    def n_events(self) -> int:
        with self.lock:
            return len(self.events)

    def wait_event(self, pred: Callable[[dict[str, Any]], bool], since: int = 0,
                   timeout: float = 10.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for e in self.events[since:]:
                    if pred(e):
                        return e
            time.sleep(0.01)
        return None


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_bringup(bringup: subprocess.Popen[Any], pids: Iterable[int]) -> None:
    """Ctrl-C first, so bringup stops its nodes in order and gives up its graph file; then SIGKILL the process
    group of each of ``pids`` (bringup's and its nodes') that is still there, so no test leaves a node behind."""
    if bringup.poll() is None:
        bringup.send_signal(signal.SIGINT)
        try:
            bringup.wait(10.0)
        except subprocess.TimeoutExpired:
            pass
    for pid in pids:
        _kill_group(pid, signal.SIGKILL)
    if bringup.poll() is None:
        bringup.wait(5.0)


@contextmanager
def ros_graph(domain: str, tmp: Path, overrides: list[str] | None = None, rtf: float = 0.0,
              options: list[str] | None = None) -> Iterator[RosGraph]:
    """Start ``medrobot bringup`` for ``domain`` on a claimed ROS_DOMAIN_ID (``options``: more of its options);
    yield once the graph is connected."""
    require_ros()
    from medrobot_llm.backends.ros.env import unique_domain_id

    from medrobot_llm.safety.keys import KEYS_ENV

    claim = unique_domain_id()
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", KEYS_ENV)}
    os.environ["ROS_DOMAIN_ID"] = str(claim.domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    keys_dir = tmp / f"keys-{domain}"
    os.environ[KEYS_ENV] = str(keys_dir)
    argv = [sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", domain, "--json",
            "--ros-domain-id", str(claim.domain_id), "--log-dir", str(tmp / f"bringup-{domain}"),
            "--real-time-factor", repr(rtf)]
    for o in overrides or []:
        argv += ["--set", o]
    argv += options or []
    bringup = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               cwd=ROOT)
    pids: list[int] = [bringup.pid]
    remote = None
    try:
        assert bringup.stdout is not None
        line = bringup.stdout.readline()
        if not line:
            err = bringup.stderr.read().decode() if bringup.stderr else ""
            pytest.fail(f"medrobot bringup did not start: {err}", pytrace=False)
        info = json.loads(line)
        pids += [int(n["pid"]) for n in info["nodes"].values()]
        from medrobot_llm.backends.ros.remote import RemoteSupervisor
        from medrobot_llm.safety.keys import default_operator

        remote = RemoteSupervisor(f"medrobot_test_{os.getpid()}", operator=default_operator(), keys_dir=keys_dir)
        graph = RosGraph(domain, claim.domain_id, info, bringup, remote, keys_dir=keys_dir)
        _follow(graph)
        if not remote.wait_ready(timeout=40.0):
            logs = "\n".join(f"--- {n}\n{graph.log(n)[-1500:]}" for n in info["nodes"])
            pytest.fail(f"the {domain} graph did not connect within 40 s; status {remote.status()}\n{logs}",
                        pytrace=False)
        yield graph
    finally:
        if remote is not None:
            remote.close()
        stop_bringup(bringup, pids)
        claim.release()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _follow(graph: RosGraph) -> None:
    """Record every /medrobot/robot_status and /medrobot/events message the test node sees."""
    from std_msgs.msg import String

    from medrobot_llm.backends.ros.common import TOPIC_ROBOT_STATUS, reliable_qos

    def on_status(msg: Any) -> None:
        try:
            obj = json.loads(msg.data)
        except ValueError:
            return
        obj["_rx"] = time.monotonic()
        with graph.lock:
            graph.status_log.append(obj)

    def on_event(event: SupervisorEvent) -> None:
        with graph.lock:
            graph.events.append(event.record())

    graph.remote.node.create_subscription(String, TOPIC_ROBOT_STATUS, on_status, reliable_qos(50))
    graph.remote.subscribe(on_event)


class RogueClient:
    """An ExecuteSkill client that is not the supervisor: what a rogue or buggy node could send."""

    def __init__(self, graph: RosGraph) -> None:
        from medrobot_interfaces.action import ExecuteSkill

        from medrobot_llm.backends.ros.common import ACTION_EXECUTE, GoalClient

        self.ExecuteSkill = ExecuteSkill
        self.client = GoalClient(graph.remote.node, ExecuteSkill, ACTION_EXECUTE)
        assert self.client.wait_for_server(timeout_sec=10.0), "no skill server on /medrobot/execute_skill"

    def send(self, *, plan_id: str, step_index: int, skill: str, args_json: str, domain: str,
             capability: str = "", timeout: float = 10.0) -> tuple[bool, Any]:
        """(accepted, result) of one goal, waiting for its end."""
        goal = self.ExecuteSkill.Goal(plan_id=plan_id, step_index=step_index, skill=skill, args_json=args_json,
                                      domain=domain, capability=capability)
        done = threading.Event()
        fut = self.client.send_goal_async(goal)
        fut.add_done_callback(lambda _f: done.set())
        assert done.wait(timeout), "no answer to the goal request"
        handle: Any = fut.result()
        if not handle.accepted:
            return False, None
        done.clear()
        res = handle.get_result_async()
        res.add_done_callback(lambda _f: done.set())
        assert done.wait(timeout), "no result for the goal"
        return True, res.result().result

    def close(self) -> None:
        self.client.destroy()


def tip(status: dict[str, Any]) -> list[float]:
    t = status.get("telemetry") or {}
    for key in ("tip_mm", "pose_mm", "tip"):
        if key in t:
            return [float(x) for x in t[key]]
    return [float(v) for k, v in sorted(t.items()) if isinstance(v, (int, float)) and not isinstance(v, bool)]


def moved(a: list[float], b: list[float], tol: float = 0.05) -> bool:
    return len(a) != len(b) or any(abs(x - y) > tol for x, y in zip(a, b))
