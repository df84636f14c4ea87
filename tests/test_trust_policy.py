"""The SROS2 policy shipped for installs with DDS Security says the trust model (docs/trust.md) in DDS terms.

It restates the graph's names in XML, which cannot import them, so it is held to the contract here: every
node of the table has an enclave, every name it grants is one of the contract's, and the authority it
grants is the trust model's (only the supervisor sends goals, beats, reads the operator topics and asks the
planner).
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

from medrobot_llm.backends.ros.nodes import NODES, PLANNER, SKILL_SERVER, SUPERVISOR

#: the consoles' node (RemoteSupervisor's default name), which the node table does not list
CONSOLE = "medrobot_console"

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "ros_ws" / "src" / "medrobot_bringup" / "security" / "policy.xml"
COMMON = ROOT / "medrobot_llm" / "backends" / "ros" / "common.py"


def _contract_names() -> dict[str, str]:
    """``TOPIC_*``, ``SERVICE_*`` and ``ACTION_*`` of backends/ros/common.py, read without importing rclpy."""
    names = {}
    for node in ast.parse(COMMON.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.split("_")[0] in ("TOPIC", "SERVICE", "ACTION"):
                names[target.id] = str(node.value.value)
    return names


def _grants() -> set[tuple[str, str, str]]:
    """(node, permission, name) for every ALLOW in the policy."""
    out = set()
    for profile in ET.parse(POLICY).getroot().iter("profile"):
        for group in profile:
            for permission, rule in group.attrib.items():
                if rule == "ALLOW":
                    out |= {(profile.attrib["node"], permission, (item.text or "").strip()) for item in group}
    return out


def test_the_policy_is_sros2_format_with_an_enclave_per_node() -> None:
    root = ET.parse(POLICY).getroot()
    assert root.tag == "policy" and root.attrib["version"] == "0.2.0"
    enclaves = root.findall("./enclaves/enclave")
    nodes = {p.attrib["node"] for e in enclaves for p in e.iter("profile")}
    assert {n.name for n in NODES} <= nodes
    assert all(e.attrib["path"].startswith("/medrobot/") for e in enclaves)


def test_every_name_it_grants_is_the_contracts() -> None:
    contract = set(_contract_names().values())
    ours = {name for _, _, name in _grants() if name.startswith("/")}
    assert ours and ours <= contract, ours - contract
    assert contract <= ours, f"contract names no enclave may use: {contract - ours}"


def test_it_grants_the_trust_models_authority() -> None:
    names = _contract_names()
    grants = _grants()

    def who(permission: str, name: str) -> set[str]:
        return {node for node, p, n in grants if p == permission and n == name}

    assert who("call", names["ACTION_EXECUTE"]) == {SUPERVISOR.name}
    assert who("execute", names["ACTION_EXECUTE"]) == {SKILL_SERVER.name}
    assert who("publish", names["TOPIC_STATE"]) == {SUPERVISOR.name}
    assert who("publish", names["TOPIC_HEARTBEAT"]) == {SUPERVISOR.name}
    beat_readers = who("subscribe", names["TOPIC_HEARTBEAT"])
    assert beat_readers and all(n.startswith(SKILL_SERVER.name) for n in beat_readers), beat_readers
    for operator_topic in ("TOPIC_COMMAND", "TOPIC_CONFIRM", "TOPIC_RESET"):
        assert who("subscribe", names[operator_topic]) == {SUPERVISOR.name}, operator_topic
        assert who("publish", names[operator_topic]) == {CONSOLE}, operator_topic
    assert who("request", names["SERVICE_PLAN"]) == {SUPERVISOR.name}, "plans come only when the supervisor asks"
    assert who("reply", names["SERVICE_PLAN"]) == {PLANNER.name}
    assert who("publish", names["TOPIC_ESTOP"]) == {node for node, _, _ in grants}, "anyone may stop"
