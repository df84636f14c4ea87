"""``medrobot bringup --domain D``: the ROS 2 graph (planner, supervisor, skill server) as processes.

The wheels have no ``launch`` package, so this starts the same nodes as ``sim.launch.py`` from the same
parameters file. Each node is its own process in its own session, started with the workspace's ROS
environment (``ros_ws/install/medrobot_env.json``: ``LD_LIBRARY_PATH`` must be there when a process
starts), with DDS discovery on loopback. The keys (docs/trust.md) are created first where missing, and every
node is told their folder: no node runs without them. Ctrl-C (or SIGTERM, or SIGHUP: a closed terminal) stops every
child: SIGINT first, so nodes close cleanly, then SIGTERM, then SIGKILL. A node that exits while the graph runs
stops the whole graph too (``--on-node-exit keep`` leaves the others running), and the nodes die with bringup
(SIGINT from the kernel, ``PR_SET_PDEATHSIG``), so no graph runs on unwatched after a SIGKILL of bringup. Bringup
holds two locks, which its nodes inherit, so that they last while any node of the graph lives: the keys folder's
graph id file (``safety.graph_id``) and this network's ROS domain id (``env.claim_network_domain``). With
``--mcap FILE`` a recorder node (``backends/ros/recorder_node.py``) starts first and stops last, so the file holds
the graph from its first state to its last. Nothing here imports rclpy.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from medrobot_llm.backends.ros import nodes
from medrobot_llm.backends.ros.nodes import PLANNER, RECORDER, SKILL_SERVER, SUPERVISOR
from medrobot_llm.core.paths import SOURCE_ROOT
from medrobot_llm.safety.graph_id import GraphBusy, GraphClaim, graph_file

if TYPE_CHECKING:
    from medrobot_llm.backends.ros.env import NetworkDomainClaim

__all__ = ["NODES", "Graph", "claim_mcap", "default_params_file", "register", "ros_domain_id"]

#: node name -> module with its ``main``; the order is the start order (the robot first)
NODES: dict[str, str] = {n.name: n.module for n in nodes.NODES}
#: linux/prctl.h: the signal a child gets when the thread that forked it ends
PR_SET_PDEATHSIG = 1
#: SIGINT, as Ctrl-C: a node closes cleanly on it (its audit log sealed, the recorder's file finished)
DEATH_SIGNAL = signal.SIGINT
#: the signals that stop bringup cleanly, stopping its nodes in order (SIGHUP: its terminal was closed)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: how long the recorder may take to open its file before the graph starts without waiting any longer
RECORDER_START_S = 20.0


def default_params_file() -> Path:
    """The bringup package's ``config/medrobot.yaml``: the source tree's, else the built workspace's."""
    candidates = [SOURCE_ROOT / "ros_ws" / "src" / "medrobot_bringup" / "config" / "medrobot.yaml"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(":"):
        if prefix:
            candidates.append(Path(prefix) / "share" / "medrobot_bringup" / "config" / "medrobot.yaml")
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError("no medrobot_bringup/config/medrobot.yaml found (source tree or AMENT_PREFIX_PATH)")


class Graph:
    """The three node processes of one domain, and a recorder if ``mcap`` names a file; ``overrides`` maps node
    name -> {param: value}."""

    def __init__(self, domain: str, *, params_file: Path | None = None, ros_domain_id: int | None = None,
                 log_dir: Path | None = None, overrides: dict[str, dict[str, str]] | None = None,
                 keys_dir: Path | None = None, mcap: Path | None = None) -> None:
        from medrobot_llm.backends.ros.env import child_env, load_ros_env
        from medrobot_llm.safety.keys import default_dir

        self.domain = domain
        self.keys_dir = Path(keys_dir) if keys_dir else default_dir()
        self.params_file = Path(params_file) if params_file else default_params_file()
        self.env = child_env(ros_domain_id)
        self.python = load_ros_env()["MEDROBOT_ROS_PYTHON"]
        self.ros_domain_id = int(self.env.get("ROS_DOMAIN_ID", "0") or 0)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_dir = Path(log_dir) if log_dir else Path.home() / ".medrobot" / "logs" / f"bringup-{stamp}-{os.getpid()}"
        self.overrides = overrides or {}
        self.mcap = Path(mcap).absolute() if mcap else None
        #: the start order: the recorder (if any) before the graph it records
        self.names = ([RECORDER.name] if self.mcap else []) + list(NODES)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        #: this start's graph id (``safety.graph_id``), set by ``claim_graph``; "" leaves nodes domain-only
        self.graph_id = ""
        self._claim: GraphClaim | None = None
        self._net: NetworkDomainClaim | None = None

    @property
    def audit_log(self) -> Path:
        return self.log_dir / "audit.jsonl"

    @property
    def skill_server_audit_log(self) -> Path:
        """The skill server's own record of the goals it refused (the supervisor may be gone when it matters)."""
        return self.log_dir / "skill_server_audit.jsonl"

    def init_keys(self) -> list[Any]:
        """Create whatever key is missing (the graph secret, this user's operator key); keep the rest."""
        from medrobot_llm.safety.keys import default_operator, init_keys

        return init_keys(self.keys_dir, [default_operator()])

    def claim_graph(self) -> None:
        """Draw this start's graph id and hold ``graph-<ROS domain id>.json`` in the keys folder for it, so consoles
        learn it out of band; ``GraphBusy`` if another bringup holds it. Then hold this network's ROS domain id
        (``DomainBusy`` if another graph runs on it, whatever its keys folder). ``stop`` lets go of both and removes
        the file."""
        from medrobot_llm.backends.ros.env import claim_network_domain
        from medrobot_llm.safety.graph_id import claim_graph

        self._claim = claim_graph(self.keys_dir, self.ros_domain_id)
        self.graph_id = self._claim.graph.graph_id
        try:
            self._net = claim_network_domain(self.ros_domain_id)
        except BaseException:
            self._claim.release()
            self._claim = None
            raise

    def held_fds(self) -> tuple[int, ...]:
        """The locks' descriptors, for every node to inherit."""
        return tuple(c.fd for c in (self._claim, self._net) if c is not None)

    def command(self, name: str) -> list[str]:
        params = {"domain": self.domain, "keys_dir": str(self.keys_dir)}
        if self.graph_id:
            # quoted: rcl reads a -p value as YAML, and an id of digits only would be an integer
            params["graph_id"] = f"'{self.graph_id}'"
        module = NODES.get(name, RECORDER.module)
        if name == RECORDER.name:
            params = {"domain": self.domain, "mcap": str(self.mcap)}
        elif name == SUPERVISOR.name:
            params["audit_log"] = str(self.audit_log)
        elif name == SKILL_SERVER.name:
            params["audit_log"] = str(self.skill_server_audit_log)
        params.update(self.overrides.get(name, {}))
        argv = [self.python, "-m", module, "--ros-args", "--params-file", str(self.params_file)]
        for key, value in params.items():
            # node-qualified: a global -p would lose to the file's node section (rcl's precedence)
            argv += ["-p", f"{name}:{key}:={value}"]
        return argv

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            log = open(self.log_path(name), "ab")
            self._logs[name] = log
            self.procs[name] = subprocess.Popen(self.command(name), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True,
                                                pass_fds=self.held_fds(), preexec_fn=die_with(os.getpid()))
            if name == RECORDER.name:
                self._await_recorder()

    def _await_recorder(self) -> None:
        """Until the recorder has written its file's header (it subscribes right after), it died, or the time is
        up: a record the supervisor publishes before the recorder listens is on no MCAP topic (the audit log has
        it)."""
        assert self.mcap is not None
        deadline = time.monotonic() + RECORDER_START_S
        while time.monotonic() < deadline and self.procs[RECORDER.name].poll() is None:
            if self.mcap.is_file() and self.mcap.stat().st_size > 0:
                return
            time.sleep(0.05)

    def describe(self) -> dict[str, Any]:
        return {"domain": self.domain, "ros_domain_id": self.ros_domain_id, "params_file": str(self.params_file),
                "log_dir": str(self.log_dir), "audit_log": str(self.audit_log),
                "skill_server_audit_log": str(self.skill_server_audit_log), "keys_dir": str(self.keys_dir),
                "mcap": str(self.mcap) if self.mcap else None, "graph_id": self.graph_id,
                "discovery_range": self.env.get("ROS_AUTOMATIC_DISCOVERY_RANGE"),
                "nodes": {n: {"pid": p.pid, "log": str(self.log_path(n))} for n, p in self.procs.items()}}

    def dead(self) -> dict[str, int]:
        return {n: rc for n, p in self.procs.items() if (rc := p.poll()) is not None}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal one node's whole process group (tests: a skill server that dies)."""
        p = self.procs[name]
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace_s: float = 5.0) -> dict[str, int]:
        """SIGINT every node, then SIGTERM, then SIGKILL whatever is left; returns the exit codes. The recorder
        is stopped after the graph, so that it hears the graph's last words."""
        self._stop([n for n in self.procs if n != RECORDER.name], grace_s)
        self._stop([n for n in self.procs if n == RECORDER.name], grace_s)
        for p in self.procs.values():
            if p.poll() is None:
                p.wait(1.0)
        for log in self._logs.values():
            log.close()
        if self._claim is not None:
            self._claim.release()
            self._claim = None
        if self._net is not None:
            self._net.release()
            self._net = None
        return {n: p.returncode for n, p in self.procs.items()}

    def _stop(self, names: list[str], grace_s: float) -> None:
        for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            alive = [n for n in names if self.procs[n].poll() is None]
            if not alive:
                break
            for n in alive:
                self.kill(n, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(self.procs[n].poll() is None for n in alive):
                time.sleep(0.05)

    def tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.log_path(name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def die_with(parent: int) -> Callable[[], None]:
    """The child's last step before exec: the kernel sends it ``DEATH_SIGNAL`` when bringup ends, however it ends
    (SIGKILL, the OOM killer). Bringup forks from its only thread, the one the kernel watches. A bringup that died
    between the fork and the prctl is caught by ``getppid``: the child then never runs."""

    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def ros_domain_id(given: int | None) -> int | None:
    """``--ros-domain-id``, else ``$ROS_DOMAIN_ID``, else 0; None when outside 0..232."""
    domain_id = int(os.environ.get("ROS_DOMAIN_ID") or 0) if given is None else given
    return domain_id if 0 <= domain_id <= 232 else None


def claim_mcap(path: Path) -> str:
    """Claim the recording's file (never one with anything in it) before any node starts, so that a path that
    cannot be written, or the mcap extra missing, is said once here and not in a node's log; "" when fine."""
    import importlib.util

    from medrobot_llm.cli.mcap_output import EXTRA_MODULES

    missing = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        return f"--mcap needs the mcap extra ({missing[0]} is not installed): pip install 'medrobot_llm[mcap]'"
    from medrobot_llm.core.outputs import claim_output

    try:
        # the rule every recording follows: a new or empty regular file nobody writes; the node takes it over
        os.close(claim_output(path))
    except OSError as exc:  # a file where a folder should be is a FileExistsError too
        return f"cannot write the MCAP file {path}: {exc.strerror or exc}"
    return ""


def _parse_set(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or node not in NODES or not param.isidentifier():
            raise ValueError(f"--set {item!r}: expected NODE.PARAM=VALUE with NODE one of {', '.join(NODES)}")
        out.setdefault(node, {})[param] = value
    return out


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import add_confirm_motion_argument, add_domain_argument

    p = sub.add_parser(
        "bringup",
        help="start the ROS 2 graph (planner, supervisor, PyBullet skill server) as processes",
        description=f"Start the ROS 2 nodes of one domain ({', '.join(NODES)}) as separate processes, from the "
        "same parameters file as "
        "`ros2 launch medrobot_bringup sim.launch.py`; for machines with only the ROS 2 wheels. Needs "
        "scripts/install_ros.sh to have run. DDS discovery stays on this machine "
        "(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless already set). Ctrl-C stops every node.",
        epilog="example: medrobot bringup --domain ultrasound --ros-domain-id 7, then, from a shell with "
        "ROS_DOMAIN_ID=7: `medrobot console --domain ultrasound --ros`. One graph per ROS domain id on a "
        "network: a second bringup on it is refused. Commands (/medrobot/command), "
        "confirmations (/medrobot/confirm) and resets (/medrobot/reset) are signed operator messages "
        "(docs/trust.md); anyone may stop with true on /medrobot/estop, and only a signed reset releases.",
    )
    add_domain_argument(p, "-d", help="which robot and command set")
    p.add_argument("--params", type=Path, default=None, help="parameters file (default: the bringup package's "
                   "config/medrobot.yaml, the one sim.launch.py reads)")
    p.add_argument("--ros-domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID for the graph, 0..232 (default: $ROS_DOMAIN_ID, else 0); consoles must "
                   "use the same")
    p.add_argument("--log-dir", type=Path, default=None, help="where node logs and the audit log go "
                   "(default: ~/.medrobot/logs/bringup-<time>-<pid>)")
    p.add_argument("--keys", type=Path, default=None, metavar="DIR",
                   help="the keys folder (default: $MEDROBOT_KEYS, else ~/.config/medrobot/keys); the graph secret "
                   "and your operator key are created there if missing")
    p.add_argument("--gui", action="store_true", help="open the PyBullet window")
    p.add_argument("--real-time-factor", type=float, default=None,
                   help="1 = the robot moves in real time (the parameters file's default), 0 = as fast as the "
                   "physics computes")
    p.add_argument("--planner", choices=("rule", "openai", "hybrid"), default=None,
                   help="how text becomes a plan (default: the parameters file's, rule); openai/hybrid take the "
                   "same settings as `medrobot plan`")
    add_confirm_motion_argument(p, default=False, where=f" (the {SUPERVISOR.name} node's confirm_hazards "
                                "parameter; off leaves the parameters file's)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help=f"override one parameter of one node, e.g. {SUPERVISOR.name}.confirm_timeout_s=10 "
                   "(repeatable)")
    p.add_argument("--mcap", type=Path, default=None, metavar="FILE",
                   help="record the graph (states, operator messages, e-stop, heartbeats, records, telemetry, "
                   "pictures) into this new MCAP file for Foxglove or Lichtblick (needs the mcap extra; an "
                   "existing file is never overwritten)")
    p.add_argument("--on-node-exit", choices=("stop", "keep"), default="stop",
                   help="when a node exits while the graph runs: stop the whole graph and exit non-zero naming it "
                   "(default), or keep the others running (to restart that node by hand, or to test a graph "
                   "without it)")
    p.add_argument("--json", action="store_true", help="print the graph (pids, logs) as one JSON line")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medrobot_llm.backends.ros.env import DomainBusy, RosEnvError

    try:
        overrides = _parse_set(args.set)
    except ValueError as exc:
        print(f"medrobot bringup: {exc}", file=sys.stderr)
        return 2
    if args.gui:
        overrides.setdefault(SKILL_SERVER.name, {})["gui"] = "true"
    if args.real_time_factor is not None:
        if not args.real_time_factor >= 0:
            print("medrobot bringup: --real-time-factor must be >= 0", file=sys.stderr)
            return 2
        overrides.setdefault(SKILL_SERVER.name, {})["real_time_factor"] = repr(float(args.real_time_factor))
    if args.confirm_motion:
        from medrobot_llm.cli.options import confirm_hazards

        overrides.setdefault(SUPERVISOR.name, {})["confirm_hazards"] = ",".join(confirm_hazards(args))
    if args.planner:
        overrides.setdefault(PLANNER.name, {})["planner"] = args.planner
    domain_id = ros_domain_id(args.ros_domain_id)
    if domain_id is None:
        print("medrobot bringup: --ros-domain-id must be in 0..232", file=sys.stderr)
        return 2
    if args.params is not None and not args.params.is_file():
        # each node would die on it with rcl's traceback, one after another: say it once, before starting any
        print(f"medrobot bringup: no parameters file at {args.params}; give the path of a ROS 2 parameters YAML "
              "(or leave --params out for the bringup package's)", file=sys.stderr)
        return 2
    try:
        graph = Graph(args.domain, params_file=args.params, ros_domain_id=domain_id, log_dir=args.log_dir,
                      overrides=overrides, keys_dir=args.keys, mcap=args.mcap)
    except (RosEnvError, FileNotFoundError) as exc:
        print(f"medrobot bringup: {exc}", file=sys.stderr)
        return 2
    from medrobot_llm.safety.keys import KeyFileError

    try:
        made = graph.init_keys()
    except (KeyFileError, OSError, ValueError) as exc:
        print(f"medrobot bringup: cannot prepare the keys in {graph.keys_dir}: {exc}", file=sys.stderr)
        return 2
    unusable = [k for k in made if k.problem]
    if unusable:
        print("medrobot bringup: " + "; ".join(k.problem for k in unusable), file=sys.stderr)
        return 2
    try:
        graph.claim_graph()
    except (GraphBusy, DomainBusy) as exc:
        print(f"medrobot bringup: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"medrobot bringup: cannot write the graph id file in {graph.keys_dir}: {exc}", file=sys.stderr)
        return 2
    if args.mcap is not None:
        problem = claim_mcap(args.mcap)
        if problem:
            graph.stop()
            print(f"medrobot bringup: {problem}", file=sys.stderr)
            return 2
    created = [k for k in made if k.action == "created"]
    if created:  # with --json, stdout holds the one JSON line
        print(f"medrobot bringup: created {', '.join(Path(k.path).name for k in created)} in {graph.keys_dir}",
              file=sys.stderr if args.json else sys.stdout, flush=True)

    stopping = [False]

    def on_signal(signum: int, _frame: Any) -> None:
        stopping[0] = True

    old = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    died: list[str] = []
    try:
        graph.start()
        info = graph.describe()
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(f"medrobot bringup: {args.domain} graph on ROS_DOMAIN_ID={graph.ros_domain_id} "
                  f"(discovery {info['discovery_range']}), parameters {graph.params_file}")
            for name, n in info["nodes"].items():
                print(f"  {name:24s} pid {n['pid']:<7d} log {n['log']}")
            if graph.mcap is not None:
                print(f"  recording to {graph.mcap} (closed when the graph stops)")
            print(f"  audit log {graph.audit_log} (skill server: {graph.skill_server_audit_log})\n"
                  f"  keys {graph.keys_dir} (graph id {graph.graph_id}, for consoles in "
                  f"{graph_file(graph.keys_dir, graph.ros_domain_id).name} there)\nCtrl-C stops all nodes.", flush=True)
        reported: set[str] = set()
        while not stopping[0]:
            for name, rc in graph.dead().items():
                if name not in reported:
                    reported.add(name)
                    died.append(name)
                    then = ("the others keep running (Ctrl-C stops them)" if args.on_node_exit == "keep" else
                            "stopping the graph")
                    print(f"medrobot bringup: {name} exited with {rc}; {then}. Last log lines:\n{graph.tail(name)}",
                          file=sys.stderr, flush=True)
            if reported >= set(NODES) or (died and args.on_node_exit == "stop"):
                break
            time.sleep(0.1)
    finally:
        codes = graph.stop()
        for s, h in old.items():
            signal.signal(s, h)
    if not args.json:
        print("medrobot bringup: stopped (" + ", ".join(f"{n} {rc}" for n, rc in codes.items()) + ")", flush=True)
    if died and args.on_node_exit == "stop":
        print(f"medrobot bringup: the graph stopped because {', '.join(died)} exited", file=sys.stderr, flush=True)
        return 1
    return 0 if stopping[0] else 1
