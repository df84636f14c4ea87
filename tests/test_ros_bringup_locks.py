"""What keeps one graph per ROS domain id on a network, and keeps it whole (issue 15, fourth attack).

Bringup holds the network's domain id and its keys folder's graph file; its nodes inherit both locks and die with
it; a node that exits stops the graph; every node takes its parameters at start only, and an integer is a float
parameter's value. The lock tests are pure Python; the node tests start rclpy on a claimed domain id.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from medrobot_llm.backends.ros.env import DomainBusy, claim_network_domain, network_namespace, unique_domain_id
from medrobot_llm.safety.graph_id import GraphBusy, claim_graph
from tests._ros_helpers import require_ros

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def domain_id() -> Iterator[int]:
    claim = unique_domain_id()
    try:
        yield claim.domain_id
    finally:
        claim.release()


def test_one_graph_per_domain_id_on_this_network_whatever_its_keys_folder(domain_id: int) -> None:
    first = claim_network_domain(domain_id)
    try:
        assert stat.S_IMODE(os.fstat(first.fd).st_mode) == 0o644  # another user's bringup may flock it read-only
        assert f"net{network_namespace()}_domain{domain_id}" in first.path.name
        with pytest.raises(DomainBusy, match="another --ros-domain-id") as busy:
            claim_network_domain(domain_id)
        assert "different networks" in str(busy.value)
    finally:
        first.release()
    claim_network_domain(domain_id).release()  # free again once the graph stopped


def test_a_file_it_cannot_open_counts_as_busy(domain_id: int, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / f"medrobot_graph_net{network_namespace()}_domain{domain_id}.lock").symlink_to(target)
    with pytest.raises(DomainBusy, match="cannot open"):
        claim_network_domain(domain_id)


def test_a_graph_file_held_by_the_nodes_of_a_dead_bringup_says_they_still_run(tmp_path: Path) -> None:
    """The lock passes to the nodes with their inherited descriptor; the refusal names what holds it."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    claim = claim_graph(keys, 5)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    path = keys / "graph-5.json"
    path.write_text(path.read_text(encoding="utf-8").replace(f'"pid": {os.getpid()}', f'"pid": {dead}'),
                    encoding="utf-8")
    try:
        with pytest.raises(GraphBusy, match="nodes of a medrobot graph whose bringup .* is gone still run"):
            claim_graph(keys, 5)
    finally:
        claim.release()


@pytest.mark.ros
def test_a_node_takes_parameters_at_start_only_and_an_integer_for_a_float(domain_id: int) -> None:
    require_ros()
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from medrobot_llm.backends.ros.common import PARAMETERS_AT_START_ONLY, start_parameters

    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node, other = Node("medrobot_test_params", context=context), Node("medrobot_test_params2", context=context)
    try:
        p = start_parameters(node, {"window_s": 1.0, "name": ""}, {"window_s": 10})
        assert p == {"window_s": 10.0, "name": ""} and isinstance(p["window_s"], float)
        for change in (Parameter("use_sim_time", value=True), Parameter("window_s", value=0.5)):
            (result,) = node.set_parameters([change])
            assert not result.successful and result.reason == PARAMETERS_AT_START_ONLY
        assert not node.get_clock().ros_time_is_active
        assert node.get_parameter("window_s").value == 10.0
        with pytest.raises(SystemExit, match="window_s must be a number"):
            start_parameters(other, {"window_s": 1.0}, {"window_s": "soon"})
    finally:
        node.destroy_node()
        other.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.ros
@pytest.mark.slow
def test_a_node_that_exits_stops_the_graph_and_bringup_says_which(domain_id: int, tmp_path: Path) -> None:
    require_ros()
    proc = subprocess.run(
        [sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", "--json", "--ros-domain-id",
         str(domain_id), "--keys", str(tmp_path / "keys"), "--log-dir", str(tmp_path / "log"),
         "--set", "medrobot_planner.planner=nonsense"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, start_new_session=True,
        env=dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "the graph stopped because medrobot_planner exited" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "keys" / f"graph-{domain_id}.json").exists()  # its locks given up
    claim_network_domain(domain_id).release()
