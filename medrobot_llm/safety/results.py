"""The skill server's signed result: the supervisor believes a step's outcome only from the robot that ran it.

The blind attack tests of issue 15 found that any node can register a second action server under
``/medrobot/execute_skill``: the supervisor's goal requests reach it too, and whichever server answers first is
heard. It cannot make the robot move (the real skill server still decides every goal), but it could report a
step as done that never ran, and the supervisor would go on from a world that is not the robot's. The skill
server, holding the graph secret, signs each result over the goal it answers and every field of the result; the
signature is made with the key of the skill server's graph, so a result copied from another graph fails too. The
supervisor treats a result without a valid signature as the step failing, never as its outcome.
"""

from __future__ import annotations

from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.signing import MAC_HEX, Untrusted, graph_key, is_hex, mac, mac_matches

__all__ = ["PURPOSE", "sign_result", "verify_result"]

PURPOSE = "medrobot.result.v1"


def _fields(goal_id: str, success: bool, failure_kind: str, message: str, outcome_json: str,
            world_json: str) -> list[str | int]:
    return [goal_id, int(success), failure_kind, message, outcome_json, world_json]


def sign_result(secret: bytes, *, goal_id: str, success: bool, failure_kind: str, message: str, outcome_json: str,
                world_json: str, graph: str = "") -> str:
    """The skill server's signature over its result for the goal ``goal_id`` (hex UUID)."""
    fields = _fields(goal_id, success, failure_kind, message, outcome_json, world_json)
    return mac(graph_key(secret, graph), PURPOSE, fields)


def verify_result(secret: bytes, signature: str, *, goal_id: str, success: bool, failure_kind: str, message: str,
                  outcome_json: str, world_json: str, graph: str = "") -> None:
    """Nothing if a skill server holding ``secret`` signed exactly this result for ``goal_id``; else
    ``Untrusted(BAD_SIGNATURE)`` (a missing signature included)."""
    fields = _fields(goal_id, success, failure_kind, message, outcome_json, world_json)
    if not is_hex(signature, MAC_HEX) or not mac_matches(graph_key(secret, graph), PURPOSE, fields, signature):
        raise Untrusted(Reason.BAD_SIGNATURE, f"the result for goal {goal_id[:8]} is not signed by a skill server of "
                        "this graph (another node answered the goal, or it was altered); the step is taken as failed")
