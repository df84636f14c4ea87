"""Blind attacks on issue 15's graph, fourth round: the graph id each bringup draws, and its neighbours.

Each ``medrobot bringup`` draws a graph id, writes it to ``graph-<ROS domain id>.json`` in its keys folder (locked
while it runs) and its consoles read it from there once, when they start. These tests attack that as a rogue node
on the graph, a careless user or a console would meet it: a rogue node that reconfigures a node of the graph
through the parameter services every rclpy node serves; a console started before its bringup, or kept across a
restart of it; a second bringup on a running graph's domain id, with the keys folder of its own that the first
bringup's refusal advises, or after the first bringup died and left its nodes running; a console on another network
whose copied keys folder holds the original graph's id file (graph B's network is a network namespace, ``unshare
-n``, as in ``test_ros_attacks3``; the keyless relay is ``tests/attackers/pipe.py`` and ``stand_in.py``). Every test
failed while its attack worked (``xfail(strict=True)`` until it was fixed).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests._ros_helpers import ROOT, RosGraph, require_ros, ros_graph, stop_bringup

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

EXECUTING = 2  # action_msgs/GoalStatus.STATUS_EXECUTING
SUCCEEDED = 4


class Lines:
    """The JSON lines a process prints, as they come."""

    def __init__(self, stream: Any) -> None:
        self.q: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            if line.startswith("{"):
                self.q.put(json.loads(line))

    def until(self, pred: Any, timeout: float) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The first line ``pred`` accepts within ``timeout`` (else None), and every line read meanwhile."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                continue
            seen.append(line)
            if pred(line):
                return line, seen
        return None, seen


def _kill(proc: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(5.0)


def _bringup(domain_id: int, keys: Path, log_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", "--json",
         "--ros-domain-id", str(domain_id), "--keys", str(keys), "--log-dir", str(log_dir),
         "--real-time-factor", "0.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=ROOT,
        env=dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"))


def _stop_bringup(proc: subprocess.Popen[str], info: dict[str, Any] | None) -> None:
    """``stop_bringup`` for a bringup and the nodes its ``--json`` line named (none if it printed none)."""
    stop_bringup(proc, [proc.pid, *(int(node["pid"]) for node in (info or {}).get("nodes", {}).values())])
    _kill(proc)


def _started(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"medrobot bringup did not start: {proc.stderr.read() if proc.stderr else ''}"
    info: dict[str, Any] = json.loads(line)
    return info


def _console(domain_id: int, keys: Path) -> subprocess.Popen[str]:
    """``medrobot console --ros --json`` as an operator runs it, commands on its stdin."""
    return subprocess.Popen(
        [sys.executable, "-m", "medrobot_llm.cli", "console", "--domain", "xray", "--ros", "--json",
         "--ros-wait", "40", "--keys", str(keys)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True, cwd=ROOT,
        env=dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                 MEDROBOT_KEYS=str(keys)))


def _say(console: subprocess.Popen[str], line: str) -> None:
    assert console.stdin is not None
    console.stdin.write(line + "\n")
    console.stdin.flush()


def _reply_to(text: str) -> Any:
    """The console's reply line for the command ``text`` (it also prints the supervisor's own reply record)."""
    return lambda line: line.get("kind") == "reply" and line.get("input") == text


@contextmanager
def _claimed_domain() -> Iterator[int]:
    require_ros()
    from medrobot_llm.backends.ros.env import unique_domain_id

    claim = unique_domain_id()
    try:
        yield claim.domain_id
    finally:
        claim.release()


def _keys(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "keys", "init", "--dir", str(folder)],
                   check=True, capture_output=True, cwd=ROOT, timeout=60)
    return folder


def test_a_rogue_node_cannot_switch_off_the_skill_servers_supervisor_watchdog(tmp_path: Path) -> None:
    """The watchdog that cancels a running goal when the supervisor's heartbeat stops is checked on a ROS timer of
    the skill server. ``use_sim_time`` is a parameter of every rclpy node, writable by any node on the domain
    (no key): set to true with no ``/clock``, the node's ROS time stands still and so do its timers."""
    from action_msgs.msg import GoalStatusArray
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from medrobot_llm.backends.ros.nodes import SKILL_SERVER, SUPERVISOR

    # a gantry move takes some 15 s in real time; the skill server outlives its supervisor (as under `ros2 launch`)
    with ros_graph("xray", tmp_path, rtf=1.0, options=["--on-node-exit", "keep"]) as g:
        node = g.remote.node
        statuses: list[tuple[float, str, int]] = []
        node.create_subscription(
            GoalStatusArray, "/medrobot/execute_skill/_action/status",
            lambda m: statuses.extend((time.monotonic(), bytes(s.goal_info.goal_id.uuid).hex(), s.status)
                                      for s in m.status_list),
            QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        setp = node.create_client(SetParameters, f"/{SKILL_SERVER.name}/set_parameters")
        assert setp.wait_for_service(timeout_sec=10.0), "the skill server serves no parameters"
        reply = g.remote.command("AP of the pelvis")
        assert reply.accepted, reply
        assert g.wait_robot(lambda s: s["busy"], timeout=10), f"the move never started: {g.robot_status()}"
        running = [u for _, u, s in statuses if s == EXECUTING]
        assert running, f"no goal executing on the action's status topic: {statuses}"
        goal = running[-1]
        done = threading.Event()
        fut = setp.call_async(SetParameters.Request(
            parameters=[Parameter("use_sim_time", value=True).to_parameter_msg()]))
        fut.add_done_callback(lambda _f: done.set())
        assert done.wait(10.0), "no answer from the skill server's parameter service"
        set_ok = [r.successful for r in fut.result().results]
        os.kill(g.pid(SUPERVISOR.name), signal.SIGKILL)
        killed = time.monotonic()

        def of_goal() -> list[tuple[float, int]]:
            return [(t - killed, s) for t, u, s in statuses if u == goal]

        # the watchdog's window is 1 s with a 20 Hz check; the move itself takes some 15 s, so a status that is
        # still "executing" 10 s on means the watchdog never fired (a fixed 3 s wait failed once on CI with no
        # status at all after the kill: a timing test, not the property)
        while time.monotonic() - killed < 10.0 and (of_goal() or [(0.0, EXECUTING)])[-1][1] == EXECUTING:
            time.sleep(0.05)
        seen = of_goal()
    last = seen[-1][1] if seen else None
    assert last not in (EXECUTING, SUCCEEDED), (
        f"10 s after the supervisor was killed, the move it released is still {'running' if last == EXECUTING else last}"
        f" (use_sim_time set by a keyless node: {set_ok}); goal status (s after the kill, status): {seen[-4:]}")


def test_a_console_started_before_its_bringup_can_command_the_graph(tmp_path: Path) -> None:
    """``medrobot console --ros`` waits ``--ros-wait`` seconds for the graph, and the help's own example starts
    both in one line (``medrobot bringup ... & medrobot console ... --ros``)."""
    with _claimed_domain() as d:
        keys = _keys(tmp_path / "keys")
        console = _console(d, keys)
        bringup = None
        info = None
        try:
            time.sleep(3.0)  # the console is up, waiting for the graph
            bringup = _bringup(d, keys, tmp_path / "bringup")
            info = _started(bringup)
            out = Lines(console.stdout)
            _say(console, "AP of the pelvis")
            reply, seen = out.until(_reply_to("AP of the pelvis"), timeout=20.0)
        finally:
            _kill(console)
            if bringup is not None:
                _stop_bringup(bringup, info)
    assert reply is not None and reply.get("accepted"), (
        f"the console's command got {'no answer in 20 s' if reply is None else reply}; it printed: {seen[-3:]}")


def test_a_console_kept_across_a_bringup_restart_is_answered(tmp_path: Path) -> None:
    """The restart is what an operator does after a crash or a change of parameters; the console stays open."""
    with _claimed_domain() as d:
        keys = _keys(tmp_path / "keys")
        first = _bringup(d, keys, tmp_path / "bringup-1")
        info: dict[str, Any] | None = None
        second = None
        info2 = None
        console = None
        try:
            info = _started(first)
            console = _console(d, keys)
            out = Lines(console.stdout)
            _say(console, "AP of the pelvis")
            before, _ = out.until(_reply_to("AP of the pelvis"), timeout=20.0)
            assert before is not None and before.get("accepted"), f"the console did not work at first: {before}"
            _stop_bringup(first, info)
            second = _bringup(d, keys, tmp_path / "bringup-2")
            info2 = _started(second)
            assert info2["graph_id"] != info["graph_id"]
            # the new graph's nodes find each other in their own time (under load the supervisor first answers
            # "not ready yet: nothing received on /medrobot/robot_status"), so the operator's retry is part of the
            # flow; what must not happen is no answer, a refusal of the console itself, or a latched fault (a fresh
            # clone's CI run once latched FAULT on that first refusal, and every retry was refused)
            replies: list[dict[str, Any] | None] = []
            seen: list[Any] = []
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline and not (replies and replies[-1] and replies[-1].get("accepted")):
                _say(console, "lateral of the pelvis")
                # at a load average of 5 the first answer from the new graph took longer than 12 s
                answer, seen = out.until(_reply_to("lateral of the pelvis"), timeout=25.0)
                replies.append(answer)
                if answer is None:
                    break
                time.sleep(1.0)
            after = replies[-1] if replies else None
        finally:
            if console is not None:
                _kill(console)
            _stop_bringup(first, info)
            if second is not None:
                _stop_bringup(second, info2)
    assert after is not None, (
        f"after the bringup restarted, the console's command got no answer in 25 s; it printed: {seen[-3:]}")
    assert after.get("accepted") or "restart" in (after.get("message") or ""), replies


@pytest.fixture(scope="module")
def xray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosGraph]:
    """One graph for the attacks it survives: a refused second bringup, a relay of refused operator messages."""
    with ros_graph("xray", tmp_path_factory.mktemp("ros_attacks4")) as g:
        yield g


@pytest.fixture
def own_xray(tmp_path: Path) -> Iterator[RosGraph]:
    """A graph of its own, for an attack that kills its bringup."""
    with ros_graph("xray", tmp_path) as g:
        yield g


def test_a_second_bringup_on_a_running_graphs_domain_id_with_its_own_keys_folder_is_refused(
        xray: RosGraph, tmp_path: Path) -> None:
    a = xray
    second = _bringup(a.ros_domain_id, _keys(tmp_path / "keys-other"), tmp_path / "bringup-second")
    info = None
    try:
        assert second.stdout is not None
        line = second.stdout.readline()
        info = json.loads(line) if line else None
        # its stdout closes as it exits, a moment before it can be reaped: poll() alone races with that
        code = second.wait(10.0) if info is None else second.poll()
        refusal = second.stderr.read() if second.stderr is not None and info is None else ""
    finally:
        _stop_bringup(second, info)
    assert "another --ros-domain-id" in refusal, refusal
    assert info is None and code not in (None, 0), (
        f"a second graph started on ROS_DOMAIN_ID {a.ros_domain_id}, where graph {a.info['graph_id']} runs and "
        f"hears it: {info and info['graph_id']}")


def _alive(pid: int) -> bool:
    """Running: a zombie (dead, not reaped yet by an init that reaps slowly, as in some containers) runs nothing."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGHUP, id="terminal-closed"),
                                 pytest.param(signal.SIGKILL, id="killed")])
def test_a_graph_whose_bringup_died_still_keeps_a_second_bringup_off_its_domain(
        own_xray: RosGraph, tmp_path: Path, sig: signal.Signals) -> None:
    """SIGINT and SIGTERM stop the nodes and free the file; these two signals cannot be handled, or are not."""
    from medrobot_llm.backends.ros.nodes import SKILL_SERVER, SUPERVISOR

    a = own_xray
    assert a.keys_dir is not None
    a.bringup.send_signal(sig)
    a.bringup.wait(10.0)
    time.sleep(1.0)
    orphans = {n: _alive(a.pid(n)) for n in (SUPERVISOR.name, SKILL_SERVER.name)}
    second = _bringup(a.ros_domain_id, a.keys_dir, tmp_path / "bringup-second")
    info = None
    try:
        assert second.stdout is not None
        line = second.stdout.readline()
        info = json.loads(line) if line else None
        orphans_then = {n: _alive(a.pid(n)) for n in orphans}
    finally:
        _stop_bringup(second, info)
    assert info is None or not any(orphans_then.values()), (
        f"after the bringup got signal {sig.name}, its nodes run on ({orphans_then}), yet a second bringup started "
        f"on ROS_DOMAIN_ID {a.ros_domain_id} with the same keys folder: graph {info['graph_id']} next to "
        f"{a.info['graph_id']}")


PIPE = "tests.attackers.pipe"


def _exposures(audit: Path) -> int:
    records = [json.loads(x) for x in audit.read_text(encoding="utf-8").splitlines() if x.strip()] \
        if audit.exists() else []
    return sum(1 for r in records if r.get("hazard") == "exposure" and r.get("phase") == "done")


def test_a_console_on_another_network_with_a_copied_keys_folder_cannot_expose_on_the_original_graph(
        xray: RosGraph, tmp_path: Path) -> None:
    """Room B's machine got a copy of the home directory (as in ``test_ros_attacks3``), and its console starts before
    room B's own bringup, or with room B's nodes started by ``ros2 launch``: the graph id file it reads is graph A's,
    which nobody holds on room B's machine. The attacker relays graph A's state and events onto room B's network and
    room B's operator messages onto graph A, and stands in for the e-stop subscribers a console counts."""
    import shutil

    a = xray
    assert a.keys_dir is not None
    a.at_rest()
    keys_b = tmp_path / "keys-b"
    shutil.copytree(a.keys_dir, keys_b)
    d = str(a.ros_domain_id)
    audit = Path(a.info["skill_server_audit_log"])
    before = _exposures(audit)
    room_b = subprocess.Popen(["unshare", "-n", "--", "sh", "-c", "ip link set lo up && exec sleep 120"],
                              start_new_session=True)
    procs: list[subprocess.Popen[Any]] = [room_b]

    def start(argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        p = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    def in_b(*argv: str) -> list[str]:
        return ["nsenter", "-t", str(room_b.pid), "-n", "--", sys.executable, "-m", *argv]

    lines: list[dict[str, Any]] = []
    try:
        time.sleep(0.5)
        publishers: list[subprocess.Popen[Any]] = []
        for kind, topic in (("state", "/medrobot/state"), ("string", "/medrobot/events")):  # A -> room B
            sink = start(in_b(PIPE, "in", d, kind, topic), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            publishers.append(sink)
            start([sys.executable, "-m", PIPE, "out", d, kind, topic], stdout=sink.stdin)
        for topic in ("/medrobot/command", "/medrobot/confirm", "/medrobot/reset"):  # room B -> A
            sink = start([sys.executable, "-m", PIPE, "in", d, "operator", topic], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
            publishers.append(sink)
            start(in_b(PIPE, "out", d, "operator", topic), stdout=sink.stdin)
        publishers.append(start(in_b("tests.attackers.stand_in", d), stdout=subprocess.PIPE, text=True))
        for p in publishers:  # each is up (the console itself waits for the relay's subscribers and A's state)
            ready, _ = Lines(p.stdout).until(lambda x: x == {"ready": True}, timeout=30.0)
            assert ready, "a relay did not start"
        time.sleep(2.0)  # the publishers onto graph A are matched by its supervisor
        console = start(in_b("medrobot_llm.cli", "console", "--domain", "xray", "--ros", "--json", "--ros-wait", "20",
                             "--keys", str(keys_b)),
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                        env=dict(os.environ, ROS_DOMAIN_ID=d, MEDROBOT_KEYS=str(keys_b)))
        out = Lines(console.stdout)
        _say(console, "AP of the pelvis then take a shot")
        _say(console, "y")
        _, lines = out.until(_reply_to("y"), timeout=25.0)
        deadline = time.monotonic() + 5.0  # a confirmed shot is written when it is done
        while time.monotonic() < deadline and _exposures(audit) == before:
            time.sleep(0.1)
    finally:
        for p in reversed(procs):
            _kill(p)
    after = _exposures(audit)
    shown = [x for x in lines if x.get("kind") in ("reply", "question")]
    assert after == before, (
        f"a console on another network took {after - before} exposure(s) on graph {a.info['graph_id']} through a "
        f"keyless relay; it was shown: {[(x.get('kind'), x.get('message') or x.get('text')) for x in shown]}")
    supervisor_log = Path(a.info["audit_log"])
    refused = [r for r in (json.loads(x) for x in supervisor_log.read_text(encoding="utf-8").splitlines() if x.strip())
               if r.get("kind") == "untrusted" and r.get("topic") == "/medrobot/command"]
    # the copied file, which nobody holds in room B, gave the console no id: graph A names what it signed for
    assert refused and {r["code"] for r in refused} == {"other_graph"} and "--graph-id" in refused[0]["reason"], refused


PLANTED = "0123456789abcdef"


@pytest.mark.parametrize("plant", ["another-user", "world-writable"])
def test_a_console_takes_no_graph_id_from_a_file_another_user_could_have_written(tmp_path: Path, plant: str) -> None:
    """What the console signs for decides which graph its operator's word counts on: on a shared folder another user
    who writes that file points the console at a graph of their choosing (one with a copy of these keys, reached by a
    relay, as in ``test_a_console_on_another_network_with_a_copied_keys_folder_cannot_expose_on_the_original_graph``)."""
    from medrobot_llm.backends.ros.remote import RemoteSupervisor
    from medrobot_llm.safety.keys import default_operator

    with _claimed_domain() as d:
        keys = _keys(tmp_path / "keys")
        planted = keys / f"graph-{d}.json"
        planted.write_text(json.dumps({"graph_id": PLANTED, "pid": 1, "started": "2026-12-07T00:00:00Z"}),
                           encoding="utf-8")
        if plant == "another-user":  # a folder a team shares, the file written there by someone else
            if os.geteuid() != 0:
                pytest.skip("only root can give the file to another user here")
            keys.chmod(0o777)
            planted.chmod(0o600)
            os.chown(planted, 65534, 65534)
        else:  # the user's own file, which anyone may rewrite
            keys.chmod(0o755)
            planted.chmod(0o666)
        saved = os.environ.get("ROS_DOMAIN_ID")
        os.environ["ROS_DOMAIN_ID"] = str(d)
        remote = None
        try:
            remote = RemoteSupervisor(f"medrobot_test_{os.getpid()}", operator=default_operator(), keys_dir=keys)
            graph = remote.graph
        except Exception as exc:  # refusing such a folder or file is one fix
            graph = f"refused: {exc}"
        finally:
            if remote is not None:
                remote.close()
            if saved is None:
                os.environ.pop("ROS_DOMAIN_ID", None)
            else:
                os.environ["ROS_DOMAIN_ID"] = saved
    assert PLANTED not in graph, f"the console signs for the planted graph id ({plant}): {graph}"


def test_the_bringup_helps_own_set_example_starts_a_graph_with_a_supervisor(tmp_path: Path) -> None:
    from medrobot_llm.backends.ros.nodes import SUPERVISOR

    with _claimed_domain() as d:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", "--json", "--ros-domain-id",
             str(d), "--keys", str(tmp_path / "keys"), "--log-dir", str(tmp_path / "bringup"),
             "--real-time-factor", "0.0", "--set", "medrobot_supervisor.confirm_timeout_s=10"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=ROOT,
            env=dict(os.environ, ROS_DOMAIN_ID=str(d), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"))
        info = None
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            info = json.loads(line) if line else None
            time.sleep(6.0)  # the nodes declare their parameters
            supervisor_alive = info is not None and _alive(int(info["nodes"][SUPERVISOR.name]["pid"]))
            bringup_alive = proc.poll() is None
        finally:
            _stop_bringup(proc, info)
    assert info is None or supervisor_alive or not bringup_alive, (
        "bringup said the graph started, and runs on, but its supervisor is dead: "
        f"{(tmp_path / 'bringup' / 'medrobot_supervisor.log').read_text(encoding='utf-8')[-300:]}")
