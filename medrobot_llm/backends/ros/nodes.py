"""The ROS 2 graph's nodes, listed once.

``medrobot bringup``, ``sim.launch.py``, each node's own name, the wheel's console scripts
(``pyproject.toml``) and the bringup package's executables (``ros_ws/src/medrobot_bringup/scripts``) all
name these nodes; the Python ones import this table, and ``tests/test_one_definition.py`` holds the files
that cannot import it to it. No rclpy here: the launch file and the CLI read it without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NODES", "PLANNER", "RECORDER", "SKILL_SERVER", "SUPERVISOR", "RosNode"]


@dataclass(frozen=True)
class RosNode:
    """One node: its ROS name (also the bringup executable), the module whose ``main`` runs it, and the
    console script the wheel installs for it."""

    name: str
    module: str
    script: str


SKILL_SERVER = RosNode("medrobot_skill_server", "medrobot_llm.backends.ros.skill_server", "medrobot-skill-server")
SUPERVISOR = RosNode("medrobot_supervisor", "medrobot_llm.backends.ros.supervisor_node", "medrobot-supervisor-node")
PLANNER = RosNode("medrobot_planner", "medrobot_llm.backends.ros.planner_node", "medrobot-planner-node")

#: the start order: the robot first, so the supervisor finds it and the planner comes last
NODES: tuple[RosNode, ...] = (SKILL_SERVER, SUPERVISOR, PLANNER)

#: not part of the graph: ``medrobot bringup --mcap FILE`` starts it before the graph and stops it after, so the
#: file holds the graph's first and last words (no launch file, console script or bringup executable names it)
RECORDER = RosNode("medrobot_recorder", "medrobot_llm.backends.ros.recorder_node", "")
