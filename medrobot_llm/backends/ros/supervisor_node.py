"""The supervisor node: the pure-Python ``Supervisor`` with a ``RosSkillBackend``, wired to the graph.

In: signed operator messages (``medrobot_interfaces/OperatorMessage``, docs/trust.md) on ``/medrobot/command``
(command, cancel, stop), ``/medrobot/confirm`` (confirm, deny) and ``/medrobot/reset`` (reset), judged by
``safety.operator_gate``; ``/medrobot/estop`` (true = stop and latch, from anyone; false releases nothing).
Out: ``/medrobot/state`` on every change and a few times a second (with the nonce operators must answer, and
its question sealed for each operator: ``safety.asked``), ``/medrobot/events`` (every audit record, step
feedback, and one sealed ``reply`` per operator message, refusals included, so a console can say why), the signed ``/medrobot/heartbeat``, and the action goals, each carrying
a capability minted for exactly its step. An accepted command is planned by calling ``/medrobot/plan``
asynchronously; only the planner's signed answer to that very command is acted on.

Each state names the last audit record it reflects (``records_through``) so consoles can keep it until
those records reached them on the events stream.

No callback waits for anything (a reset, which waits for the robot, runs on a thread of its own; the planner
is called asynchronously), so the node spins on one executor thread and a stop or a cancel is handled as soon
as it arrives, never behind a command being planned. The e-stop subscriber ignores what this node itself
publishes there (the backend's halt reaches the skill server that way): reacting to its own echo would re-latch
after every reset. An e-stop pressed before this node started (the topic's history, replayed to late joiners)
latches only if its sender's last word is still "pressed".
"""

from __future__ import annotations

import functools
import json
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.node import Node
from rclpy.subscription import MessageInfo
from std_msgs.msg import Bool, String

from medrobot_interfaces.msg import Heartbeat as HeartbeatMsg
from medrobot_interfaces.msg import OperatorMessage as OperatorMsg
from medrobot_interfaces.msg import SupervisorState as StateMsg
from medrobot_interfaces.srv import PlanCommand

from medrobot_llm.backends.ros.env import graph_identity, node_graph
from medrobot_llm.backends.ros.nodes import SUPERVISOR
from medrobot_llm.core.command_set import DOMAINS, hazards_named
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.audit import AuditLog
from medrobot_llm.backends.base import CancelToken
from medrobot_llm.core.plan import Control, PlanStatus
from medrobot_llm.safety.supervisor import LATCHED, InvalidTransition, Reply, Supervisor, SupervisorState
from medrobot_llm.backends.ros.common import (SERVICE_PLAN, TOPIC_COMMAND, TOPIC_CONFIRM, TOPIC_ESTOP, TOPIC_EVENTS,
                                              TOPIC_HEARTBEAT, TOPIC_RESET, TOPIC_STATE, any_sender_qos, latched_qos, reliable_qos,
                                              spin_node, start_parameters, steady_timer)
from medrobot_llm.backends.ros.signed import heartbeat_msg, operator_wire
from medrobot_llm.safety import keys
from medrobot_llm.safety.asked import SEALS_KEY, question_digest, reply_digest, seals
from medrobot_llm.safety.capability import CapabilityMinter
from medrobot_llm.safety.gate import plan_id_of, to_json
from medrobot_llm.safety.heartbeat import HeartbeatSigner
from medrobot_llm.safety.operator import OperatorKind, OperatorVerifier
from medrobot_llm.safety.operator_gate import (DEFAULT_COMMAND_WINDOW_S, Admitted, Channel, Dropped, OperatorGate,
                                               Pending, PlanAnswer, Planned, Refusal)
from medrobot_llm.backends.ros.backend import RosSkillBackend

__all__ = ["SupervisorNode", "main"]

NODE_NAME = SUPERVISOR.name
#: records after which the state message changes (feedback only moves the telemetry)
_STATE_EVENTS = (ev.StateEvent, ev.QuestionEvent, ev.StepSentEvent, ev.StepResultEvent, ev.RunEvent, ev.RunEndEvent,
                 ev.ConfirmationEvent, ev.EstopEvent, ev.ValidationEvent, ev.StepRejectedEvent)
#: how long e-stop history from before this node started is gathered before it is acted on
_REPLAY_SETTLE_S = 0.1
#: which operator channel each topic is
_CHANNELS = {TOPIC_COMMAND: Channel.COMMAND, TOPIC_CONFIRM: Channel.CONFIRM, TOPIC_RESET: Channel.RESET}


class SupervisorNode(Node):
    def __init__(self, *, context: Context | None = None, **overrides: Any) -> None:
        super().__init__(NODE_NAME, context=context)
        p = self._params(overrides)
        self.domain: str = p["domain"]
        self.session = secrets.token_hex(3)
        self._started_ns = time.time_ns()
        self._replayed: dict[bytes, bool] = {}  # sender gid -> last pressed/released from before we started
        self._replay_timer: Any = None
        self._seq = 0
        self._pub_lock = threading.Lock()  # snapshot, number and publish one state at a time, in order
        self._announced: tuple[str, int, str] = ("", -1, "")  # plan id, step, goal id of the goal being sent
        self._state_owed = False  # records dispatched since the last state that reflects them (dispatcher thread)
        secret, keyring = self._keys(p["keys_dir"])
        self.graph = node_graph("supervisor", self.context.get_domain_id(), p["graph_id"])
        self._keyring = keyring
        # a console without this bringup's graph id signs for the domain alone: refused, and named as such
        verifier = OperatorVerifier(keyring, graph=self.graph,
                                    other_graphs=(graph_identity(self.context.get_domain_id()),))
        self.gate = OperatorGate(verifier, secret, domain=self.domain, graph=self.graph,
                                 command_window_s=p["command_window_s"])
        self._beats = HeartbeatSigner(secret, graph=self.graph)

        self._estop_group = MutuallyExclusiveCallbackGroup()
        self._command_group = MutuallyExclusiveCallbackGroup()
        self._action_group = ReentrantCallbackGroup()
        self._status_group = MutuallyExclusiveCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._state_pub = self.create_publisher(StateMsg, TOPIC_STATE, latched_qos(1))
        self._events_pub = self.create_publisher(String, TOPIC_EVENTS, reliable_qos(200))
        self._beat_pub = self.create_publisher(HeartbeatMsg, TOPIC_HEARTBEAT, reliable_qos(10))
        self._beat_lock = threading.Lock()  # a release's beat and the timer's never go out of order
        self._plan_client: Any = self.create_client(PlanCommand, SERVICE_PLAN, callback_group=self._command_group)
        self.backend = RosSkillBackend(self, self.domain, locate=self._locate, before_send=self._before_send,
                                       minter=CapabilityMinter(secret, graph=self.graph), result_secret=secret,
                                       graph=self.graph, release=self._release,
                                       instance=self._beats.instance,
                                       callback_group=self._action_group, status_group=self._status_group,
                                       stale_after_s=p["heartbeat_timeout_s"], cancel_grace_s=p["cancel_grace_s"])
        audit = AuditLog(p["audit_log"]) if p["audit_log"] else AuditLog(None, keep_records=False)
        self.sup = Supervisor(self.backend, None, domain=self.domain, audit=audit,
                              confirm_timeout_s=p["confirm_timeout_s"], step_timeout_s=p["step_timeout_s"],
                              heartbeat_timeout_s=p["heartbeat_timeout_s"], confirm_hazards=p["confirm_hazards"])
        self.sup.subscribe(self._on_record)
        self._own_estop_gids = self._estop_publisher_gids()
        for qos in (latched_qos(5), any_sender_qos()):
            self.create_subscription(Bool, TOPIC_ESTOP, self._on_estop, qos, callback_group=self._estop_group)
        for topic in _CHANNELS:
            self.create_subscription(OperatorMsg, topic, functools.partial(self._on_operator, topic),
                                     reliable_qos(10), callback_group=self._command_group)
        steady_timer(self, 1.0 / p["state_hz"], self._tick, callback_group=self._timer_group)
        steady_timer(self, 1.0 / p["heartbeat_hz"], self._beat, callback_group=self._estop_group)
        self._beat()
        self.get_logger().info(f"supervisor for {self.domain} (session {self.session}, heartbeat instance "
                               f"{self._beats.instance}, graph {self.graph}); operators {', '.join(sorted(keyring))}; audit log: "
                               f"{p['audit_log'] or '(memory only)'}")

    def _params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {"domain": "", "confirm_timeout_s": 30.0, "step_timeout_s": 60.0,
                                    "heartbeat_timeout_s": 1.0, "cancel_grace_s": 1.0, "audit_log": "",
                                    "state_hz": 5.0, "heartbeat_hz": 10.0, "keys_dir": "", "graph_id": "",
                                    "command_window_s": DEFAULT_COMMAND_WINDOW_S, "confirm_hazards": ""}
        out = start_parameters(self, defaults, overrides)
        if not out["domain"]:
            raise SystemExit("medrobot supervisor: the 'domain' parameter is required "
                             f"({', '.join(DOMAINS)})")
        # a string, not a string array: an empty array parameter has no type ROS can declare
        names = [n for n in str(out["confirm_hazards"]).replace(",", " ").split() if n]
        try:
            out["confirm_hazards"] = tuple(sorted(h.value for h in hazards_named(names)))
        except ValueError as exc:
            raise SystemExit(f"medrobot supervisor: confirm_hazards: {exc}") from None
        for rate in ("state_hz", "heartbeat_hz", "command_window_s"):
            if not out[rate] > 0:
                raise SystemExit(f"medrobot supervisor: {rate} must be > 0")
        return out

    @staticmethod
    def _keys(folder: str) -> tuple[bytes, dict[str, bytes]]:
        """The graph secret and every operator's key; without them the node does not start (no open graph)."""
        path = Path(folder).expanduser() if folder else keys.default_dir()
        try:
            return keys.load_graph_secret(path), keys.load_keyring(path)
        except keys.KeyFileError as exc:
            raise SystemExit(f"medrobot supervisor: {exc}") from None

    # ---------------------------------------------------------------- for the backend
    def _locate(self, token: CancelToken) -> tuple[str, int] | None:
        run = self.sup.executor.active
        if run is None or run.token is not token or run.in_flight is None:
            return None
        return plan_id_of(self.session, run.id), run.in_flight

    def _before_send(self, plan_id: str, index: int, goal_id: str) -> None:
        # recorded for the state's ``goal_id`` (information for consoles), not published here: the goal's
        # capability is its authority now, so the send no longer waits for a state message to go out first
        self._announced = (plan_id, index, goal_id)

    # ---------------------------------------------------------------- inputs
    def _estop_publisher_gids(self) -> frozenset[bytes]:
        """The gids of this node's own publishers on the e-stop topic (the backend's halt and release)."""
        name, ns = self.get_name(), self.get_namespace()
        return frozenset(bytes(i.endpoint_gid) for i in self.get_publishers_info_by_topic(TOPIC_ESTOP)
                         if i.node_name == name and i.node_namespace == ns)

    def _is_own(self, info: MessageInfo) -> bool:
        gid = (info.get("publisher_gid") or {}).get("data")
        if gid is None:
            return False
        if bytes(gid) not in self._own_estop_gids:
            self._own_estop_gids = self._estop_publisher_gids() or self._own_estop_gids
        return bytes(gid) in self._own_estop_gids

    def _on_estop(self, msg: Bool, info: MessageInfo) -> None:
        if self._is_own(info):
            return  # our own halt or release coming back: acting on it would undo or redo what we just did
        sent_ns = int(info.get("source_timestamp") or 0)
        if 0 < sent_ns < self._started_ns:
            self._replay(msg.data, info)
            return
        if msg.data:
            if self.sup.state in LATCHED:
                return  # already halted and latched
            self._reply("stop", self.sup.stop(f"e-stop on {TOPIC_ESTOP}", source="ros"))
        elif self.sup.state in LATCHED:
            self.get_logger().info(f"false on {TOPIC_ESTOP} (a released e-stop) while {self.sup.state.value}: "
                                   f"still latched; only an operator's signed reset on {TOPIC_RESET} releases")

    def _replay(self, pressed: bool, info: MessageInfo) -> None:
        """History from before this node existed: a press followed by its release is over, not an e-stop."""
        gid = bytes((info.get("publisher_gid") or {}).get("data") or b"")
        self._replayed[gid] = pressed
        if self._replay_timer is None:
            self._replay_timer = steady_timer(self, _REPLAY_SETTLE_S, self._replay_settled,
                                              callback_group=self._estop_group)

    def _replay_settled(self) -> None:
        timer, self._replay_timer = self._replay_timer, None
        if timer is not None:
            timer.cancel()
            self.destroy_timer(timer)
        still_pressed = any(self._replayed.values())
        self._replayed.clear()
        if still_pressed and self.sup.state not in LATCHED:
            self._reply("stop", self.sup.stop(f"e-stop on {TOPIC_ESTOP} (pressed before the supervisor started)",
                                              source="ros"))

    # ---------------------------------------------------------------- operators
    def _nonce_now(self) -> str:
        return self._open_now()[0]

    def _open_now(self) -> tuple[str, str | None]:
        """The nonce and the open question's digest (None if none), from one snapshot of the supervisor."""
        st = self.sup.status()
        question = st.get("question")
        return (self.gate.observe(st["state"], question, st.get("run")),
                question_digest(question) if question else None)

    def _on_operator(self, topic: str, msg: Any) -> None:
        nonce, asked = self._open_now()
        verdict = self.gate.receive(_CHANNELS[topic], operator_wire(msg), topic=topic, open_nonce=nonce, asked=asked)
        if isinstance(verdict, Refusal):
            self._refuse(verdict)
            return
        kind, source = verdict.msg.kind, verdict.source
        if kind is OperatorKind.STOP:
            if self.sup.state is SupervisorState.ESTOP:  # the console's e-stop press got here first
                self._reply("stop", Reply(True, self.sup.state, "already stopped and latched"))
            else:
                self._reply("stop", self.sup.stop(f"operator stop ({verdict.msg.operator})", source=source))
        elif kind is OperatorKind.CANCEL:
            self._cancel(verdict)
        elif kind is OperatorKind.RESET:
            # A reset waits for the halted step to end and for the robot to report itself clear, and both come
            # in through this node's executor: done here, the wait would hold up what it waits for.
            threading.Thread(target=self._reset, args=(source,), name="medrobot-reset", daemon=True).start()
        elif kind in (OperatorKind.CONFIRM, OperatorKind.DENY):
            op = Control.CONFIRM if kind is OperatorKind.CONFIRM else Control.DENY
            self._reply(op.value, self.sup.control(op, source=source))
        elif verdict.pending is not None:
            self._ask_planner(verdict.pending)

    def _refuse(self, refusal: Refusal) -> None:
        if refusal.event is not None:
            self.sup.record_untrusted(refusal.event)
        self._reply(refusal.op, Reply(False, self.sup.state, refusal.message), text=refusal.text)

    def _cancel(self, admitted: Admitted) -> None:
        withdrawn = admitted.withdrawn
        if withdrawn is not None:
            self._reply("command", Reply(False, self.sup.state, f"withdrawn by {admitted.msg.operator}'s cancel "
                                         "before it was planned; nothing done"), text=withdrawn.text)
            if self.sup.state is SupervisorState.IDLE:
                self._reply("cancel", Reply(True, self.sup.state, f"withdrew {withdrawn.text!r}"))
                return
        self._reply("cancel", self.sup.control(Control.CANCEL, source=admitted.source))

    def _reset(self, source: str) -> None:
        try:
            reply = self.sup.reset(source=source)
        except InvalidTransition as exc:
            reply = Reply(False, self.sup.state, f"nothing to reset: {exc}")
        self._reply("reset", reply)

    # ---------------------------------------------------------------- planning
    def _ask_planner(self, pending: Pending) -> None:
        if not self._plan_client.service_is_ready():
            refusal = self.gate.planner_failed(pending.request_id, f"no planner answers {SERVICE_PLAN}; is "
                                               "`medrobot bringup` running? Nothing done")
            if refusal is not None:
                self._refuse(refusal)
            return
        request = PlanCommand.Request(domain=self.domain, text=pending.text, world_state_json="",
                                      request_id=pending.request_id)
        future = self._plan_client.call_async(request)
        future.add_done_callback(lambda f: self._on_plan_answer(pending, f))

    def _on_plan_answer(self, pending: Pending, future: Any) -> None:
        try:
            response = future.result()
        except Exception as exc:  # noqa: BLE001 - a failed call refuses the command, it never acts
            response, why = None, f"{type(exc).__name__}: {exc}"
        else:
            why = "no answer"
        if response is None:
            refusal = self.gate.planner_failed(pending.request_id, f"the planner failed on {pending.text!r} ({why}); "
                                               "nothing done")
            if refusal is not None:
                self._refuse(refusal)
            return
        answer = PlanAnswer(request_id=pending.request_id, domain=self.domain, text=pending.text,
                            status=response.status, plan_json=response.plan_json, signature=response.signature)
        verdict = self.gate.answer(answer, topic=SERVICE_PLAN, nonce_now=self._nonce_now())
        if isinstance(verdict, Refusal):
            self._refuse(verdict)
        elif isinstance(verdict, Dropped):
            if verdict.plan is not None:
                self.sup.record_discarded(verdict.plan)
        elif isinstance(verdict, Planned):
            self._act(verdict)

    def _act(self, planned: Planned) -> None:
        plan, text, source = planned.plan, planned.pending.text, planned.pending.source
        if plan.status is PlanStatus.CONTROL and plan.control is not None:
            self._reply("command", self.sup.control(plan.control, source=source), text=text)
            return
        st = self.sup.state
        if st is not SupervisorState.IDLE:
            self._reply("command", Reply(False, st, self._busy(st), plan), text=text)
            return
        try:
            reply = self.sup.submit_plan(plan, source=source)
        except InvalidTransition:
            reply = Reply(False, self.sup.state, self._busy(self.sup.state), plan)
        self._reply("command", reply, text=text)

    def _busy(self, st: SupervisorState) -> str:
        if st in LATCHED:
            return f"{st.value} is latched ({self.sup.reason}); reset first (a signed reset on {TOPIC_RESET})"
        return f"busy: {self.sup.describe()}; say 'cancel' or 'stop' first"

    # ---------------------------------------------------------------- outputs
    def _reply(self, op: str, reply: Reply, text: str | None = None) -> None:
        # the state published here is taken after the reply: a console waits for it (``state_seq``) so
        # that what it reads next is never the state from before its own command
        event = ev.ReplyEvent.answering(op, reply, text=text, state_seq=self.publish_state())
        record = json.loads(to_json(event.record()))  # sealed as it travels: the console checks the same values
        record[SEALS_KEY] = seals(self._keyring, graph=self.graph, session=self.session, nonce="", digest=reply_digest(record))
        self._events_pub.publish(String(data=to_json(record)))

    def _on_record(self, event: ev.SupervisorEvent) -> None:
        self._events_pub.publish(String(data=to_json(event.record())))
        # one state for a burst of records, after its last: each state goes to the skill server as well, and
        # two of them (a step's result, the next step's send) landed in front of every goal there
        self._state_owed = self._state_owed or isinstance(event, _STATE_EVENTS)
        if self._state_owed and not self.sup.records_pending:
            self._state_owed = False
            self.publish_state()

    def _tick(self) -> None:
        refusal = self.gate.expire()
        if refusal is not None:
            self._refuse(refusal)
        self.publish_state()

    def _beat(self) -> None:
        with self._beat_lock:
            self._beat_pub.publish(heartbeat_msg(self._beats.beat()))

    def _release(self) -> None:
        """The backend's release after an accepted reset: every beat from now on says so, this one at once."""
        with self._beat_lock:
            self._beat_pub.publish(heartbeat_msg(self._beats.release()))

    def publish_state(self) -> int:
        """Publish the supervisor's state now; returns its ``seq``."""
        with self._pub_lock:
            return self._publish_state()

    def _publish_state(self) -> int:
        st = self.sup.status()
        # Every record that can be reflected in ``st`` is numbered below this (read after the snapshot). The
        # events stream may lag the snapshot (records reach it through the supervisor's dispatcher thread)
        # and DDS does not order two topics, so consumers hold a state until they saw the records it follows.
        through = self.sup.audit.next_seq - 1
        run = st.get("run")
        plan_id = plan_id_of(self.session, run)
        idx = st.get("step_index")
        plan = st.get("plan") or {}
        steps = plan.get("steps") or []
        q = st.get("question") or {}
        self._seq += 1
        seq = self._seq
        nonce = self.gate.observe(st["state"], st.get("question"), run)
        a_plan, a_step, a_goal = self._announced
        goal_id = a_goal if st["state"] == SupervisorState.EXECUTING and (a_plan, a_step) == (plan_id, idx) else ""
        extra = {"plan_id": plan_id, "session": self.session, "domain": self.domain, "records_through": through,
                 "goal_id": goal_id,
                 "skill_server": self.backend.connected, "planner": self._plan_client.service_is_ready(), "nonce": nonce}
        if q:  # sealed for each operator's console, which shows no question without its seal (safety.asked)
            extra["question_seals"] = seals(self._keyring, graph=self.graph, session=self.session, nonce=nonce,
                                            digest=question_digest(q))
        # the wall clock, never the node's (ROS time with use_sim_time): skill servers compare it with releases
        now_ns = time.time_ns()
        msg = StateMsg(
            stamp=Time(sec=now_ns // 1_000_000_000, nanosec=now_ns % 1_000_000_000), seq=seq, session=self.session, domain=self.domain,
            state=st["state"], plan_id=plan_id, step_index=int(idx) if idx is not None else -1,
            steps=int(st.get("steps") or 0),
            skill=str(steps[idx]["skill"]) if idx is not None and 0 <= idx < len(steps) else "",
            question=str(q.get("text", "")), awaiting_step=int(q.get("step_index", -1)) if q else -1,
            reason=str(st.get("reason") or ""), message=str(st.get("message") or ""),
            estop_latched=st["state"] == SupervisorState.ESTOP.value, halted=bool(st.get("halted")), nonce=nonce,
            world_json=to_json(self.backend.world_json()), telemetry_json=to_json(self.backend.telemetry()),
            status_json=to_json({**st, **extra}))
        self._state_pub.publish(msg)
        return seq

    def close(self) -> None:
        self.sup.close()
        self.backend.close()
        self.sup.audit.close()  # a clean shutdown seals the log: `medrobot log verify` tells it from a crash


def main(argv: Sequence[str] | None = None) -> int:
    return spin_node(SupervisorNode, args=list(argv) if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
