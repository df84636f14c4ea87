"""Limits are enforced, not only detected (issue 16): every skill of every scene, with any arguments the
command set allows, plans its motion within the limits the scene's monitor checks, so the monitor (the
second line) never trips; and that second line is still there when the first is deliberately broken.

Real PyBullet scenes, seeded; the arguments are drawn by Hypothesis from the ranges and values in
``skills/*.yaml`` (never restated here). A step may fail (a refusal before moving, a guarded stop), but
never by a limit violation, and nothing measured may cross a cap at any control step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pybullet")

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from medrobot_llm import CancelToken, FailureKind, Feedback, Step, StepResult
from medrobot_llm.backends.sim import make
from medrobot_llm.backends.sim.surgery import MM, SurgeryScene, caps
from medrobot_llm.core.command_set import ArgSpec, load_command_set
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.session import Session, always

pytestmark = pytest.mark.sim

FEW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])


def arg_values(domain: str, skill: str, arg: str) -> st.SearchStrategy[Any]:
    """Any value the command set allows for one argument."""
    cs = load_command_set(domain)
    spec: ArgSpec = cs.skills[skill].args[arg]
    if spec.type == "enum":
        return st.sampled_from(cs.allowed_values(spec))
    assert spec.min is not None and spec.max is not None
    number = st.floats(spec.min, spec.max, allow_nan=False)
    return st.lists(number, min_size=3, max_size=3) if spec.type == "vector3" else number


class Watch:
    """Every control step of a skill, checked against the caps the monitor applies (read, like the
    monitor, from the scene's own limits)."""

    def __init__(self, scene: SurgeryScene) -> None:
        self.scene = scene
        self.crossings: list[str] = []

    def __call__(self, _: Feedback) -> None:
        s, lim = self.scene, self.scene.limits
        cap = float(lim["force_cap"])
        if s.force_n > cap:
            self.crossings.append(f"tissue force {s.force_n:.2f} N above {cap:g} N")
        lo, hi = (np.asarray(lim["workspace"][k], dtype=float) * MM for k in ("lo", "hi"))
        for arm in s.arms.values():
            vmax = caps.speed_cap(lim, s.in_contact(arm))
            if arm.speed / MM > vmax:
                self.crossings.append(f"{arm.name} at {arm.speed / MM:.1f} mm/s above {vmax:g} mm/s")
            if np.any(arm.tcp < lo - 1e-6) or np.any(arm.tcp > hi + 1e-6):
                self.crossings.append(f"{arm.name} outside the workspace")

    def run(self, skill: str, **args: Any) -> StepResult:
        result = self.scene.execute(Step(skill=skill, args=args), CancelToken(), self)
        assert not result.failure.is_limit_violation, f"{skill} {args}: {result.failure.value} {result.message}"
        assert self.scene.violation is None and not self.crossings, (skill, args, self.crossings)
        return result


@pytest.fixture(scope="module")
def surgery() -> Iterator[SurgeryScene]:
    s = make("surgery")
    assert isinstance(s, SurgeryScene)
    yield s
    s.close()


def prepared(scene: SurgeryScene, seed: int, *steps: tuple[str, dict[str, Any]]) -> Watch:
    """The scene reset to ``seed`` and brought to a state by ``steps``, which must succeed within the caps."""
    scene.reset(seed=seed)
    watch = Watch(scene)
    for skill, args in steps:
        assume(watch.run(skill, **args).success)
    return watch


seeds = st.integers(0, 9)
SURGERY = "surgery"


@FEW
@given(seed=seeds, arm=arg_values(SURGERY, "retract", "arm"), direction=arg_values(SURGERY, "retract", "direction"),
       distance=arg_values(SURGERY, "retract", "distance_mm"))
def test_retract_then_release_stay_within_the_caps(surgery: SurgeryScene, seed: int, arm: str, direction: str,
                                                   distance: float) -> None:
    watch = prepared(surgery, seed, ("locate", {"object": "vessel"}), ("grasp", {"arm": arm, "object": "vessel"}))
    watch.run("retract", arm=arm, direction=direction, distance_mm=distance)
    if surgery.arms[arm].held == "vessel":
        watch.run("release", arm=arm)


@pytest.mark.parametrize("arm", ["psm1", "psm2"])
def test_a_pull_down_into_the_vessel_wall_is_refused_before_moving(surgery: SurgeryScene, arm: str) -> None:
    """The held rim stands on the vessel's wall, its jaw tips 1.3 mm above it: less than the clearance a plan
    keeps over tissue, so even the shortest downward retraction the command set allows is refused before
    anything moves, naming the press. Found by Hypothesis: the plan's rays stopped at the instrument above
    the rim, took the pad for the floor, and a 2 mm pull met the wall at 4.4 N, stopped only by the monitor."""
    surgery.reset(seed=0)
    watch = Watch(surgery)
    for skill, args in (("locate", {"object": "vessel"}), ("grasp", {"arm": arm, "object": "vessel"})):
        assert watch.run(skill, **args).success
    held = surgery.arms[arm]
    before = held.tcp.copy()
    shortest = load_command_set(SURGERY).skills["retract"].args["distance_mm"].min
    result = watch.run("retract", arm=arm, direction="down", distance_mm=shortest)
    assert result.failure is FailureKind.INVALID and "into the tissue" in result.message, result.message
    assert float(np.linalg.norm(held.tcp - before)) < 0.3 * MM
    assert surgery.max_force_n < float(surgery.cfg["motion"]["guard_force_share"]) * float(surgery.limits["force_cap"])


@FEW
@given(seed=seeds, arm=arg_values(SURGERY, "lift", "arm"), obj=arg_values(SURGERY, "grasp", "object"),
       height=arg_values(SURGERY, "lift", "height_mm"))
def test_lift_anything_held_stays_within_the_caps(surgery: SurgeryScene, seed: int, arm: str, obj: str,
                                                  height: float) -> None:
    watch = prepared(surgery, seed, ("locate", {"object": obj}), ("grasp", {"arm": arm, "object": obj}))
    watch.run("lift", arm=arm, height_mm=height)


@FEW
@given(seed=seeds, arm=arg_values(SURGERY, "move_to", "arm"), target=arg_values(SURGERY, "move_to", "target"),
       offset=arg_values(SURGERY, "move_to", "offset_mm"), holding=st.sampled_from([None, "needle", "vessel"]))
def test_move_to_anywhere_with_any_offset_stays_within_the_caps(surgery: SurgeryScene, seed: int, arm: str,
                                                                target: str, offset: list[float],
                                                                holding: str | None) -> None:
    setup: list[tuple[str, dict[str, Any]]] = []
    if holding is not None:
        setup += [("locate", {"object": holding}), ("grasp", {"arm": arm, "object": holding})]
    if target in load_command_set(SURGERY).entities["object"].values:
        setup.append(("locate", {"object": target}))
    watch = prepared(surgery, seed, *setup)
    watch.run("move_to", arm=arm, target=target, offset_mm=offset)


@FEW
@given(seed=seeds, arms=st.permutations(load_command_set(SURGERY).arms), obj=arg_values(SURGERY, "handover", "object"))
def test_handover_and_home_stay_within_the_caps(surgery: SurgeryScene, seed: int, arms: list[str], obj: str) -> None:
    giver, taker = arms
    watch = prepared(surgery, seed, ("locate", {"object": obj}), ("grasp", {"arm": giver, "object": obj}))
    watch.run("handover", from_arm=giver, to_arm=taker, object=obj)
    for arm in arms:
        if surgery.arms[arm].held is not None:
            watch.run("release", arm=arm)
    watch.run("home", arm="all")


@FEW
@given(seed=seeds, arm=arg_values(SURGERY, "insert", "arm"), depth=arg_values(SURGERY, "insert", "depth_mm"))
def test_insert_stays_within_the_caps(surgery: SurgeryScene, seed: int, arm: str, depth: float) -> None:
    watch = prepared(surgery, seed, ("locate", {"object": "shunt"}), ("grasp", {"arm": arm, "object": "shunt"}),
                     ("locate", {"object": "vessel"}))
    watch.run("insert", arm=arm, object="shunt", target="vessel", depth_mm=depth)


def test_the_issue_s_retraction_completes_without_a_fault() -> None:
    """Issue 16: a confirmed, in-range 3 cm retraction of the held vessel moved the tool at 94 mm/s against
    the 20 mm/s cap and ended in FAULT; now it completes, through the supervisor, within every cap."""
    with Session(SURGERY, RulePlanner(), seed=0) as session:
        scene = session.scene
        assert isinstance(scene, SurgeryScene)
        outcome = session.run("grab the vessel with psm1 and retract it 3 cm", confirm=always, timeout_s=120.0)
        assert outcome.success and outcome.state == "IDLE", outcome.message
        assert [s["skill"] for s in outcome.plan["steps"]] == ["locate", "grasp", "retract"]  # type: ignore[index]
        assert scene.max_force_n <= float(scene.limits["force_cap"])
        assert not [e for e in scene.events if "limit" in e]
        assert scene.arms["psm1"].held == "vessel"


def blinded(monkeypatch: pytest.MonkeyPatch, **broken: Any) -> None:
    """A command set whose caps are deliberately broken, seen by the skills' plans only (the first line)."""
    monkeypatch.setattr(caps, "plan_limits", lambda s: {**s.limits, **broken})


def test_with_a_speed_cap_broken_in_the_plan_the_monitor_still_trips(monkeypatch: pytest.MonkeyPatch,
                                                                     surgery: SurgeryScene) -> None:
    """The skills plan with the contact speed cap loosened past the monitor's and a retraction asked at three
    times the real cap: the motion crosses it, and the monitor (the second line) halts it."""
    blinded(monkeypatch, contact_speed=1000.0)
    surgery.reset(seed=0)
    for skill, args in (("locate", {"object": "vessel"}), ("grasp", {"arm": "psm1", "object": "vessel"})):
        assert surgery.execute(Step(skill=skill, args=args), CancelToken()).success
    monkeypatch.setitem(surgery.cfg["motion"], "retract_speed", 3.0 * float(surgery.limits["contact_speed"]))
    result = surgery.execute(Step(skill="retract", args={"arm": "psm1", "distance_mm": 20}), CancelToken())
    assert result.failure is FailureKind.SPEED_LIMIT, result.message
    assert surgery.halted and surgery.arms["psm1"].held == "vessel"
    surgery.clear_halt()


def test_with_the_force_cap_broken_in_the_plan_the_monitor_still_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor's force cap is 1 N, the plan's is left at the scene file's: a 20 mm pull (2 N) is planned,
    and the monitor halts it as the rim's pull crosses 1 N."""
    monkeypatch.setattr(caps, "plan_limits", lambda s: s.cfg["limits"])
    s = SurgeryScene(limits={"force_cap": 1.0})
    try:
        s.reset(seed=1)
        for skill, args in (("locate", {"object": "vessel"}), ("grasp", {"arm": "psm2", "object": "vessel"})):
            assert s.execute(Step(skill=skill, args=args), CancelToken()).success
        result = s.execute(Step(skill="retract", args={"arm": "psm2", "distance_mm": 20}), CancelToken())
        assert result.failure is FailureKind.FORCE_LIMIT, result.message
        assert 1.0 < s.max_force_n < 1.5
    finally:
        s.close()


def test_with_the_tissue_hidden_from_the_plan_the_monitor_still_stops_a_pull_into_the_vessel_wall(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan sees no tissue under the jaws and keeps the scene file's caps; the monitor's force cap is 1 N.
    A 2 mm pull down drives the jaw tips onto the vessel's wall (a rigid contact: one control step goes from
    nothing to several newtons, faster than the move's guard can react), and the monitor halts the arm."""
    monkeypatch.setattr(caps, "plan_limits", lambda s: s.cfg["limits"])
    monkeypatch.setattr(caps, "tissue_floor", lambda *a, **k: -1.0)
    s = SurgeryScene(limits={"force_cap": 1.0})
    try:
        s.reset(seed=0)
        for skill, args in (("locate", {"object": "vessel"}), ("grasp", {"arm": "psm1", "object": "vessel"})):
            assert s.execute(Step(skill=skill, args=args), CancelToken()).success
        result = s.execute(Step(skill="retract", args={"arm": "psm1", "direction": "down", "distance_mm": 2}),
                           CancelToken())
        assert result.failure is FailureKind.FORCE_LIMIT and "on the vessel above" in result.message, result.message
        assert s.halted and s.arms["psm1"].held == "vessel"
    finally:
        s.close()


def test_the_plan_refuses_a_pull_past_the_force_cap_before_moving() -> None:
    """With the force cap tightened in the scene (both lines see it), the retraction is refused before
    anything moves, naming the force it would take."""
    s = SurgeryScene(limits={"force_cap": 1.0})
    try:
        s.reset(seed=1)
        for skill, args in (("locate", {"object": "vessel"}), ("grasp", {"arm": "psm2", "object": "vessel"})):
            assert s.execute(Step(skill=skill, args=args), CancelToken()).success
        before = s.arms["psm2"].tcp.copy()
        result = s.execute(Step(skill="retract", args={"arm": "psm2", "distance_mm": 20}), CancelToken())
        assert result.failure is FailureKind.INVALID and "of the 1 N force cap" in result.message, result.message
        assert float(np.linalg.norm(s.arms["psm2"].tcp - before)) < 0.3 * MM
        assert s.violation is None and not s.halted
    finally:
        s.close()


# -- the ultrasound and X-ray scenes ----------------------------------------------------------------------------
class SceneWatch:
    """Any scene's skills, each control step checked against what its monitor checks (``crossed``)."""

    def __init__(self, scene: Any, crossed: Any) -> None:
        self.scene, self.crossed = scene, crossed
        self.crossings: list[str] = []

    def __call__(self, _: Feedback) -> None:
        self.crossings += self.crossed(self.scene)

    def run(self, skill: str, **args: Any) -> StepResult:
        result = self.scene.execute(Step(skill=skill, args=args), CancelToken(), self)
        assert self.scene.violation is None, (skill, args, result.message)
        assert not self.crossings, (skill, args, self.crossings)
        return result


def ultrasound_crossings(s: Any) -> list[str]:
    lim = s.cfg["limits"]
    out = []
    if s.force_n > s.force_cap_n + s.force_tolerance_n and not s.retracting:
        out.append(f"contact force {s.force_n:.1f} N")
    vmax = float(lim["contact_speed"] if s.in_contact else lim["free_speed"])
    if s.tip_speed / MM > vmax:
        out.append(f"probe at {s.tip_speed / MM:.0f} mm/s above {vmax:g}")
    return out


@pytest.fixture(scope="module")
def ultrasound() -> Iterator[Any]:
    s = make("ultrasound")
    yield s
    s.close()


US = "ultrasound"
us_windows = st.sampled_from([tuple(k.split("/")) for k in load_command_set(US).entities["organ"].values
                              for k in [f"{k}/{side}" for side in load_command_set(US).entities["organ"].values[k].sides
                                        ]])


def us_step(skill: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """A step of ``skill`` with every argument drawn from the command set."""
    args = load_command_set(US).skills[skill].args
    return st.fixed_dictionaries({a: arg_values(US, skill, a) for a, spec in args.items()
                                  if spec.type in ("enum", "number")}).map(lambda d: (skill, d))


@FEW
@given(seed=seeds, window=us_windows, force=arg_values(US, "make_contact", "force_n"),
       step=st.one_of(*(us_step(k) for k in ("sweep", "fan", "rotate_probe", "tilt_probe", "set_force",
                                             "lift_probe"))))
def test_ultrasound_skills_stay_within_the_caps(ultrasound: Any, seed: int, window: tuple[str, str], force: float,
                                                step: tuple[str, dict[str, Any]]) -> None:
    ultrasound.reset(seed=seed)
    watch = SceneWatch(ultrasound, ultrasound_crossings)
    organ, side = window
    assume(watch.run("move_to_window", organ=organ, side=side).success)
    assume(watch.run("make_contact", force_n=force).success)
    skill, args = step
    watch.run(skill, **args)
    watch.run("lift_probe", height_mm=float(load_command_set(US).skills["lift_probe"].args["height_mm"].default))
    watch.run("home")


def xray_crossings(s: Any) -> list[str]:
    margin = float(s.cfg["gantry"]["collision_margin"])
    return [f"gantry {s.clearance_mm:.1f} mm from the table or patient"] if s.clearance_mm < margin else []


class XrayWatch(SceneWatch):
    """Gantry rates too: each axis's travel over a control step against its speed."""

    def __call__(self, fb: Feedback) -> None:
        super().__call__(fb)
        s = self.scene
        before = getattr(self, "before", None)
        if before is not None and s.sim_time > before[0]:
            dt = s.sim_time - before[0]
            for k, cfg in s.axis_cfg.items():
                rate = abs(s.axes[k] - before[1][k]) / dt
                if rate > float(cfg["speed"]) * (1.0 + 1e-6):
                    self.crossings.append(f"{k} at {rate:.1f} {cfg['unit']}/s above {cfg['speed']}")
        self.before = (s.sim_time, dict(s.axes))


@pytest.fixture(scope="module")
def xray() -> Iterator[Any]:
    s = make("xray")
    yield s
    s.close()


XR = "xray"


@st.composite
def xray_view(draw: st.DrawFn) -> dict[str, Any]:
    """A view the command set allows: an anatomy, its side or level if it has them, and a view for it."""
    cs = load_command_set(XR)
    anatomy = draw(st.sampled_from(list(cs.entities["anatomy"].values)))
    ev = cs.entities["anatomy"].values[anatomy]
    args: dict[str, Any] = {"anatomy": anatomy}
    if ev.sides:
        args["side"] = draw(st.sampled_from(list(ev.sides)))
    views = [v for v, spec in cs.entities["view"].values.items()
             if not spec.only_for or anatomy in spec.only_for.get("anatomy", ())]
    args["view"] = draw(st.sampled_from(views))
    return args


@st.composite
def xray_axis_move(draw: st.DrawFn) -> dict[str, Any]:
    axes = load_command_set(XR).entities["axis"].values
    axis = draw(st.sampled_from(list(axes)))
    spec = axes[axis]
    return {"axis": axis, "amount": draw(st.floats(spec.min, spec.max, allow_nan=False))}


@FEW
@given(seed=seeds, view=xray_view(), then=st.one_of(xray_axis_move(), st.sampled_from([{"spin": True}, {"park": True}])))
def test_xray_gantry_moves_stay_within_the_caps(xray: Any, seed: int, view: dict[str, Any],
                                                then: dict[str, Any]) -> None:
    xray.reset(seed=seed)
    watch = XrayWatch(xray, xray_crossings)
    assume(watch.run("move_to_view", **view).success)
    if "axis" in then:
        watch.run("adjust", **then)
    else:
        watch.run("acquire_3d" if "spin" in then else "park")
