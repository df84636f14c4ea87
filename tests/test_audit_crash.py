"""Crash safety: SIGKILL a process mid-plan; every record it acknowledged is in the log, and the log parses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medrobot_llm.safety.audit import read_log

CHILD = textwrap.dedent(
    """
    import sys
    from medrobot_llm.safety.audit import AuditLog
    from medrobot_llm.backends.memory import MemoryBackend
    from medrobot_llm.core.plan import Plan, PlanStatus, Step
    from medrobot_llm.safety.supervisor import Supervisor, SupervisorState as S

    class Acking(AuditLog):
        # a record is acknowledged when append returns: say so, only then
        def append(self, kind, **fields):
            seq = super().append(kind, **fields)
            sys.stdout.write(f"{seq} {kind}\\n")
            sys.stdout.flush()
            return seq

    backend = MemoryBackend("xray", control_period_s=0.002, steps_per_skill=10)
    sup = Supervisor(backend, audit=Acking(sys.argv[1]))
    plan = Plan(status=PlanStatus.OK, domain="xray", steps=[
        Step(skill="move_to_view", args={"anatomy": "pelvis"}),
        Step(skill="adjust", args={"axis": "tilt", "amount": 5}),
        Step(skill="adjust", args={"axis": "orbit", "amount": -20}),
        Step(skill="park")])
    while True:
        sup.submit_plan(plan)
        sup.wait_idle(30)
    """
)


def test_sigkill_mid_plan_loses_no_acknowledged_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acked: dict[int, str] = {}
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            seq, kind = line.split()
            acked[int(seq)] = kind
            if kind == "step_sent" and len(acked) > 40:
                proc.send_signal(signal.SIGKILL)  # mid-step: the plan is running
                break
        else:
            pytest.fail("the child ended before it was killed")
        for line in proc.stdout:  # what it acknowledged before the signal landed
            seq, kind = line.split()
            acked[int(seq)] = kind
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    log = read_log(path)
    on_disk = {r["seq"]: r["kind"] for r in log.records}
    missing = {s: k for s, k in acked.items() if on_disk.get(s) != k}
    assert not missing, f"acknowledged but not in the log: {missing}"
    assert not log.gaps
    assert all(t.last for t in log.torn), "only the very last line may be torn"
    assert [r["seq"] for r in log.records] == list(range(len(log.records)))
    kinds = [r["kind"] for r in log.records]
    assert "step_sent" in kinds and kinds[0] == "session"
