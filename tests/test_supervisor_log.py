"""``medrobot log show`` and ``medrobot log replay`` on a log written by a real session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medrobot_llm import cli
from medrobot_llm.safety.audit import AuditLog, read_log
from medrobot_llm.backends.base import FailureKind
from medrobot_llm.cli.log import replay_records
from medrobot_llm.backends.memory import Outcome
from medrobot_llm.safety.supervisor import SupervisorState

from _helpers_supervisor import XRAY_MOTION, XRAY_TWO_SHOTS, check_log, make_rig, until

S = SupervisorState


@pytest.fixture(scope="module")
def session_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session that touches every kind of input and outcome, written to disk."""
    path = tmp_path_factory.mktemp("log") / "audit.jsonl"
    rig = make_rig("xray", audit=AuditLog(path), answers={"two shots": XRAY_TWO_SHOTS}, heartbeat_timeout_s=5,
                   confirm_timeout_s=30)
    sup = rig.sup
    sup.command("two shots", source="console")
    rig.drive(confirm=False)
    sup.confirm(3)  # the wrong exposure: refused
    sup.confirm()
    rig.drive(confirm=False)
    sup.command("pause")
    sup.resume()
    rig.settle()
    rig.clock.advance(31)
    sup.tick()  # nobody answered: the question expires
    rig.settle()
    sup.command("status")
    sup.command("dance")
    rig.backend.script(Outcome.limit(FailureKind.FORCE_LIMIT, at=2))
    sup.submit_plan(XRAY_MOTION)
    rig.drive()
    sup.reset()
    sup.submit_plan(XRAY_MOTION)
    rig.settle()
    rig.run_steps(1)
    sup.stop("operator")
    rig.settle()
    sup.reset()
    rig.backend.script(Outcome.stall(at=1))
    sup.submit_plan(XRAY_MOTION)
    rig.backend.permit(1)
    assert until(lambda: rig.backend.parked == "stall")
    rig.clock.advance(6)
    sup.tick()  # heartbeat lost
    rig.settle()
    sup.reset()
    sup.submit_plan(XRAY_MOTION)
    rig.drive()
    assert sup.state is S.IDLE
    check_log(rig.audit.records if rig.audit.records else read_log(path).records, sup)
    rig.close()
    rig.audit.close()
    return path


def test_the_session_log_is_complete_and_consistent(session_log: Path) -> None:
    log = read_log(session_log)
    assert log.ok
    kinds = {r["kind"] for r in log.records}
    assert {"session", "command", "plan", "validation", "state", "question", "confirmation", "step_sent",
            "step_result", "estop", "run", "run_end"} <= kinds
    triggers = [r["trigger"] for r in log.records if r["kind"] == "state"]
    assert {"expire", "fault", "estop", "reset", "recovered", "finish", "pause", "resume"} <= set(triggers)
    assert all(isinstance(r["t_mono"], float) and isinstance(r["t_wall"], float) for r in log.records)


def test_show_prints_one_line_per_record(session_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["log", "show", str(session_log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(read_log(session_log).records)
    assert any("EXECUTING -> AWAITING_CONFIRMATION" in line for line in out)
    assert any("Confirm exposure 1 of 2" in line for line in out)


def test_show_json_and_kind_filter(session_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["log", "show", str(session_log), "--kind", "estop", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["count"] == 1 and data["records"][0]["reason"] == "operator" and data["problems"] == []


def test_show_reports_a_torn_last_line(session_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(session_log.read_bytes() + b'{"seq": 99999, "kind": "st')
    assert cli.main(["log", "show", str(torn)]) == 0
    assert "torn last line" in capsys.readouterr().out


def test_show_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["log", "show", str(tmp_path / "nope.jsonl"), "--json"]) == 2
    assert "cannot read" in json.loads(capsys.readouterr().out)["error"]


def test_replay_reproduces_the_session(session_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["log", "replay", str(session_log), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identical"], report["differences"]
    assert report["original_states"] == report["replayed_states"] and len(report["original_states"]) > 30
    assert report["original_steps"] == report["replayed_steps"]
    assert report["inputs"] >= 15


def test_replay_reports_a_tampered_log(session_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = read_log(session_log).records
    # someone deleted the operator's wrong-exposure confirmation and "answered" the question instead
    k = next(i for i, r in enumerate(records) if r["kind"] == "state" and r["trigger"] == "expire")
    records[k] = {**records[k], "to": "EXECUTING", "trigger": "confirm"}
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert cli.main(["log", "replay", str(tampered), "--wait", "0.2"]) == 1
    out = capsys.readouterr().out
    assert "difference" in out and "AWAITING_CONFIRMATION -> IDLE (expire)" in out


def test_replay_notices_a_missing_command() -> None:
    log = AuditLog(None)
    rig = make_rig("xray", audit=log)
    rig.sup.submit_plan(XRAY_MOTION)
    rig.settle()
    rig.sup.cancel()
    rig.settle()
    rig.close()
    records = [r for r in log.records if not (r["kind"] == "command" and r["op"] == "cancel")]
    report = replay_records(records, wait_s=0.2)
    assert not report.identical


def test_replay_of_a_log_without_a_session() -> None:
    assert not replay_records([]).identical
