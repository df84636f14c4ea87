"""An attacker on the same machine: an ordinary rclpy node, in a process of its own, that holds no graph secret.

Issue 15's attacks are run by this script so that nothing of the test process (its console, its keys) helps
them: it sees the graph only through DDS, the way any other process on the machine can. The test passes one
JSON object as argv[1]:

    {"name": NODE_NAME, "sniff": [TOPIC, ...], "sniff_goals": bool, "actions": [ACTION, ...]}

``sniff`` subscribes to those operator-message or heartbeat topics from the start (what was captured can be
replayed); ``sniff_goals`` answers ``/medrobot/execute_skill``'s goal requests alongside the real skill server
(a second server on an action sees every goal sent to it) and never replies, so it only reads the goals and
their capabilities. Each action is an object with ``do`` (see ``Rogue.run``); its result is collected. The
script prints ``{"ready": true}`` once its endpoints are discovered, then one object ``{"results": [...]}``.
``{"do": "go"}`` waits for one line on stdin: the test's signal that the graph is where the attack needs it.

Strings ``"$nonce"`` and ``"$plan_id"`` in an action stand for the latest ``/medrobot/state``'s fields,
``"$nonce@N"`` for the nonce recorded by the N-th ``wait_state`` action, and ``"TOPIC_CONFIRM"`` (any name of
``backends.ros.common``) for that topic.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
import uuid
from typing import Any

import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from std_msgs.msg import Bool, Empty, String
from unique_identifier_msgs.msg import UUID

from medrobot_interfaces.action import ExecuteSkill
from medrobot_interfaces.msg import Heartbeat as HeartbeatMsg
from medrobot_interfaces.msg import OperatorMessage as OperatorMsg
from medrobot_interfaces.msg import SupervisorState as StateMsg

from medrobot_llm.backends.ros import common
from medrobot_llm.backends.ros.common import (ACTION_EXECUTE, TOPIC_HEARTBEAT, TOPIC_STATE, GoalClient, latched_qos,
                                              reliable_qos)
from medrobot_llm.safety import keys
from medrobot_llm.safety.capability import PURPOSE as CAPABILITY_PURPOSE
from medrobot_llm.safety.capability import canonical_args
from medrobot_llm.safety.heartbeat import PURPOSE as HEARTBEAT_PURPOSE
from medrobot_llm.backends.ros.env import graph_identity
from medrobot_llm.safety.graph_id import GraphStale, read_graph_id
from medrobot_llm.safety.operator import PURPOSE as OPERATOR_PURPOSE
from medrobot_llm.safety.operator import OperatorKind, OperatorMessage
from medrobot_llm.safety.signing import mac, millis

SEND_GOAL = f"{ACTION_EXECUTE}/_action/send_goal"


class Rogue:
    def __init__(self, spec: dict[str, Any]) -> None:
        rclpy.init()
        self.node = rclpy.create_node(spec.get("name") or f"rogue_{os.getpid()}")
        self.group = ReentrantCallbackGroup()
        self.lock = threading.Condition()
        self.state: dict[str, Any] = {}
        self.seen_states: list[dict[str, Any]] = []
        self.captured: dict[str, list[Any]] = {}
        self.goals: list[dict[str, Any]] = []
        self.nonces: list[str] = []
        self.hold = threading.Event()  # a sniffed goal request is never answered
        self.sniffers: list[Any] = []
        self.counter = 0
        self.node.create_subscription(StateMsg, TOPIC_STATE, self._on_state, latched_qos(1),
                                      callback_group=self.group)
        for name in spec.get("sniff", []):
            topic = _topic(name)
            kind = HeartbeatMsg if topic == TOPIC_HEARTBEAT else OperatorMsg
            self.captured[topic] = []
            self.sniffers.append(self.node.create_subscription(kind, topic, self._capturer(topic), reliable_qos(50),
                                                               callback_group=self.group))
        if spec.get("sniff_goals"):
            self.node.create_service(ExecuteSkill.Impl.SendGoalService, SEND_GOAL, self._on_goal_request,
                                     callback_group=self.group)
        self.client = GoalClient(self.node, ExecuteSkill, ACTION_EXECUTE, callback_group=self.group)
        self.pubs: dict[tuple[str, str], Any] = {}
        self.executor = MultiThreadedExecutor(num_threads=6)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    # ------------------------------------------------------------------ incoming
    def _on_state(self, msg: Any) -> None:
        state = {"state": msg.state, "nonce": msg.nonce, "plan_id": msg.plan_id, "step_index": msg.step_index,
                 "awaiting_step": msg.awaiting_step, "question": msg.question, "session": msg.session,
                 "seq": msg.seq}
        with self.lock:
            self.state = state
            self.seen_states.append(state)
            self.lock.notify_all()

    def _capturer(self, topic: str) -> Any:
        """A one-argument callback (rclpy passes a second one, the message info, to callbacks that take two)."""
        def capture(msg: Any) -> None:
            with self.lock:
                self.captured[topic].append(msg)
                self.lock.notify_all()
        return capture

    def _on_goal_request(self, request: Any, response: Any) -> Any:
        g = request.goal
        with self.lock:
            self.goals.append({"goal_id": bytes(request.goal_id.uuid).hex(), "plan_id": g.plan_id,
                               "step_index": int(g.step_index), "skill": g.skill, "args_json": g.args_json,
                               "domain": g.domain, "capability": g.capability})
            self.lock.notify_all()
        self.hold.wait()  # the process ends before this returns: the real skill server alone answers the goal
        return response

    # ------------------------------------------------------------------ helpers
    def _pub(self, kind: Any, topic: str, latched: bool = False, apart: bool = False) -> Any:
        """A publisher, kept; ``apart`` puts it in a DDS participant of its own, for an old message type on a
        topic whose current type this process also publishes (one participant refuses two types per topic)."""
        key = (kind.__name__, topic)
        if key not in self.pubs:
            node = self.node
            if apart:
                context = rclpy.Context()
                rclpy.init(context=context)
                node = rclpy.create_node(f"rogue_apart_{os.getpid()}_{len(self.pubs)}", context=context)
            self.pubs[key] = node.create_publisher(kind, topic, latched_qos(5) if latched else reliable_qos(10))
            self._await_subscribers(self.pubs[key])
        return self.pubs[key]

    @staticmethod
    def _await_subscribers(pub: Any, timeout: float = 2.0) -> None:
        """Until someone matched (else whatever is published is lost before any check could refuse it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pub.get_subscription_count() == 0:
            time.sleep(0.02)

    def _subst(self, value: Any) -> Any:
        """``$field`` from the latest state, ``$nonce@N``, or a contract name (``TOPIC_*``) for its topic."""
        if isinstance(value, str) and value.startswith("TOPIC_"):
            return _topic(value)
        if isinstance(value, str) and value.startswith("$"):
            with self.lock:
                if value.startswith("$nonce@"):
                    return self.nonces[int(value[len("$nonce@"):])]
                return self.state.get(value[1:], "")
        return value

    # ------------------------------------------------------------------ actions
    def run(self, action: dict[str, Any]) -> dict[str, Any]:
        do = action["do"]
        handler = getattr(self, f"do_{do}")
        out: dict[str, Any] = handler(**{k: self._subst(v) for k, v in action.items() if k != "do"})
        return {"do": do, **out}

    def do_go(self) -> dict[str, Any]:
        line = sys.stdin.readline()
        return {"line": line.strip()}

    def do_sleep(self, seconds: float) -> dict[str, Any]:
        time.sleep(seconds)
        return {}

    def do_mark(self, label: str) -> dict[str, Any]:
        """Tell the test how far the attack got (one line on stdout), without ending it."""
        print(json.dumps({"mark": label}), flush=True)
        return {"label": label}

    def do_wait_state(self, state: str, timeout: float = 20.0, awaiting_step: int | None = None,
                      other_than: str = "") -> dict[str, Any]:
        """Until the supervisor publishes ``state`` (with a nonce other than ``other_than``, if given); its nonce
        is recorded for ``"$nonce@N"``."""
        def ok() -> bool:
            s = self.state
            return s.get("state") == state and (awaiting_step is None or s.get("awaiting_step") == awaiting_step) \
                and (not other_than or s.get("nonce") != other_than)

        with self.lock:
            found = self.lock.wait_for(ok, timeout)
            s = dict(self.state)
            self.nonces.append(s.get("nonce", ""))
        return {"found": found, "state": s}

    def do_bool(self, topic: str, data: bool, latched: bool = False, apart: bool = False) -> dict[str, Any]:
        self._pub(Bool, topic, latched, apart).publish(Bool(data=data))
        return {"topic": topic, "data": data}

    def do_empty(self, topic: str, apart: bool = False) -> dict[str, Any]:
        self._pub(Empty, topic, apart=apart).publish(Empty())
        return {"topic": topic}

    def do_string(self, topic: str, data: str, apart: bool = False) -> dict[str, Any]:
        self._pub(String, topic, apart=apart).publish(String(data=data))
        return {"topic": topic}

    def do_operator(self, topic: str, kind: str, operator: str, answers: str = "", body: str = "",
                    key: str = "random", stamp_offset_ms: int = 0) -> dict[str, Any]:
        """An operator message signed with ``key``: "random" (a made-up key), "file" (the operator's real key
        from $MEDROBOT_KEYS: a stale console of a genuine operator, which also reads the graph's id there, as a
        console does) or "garbage" (a MAC that is not one)."""
        stamp = millis(time.time()) + stamp_offset_ms
        self.counter = counter = max(self.counter + 1, stamp)  # as a console counts: two in one ms still differ
        domain_id = self.node.context.get_domain_id()
        try:
            found = read_graph_id(keys.default_dir(), domain_id)
        except GraphStale:  # as a console does: a file no running bringup holds gives no id
            found = None
        graph = graph_identity(domain_id, found.graph_id if found else "")
        fields = OperatorMessage(OperatorKind(kind), operator, answers, counter, stamp, body).fields(graph)
        if key == "garbage":
            signature = secrets.token_hex(32)
        else:
            secret = keys.load_operator_key(operator) if key == "file" else secrets.token_bytes(32)
            signature = mac(secret, OPERATOR_PURPOSE, fields)
        msg = OperatorMsg(kind=kind, operator_id=operator, answers=answers, counter=counter, stamp_ms=stamp,
                          body=body, mac=signature)
        self._pub(OperatorMsg, topic).publish(msg)
        return {"topic": topic, "kind": kind, "operator": operator, "answers": answers, "counter": counter}

    def _of(self, topic: str, operator: str) -> list[Any]:
        """What was captured on ``topic`` (our own messages too), only ``operator``'s if given."""
        return [m for m in self.captured[topic] if not operator or getattr(m, "operator_id", "") == operator]

    def do_wait_captured(self, topic: str, count: int = 1, timeout: float = 20.0, operator: str = "") -> dict[str, Any]:
        with self.lock:
            found = self.lock.wait_for(lambda: len(self._of(topic, operator)) >= count, timeout)
            got = self._of(topic, operator)
        return {"found": found, "captured": [_fields(m) for m in got]}

    def do_replay(self, topic: str, index: int = -1, operator: str = "") -> dict[str, Any]:
        """Publish a message captured on ``topic`` (``operator``'s, if given) again, unchanged."""
        with self.lock:
            msg = self._of(topic, operator)[index]
        kind = HeartbeatMsg if topic == TOPIC_HEARTBEAT else OperatorMsg
        self._pub(kind, topic).publish(msg)
        return {"topic": topic, "replayed": _fields(msg)}

    def do_heartbeat(self, count: int = 5, period: float = 0.1) -> dict[str, Any]:
        """Beats that look like a supervisor's, under a key that is not the graph secret."""
        pub = self._pub(HeartbeatMsg, TOPIC_HEARTBEAT)
        instance, secret = secrets.token_hex(8), secrets.token_bytes(32)
        for seq in range(1, count + 1):
            stamp = millis(time.time())
            pub.publish(HeartbeatMsg(instance=instance, seq=seq, stamp_ms=stamp, released_ms=stamp,
                                     mac=mac(secret, HEARTBEAT_PURPOSE, [instance, seq, stamp, stamp])))
            time.sleep(period)
        return {"beats": count}

    def do_publish_heartbeat(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A heartbeat with exactly these fields: a genuine beat recorded earlier, replayed."""
        self._pub(HeartbeatMsg, TOPIC_HEARTBEAT).publish(HeartbeatMsg(**fields))
        return {"replayed": fields}

    def do_forge_state(self, state: str, plan_id: str, step_index: int, skill: str,
                       session: str = "") -> dict[str, Any]:
        """One forged supervisor state, then the publisher is gone (issue 15, attack 5)."""
        pub = self.node.create_publisher(StateMsg, TOPIC_STATE, latched_qos(1))
        self._await_subscribers(pub)
        with self.lock:
            seq = int(self.state.get("seq", 0)) + 1
            session = session or str(self.state.get("session") or "")
        msg = StateMsg(seq=seq, session=session, domain="xray", state=state, plan_id=plan_id,
                       step_index=step_index, steps=step_index + 1, skill=skill, awaiting_step=-1,
                       nonce=secrets.token_hex(16))
        msg.stamp = self.node.get_clock().now().to_msg()
        pub.publish(msg)
        self.node.destroy_publisher(pub)
        return {"state": state, "plan_id": plan_id, "step_index": step_index}

    def do_wait_goal(self, count: int = 1, timeout: float = 20.0) -> dict[str, Any]:
        with self.lock:
            found = self.lock.wait_for(lambda: len(self.goals) >= count, timeout)
            return {"found": found, "goals": list(self.goals)}

    def do_goal(self, plan_id: str, step_index: int, skill: str, args_json: str = "{}", domain: str = "xray",
                capability: str = "none", captured: int = -1, timeout: float = 15.0) -> dict[str, Any]:
        """One goal straight to the skill server. ``capability``: "none", "forged" (well-formed, signed with a
        made-up key), "captured" (the capability of sniffed goal ``captured``, unchanged) or a literal."""
        goal_id = uuid.uuid4()
        if capability == "none":
            cap = ""
        elif capability == "forged":
            cap = _forged_capability(plan_id, step_index, skill, args_json, domain, goal_id.hex)
        elif capability == "captured":
            with self.lock:
                cap = self.goals[captured]["capability"]
        else:
            cap = capability
        if not self.client.wait_for_server(timeout_sec=5.0):
            return {"server": False}
        goal = ExecuteSkill.Goal(plan_id=plan_id, step_index=step_index, skill=skill, args_json=args_json,
                                 domain=domain, capability=cap)
        done = threading.Event()
        out: dict[str, Any] = {"goal_id": goal_id.hex, "skill": skill, "step_index": step_index,
                               "with_capability": capability}
        # wait_for_server can say yes before the server's reply path to this client is matched (DDS discovery
        # is not symmetric), and then the request is answered into the void: the same goal is sent again, up to
        # three times, so a server that never answers still fails, and one reached too early does not
        for tries in range(1, 4):
            fut = self.client.send_goal_async(goal, goal_uuid=UUID(uuid=list(goal_id.bytes)))
            fut.add_done_callback(lambda _f: done.set())
            if done.wait(timeout / 3):
                out["tries"] = tries
                break
        else:
            return {**out, "answered": False}
        handle = fut.result()
        out.update(answered=True, accepted=bool(handle.accepted))
        if not handle.accepted:
            return out
        done.clear()
        res = handle.get_result_async()
        res.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            return {**out, "finished": False}
        r = res.result().result
        # status 0 (unknown): asked after the server had forgotten the goal (it keeps results 1 s), an empty result
        return {**out, "finished": True, "success": bool(r.success), "failure_kind": r.failure_kind,
                "message": r.message, "status": int(res.result().status)}

    def finish(self, results: list[dict[str, Any]]) -> None:
        with self.lock:
            states = [s["state"] for s in self.seen_states]
        print(json.dumps({"results": results, "states": states}), flush=True)
        os._exit(0)  # never answer a held goal request; no clean shutdown needed by anyone


def _topic(name: str) -> str:
    """A contract name (``TOPIC_CONFIRM``) as its topic; anything else (a topic that is gone) as it is."""
    return str(getattr(common, name)) if name.startswith("TOPIC_") else name


def _fields(msg: Any) -> dict[str, Any]:
    return {name: (int(v) if isinstance(v, int) else v) for name in msg.get_fields_and_field_types()
            if isinstance(v := getattr(msg, name), (int, str))}


def _forged_capability(plan_id: str, step_index: int, skill: str, args_json: str, domain: str,
                       goal_id: str) -> str:
    now = millis(time.time())
    cap: dict[str, Any] = {"plan_id": plan_id, "step_index": step_index, "skill": skill,
                           "args": canonical_args(args_json), "domain": domain, "goal_id": goal_id,
                           "issued_ms": now, "expires_ms": now + 5000, "nonce": secrets.token_hex(16),
                           "graph": f"ros-domain={os.environ.get('ROS_DOMAIN_ID', '0')}"}
    cap["mac"] = mac(secrets.token_bytes(32), CAPABILITY_PURPOSE, list(cap.values()))
    return json.dumps(cap, separators=(",", ":"))


def main() -> None:
    spec = json.loads(sys.argv[1])
    rogue = Rogue(spec)
    # discovery: the supervisor (and with it the graph) is heard before anything is sent
    deadline = time.monotonic() + (15.0 if spec.get("await_state", True) else 0.0)
    while time.monotonic() < deadline and not rogue.state:
        time.sleep(0.02)
    for sub in rogue.sniffers:  # what is sent before its publisher matched us is never seen
        while time.monotonic() < deadline + 10.0 and sub.get_publisher_count() == 0:
            time.sleep(0.02)
    if spec.get("sniff_goals"):
        time.sleep(1.0)  # the supervisor's action client must match the second server before it sends a goal
    print(json.dumps({"ready": True, "state": rogue.state}), flush=True)
    results = []
    for action in spec.get("actions", []):
        try:
            results.append(rogue.run(action))
        except Exception as exc:  # noqa: BLE001 - an attack that could not be made is reported, not hidden
            results.append({"do": action.get("do"), "error": f"{type(exc).__name__}: {exc}"})
    rogue.finish(results)


if __name__ == "__main__":
    main()
