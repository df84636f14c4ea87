"""The planner node: the ``/medrobot/plan`` service (PlanCommand), which the supervisor calls for each accepted
operator command (architecture.md: the supervisor calls the planner).

Every text is planned (rule planner by default; ``planner:=openai`` or ``hybrid`` with the same settings as the
CLI, from the environment or ``llm_config``) and the answer is signed with the graph secret over the request's
id (the operator message's MAC), domain, text, status and plan (``safety.planned``): the supervisor acts only on
its own command's answer from a planner holding the secret, and still validates the plan against the world.
The node reads no topic: nothing reaches the supervisor as a plan except through this answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from medrobot_interfaces.srv import PlanCommand

from medrobot_llm.backends.ros.env import node_graph
from medrobot_llm.backends.ros.nodes import PLANNER
from medrobot_llm.core.command_set import DOMAINS
from medrobot_llm.core.plan import Plan
from medrobot_llm.core.reasons import Reason
from medrobot_llm.planning.admission import plan_text
from medrobot_llm.planning.base import Planner
from medrobot_llm.planning.factory import add_planner_arguments, make_planner
from medrobot_llm.core.validator import WorldState
from medrobot_llm.backends.ros.common import SERVICE_PLAN, spin_node, start_parameters
from medrobot_llm.safety import keys
from medrobot_llm.safety.gate import to_json, world_from_json
from medrobot_llm.safety.planned import sign_answer

__all__ = ["PlannerNode", "main", "planner_from_name"]

NODE_NAME = PLANNER.name


def planner_from_name(name: str, llm_config: str = "") -> Planner:
    """The CLI's planner for ``--planner NAME`` (so the node and ``medrobot plan`` plan alike)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_planner_arguments(parser)
    argv = ["--planner", name] + (["--llm-config", llm_config] if llm_config else [])
    return make_planner(parser.parse_args(argv))


class PlannerNode(Node):
    def __init__(self, **overrides: Any) -> None:
        super().__init__(NODE_NAME)
        p = start_parameters(self, {"domain": "", "planner": "rule", "llm_config": "", "keys_dir": "",
                                    "graph_id": ""}, overrides)
        self.domain = str(p["domain"])
        name, llm_config, keys_dir, graph_id = (str(p[k]) for k in ("planner", "llm_config", "keys_dir", "graph_id"))
        if not self.domain:
            raise SystemExit("medrobot planner: the 'domain' parameter is required "
                             f"({', '.join(DOMAINS)})")
        try:
            self._secret = keys.load_graph_secret(Path(keys_dir).expanduser() if keys_dir else None)
        except keys.KeyFileError as exc:
            raise SystemExit(f"medrobot planner: {exc}") from None
        self.graph = node_graph("planner", self.context.get_domain_id(), graph_id)
        try:
            self.planner = planner_from_name(name, llm_config)
        except (ValueError, SystemExit) as exc:
            raise SystemExit(f"medrobot planner: cannot build the {name!r} planner: {exc}") from None
        self._group = MutuallyExclusiveCallbackGroup()
        self.create_service(PlanCommand, SERVICE_PLAN, self._on_plan, callback_group=self._group)
        self.get_logger().info(f"planner '{name}' for {self.domain}: service {SERVICE_PLAN}, answers signed for graph {self.graph}")

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        try:
            if world is None:
                return plan_text(self.planner, domain, text)
            plan = plan_text(self.planner, domain, text)
            if plan.status.value == "ok":
                replanned = self.planner.plan(domain, " ".join(text.split()), world)
                return replanned
            return plan
        except Exception as exc:  # noqa: BLE001 - a planner bug refuses; it never moves anything
            return Plan.refused(domain, f"the planner failed ({type(exc).__name__}: {exc})", Reason.PLANNER_ERROR)

    def _on_plan(self, request: Any, response: Any) -> Any:
        world: WorldState | None = None
        if request.world_state_json.strip():
            try:
                world = world_from_json(json.loads(request.world_state_json))
            except ValueError as exc:
                plan = Plan.refused(request.domain, f"world_state_json is not a world state ({exc})", Reason.MALFORMED)
                return self._answer(request, response, plan)
        return self._answer(request, response, self.plan(request.domain, request.text, world))

    def _answer(self, request: Any, response: Any, plan: Plan) -> Any:
        response.status, response.plan_json = plan.status.value, to_json(plan.to_json())
        response.signature = sign_answer(self._secret, request_id=request.request_id, domain=request.domain,
                                         text=request.text, status=response.status, plan_json=response.plan_json,
                                         graph=self.graph)
        return response


def main(argv: Sequence[str] | None = None) -> int:
    return spin_node(PlannerNode, threads=2, args=list(argv) if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
