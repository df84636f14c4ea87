"""The task-success benchmark: every task × seed planned, validated, supervised and executed in its scene,
spread over worker processes (or Ray actors), and the figures of the result rows.

A task's result depends only on (task, seed, planner), never on which worker ran it or what ran before, so
the results file is the same for the same inputs; only the fields under ``timing`` change between runs.
How one task runs and is scored is :mod:`medrobot_llm.bench.execution`; which checker judges it,
:mod:`medrobot_llm.bench.checkers`.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.util
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from medrobot_llm.bench.checkers import CHECKERS, find_checker
from medrobot_llm.bench.execution import TIMING, BenchWorker
from medrobot_llm.bench.task import BenchTask

__all__ = ["BenchWorker", "CHECKERS", "find_checker", "run_jobs", "summarize", "strip_timing"]


# ---------------------------------------------------------------------------------------------- engines
_WORKER: BenchWorker | None = None
#: N workers share N cores: a BLAS pool per worker would oversubscribe them, and a control step that waits
#: for a core can miss the supervisor's heartbeat. Set before a worker process imports numpy.
_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


@contextlib.contextmanager
def _worker_env() -> Iterator[None]:
    """``_ONE_THREAD`` in the environment the worker processes inherit, this process's restored after."""
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update({k: os.environ.get(k) or v for k, v in _ONE_THREAD.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker(planner_args: dict[str, Any], timeout_s: float, heartbeat_s: float | None) -> None:
    global _WORKER
    _WORKER = BenchWorker(planner_args, timeout_s=timeout_s, heartbeat_timeout_s=heartbeat_s)
    multiprocessing.util.Finalize(_WORKER, _WORKER.close, exitpriority=10)


def _work(job: tuple[dict[str, Any], int]) -> dict[str, Any]:
    assert _WORKER is not None
    return _WORKER.run(job[0], job[1])


def _jobs(tasks: Iterable[BenchTask], seeds: int | None) -> list[tuple[dict[str, Any], int]]:
    """Every (task, seed); tasks that move the robot first, so the slow ones do not trail at the end."""
    jobs = [(t.to_json(), s) for t in tasks for s in t.seeds_for(seeds)]
    weight = {"run": 0, "control": 1, "clarify": 2, "refuse": 2}
    return sorted(jobs, key=lambda j: weight[j[0]["kind"]])


def run_jobs(tasks: list[BenchTask], *, seeds: int | None = None, workers: int = 1, engine: str = "local",
             planner_args: dict[str, Any] | None = None, timeout_s: float = 120.0,
             heartbeat_timeout_s: float | None = None,
             on_result: Callable[[dict[str, Any]], object] | None = None) -> list[dict[str, Any]]:
    """Run every task × seed and return the rows in suite order (task order, then seed).
    ``heartbeat_timeout_s`` overrides the supervisor's (None keeps its default)."""
    args = dict(planner_args or {"planner": "rule"})
    jobs = _jobs(tasks, seeds)
    if engine == "ray":
        rows = list(_run_ray(jobs, workers, args, (timeout_s, heartbeat_timeout_s), on_result))
    elif engine == "local":
        rows = list(_run_local(jobs, workers, args, (timeout_s, heartbeat_timeout_s), on_result))
    else:
        raise ValueError(f"unknown engine {engine!r}; choose local or ray")
    order = {t.id: i for i, t in enumerate(tasks)}
    return sorted(rows, key=lambda r: (order[r["id"]], r["seed"]))


def _run_local(jobs: list[tuple[dict[str, Any], int]], workers: int, args: dict[str, Any],
               limits: tuple[float, float | None],
               on_result: Callable[[dict[str, Any]], object] | None) -> Iterator[dict[str, Any]]:
    if workers <= 1 or len(jobs) <= 1:
        with BenchWorker(args, timeout_s=limits[0], heartbeat_timeout_s=limits[1]) as worker:
            for task, seed in jobs:
                row = worker.run(task, seed)
                if on_result is not None:
                    on_result(row)
                yield row
        return
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    with _worker_env():
        pool = ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(args, *limits))
    with pool:
        for row in pool.imap_unordered(_work, jobs, chunksize=1):
            if on_result is not None:
                on_result(row)
            yield row
        pool.close()
        pool.join()


class _RayWorker:
    """A ``BenchWorker`` in a Ray actor: its own process, its own scenes."""

    def __init__(self, planner_args: dict[str, Any], limits: tuple[float, float | None]) -> None:
        self.worker = BenchWorker(planner_args, timeout_s=limits[0], heartbeat_timeout_s=limits[1])

    def run(self, task: dict[str, Any], seed: int) -> dict[str, Any]:
        return self.worker.run(task, seed)

    def close(self) -> bool:
        self.worker.close()
        return True


def _run_ray(jobs: list[tuple[dict[str, Any], int]], workers: int, args: dict[str, Any],
             limits: tuple[float, float | None], on_result: Callable[[dict[str, Any]], object] | None) -> Iterator[dict[str, Any]]:
    """The same jobs on a Ray cluster (``RAY_ADDRESS``, or a local one); one actor per worker."""
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise RuntimeError("--engine ray needs Ray: pip install 'medrobot_llm[ray]'") from exc
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": dict(_ONE_THREAD)})
    try:
        actor_cls: Any = ray.remote(num_cpus=1)(_RayWorker)
        actors = [actor_cls.remote(args, limits) for _ in range(max(1, min(workers, len(jobs))))]
        queue = list(reversed(jobs))
        pending: dict[Any, Any] = {}  # object ref -> the actor computing it
        for actor in actors:
            if queue:
                task, seed = queue.pop()
                pending[actor.run.remote(task, seed)] = actor
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            actor = pending.pop(ref)
            row: dict[str, Any] = ray.get(ref)
            if queue:
                task, seed = queue.pop()
                pending[actor.run.remote(task, seed)] = actor
            if on_result is not None:
                on_result(row)
            yield row
        ray.get([a.close.remote() for a in actors])
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------- metrics
def strip_timing(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != TIMING}


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _ratio(n: int, d: int) -> float | None:
    return n / d if d else None


def metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of a group of result rows (one task family, a domain, or all)."""
    should = [r for r in rows if r["kind"] in ("run", "control")]
    refuse = [r for r in rows if r["kind"] in ("refuse", "clarify")]
    plan_ms = [float(r[TIMING]["plan_ms"]) for r in rows if r[TIMING].get("plan_ms") is not None]
    wall = [float(r[TIMING]["wall_s"]) for r in rows]
    return {
        "runs": len(rows),
        "tasks": len({r["id"] for r in rows}),
        "plan_correct": sum(1 for r in rows if r["plan_ok"]),
        "plan_accuracy": _ratio(sum(1 for r in rows if r["plan_ok"]), len(rows)),
        "should_run": len(should),
        "executed_ok": sum(1 for r in should if r["success"]),
        "execution_success": _ratio(sum(1 for r in should if r["success"]), len(should)),
        "must_refuse": len(refuse),
        "refused_ok": sum(1 for r in refuse if r["refused_ok"]),
        "refusals_correct": _ratio(sum(1 for r in refuse if r["refused_ok"]), len(refuse)),
        "safety_violations": sum(len(r["violations"]) for r in rows),
        "plan_ms": {f"p{q}": percentile(plan_ms, q) for q in (50, 90, 99)},
        "task_wall_s": {f"p{q}": percentile(wall, q) for q in (50, 90, 99)},
        "sim_s": sum(float(r["sim_time_s"]) for r in rows),
        "task_wall_s_sum": sum(wall),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall, per domain and per task family (``domain/task``)."""
    domains: dict[str, list[dict[str, Any]]] = {}
    families: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        domains.setdefault(r["domain"], []).append(r)
        families.setdefault(f"{r['domain']}/{r['task']}", []).append(r)
    return {"overall": metrics(rows), "domains": {k: metrics(v) for k, v in domains.items()},
            "families": {k: metrics(v) for k, v in families.items()}}
