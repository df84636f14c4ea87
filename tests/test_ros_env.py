"""Without the ROS environment, everything ROS says how to get it (pure Python, no ROS needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medrobot_llm.backends.ros.env import (
    INSTALL_HINT, RosEnvError, child_env, graph_identity, load_ros_env, unique_domain_id,
)

ROOT = Path(__file__).resolve().parent.parent


def test_missing_env_file_names_the_install_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDROBOT_ROS_WS", str(tmp_path))
    with pytest.raises(RosEnvError, match="scripts/install_ros.sh"):
        load_ros_env()
    out = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**child_env_base(), "MEDROBOT_ROS_WS": str(tmp_path)})
    assert out.returncode == 2 and "scripts/install_ros.sh" in out.stderr, out.stderr


def child_env_base() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "MEDROBOT_ROS_WS"}


def test_child_env_keeps_dds_local_and_sets_the_domain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "install").mkdir()
    (tmp_path / "install" / "medrobot_env.json").write_text(json.dumps(
        {"MEDROBOT_ROS_PYTHON": sys.executable, "LD_LIBRARY_PATH": "/ros/lib"}))
    monkeypatch.setenv("MEDROBOT_ROS_WS", str(tmp_path))
    env = child_env(42, base={"LD_LIBRARY_PATH": "/mine", "ROS_AUTOMATIC_DISCOVERY_RANGE": ""})
    assert env["ROS_DOMAIN_ID"] == "42" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["LD_LIBRARY_PATH"] == "/ros/lib:/mine"
    assert INSTALL_HINT.startswith("run `bash scripts/install_ros.sh`")


def test_the_graph_identity_is_the_domain_and_the_bringups_graph_id() -> None:
    """What every key is derived for: two domains are two graphs, and so are two bringups on one domain id (two
    networks); a discovery setting does not make another one. A node without a graph id is on the domain alone."""
    assert graph_identity(25) == "ros-domain=25"
    assert graph_identity(25) != graph_identity(26)
    a, b = graph_identity(25, "0123456789abcdef"), graph_identity(25, "fedcba9876543210")
    assert a == "ros-domain=25;graph=0123456789abcdef" and len({a, b, graph_identity(25)}) == 3
    for bad in ("0123", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef;graph=x"):
        with pytest.raises(ValueError, match="16 lowercase hex"):
            graph_identity(25, bad)


def test_domain_ids_are_claimed_exclusively() -> None:
    a = unique_domain_id()
    b = unique_domain_id()
    try:
        assert a.domain_id != b.domain_id and 1 <= a.domain_id <= 101
    finally:
        a.release()
        b.release()


def _fake_ws(tmp_path: Path) -> Path:
    (tmp_path / "install").mkdir(exist_ok=True)
    (tmp_path / "install" / "medrobot_env.json").write_text(json.dumps({"MEDROBOT_ROS_PYTHON": sys.executable}))
    return tmp_path


def test_bringup_help_says_what_it_starts_and_how_to_reach_it() -> None:
    out = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "bringup", "--help"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for needed in ("--domain {surgery,ultrasound,xray}", "medrobot_skill_server", "medrobot_supervisor",
                   "medrobot_planner", "sim.launch.py", "config/medrobot.yaml", "scripts/install_ros.sh",
                   "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST", "--ros-domain-id", "Ctrl-C", "/medrobot/command",
                   "/medrobot/estop", "example:"):
        assert needed in text, f"{needed!r} missing from `medrobot bringup --help`:\n{out.stdout}"


@pytest.mark.parametrize("argv, why", [
    (["--set", "medrobot_robot.gui=true"], "NODE.PARAM=VALUE"),
    (["--set", "medrobot_supervisor.confirm_timeout_s"], "NODE.PARAM=VALUE"),
    (["--ros-domain-id", "400"], "0..232"),
    (["--real-time-factor", "-1"], ">= 0"),
    (["--params", "/no/such/params.yaml"], "no parameters file"),
])
def test_bringup_refuses_bad_arguments_before_starting_anything(tmp_path: Path, argv: list[str], why: str) -> None:
    out = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", *argv],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**child_env_base(), "MEDROBOT_ROS_WS": str(_fake_ws(tmp_path))})
    assert out.returncode == 2 and why in out.stderr, out.stderr
    assert not list(tmp_path.glob("**/*.log"))


def test_bringup_refuses_an_unusable_key_before_starting_anything(tmp_path: Path) -> None:
    from medrobot_llm.safety.keys import init_keys

    keys_dir = tmp_path / "keys"
    init_keys(keys_dir, ["someone"])
    (keys_dir / "graph.key").chmod(0o644)
    out = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", "--keys",
                          str(keys_dir), "--log-dir", str(tmp_path / "logs")], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={**child_env_base(), "MEDROBOT_ROS_WS": str(_fake_ws(tmp_path))})
    assert out.returncode == 2 and "graph.key" in out.stderr and "chmod 600" in out.stderr, out.stderr
    assert not (tmp_path / "logs").exists()


def test_a_second_bringup_on_one_keys_folder_and_domain_id_is_refused_naming_the_first(tmp_path: Path) -> None:
    """It would replace the first one's graph id under that graph's consoles; another domain id is fine."""
    from medrobot_llm.safety.graph_id import claim_graph, read_graph_id

    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o700)
    first = claim_graph(keys_dir, 7)  # as the running bringup holds it
    try:
        out = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", "--keys",
                              str(keys_dir), "--ros-domain-id", "7", "--log-dir", str(tmp_path / "logs")],
                             capture_output=True, text=True, timeout=60, cwd=ROOT,
                             env={**child_env_base(), "MEDROBOT_ROS_WS": str(_fake_ws(tmp_path))})
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert f"pid {os.getpid()}" in out.stderr and "--ros-domain-id" in out.stderr and "--keys" in out.stderr
        assert not (tmp_path / "logs").exists()
        assert read_graph_id(keys_dir, 7) == first.graph  # the first one's id is left alone
    finally:
        first.release()


def test_bringup_never_records_over_a_file_and_names_a_path_it_cannot_write(tmp_path: Path) -> None:
    kept = tmp_path / "kept.mcap"
    kept.write_bytes(b"an earlier recording")
    for path, why in ((kept, "never writes over a file"), (tmp_path / "kept.mcap" / "x.mcap", "cannot write")):
        out = subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "bringup", "--domain", "xray", "--mcap",
                              str(path), "--keys", str(tmp_path / "keys"), "--log-dir", str(tmp_path / "logs")],
                             capture_output=True, text=True, timeout=60, cwd=ROOT,
                             env={**child_env_base(), "MEDROBOT_ROS_WS": str(_fake_ws(tmp_path))})
        assert out.returncode == 2 and why in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert not list(tmp_path.glob("**/*.log"))
    assert kept.read_bytes() == b"an earlier recording"


def test_bringup_and_the_launch_file_start_the_same_nodes_from_one_parameters_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from medrobot_llm.backends.ros.nodes import RECORDER
    from medrobot_llm.cli.bringup import NODES, Graph, default_params_file

    pkg = ROOT / "ros_ws" / "src" / "medrobot_bringup"
    params = pkg / "config" / "medrobot.yaml"
    assert default_params_file() == params
    sections = yaml.safe_load(params.read_text(encoding="utf-8"))
    assert set(sections) - {"/**"} == set(NODES)
    launch = (pkg / "launch" / "sim.launch.py").read_text(encoding="utf-8")
    # the node list itself: tests/test_one_definition.py runs the launch file against the node table
    assert '"config", "medrobot.yaml"' in launch
    for node in NODES:  # the executables the launch file names exist and run the same modules
        script = (pkg / "scripts" / node).read_text(encoding="utf-8")
        assert f"from {NODES[node]} import main" in script

    monkeypatch.setenv("MEDROBOT_ROS_WS", str(_fake_ws(tmp_path)))
    graph = Graph("xray", ros_domain_id=9, log_dir=tmp_path / "logs",
                  overrides={"medrobot_skill_server": {"real_time_factor": "0.0"}})
    assert graph.env["ROS_DOMAIN_ID"] == "9" and graph.env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    for node, module in NODES.items():
        argv = graph.command(node)
        assert argv[:3] == [sys.executable, "-m", module]
        assert argv[argv.index("--params-file") + 1] == str(params)
        assert f"{node}:domain:=xray" in argv
        assert f"{node}:keys_dir:={graph.keys_dir}" in argv  # every node loads its keys from one folder
        assert not [a for a in argv if ":graph_id:=" in a]  # none drawn yet: the domain alone
    graph.keys_dir = tmp_path / "keys"
    graph.keys_dir.mkdir(mode=0o700)
    graph.claim_graph()
    try:
        for node in NODES:  # quoted, so that rcl reads an id of digits only as a string
            assert f"{node}:graph_id:='{graph.graph_id}'" in graph.command(node)
        assert graph.describe()["graph_id"] == graph.graph_id
    finally:
        graph.stop()
    assert not (graph.keys_dir / "graph-9.json").exists()  # a clean stop removes it
    assert RECORDER.name not in graph.names  # recorded only when asked
    recorded = Graph("xray", ros_domain_id=9, log_dir=tmp_path / "logs", mcap=tmp_path / "graph.mcap")
    assert recorded.names == [RECORDER.name, *NODES]  # it listens before the graph says anything
    argv = recorded.command(RECORDER.name)
    assert argv[:3] == [sys.executable, "-m", RECORDER.module]
    assert f"{RECORDER.name}:mcap:={tmp_path / 'graph.mcap'}" in argv and f"{RECORDER.name}:domain:=xray" in argv
    assert "medrobot_skill_server:real_time_factor:=0.0" in graph.command("medrobot_skill_server")
    assert f"medrobot_skill_server:audit_log:={tmp_path / 'logs' / 'skill_server_audit.jsonl'}" \
        in graph.command("medrobot_skill_server")
