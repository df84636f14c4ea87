"""The planner's signed answer: a plan reaches the supervisor only as the answer to the command it asked about.

Issue 15's attack 1 pushed a ready-made plan onto a topic the supervisor obeyed, skipping the planner and
its text screen. Now the supervisor itself asks the planner (``/medrobot/plan``) with the accepted operator
command's MAC as ``request_id``, and the planner node, which holds the graph secret, signs its answer over
that id, the domain, the text and the plan, with the key of its graph. An answer for another command, an altered plan or an answer
from a node without the secret, or a planner of another graph, fails the MAC; the validator still checks every plan that passes.
"""

from __future__ import annotations

from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.signing import MAC_HEX, Untrusted, graph_key, is_hex, mac, mac_matches

__all__ = ["PURPOSE", "sign_answer", "verify_answer"]

PURPOSE = "medrobot.plan.v1"


def _fields(request_id: str, domain: str, text: str, status: str, plan_json: str) -> list[str | int]:
    return [request_id, domain, text, status, plan_json]


def sign_answer(secret: bytes, *, request_id: str, domain: str, text: str, status: str, plan_json: str,
                graph: str = "") -> str:
    """The planner node's signature over its answer to ``request_id``, with the key of its graph."""
    return mac(graph_key(secret, graph), PURPOSE, _fields(request_id, domain, text, status, plan_json))


def verify_answer(secret: bytes, signature: str, *, request_id: str, domain: str, text: str, status: str,
                  plan_json: str, graph: str = "") -> None:
    """Nothing if the planner holding ``secret`` signed exactly this answer to ``request_id``; else
    ``Untrusted(BAD_SIGNATURE)`` (a missing signature included: no unsigned plan is ever acted on)."""
    if not signature:
        raise Untrusted(Reason.BAD_SIGNATURE, f"refused the plan for {text[:60]!r}: the planner's answer is not "
                        "signed (is the planner node running with the graph's keys?)")
    fields = _fields(request_id, domain, text, status, plan_json)
    if not is_hex(signature, MAC_HEX) or not mac_matches(graph_key(secret, graph), PURPOSE, fields, signature):
        raise Untrusted(Reason.BAD_SIGNATURE, f"refused the plan for {text[:60]!r}: its signature does not verify "
                        "with this graph's key for this command (forged, altered, for another command or another graph)")
