"""Typed events keep the record format: every record a session writes parses into its event, and the event
gives back exactly that record (keys, order, values), so the audit log, ``--json`` and ``/medrobot/events``
did not change with the types."""

from __future__ import annotations

import json
import typing
from typing import Any

from medrobot_llm.backends.memory import Outcome
from medrobot_llm.core.plan import Plan
from medrobot_llm.safety import events as ev
from medrobot_llm.safety.audit import CHAIN_FIELDS
from medrobot_llm.safety.machine import SupervisorState
from medrobot_llm.safety.replies import Reply

from _helpers_supervisor import XRAY_MOTION, XRAY_SHOT_FIRST, make_rig

S = SupervisorState


def _without_log_stamps(rec: dict[str, Any]) -> dict[str, Any]:
    """The record minus what the log adds: its clocks and its hash chain (appended after the event's fields)."""
    return {k: v for k, v in rec.items() if k not in ("t_wall", "t_mono", *CHAIN_FIELDS)}


def _event_types() -> list[type[Any]]:
    union = typing.get_args(ev.SupervisorEvent)[0]
    return list(typing.get_args(union))


def test_every_record_of_a_session_round_trips_byte_for_byte() -> None:
    rig = make_rig("xray", facts={"view_set": True}, answers={"go": XRAY_MOTION})
    sup = rig.sup
    assert sup.submit_plan(XRAY_SHOT_FIRST).accepted, sup.reason
    rig.settle()
    assert sup.state is S.AWAITING_CONFIRMATION
    assert not sup.confirm(5).accepted  # the wrong step: refused
    sup.deny()
    sup.command("go")
    rig.settle()
    sup.pause()
    sup.resume()
    rig.drive()
    sup.submit_plan(Plan.model_validate({**XRAY_MOTION.to_json(), "domain": "surgery"}))  # wrong domain
    sup.stop("test")
    sup.reset()
    rig.backend.script(Outcome.raises())
    sup.submit_plan(XRAY_MOTION)
    assert sup.wait_for(S.FAULT)
    rig.settle()
    records = rig.audit.records
    kinds = {r["kind"] for r in records}
    assert {"session", "command", "plan", "validation", "run", "question", "confirmation", "step_sent",
            "step_result", "run_end", "state", "estop"} <= kinds, kinds
    for rec in records:
        event = ev.parse_event(rec)
        assert event is not None, rec
        assert json.dumps(event.record()) == json.dumps(_without_log_stamps(rec))


def test_each_kind_has_one_model_and_unknown_records_parse_to_none() -> None:
    kinds = [t.model_fields["kind"].default for t in _event_types()]
    assert len(kinds) == len(set(kinds)) and "step_sent" in kinds and "reply" in kinds
    assert ev.parse_event({"seq": 1, "kind": "llm_call", "model": "x"}) is None
    assert ev.parse_event({"seq": 1, "kind": "step_sent"}) is None  # malformed: fields missing


def test_optional_fields_are_left_out_not_written_as_null() -> None:
    cmd = ev.CommandEvent(op="pause", source="api", state="EXECUTING", n_states=3)
    assert list(cmd.model_copy(update={"clock": 2}).fields()) == ["op", "source", "state", "n_states", "clock"]
    change = ev.StateEvent(source="IDLE", to="PLANNING", trigger="plan", reason="r")
    assert change.model_copy(update={"seq": 4}).record() == {"seq": 4, "kind": "state", "from": "IDLE",
                                                             "to": "PLANNING", "trigger": "plan", "reason": "r"}
    refused = ev.ValidationEvent(ok=False, reason="wrong robot", plan={})
    assert list(refused.fields()) == ["ok", "reason", "plan"]
    checked = ev.ValidationEvent(ok=True, plan={}, world={}, reason=None)
    assert list(checked.fields()) == ["ok", "plan", "world", "reason"]
    assert ev.FeedbackEvent(run=1, step=0, phase="p", progress=1, telemetry={}).record()["progress"] == 1


def test_a_reply_event_carries_the_reply_and_gives_it_back() -> None:
    reply = Reply(False, S.IDLE, "nothing to confirm")
    event = ev.ReplyEvent.answering("confirm", reply, text=None, state_seq=7)
    assert event.record() == {"kind": "reply", "op": "confirm", **reply.to_json(), "state_seq": 7}
    parsed = ev.parse_event(json.loads(json.dumps(event.record())))
    assert isinstance(parsed, ev.ReplyEvent)
    assert Reply.from_json(parsed.model_dump()) == reply
