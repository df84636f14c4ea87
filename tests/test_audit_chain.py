"""The audit log's hash chain and ``medrobot log verify``: edits, deletions, insertions and reorderings are
caught; a crash is told apart from tampering; old logs without a chain say so; damaged logs give a sentence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medrobot_llm import cli
from medrobot_llm.safety.audit import AuditLog, AuditLogError, line_hash, read_log
from medrobot_llm.safety.audit_verify import Verdict, verify_bytes, verify_file

from _helpers_supervisor import XRAY_TWO_SHOTS, make_rig


def _real_log(path: Path) -> Path:
    """A short supervised session with two confirmed exposures, closed cleanly."""
    rig = make_rig("xray", audit=AuditLog(path), answers={"two shots": XRAY_TWO_SHOTS}, heartbeat_timeout_s=5)
    rig.sup.command("two shots", source="console")
    rig.drive()
    rig.close()
    rig.audit.close()
    return path


@pytest.fixture(scope="module")
def real_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _real_log(tmp_path_factory.mktemp("chain") / "audit.jsonl")


_LINES: list[bytes] = []


def _lines(real_log: Path) -> list[bytes]:
    if not _LINES:
        _LINES.extend(real_log.read_bytes().splitlines())
    return _LINES


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _verify_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = cli.main(["log", "verify", str(path), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_cleanly_closed_log_is_intact(real_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _verify_cli(real_log, capsys)
    assert code == 0 and report["verdict"] == "intact", report
    lines = real_log.read_bytes().splitlines()
    first, last = json.loads(lines[0]), json.loads(lines[-1])
    assert first["chain_start"] is True and len(first["prev"]) == 64 and first["fsync"] is True
    assert last["kind"] == "log_closed" and report["head"] == line_hash(lines[-1])
    assert all(json.loads(b)["prev"] == line_hash(a) for a, b in zip(lines, lines[1:], strict=False))


def test_two_logs_start_their_chains_at_different_random_points(tmp_path: Path) -> None:
    starts = set()
    for name in ("a", "b"):
        with AuditLog(tmp_path / f"{name}.jsonl") as log:
            log.append("x")
        starts.add(json.loads((tmp_path / f"{name}.jsonl").read_bytes().splitlines()[0])["prev"])
    assert len(starts) == 2


def test_new_fields_come_after_the_existing_ones(tmp_path: Path) -> None:
    """Consoles and the events topic read records by their fields: the chain only appends."""
    with AuditLog(tmp_path / "a.jsonl") as log:
        log.append("step_sent", run=1, step=0, skill="take_shot")
        log.append("step_result", run=1, step=0, success=True)
    recs = read_log(tmp_path / "a.jsonl").records
    assert list(recs[0]) == ["seq", "kind", "t_wall", "t_mono", "run", "step", "skill", "prev", "chain_start",
                             "fsync"]
    assert list(recs[1]) == ["seq", "kind", "t_wall", "t_mono", "run", "step", "success", "prev"]


@st.composite
def _mutation(draw: st.DrawFn, n: int) -> tuple[str, int, int, object]:
    kind = draw(st.sampled_from(["edit", "delete", "insert", "reorder"]))
    i = draw(st.integers(0, n - 1))
    j = draw(st.integers(0, n - 1).filter(lambda j: j != i))
    value = draw(st.one_of(st.integers(-3, 10**6), st.text(max_size=8), st.booleans(), st.none()))
    return kind, i, j, value


def _apply(lines: list[bytes], kind: str, i: int, j: int, value: object, key_pick: int) -> list[bytes] | None:
    out = list(lines)
    if kind == "delete":
        del out[i]
    elif kind == "reorder":
        out[i], out[j] = out[j], out[i]
    elif kind == "insert":
        # a copy of another record (the easiest forgery: a second exposure, a second confirmation)
        out.insert(i, lines[j])
    else:
        rec = json.loads(lines[i])
        keys = sorted(rec)
        key = keys[key_pick % len(keys)]
        if rec[key] == value:
            return None
        rec[key] = value
        out[i] = json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return out if out != lines else None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_edit_deletion_insertion_or_reordering_is_caught(real_log: Path, data: st.DataObject) -> None:
    lines = _lines(real_log)
    kind, i, j, value = data.draw(_mutation(len(lines)))
    changed = _apply(lines, kind, i, j, value, data.draw(st.integers(0, 50)))
    if changed is None:
        return
    report = verify_bytes(_join(changed))
    if kind == "delete" and i == len(lines) - 1:
        # without its close record the log reads as killed: not intact, exit 2, the end "not final"
        assert report.verdict is Verdict.INCOMPLETE
    else:
        assert report.verdict is Verdict.TAMPERED, (kind, i, j, value, report.render())


def test_an_exposure_erased_consistently_is_caught_by_replay_and_verify(
        real_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's attack: drop the second shot's records and renumber, so the sequence has no gap."""
    recs = [json.loads(line) for line in real_log.read_bytes().splitlines()]
    shots = [k for k, r in enumerate(recs) if r.get("skill") == "take_shot" and r["kind"] in ("step_sent",
                                                                                                "step_result")]
    drop = set(shots[2:])
    kept = [r for k, r in enumerate(recs) if k not in drop]
    for n, r in enumerate(kept):
        r["seq"] = n
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(_join([json.dumps(r, separators=(",", ":")).encode() for r in kept]))
    assert cli.main(["log", "verify", str(forged)]) == 1
    assert "TAMPERED" in capsys.readouterr().out
    assert cli.main(["log", "replay", str(forged), "--wait", "0.2", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert any(d.startswith("hash chain:") for d in report["differences"])


def test_a_torn_last_line_is_a_crash_not_tampering(real_log: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    lines = real_log.read_bytes().splitlines()
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(_join(lines[:-1]) + lines[-1][:25])
    code, report = _verify_cli(torn, capsys)
    assert code == 2 and report["verdict"] == "incomplete" and "torn" in report["incomplete"][0]
    assert report["problems"] == []


def test_a_killed_session_replays_without_a_false_alarm(real_log: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """What SIGKILL leaves: the log cut after a step was sent; the replay must not report the cut as a change."""
    lines = real_log.read_bytes().splitlines()
    cut_at = max(k for k, line in enumerate(lines) if json.loads(line)["kind"] == "step_sent")
    killed = tmp_path / "killed.jsonl"
    killed.write_bytes(_join(lines[:cut_at + 1]))
    code, report = _verify_cli(killed, capsys)
    assert code == 2 and report["problems"] == [] and "not 'log_closed'" in report["incomplete"][0]
    assert cli.main(["log", "replay", str(killed), "--wait", "0.5", "--json"]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert replay["identical"], replay["differences"]


def test_a_session_killed_before_another_one_replays_without_a_false_alarm(
        real_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = real_log.read_bytes().splitlines()
    cut_at = next(k for k, line in enumerate(lines) if json.loads(line)["kind"] == "step_sent")
    path = tmp_path / "two.jsonl"
    path.write_bytes(_join(lines[:cut_at]))   # killed just before its first step went out
    _real_log(path)                           # the next session, on the same file
    code, report = _verify_cli(path, capsys)
    # the killed session stays visible after the later one closed cleanly: the crash's exit code, at its line
    assert code == 2 and report["problems"] == [], report
    assert report["incomplete"] == [f"line {cut_at + 1}: the session before ended at line {cut_at} (seq "
                                    f"{cut_at - 1}) without its close record (a crash, a kill, or records removed); "
                                    "a later writer reopened the log here"]
    assert cli.main(["log", "replay", str(path), "--wait", "0.5", "--json"]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert replay["identical"] and replay["sessions"] == 2, replay["differences"]


def test_reopening_after_a_crash_keeps_the_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.append("a")
    log.close_quietly()   # as if killed: no close record
    with path.open("ab") as f:
        f.write(b'{"seq":1,"kind":"b","t_wa')
    with AuditLog(path) as again:
        again.append("c")
    code, report = _verify_cli(path, capsys)
    # the chain holds across the crash, and the crash stays on record: the killed session never closed
    assert code == 2 and report["problems"] == [] and "line 3: the session before ended" in report["incomplete"][0]
    assert any("torn by a crash" in n for n in report["notes"])


def test_a_log_written_before_the_chain_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text('{"seq":0,"kind":"session"}\n{"seq":1,"kind":"state"}\n', encoding="utf-8")
    assert cli.main(["log", "verify", str(old)]) == 3
    assert "no hash chain (written before" in capsys.readouterr().out
    # a writer appending to it starts a chain after the old records; the old part still says what it is
    with AuditLog(old) as log:
        log.append("x")
    code, report = _verify_cli(old, capsys)
    assert code == 3 and report["chained"] == 2 and len(report["unchained"]) == 2


def test_an_old_log_with_a_gap_is_damaged(tmp_path: Path) -> None:
    report = verify_bytes(b'{"seq":0,"kind":"a"}\n{"seq":2,"kind":"b"}\n')
    assert report.verdict is Verdict.TAMPERED and "expected 1" in report.problems[0]


@pytest.mark.parametrize("action", ["show", "replay", "verify"])
def test_damaged_logs_get_a_sentence_not_a_traceback(tmp_path: Path, action: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('{"seq":0,"kind":"session","domain":"xray","clock":"soon"}\n'
                       '{"seq":null,"kind":"command","op":"plan","plan":{"status":7},"n_states":"x"}\n'
                       '{"seq":2,"kind":"plan","plan":{"steps":["x", 3]}}\n',
                       encoding="utf-8")
    code = cli.main(["log", action, str(damaged)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code != 0 or action == "show"
    if action == "show":
        assert "None" in out and "sequence gap" in out   # the null seq shown, and reported


@pytest.mark.parametrize("action", ["show", "replay", "verify"])
def test_devices_and_fifos_are_refused_by_the_readers(tmp_path: Path, action: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/zero"), tmp_path):
        code = cli.main(["log", action, str(target)])
        assert code != 0
        assert "cannot read" in capsys.readouterr().err


def test_writing_to_a_log_whose_last_seq_is_null_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"seq":0,"kind":"a"}\n{"seq":null,"kind":"b"}\n', encoding="utf-8")
    with pytest.raises(AuditLogError, match="seq None"):
        AuditLog(path)


def test_verify_of_a_log_still_being_written_says_who_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    with AuditLog(path) as log:
        log.append("a")
        report = verify_file(path)
        assert report.verdict is Verdict.INCOMPLETE and any("this process" in n for n in report.notes)
    assert verify_file(path).verdict is Verdict.INTACT
