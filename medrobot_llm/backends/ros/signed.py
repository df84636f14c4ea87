"""The signed messages (``safety.operator``, ``safety.heartbeat``) as typed ROS messages, and back to the wire form
their verifiers parse.

A received message goes back to the same JSON the verifier reads for any other transport, so there is one parser
and one set of shape checks, whatever carried the message: a typed field can hold nothing the JSON form could not.
"""

from __future__ import annotations

import json
from typing import Any

from medrobot_interfaces.msg import Heartbeat as HeartbeatMsg
from medrobot_interfaces.msg import OperatorMessage as OperatorMsg

from medrobot_llm.safety.heartbeat import Heartbeat
from medrobot_llm.safety.operator import OperatorMessage

__all__ = ["heartbeat_msg", "heartbeat_wire", "operator_msg", "operator_wire"]


def operator_msg(m: OperatorMessage) -> Any:
    return OperatorMsg(kind=m.kind.value, operator_id=m.operator, answers=m.answers, counter=m.counter,
                       stamp_ms=m.stamp_ms, body=m.body, mac=m.mac)


def operator_wire(msg: Any) -> str:
    """``OperatorMessage.from_wire``'s input for a received ``OperatorMessage`` (``operator_id``: C++ reserves
    ``operator``)."""
    return json.dumps({"kind": msg.kind, "operator": msg.operator_id, "answers": msg.answers, "counter": int(msg.counter),
                       "stamp_ms": int(msg.stamp_ms), "body": msg.body, "mac": msg.mac},
                      separators=(",", ":"), ensure_ascii=True)


def heartbeat_msg(hb: Heartbeat) -> Any:
    return HeartbeatMsg(instance=hb.instance, seq=hb.seq, stamp_ms=hb.stamp_ms, released_ms=hb.released_ms, mac=hb.mac)


def heartbeat_wire(msg: Any) -> str:
    return json.dumps({"instance": msg.instance, "seq": int(msg.seq), "stamp_ms": int(msg.stamp_ms),
                       "released_ms": int(msg.released_ms), "mac": msg.mac}, separators=(",", ":"), ensure_ascii=True)
