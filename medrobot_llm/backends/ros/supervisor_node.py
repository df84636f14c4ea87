"""The supervisor node: the pure-Python ``Supervisor`` with a ``RosSkillBackend``, wired to the graph.

In: ``/medrobot/planned`` (the planner node's plan for each ``/medrobot/command``), ``/medrobot/confirm``
(true = confirm the step asked about, false = deny), ``/medrobot/estop`` (true = stop and latch; false only
releases its sender's press and resets nothing) and ``/medrobot/reset`` (the operator's reset). Out: ``/medrobot/state`` on every change and a few times a second, ``/medrobot/events``
(every audit record, step feedback, and one ``reply`` per command), and the action goals.

Each state names the last audit record it reflects (``records_through``) so consoles can keep it until
those records reached them on the events stream, and, while a step is being sent, the id of that very
goal (``goal_id``): the skill server runs no other goal for the step, whoever sends it.

No callback waits for anything (a reset, which waits for the robot, runs on a thread of its own), so the
node spins on one executor thread and a stop is handled as soon as it arrives; the e-stop subscriber still
has a callback group of its own for executors with a pool. It ignores what this node itself publishes there (the
backend's halt and release reach the skill server that way): reacting to its own echo would re-latch after
every reset. An e-stop pressed before this node started (the topic's history, replayed to late joiners)
latches only if its sender's last word is still "pressed".
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.node import Node
from rclpy.subscription import MessageInfo
from std_msgs.msg import Bool, Empty, String

from medrobot_interfaces.msg import SupervisorState as StateMsg

from medrobot_llm.backends.ros.nodes import SUPERVISOR
from medrobot_llm.core.command_set import DOMAINS
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.audit import AuditLog
from medrobot_llm.backends.base import CancelToken
from medrobot_llm.core.plan import Control, Plan, PlanStatus
from medrobot_llm.safety.supervisor import LATCHED, InvalidTransition, Reply, Supervisor, SupervisorState
from medrobot_llm.backends.ros.common import (TOPIC_CONFIRM, TOPIC_ESTOP, TOPIC_EVENTS, TOPIC_PLANNED, TOPIC_RESET, TOPIC_STATE,
                      latched_qos, reliable_qos, spin_node)
from medrobot_llm.safety.gate import plan_id_of, to_json
from medrobot_llm.backends.ros.backend import RosSkillBackend

__all__ = ["SupervisorNode", "main"]

NODE_NAME = SUPERVISOR.name
#: records after which the state message changes (feedback only moves the telemetry)
_STATE_EVENTS = (ev.StateEvent, ev.QuestionEvent, ev.StepSentEvent, ev.StepResultEvent, ev.RunEvent, ev.RunEndEvent,
                 ev.ConfirmationEvent, ev.EstopEvent, ev.ValidationEvent, ev.StepRejectedEvent)
#: how long e-stop history from before this node started is gathered before it is acted on
_REPLAY_SETTLE_S = 0.1


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

        self._estop_group = MutuallyExclusiveCallbackGroup()
        self._command_group = MutuallyExclusiveCallbackGroup()
        self._action_group = ReentrantCallbackGroup()
        self._status_group = MutuallyExclusiveCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._state_pub = self.create_publisher(StateMsg, TOPIC_STATE, latched_qos(1))
        self._events_pub = self.create_publisher(String, TOPIC_EVENTS, reliable_qos(200))
        self.backend = RosSkillBackend(self, self.domain, locate=self._locate, before_send=self._before_send,
                                       callback_group=self._action_group, status_group=self._status_group,
                                       stale_after_s=p["heartbeat_timeout_s"], cancel_grace_s=p["cancel_grace_s"])
        audit = AuditLog(p["audit_log"]) if p["audit_log"] else AuditLog(None, keep_records=False)
        self.sup = Supervisor(self.backend, None, domain=self.domain, audit=audit,
                              confirm_timeout_s=p["confirm_timeout_s"], step_timeout_s=p["step_timeout_s"],
                              heartbeat_timeout_s=p["heartbeat_timeout_s"])
        self.sup.subscribe(self._on_record)
        self._own_estop_gids = self._estop_publisher_gids()
        self.create_subscription(Bool, TOPIC_ESTOP, self._on_estop, latched_qos(5), callback_group=self._estop_group)
        self.create_subscription(Empty, TOPIC_RESET, self._on_reset, reliable_qos(10),
                                 callback_group=self._command_group)
        self.create_subscription(String, TOPIC_PLANNED, self._on_planned, reliable_qos(10),
                                 callback_group=self._command_group)
        self.create_subscription(Bool, TOPIC_CONFIRM, self._on_confirm, reliable_qos(10),
                                 callback_group=self._command_group)
        self.create_timer(1.0 / p["state_hz"], self._tick, callback_group=self._timer_group)
        self.get_logger().info(f"supervisor for {self.domain} (session {self.session}); audit log: "
                               f"{p['audit_log'] or '(memory only)'}")

    def _params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {"domain": "", "confirm_timeout_s": 30.0, "step_timeout_s": 60.0,
                                    "heartbeat_timeout_s": 1.0, "cancel_grace_s": 1.0, "audit_log": "",
                                    "state_hz": 5.0}
        out = {}
        for name, default in defaults.items():
            value = self.declare_parameter(name, overrides.get(name, default)).value
            out[name] = type(default)(value) if isinstance(default, float) else value
        if not out["domain"]:
            raise SystemExit("medrobot supervisor: the 'domain' parameter is required "
                             f"({', '.join(DOMAINS)})")
        if out["state_hz"] <= 0:
            raise SystemExit("medrobot supervisor: state_hz must be > 0")
        return out

    # ---------------------------------------------------------------- for the backend
    def _locate(self, token: CancelToken) -> tuple[str, int] | None:
        run = self.sup.executor.active
        if run is None or run.token is not token or run.in_flight is None:
            return None
        return plan_id_of(self.session, run.id), run.in_flight

    def _before_send(self, plan_id: str, index: int, goal_id: str) -> None:
        self._announced = (plan_id, index, goal_id)
        self.publish_state()

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
                                   f"still latched; the operator resets on {TOPIC_RESET}")

    def _replay(self, pressed: bool, info: MessageInfo) -> None:
        """History from before this node existed: a press followed by its release is over, not an e-stop."""
        gid = bytes((info.get("publisher_gid") or {}).get("data") or b"")
        self._replayed[gid] = pressed
        if self._replay_timer is None:
            self._replay_timer = self.create_timer(_REPLAY_SETTLE_S, self._replay_settled,
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

    def _on_reset(self, msg: Empty) -> None:
        # A reset waits for the halted step to end and for the robot to report itself clear, and both come
        # in through this node's executor: done here, the wait would hold up what it waits for.
        threading.Thread(target=self._reset, name="medrobot-reset", daemon=True).start()

    def _reset(self) -> None:
        try:
            reply = self.sup.reset(source="ros")
        except InvalidTransition as exc:
            reply = Reply(False, self.sup.state, f"nothing to reset: {exc}")
        self._reply("reset", reply)

    def _on_confirm(self, msg: Bool) -> None:
        op = Control.CONFIRM if msg.data else Control.DENY
        self._reply(op.value, self.sup.control(op, source="ros"))

    def _on_planned(self, msg: String) -> None:
        text = ""
        try:
            obj = json.loads(msg.data)
            text = str(obj.get("text", ""))
            plan = Plan.model_validate(obj["plan"])
        except Exception as exc:  # noqa: BLE001 - a malformed message is refused, never acted on
            self._reply("command", Reply(False, self.sup.state, f"unreadable planned command ({type(exc).__name__}: "
                                         f"{exc})"), text=text)
            return
        if plan.status is PlanStatus.CONTROL and plan.control is not None:
            self._reply("command", self.sup.control(plan.control, source="ros"), text=text)
            return
        st = self.sup.state
        if st is not SupervisorState.IDLE:
            self._reply("command", Reply(False, st, self._busy(st), plan), text=text)
            return
        try:
            reply = self.sup.submit_plan(plan, source="ros")
        except InvalidTransition:
            reply = Reply(False, self.sup.state, self._busy(self.sup.state), plan)
        self._reply("command", reply, text=text)

    def _busy(self, st: SupervisorState) -> str:
        if st in LATCHED:
            return f"{st.value} is latched ({self.sup.reason}); reset first (on {TOPIC_RESET})"
        return f"busy: {self.sup.describe()}; say 'cancel' or 'stop' first"

    # ---------------------------------------------------------------- outputs
    def _reply(self, op: str, reply: Reply, text: str | None = None) -> None:
        # the state published here is taken after the reply: a console waits for it (``state_seq``) so
        # that what it reads next is never the state from before its own command
        event = ev.ReplyEvent.answering(op, reply, text=text, state_seq=self.publish_state())
        self._events_pub.publish(String(data=to_json(event.record())))

    def _on_record(self, event: ev.SupervisorEvent) -> None:
        self._events_pub.publish(String(data=to_json(event.record())))
        if isinstance(event, _STATE_EVENTS):
            self.publish_state()

    def _tick(self) -> None:
        self.publish_state()

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
        a_plan, a_step, a_goal = self._announced
        goal_id = a_goal if st["state"] == SupervisorState.EXECUTING and (a_plan, a_step) == (plan_id, idx) else ""
        extra = {"plan_id": plan_id, "session": self.session, "domain": self.domain, "records_through": through,
                 "goal_id": goal_id,
                 "skill_server": self.backend.connected, "planner": self.count_publishers(TOPIC_PLANNED) > 0}
        now = self.get_clock().now().to_msg()
        msg = StateMsg(
            stamp=Time(sec=now.sec, nanosec=now.nanosec), seq=seq, session=self.session, domain=self.domain,
            state=st["state"], plan_id=plan_id, step_index=int(idx) if idx is not None else -1,
            steps=int(st.get("steps") or 0),
            skill=str(steps[idx]["skill"]) if idx is not None and 0 <= idx < len(steps) else "",
            question=str(q.get("text", "")), awaiting_step=int(q.get("step_index", -1)) if q else -1,
            reason=str(st.get("reason") or ""), message=str(st.get("message") or ""),
            estop_latched=st["state"] == SupervisorState.ESTOP.value, halted=bool(st.get("halted")),
            world_json=to_json(self.backend.world_json()), telemetry_json=to_json(self.backend.telemetry()),
            status_json=to_json({**st, **extra}))
        self._state_pub.publish(msg)
        return seq

    def close(self) -> None:
        self.sup.close()
        self.backend.close()


def main(argv: Sequence[str] | None = None) -> int:
    return spin_node(SupervisorNode, args=list(argv) if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
