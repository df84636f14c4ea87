"""One supervised run of one command on one backend: what ``run``, the consoles and ``bench`` share.

The supervisor owns every decision; this module only answers its questions (with a callback the caller
chooses: ``--yes``, a prompt, a benchmark's policy) and gathers what happened into one outcome record,
the ``run --json`` object of architecture.md. Outcomes are read from the supervisor's own records, so
what a run reports is what its audit log says.
"""

from __future__ import annotations

import errno
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrobot_llm.safety.audit import AuditLog
from medrobot_llm.backends.base import CancelToken, FeedbackFn, SkillBackend, StepResult
from medrobot_llm.core.paths import file_sha256
from medrobot_llm.core.plan import Plan, PlanStatus, Step
from medrobot_llm.planning.base import Planner
from medrobot_llm.safety.events import (EventListener, RunEndEvent, RunEvent,
                                        StepRejectedEvent, StepResultEvent, SupervisorEvent)
from medrobot_llm.safety.supervisor import InvalidTransition, Question, Reply, Supervisor, SupervisorState
from medrobot_llm.core.validator import WorldState, validate_plan

if TYPE_CHECKING:
    from medrobot_llm.backends.sim.base import Scene

__all__ = ["ConfirmPolicy", "RunOutcome", "Session", "always", "never", "new_recording_dir"]

#: answers a confirmation question: True confirms that one step, False denies it (and drops the plan)
ConfirmPolicy = Callable[[Question], bool]


def always(_: Question) -> bool:
    return True


def never(_: Question) -> bool:
    return False


@dataclass
class RunOutcome:
    """The ``run --json`` object; ``success`` means every step of an ``ok`` plan finished."""

    success: bool
    state: str
    plan: dict[str, Any] | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    exposures: int = 0
    images: list[str] = field(default_factory=list)
    reason: str | None = None
    message: str = ""
    sim_time_s: float = 0.0
    wall_s: float = 0.0
    frames: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"success": self.success, "state": self.state, "plan": self.plan, "steps": self.steps,
                "exposures": self.exposures, "images": self.images, "reason": self.reason,
                "message": self.message, "sim_time_s": round(self.sim_time_s, 4), "wall_s": round(self.wall_s, 4),
                "frames": self.frames}


def new_recording_dir(parent: Path) -> Path:
    """A fresh folder under ``parent`` for one session's recording: ``run-001``, ``run-002``, ...

    A second run into the same ``--record DIR`` used to overwrite the first one's radiograph; now each run
    claims its own number with ``mkdir`` (no ``exist_ok``), which is atomic, so two runs started together
    never share a folder and nothing an earlier run wrote is touched."""
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder", str(parent))
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for child in parent.iterdir() if (m := re.fullmatch(r"run-(\d+)", child.name))]
    n = max(taken, default=0) + 1
    while True:
        candidate = parent / f"run-{n:03d}"
        try:
            candidate.mkdir()
        except FileExistsError:
            n += 1
            continue
        return candidate


class _FrameRecorder(SkillBackend):
    """Renders a frame after every step, on the thread that steps the physics (pybullet is not thread-safe)."""

    def __init__(self, scene: Scene, folder: Path) -> None:
        self.inner = scene
        self.folder = folder
        self.frames: list[str] = []
        #: frames that could not be written (a full disk): path and why, for the log's ``recording`` record
        self.image_errors: list[dict[str, str]] = []
        self.domain = scene.domain
        folder.mkdir(parents=True, exist_ok=True)

    def snapshot(self, label: str) -> None:
        """A frame is a record of the step, not part of it: one that cannot be written fails no step."""
        from medrobot_llm.backends.sim.imaging import save_png

        path = self.folder / f"frame_{len(self.frames) + len(self.image_errors):03d}_{label}.png"
        try:
            self.frames.append(str(save_png(self.inner.render(480, 360), path)))
        except OSError as exc:
            self.image_errors.append({"path": str(path.absolute()), "image_error": exc.strerror or str(exc)})

    @property
    def backend_name(self) -> str:
        return self.inner.backend_name

    def world_state(self) -> WorldState:
        return self.inner.world_state()

    def execute(self, step: Step, token: CancelToken, on_feedback: FeedbackFn | None = None) -> StepResult:
        result = self.inner.execute(step, token, on_feedback)
        self.snapshot(step.skill)
        return result

    def halt(self, reason: str = "e-stop") -> None:
        self.inner.halt(reason)

    def clear_halt(self) -> None:
        self.inner.clear_halt()

    @property
    def halted(self) -> bool:
        return self.inner.halted

    @property
    def halt_reason(self) -> str:
        return self.inner.halt_reason

    @property
    def last_heartbeat(self) -> float:
        return self.inner.last_heartbeat

    def telemetry(self) -> dict[str, Any]:
        return self.inner.telemetry()

    def close(self) -> None:
        self.inner.close()


class Session:
    """A supervisor over one backend (a PyBullet scene unless one is given), ready for commands.

    ``record_dir`` keeps the captured images and, for scenes, a rendered frame after each step, in a folder of
    this session's own under it (``new_recording_dir``); after each run the audit log gets a ``recording``
    record naming every new file with its SHA-256. ``keep_records`` keeps the audit records in
    ``audit.records`` too, for a recording made after the run. ``confirm_hazards`` goes to the supervisor
    (``--confirm-motion``).
    """

    def __init__(self, domain: str, planner: Planner, *, backend: SkillBackend | None = None, seed: int = 0,
                 gui: bool = False, record_dir: Path | None = None, audit_path: Path | None = None,
                 confirm_timeout_s: float = 30.0, step_timeout_s: float = 120.0, keep_records: bool = False,
                 confirm_hazards: Iterable[str] = ()) -> None:
        self.domain = domain
        self.scene: Scene | None = None
        # the log first: a bad --log (a directory, a FIFO, another writer's file) is refused before a scene starts
        self.audit = AuditLog(audit_path, keep_records=keep_records)
        self.record_dir: Path | None = None
        self._logged_files: set[str] = set()
        if backend is None:
            try:
                if record_dir is not None:
                    # absolute: the log names the files, and is read from anywhere, not from this directory
                    self.record_dir = new_recording_dir(Path(record_dir).absolute())
                backend = self._make_scene(domain, seed, gui, self.record_dir)
            except BaseException:
                self.audit.close()   # the log is sound: it ends with a close record, not as if killed
                raise
        self.backend = backend
        self.supervisor = Supervisor(backend, planner, domain=domain, audit=self.audit,
                                     confirm_timeout_s=confirm_timeout_s, step_timeout_s=step_timeout_s,
                                     confirm_hazards=confirm_hazards)

    def _make_scene(self, domain: str, seed: int, gui: bool, record_dir: Path | None) -> SkillBackend:
        from medrobot_llm.backends.sim import make

        self.scene = make(domain, gui=gui, record_dir=record_dir)
        self.scene.reset(seed=seed)
        self.scene.hazard_log = self.audit.append
        if record_dir is None:
            return self.scene
        recorder = _FrameRecorder(self.scene, Path(record_dir) / "frames")
        recorder.snapshot("start")
        return recorder

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.supervisor.close()
        self.backend.close()
        self.audit.close()

    @property
    def sim_time(self) -> float:
        return float(self.scene.sim_time) if self.scene is not None else 0.0

    def run(self, text: str, *, confirm: ConfirmPolicy = never, timeout_s: float = 300.0,
            on_event: EventListener | None = None) -> RunOutcome:
        """Plan ``text`` and follow the run to its end, answering each question with ``confirm``."""
        return self._follow(lambda: self.supervisor.command(text, source="session"), confirm, timeout_s, on_event)

    def propose(self, text: str) -> Plan:
        """Plan ``text`` without running it, so that a person can check the plan before anything moves.

        The voice console reads a plan back and runs it only once the read-back is confirmed; the plan it
        runs must be the one it read back, so planning happens once, here, and ``run_plan`` takes the plan.
        The plan is audited as the supervisor audits its own planning. A plan that already fails against
        the world as it is now comes back refused, so nobody is asked to confirm what would not run (the
        supervisor validates it again when it is submitted).
        """
        plan = self.supervisor.propose(text)
        try:
            world: WorldState | None = self.backend.world_state()
        except Exception:  # noqa: BLE001 - unchecked here; the supervisor refuses it when submitted
            world = None
        if plan.status is PlanStatus.OK and world is not None:
            checked = validate_plan(plan, world)
            if checked.status is not PlanStatus.OK:
                return checked
        return plan

    def run_plan(self, plan: Plan, *, confirm: ConfirmPolicy = never, timeout_s: float = 300.0,
                 on_event: EventListener | None = None) -> RunOutcome:
        """Run exactly ``plan`` (from ``propose``) and follow it to its end, as ``run`` does for a text."""
        return self._follow(lambda: self._submit(plan), confirm, timeout_s, on_event)

    def discard(self, plan: Plan) -> None:
        """Audit a proposed plan that will not run (its read-back was not confirmed)."""
        self.supervisor.record_discarded(plan)

    def _submit(self, plan: Plan) -> Reply:
        try:
            return self.supervisor.submit_plan(plan, source="session")
        except InvalidTransition:
            return Reply(False, self.supervisor.state, f"the supervisor is {self.supervisor.state.value}", plan)

    def _follow(self, start: Callable[[], Reply], confirm: ConfirmPolicy, timeout_s: float,
                on_event: EventListener | None) -> RunOutcome:
        sup = self.supervisor
        t0, sim0 = time.perf_counter(), self.sim_time
        exposures0 = self._exposures()
        records: list[SupervisorEvent] = []
        ended = threading.Event()
        run_id: list[int] = []
        lock = threading.Lock()

        def listen(event: SupervisorEvent) -> None:
            with lock:
                records.append(event)
                if isinstance(event, RunEvent) and not run_id:
                    run_id.append(event.run)
                if isinstance(event, RunEndEvent) and run_id and event.run == run_id[0]:
                    ended.set()
            if on_event is not None:
                on_event(event)

        unsubscribe = sup.subscribe(listen)
        try:
            reply = start()
            plan = reply.plan
            if not reply.accepted or plan is None or plan.status.value != "ok":
                return self._outcome(plan, [], reply.message, t0, sim0, exposures0, ran=False)
            deadline = time.monotonic() + timeout_s
            while not ended.is_set():
                if time.monotonic() > deadline:
                    sup.stop(f"the run did not end within {timeout_s:g} s", source="session")
                    break
                if sup.state is SupervisorState.AWAITING_CONFIRMATION:
                    question = sup.pending
                    if question is not None:
                        try:
                            if confirm(question):
                                sup.confirm(question.step_index, source="session")
                            else:
                                sup.deny(source="session")
                        except InvalidTransition:
                            pass  # the question expired or an e-stop came first: the loop sees the new state
                        continue
                if sup.state in (SupervisorState.ESTOP, SupervisorState.FAULT) and sup.worker_parked:
                    break
                ended.wait(0.005)
            sup.wait_idle(timeout=10.0)
            ended.wait(2.0)
            outcome = self._outcome(plan, records, "", t0, sim0, exposures0, ran=True)
            self._log_files(outcome)
            return outcome
        finally:
            unsubscribe()

    def _log_files(self, outcome: RunOutcome) -> None:
        """Name in the log every file this run left (images, frames), each with its SHA-256."""
        paths = {str(p) for p in self.record_dir.rglob("*") if p.is_file()} if self.record_dir is not None else set()
        paths |= set(outcome.images) | set(outcome.frames)
        files = []
        for name in sorted(paths - self._logged_files):
            path = Path(name)
            try:
                files.append({"path": str(path.absolute()), "sha256": file_sha256(path),
                              "bytes": path.stat().st_size})
            except OSError as exc:
                files.append({"path": str(path.absolute()), "error": exc.strerror or str(exc)})
        self._logged_files |= paths
        failed = [e for e in getattr(self.backend, "image_errors", []) if e["path"] not in self._logged_files]
        self._logged_files |= {e["path"] for e in failed}
        if files or failed:
            folder = str(self.record_dir.absolute()) if self.record_dir is not None else None
            self.audit.append("recording", dir=folder, files=files, **({"image_errors": failed} if failed else {}))

    def _exposures(self) -> int:
        return len(getattr(self.scene, "exposures", []) or [])

    def _outcome(self, plan: Plan | None, records: list[SupervisorEvent], message: str, t0: float, sim0: float,
                 exposures0: int, *, ran: bool) -> RunOutcome:
        sup = self.supervisor
        recs = list(records)
        steps: list[dict[str, Any]] = []
        images: list[str] = []
        reason: str | None = None
        results = {r.step: r for r in recs if isinstance(r, StepResultEvent)}
        rejected = {r.step: r for r in recs if isinstance(r, StepRejectedEvent)}
        for i, step in enumerate(plan.steps if plan is not None else []):
            res = results.get(i)
            if res is not None:
                steps.append({"skill": step.skill, "args": step.args,
                              "result": "success" if res.success else res.failure,
                              "reason": None if res.success else res.message, "outcome": res.outcome})
                images += res.image_paths()
            elif i in rejected:
                steps.append({"skill": step.skill, "args": step.args, "result": "rejected",
                              "reason": rejected[i].reason})
            else:
                steps.append({"skill": step.skill, "args": step.args, "result": "not_run", "reason": None})
        ends = [r for r in recs if isinstance(r, RunEndEvent)]
        end = ends[-1] if ends else None
        ok_steps = bool(steps) and all(s["result"] == "success" for s in steps)
        success = ran and ok_steps and (end is None or end.outcome == "finish")
        if plan is None:
            reason = message or "no plan"
        elif plan.status.value == "refused":
            reason = plan.reason
        elif plan.status.value == "clarify":
            reason = plan.question
        elif plan.status.value == "control":
            reason = None
            success = True
        elif not success:
            failed = next((s for s in steps if s["result"] not in ("success", "not_run")), None)
            if end is not None and end.reason:
                reason = end.reason
            elif failed is not None:
                reason = f"{failed['skill']}: {failed['reason']}"
            else:
                reason = sup.reason or message or "the run did not finish"
        return RunOutcome(success=success, state=sup.state.value, plan=plan.to_json() if plan else None,
                          steps=steps, exposures=self._exposures() - exposures0, images=images, reason=reason,
                          message=message or sup.describe(), sim_time_s=self.sim_time - sim0,
                          wall_s=time.perf_counter() - t0,
                          frames=list(getattr(self.backend, "frames", [])))

