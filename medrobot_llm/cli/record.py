"""``medrobot record --domain D --mcap FILE``: record a running graph into one MCAP file.

The recorder node of ``medrobot bringup --mcap``, on its own, for a graph already running (started by
``medrobot bringup`` or by ``ros2 launch``). This process becomes the node (exec, with the workspace's ROS
environment, which must be there when a process starts): Ctrl-C and SIGTERM close the file with its summary and
index, and a SIGKILL leaves it readable up to the node's last flush (a second at most). Nothing here imports rclpy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import add_domain_argument

    p = sub.add_parser(
        "record",
        help="record a running ROS 2 graph into an MCAP file (Foxglove, Lichtblick)",
        description="Record the graph of one domain (states, signed operator messages, e-stop, heartbeats, the "
        "supervisor's records, robot status, goal statuses, telemetry and the pictures steps save) into a new "
        "MCAP file, until Ctrl-C or SIGTERM. `medrobot bringup --mcap FILE` does the same for the graph it "
        "starts. Needs the mcap extra and scripts/install_ros.sh to have run.",
        epilog="example: medrobot bringup --domain xray --ros-domain-id 7, then "
        "medrobot record --domain xray --ros-domain-id 7 --mcap runs/xray-graph.mcap",
    )
    add_domain_argument(p, "-d", help="the graph's domain (names the telemetry and picture topics)")
    p.add_argument("--mcap", type=Path, required=True, metavar="FILE",
                   help="the new MCAP file (an existing file is never overwritten)")
    p.add_argument("--ros-domain-id", type=int, default=None,
                   help="the graph's ROS_DOMAIN_ID, 0..232 (default: $ROS_DOMAIN_ID, else 0)")
    p.add_argument("--json", action="store_true", help="print the recording (file, ROS_DOMAIN_ID, pid) as one "
                   "JSON line before recording")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medrobot_llm.backends.ros.env import RosEnvError
    from medrobot_llm.backends.ros.nodes import RECORDER
    from medrobot_llm.cli.bringup import Graph, claim_mcap, ros_domain_id

    domain_id = ros_domain_id(args.ros_domain_id)
    if domain_id is None:
        print("medrobot record: --ros-domain-id must be in 0..232", file=sys.stderr)
        return 2
    try:
        graph = Graph(args.domain, ros_domain_id=domain_id, mcap=args.mcap)
    except (RosEnvError, FileNotFoundError) as exc:
        print(f"medrobot record: {exc}", file=sys.stderr)
        return 2
    problem = claim_mcap(args.mcap)
    if problem:
        print(f"medrobot record: {problem}", file=sys.stderr)
        return 2
    info = {"mcap": str(graph.mcap), "domain": args.domain, "ros_domain_id": graph.ros_domain_id, "pid": os.getpid()}
    print(json.dumps(info) if args.json else f"medrobot record: the {args.domain} graph on ROS_DOMAIN_ID="
          f"{graph.ros_domain_id} into {graph.mcap}; Ctrl-C stops and closes the file", flush=True)
    argv = graph.command(RECORDER.name)
    os.execve(argv[0], argv, graph.env)  # the node takes this process over: its signals are the recording's
