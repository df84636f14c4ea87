"""The bench reads a run's records up to the supervisor's own last one. It waited for the log's last record, which
after every task is the session's record of the frames it recorded: no listener ever gets that one, so each task
sat out the trace's 5 s timeout (the 608 tasks took 380 s instead of 77 s)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medrobot_llm.bench.execution import BenchWorker

pytestmark = pytest.mark.sim

_SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "suite" / "tasks.jsonl"


def _task(domain: str) -> dict[str, Any]:
    tasks = [json.loads(line) for line in _SUITE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return next(t for t in tasks if t["domain"] == domain and t["kind"] == "run")


@pytest.mark.parametrize("domain,recorded", [("xray", True), ("ultrasound", True), ("surgery", False)])
def test_a_runs_records_end_at_the_supervisors_last_record(domain: str, recorded: bool) -> None:
    delivered: list[tuple[int, str]] = []
    with BenchWorker() as worker:
        session = worker.session(domain)
        session.supervisor.subscribe(lambda e: delivered.append((e.seq, e.kind)) if e.seq is not None else None)
        task = _task(domain)
        row = worker.run(task, (task.get("seeds") or [0])[0])
        sup = session.supervisor
        assert row["success"], row
        # the log goes on past the supervisor's last record where the session recorded images (a radiograph, an
        # ultrasound frame): that record no listener sees
        assert (session.audit.next_seq - 1 > sup.last_seq) is recorded
        assert max(seq for seq, _ in delivered) == sup.last_seq
        assert dict(delivered)[sup.last_seq] == "run_end"
        # and the trace has handed every record it was waiting for over: nothing of the run is left behind
        assert worker.traces[domain].since(sup.last_seq + 1, sup.last_seq + 1, timeout=0.0) == []
