"""Where the ROS 2 environment comes from, and the one message for when it is missing.

The wheels' shared libraries are found through ``LD_LIBRARY_PATH``, which the loader reads once when a
process starts, so ROS processes are always started with the environment ``scripts/install_ros.sh``
wrote, never patched from inside a running interpreter.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from medrobot_llm.core.paths import SOURCE_ROOT
from medrobot_llm.safety.graph_id import GRAPH_ID

__all__ = [
    "DomainClaim",
    "DomainBusy",
    "INSTALL_HINT",
    "NetworkDomainClaim",
    "claim_network_domain",
    "RosEnvError",
    "child_env",
    "env_file",
    "graph_identity",
    "node_graph",
    "load_ros_env",
    "ros_python",
    "repo_root",
    "unique_domain_id",
]

INSTALL_HINT = ("run `bash scripts/install_ros.sh` (it installs ROS 2 and builds ros_ws), then start from a shell "
                "that sourced ros_ws/install/medrobot_env.sh, e.g. `bash scripts/test.sh ...`")


class RosEnvError(RuntimeError):
    """ROS 2 or the built workspace is not available; the message says how to get it."""


def repo_root() -> Path:
    return SOURCE_ROOT


def env_file() -> Path:
    """``medrobot_env.json`` of the workspace: ``$MEDROBOT_ROS_WS`` if set, else the source tree's."""
    ws = os.environ.get("MEDROBOT_ROS_WS")
    base = Path(ws) if ws else repo_root() / "ros_ws"
    return base / "install" / "medrobot_env.json"


def load_ros_env() -> dict[str, str]:
    path = env_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RosEnvError(f"no ROS 2 environment file at {path}: {INSTALL_HINT}") from None
    except (OSError, ValueError) as exc:
        raise RosEnvError(f"cannot read the ROS 2 environment file {path} ({exc}): {INSTALL_HINT}") from None
    if not isinstance(data, dict) or "MEDROBOT_ROS_PYTHON" not in data:
        raise RosEnvError(f"{path} does not name MEDROBOT_ROS_PYTHON: {INSTALL_HINT}")
    return {str(k): str(v) for k, v in data.items()}


def graph_identity(domain_id: int, graph_id: str = "") -> str:
    """Which graph a node is on, as every node of it computes for itself: the ROS domain its context joined and,
    from ``medrobot bringup``, the id that bringup drew for this start (``safety.graph_id``).

    Every key that gives authority is derived from the graph secret and this (``signing.graph_key``), so two
    bringups of one user on two domains, sharing one keys folder, trust nothing of each other's, and neither do
    two bringups on ONE domain id that cannot hear each other (two rooms on two networks, a keys folder copied
    to both): each has its own graph id. A node started by hand without a graph id keeps the domain-only
    identity, and so has no protection against such a relay. The discovery scope is left out on purpose: nodes
    that can hear each other on one domain are one graph.
    """
    if not graph_id:
        return f"ros-domain={int(domain_id)}"
    if not GRAPH_ID.fullmatch(graph_id):
        raise ValueError(f"a graph id is 16 lowercase hex digits (what medrobot bringup draws), not {graph_id!r}")
    return f"ros-domain={int(domain_id)};graph={graph_id}"


def node_graph(node: str, domain_id: int, graph_id: str) -> str:
    """A node's ``graph_identity`` from its ``graph_id`` parameter; a malformed one stops the node, saying so."""
    try:
        return graph_identity(domain_id, graph_id)
    except ValueError as exc:
        raise SystemExit(f"medrobot {node}: graph_id: {exc}") from None


def child_env(ros_domain_id: int | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a ROS child process: the caller's, then the workspace's ROS variables.

    DDS discovery stays on loopback unless the caller asked otherwise, and ``ros_domain_id`` (if given)
    keeps this graph apart from any other on the machine.
    """
    env = dict(os.environ if base is None else base)
    ros = load_ros_env()
    for key, value in ros.items():
        if key in ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH",
                   "COLCON_PREFIX_PATH") and env.get(key):
            parts = value.split(":") + [p for p in env[key].split(":") if p not in value.split(":")]
            env[key] = ":".join(p for p in parts if p)
        else:
            env[key] = value
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if not env.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if ros_domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(ros_domain_id))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ros_python() -> str:
    return load_ros_env()["MEDROBOT_ROS_PYTHON"]


class DomainClaim:
    """A ROS_DOMAIN_ID held for one graph (a test module, a benchmark) until ``release``.

    The id is claimed with an exclusive lock on a file in the temp dir, so parallel test runs on one
    machine never pick the same id and never see each other's nodes; the lock goes with the process.
    """

    def __init__(self, domain_id: int, fd: int) -> None:
        self.domain_id = domain_id
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


#: the ROS_DOMAIN_IDs this process has claimed so far
_CLAIMED_BEFORE: set[int] = set()


def unique_domain_id(rng: random.Random | None = None) -> DomainClaim:
    """Claim a free ROS_DOMAIN_ID in 1..101 (0 is everyone's default; Fast DDS's port map ends at 101)."""
    import fcntl
    import tempfile

    r = rng or random.SystemRandom()
    ids = list(range(1, 102))
    r.shuffle(ids)
    # ids this process had before go last: a node of an earlier claim that was not torn down yet (its transient
    # local e-stop, its state) would otherwise greet the next graph on the same id as history
    ids.sort(key=lambda i: i in _CLAIMED_BEFORE)
    lock_dir = Path(tempfile.gettempdir())
    for i in ids:
        fd = os.open(lock_dir / f"medrobot_ros_domain_{i}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _CLAIMED_BEFORE.add(i)
        return DomainClaim(i, fd)
    raise RosEnvError("all ROS_DOMAIN_IDs 1..101 are claimed by other medrobot graphs on this machine")


class DomainBusy(RuntimeError):
    """Another medrobot graph runs on this ROS domain id in this network namespace: the two would hear each other."""


class NetworkDomainClaim:
    """A running graph's hold on (network namespace, ROS domain id) on this machine, until ``release``.

    Two bringups on one domain id in one network hear each other whatever their keys folders (issue 15, fourth
    attack: each supervisor took the other's planner answers and goals, and faulted). Apart from the test rigs'
    ``DomainClaim`` files: a test claims an id first and then runs bringup on it. ``fd`` is handed to the nodes,
    so the hold lasts as long as any node of the graph lives."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self._open = True

    def release(self) -> None:
        if self._open:
            os.close(self.fd)
            self._open = False


def network_namespace() -> int:
    """The inode of this process's network namespace: graphs in two namespaces cannot hear each other."""
    return os.stat("/proc/self/ns/net").st_ino


def claim_network_domain(ros_domain_id: int) -> NetworkDomainClaim:
    """Lock ``medrobot_graph_net<inode>_domain<id>.lock`` in the temp dir, or ``DomainBusy``.

    The file is 0644 so that another user's bringup can open it read-only and flock it: a graph of theirs on this
    id counts too. A file this process cannot open is taken as busy (it cannot prove the id free)."""
    import fcntl
    import tempfile

    path = Path(tempfile.gettempdir()) / f"medrobot_graph_net{network_namespace()}_domain{int(ros_domain_id)}.lock"
    flags = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    advice = ("give this graph another --ros-domain-id (its consoles use the same); a keys folder of its own "
              "(--keys) keeps apart only graphs on different networks")
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        except PermissionError:  # another user's file: a read-only descriptor can be flocked as well
            fd = os.open(path, os.O_RDONLY | flags)
    except OSError as exc:
        raise DomainBusy(f"cannot open {path} ({exc.strerror}), so ROS_DOMAIN_ID {ros_domain_id} may be in use by "
                         f"another graph on this network: {advice}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise DomainBusy(f"another medrobot graph runs on ROS_DOMAIN_ID {ros_domain_id} on this machine's network "
                         f"({path} is locked), and two graphs on one domain id hear each other: {advice}") from None
    if os.fstat(fd).st_uid == os.geteuid():
        os.fchmod(fd, 0o644)  # the umask may have taken the read bits other users need
    return NetworkDomainClaim(path, fd)
