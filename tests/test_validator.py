"""The validator: the gate every plan passes. Property tests try to sneak bad values through."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medrobot_llm import DOMAINS, Issue, Plan, PlanStatus, PlanValidationError, Reason, Step, WorldState, \
    check_steps, load_command_set, validate_plan

ALL_SKILLS = sorted({s for d in DOMAINS for s in load_command_set(d).skills})


def _numeric_args() -> list[tuple[str, str, str, float, float, str]]:
    out = []
    for d in DOMAINS:
        cs = load_command_set(d)
        for name, skill in cs.skills.items():
            for a, spec in skill.args.items():
                if spec.type == "number" and spec.min is not None and spec.max is not None:
                    out.append((d, name, a, spec.min, spec.max, spec.unit or ""))
    return out


NUMERIC = _numeric_args()


def _issue(domain: str, steps: list[dict[str, Any]], world: WorldState | None = None) -> Issue:
    """The first issue the validator raises for ``steps`` (failing the test when it accepts them)."""
    with pytest.raises(PlanValidationError) as err:
        check_steps(domain, steps, world)
    return err.value.issues[0]


def _base_args(domain: str, skill: str) -> dict[str, Any]:
    """Valid values for every other required argument, read from the command set."""
    cs = load_command_set(domain)
    spec = cs.skills[skill]
    args: dict[str, Any] = {}
    for a, s in spec.args.items():
        if s.type == "enum" and not s.values_from and (s.required or a == "axis"):
            args[a] = cs.allowed_values(s)[0]
    if skill == "handover":
        args.update(from_arm="psm1", to_arm="psm2", object="needle")
    if skill == "set_imaging":
        args.setdefault("mode", "b_mode")
    return args


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NUMERIC), st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_out_of_range_never_passes(target: tuple[str, str, str, float, float, str], value: float) -> None:
    domain, skill, arg, lo, hi, _unit = target
    args = _base_args(domain, skill)
    args[arg] = value
    inside = math.isfinite(value) and lo <= value <= hi
    try:
        steps, _ = check_steps(domain, [{"skill": skill, "args": args}])
    except PlanValidationError as exc:
        assert not inside or any(i.code is not Reason.OUT_OF_RANGE for i in exc.issues)
        if not inside and math.isfinite(value):
            assert any(i.code is Reason.OUT_OF_RANGE and i.arg == arg for i in exc.issues)
        return
    assert inside, f"{skill}.{arg}={value} passed outside {lo}..{hi}"
    assert lo <= steps[0].args[arg] <= hi


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DOMAINS), st.text(max_size=20), st.dictionaries(st.text(max_size=12), st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.lists(st.floats(), max_size=4)), max_size=4))
def test_random_steps_only_raise_the_validator_error(domain: str, skill: str, args: dict[str, Any]) -> None:
    try:
        steps, _ = check_steps(domain, [{"skill": skill, "args": args}])
    except PlanValidationError:
        return
    assert steps[0].skill in load_command_set(domain).skills


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DOMAINS), st.one_of(st.none(), st.integers(), st.text(), st.lists(st.one_of(
    st.none(), st.integers(), st.text(), st.dictionaries(st.text(), st.text()))), st.dictionaries(st.text(),
                                                                                              st.integers())))
def test_garbage_plans_only_raise_the_validator_error(domain: str, steps: Any) -> None:
    with pytest.raises(PlanValidationError):
        check_steps(domain, steps)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DOMAINS), st.sampled_from(ALL_SKILLS + ["cut", "inject", "fire_laser", "disable_estop"]))
def test_skills_outside_the_domain_are_refused(domain: str, skill: str) -> None:
    cs = load_command_set(domain)
    if skill in cs.skills:
        return
    with pytest.raises(PlanValidationError) as err:
        check_steps(domain, [{"skill": skill, "args": {}}])
    assert err.value.issues[0].code is Reason.UNKNOWN_SKILL
    assert skill in str(err.value)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=6, max_value=40))
def test_exposure_limit(n: int) -> None:
    steps = [{"skill": "move_to_view", "args": {"anatomy": "pelvis"}}] + [{"skill": "take_shot"}] * n
    with pytest.raises(PlanValidationError) as err:
        check_steps("xray", steps)
    assert err.value.issues[0].code is Reason.EXPOSURE_LIMIT and "5" in str(err.value)


def test_five_exposures_pass_and_all_need_confirmation() -> None:
    steps = [{"skill": "move_to_view", "args": {"anatomy": "pelvis"}}] + [{"skill": "take_shot"}] * 4 + \
        [{"skill": "acquire_3d"}]
    out, confirm = check_steps("xray", steps)
    assert confirm == [1, 2, 3, 4, 5]


def test_units_are_normalised() -> None:
    out, _ = check_steps("ultrasound", [{"skill": "make_contact", "args": {"force_n": "12 N"}},
                                        {"skill": "sweep", "args": {"distance_mm": "3 cm", "speed_mm_s": "0.5 cm/s"}}])
    assert out[0].args["force_n"] == 12
    assert out[1].args["distance_mm"] == 30 and out[1].args["speed_mm_s"] == 5
    out, _ = check_steps("surgery", [{"skill": "lift", "args": {"arm": "psm1", "height_mm": {"value": 2,
                                                                                           "unit": "cm"}}}])
    assert out[0].args["height_mm"] == 20


def test_wrong_unit_is_refused() -> None:
    issue = _issue("ultrasound", [{"skill": "make_contact", "args": {"force_n": "12 mm"}}])
    assert (issue.code, issue.arg) == (Reason.WRONG_TYPE, "force_n")


def test_values_are_never_clamped() -> None:
    with pytest.raises(PlanValidationError) as err:
        check_steps("surgery", [{"skill": "lift", "args": {"arm": "psm1", "height_mm": 50.01}}])
    issue = err.value.issues[0]
    assert (issue.code, issue.step, issue.arg, issue.limit) == (Reason.OUT_OF_RANGE, 0, "height_mm", (1, 50))
    assert "above the limit of 50 mm" in str(err.value)


def test_dependent_choices() -> None:
    issue = _issue("xray", [{"skill": "move_to_view", "args": {"anatomy": "knee", "side": "left", "view": "inlet"}}])
    assert (issue.code, issue.arg) == (Reason.NOT_ALLOWED, "view") and "only for pelvis and sacrum" in issue.message
    issue = _issue("xray", [{"skill": "move_to_view", "args": {"anatomy": "pelvis", "level": "L3"}}])
    assert (issue.code, issue.arg) == (Reason.NOT_ALLOWED, "level")
    issue = _issue("ultrasound", [{"skill": "move_to_window", "args": {"organ": "spleen", "side": "right"}}])
    assert (issue.code, issue.arg) == (Reason.NOT_ALLOWED, "side")
    out, _ = check_steps("ultrasound", [{"skill": "move_to_window", "args": {"organ": "spleen"}}])
    assert out[0].args["side"] == "left"


def test_missing_values_ask_a_question() -> None:
    plan = validate_plan(Plan(status=PlanStatus.OK, domain="ultrasound",
                              steps=[Step(skill="move_to_window", args={"organ": "carotid"})]))
    assert (plan.status, plan.code) == (PlanStatus.CLARIFY, Reason.MISSING) and "left or right" in plan.question


def test_one_of_groups() -> None:
    issue = _issue("xray", [{"skill": "collimate", "args": {"anatomy": "pelvis", "width_mm": 100, "height_mm": 100}}])
    assert issue.code is Reason.CONFLICT
    assert _issue("ultrasound", [{"skill": "set_imaging", "args": {}}]).code is Reason.MISSING


def test_known_world_must_hold_every_precondition() -> None:
    world = WorldState({"probe": "away"}, known=True)
    issue = _issue("ultrasound", [{"skill": "sweep"}], world)
    assert issue.code is Reason.PRECONDITION and "probe to be contact, but it is away" in issue.message
    assert _issue("xray", [{"skill": "take_shot"}], WorldState({}, known=True)).code is Reason.PRECONDITION


def test_model_cannot_drop_a_confirmation() -> None:
    plan = Plan(status=PlanStatus.OK, domain="xray", steps=[Step(skill="take_shot")], needs_confirmation=[])
    assert validate_plan(plan).needs_confirmation == [0]


def test_error_sentence_is_one_clear_sentence() -> None:
    with pytest.raises(PlanValidationError) as err:
        check_steps("ultrasound", [{"skill": "fan", "args": {"angle_deg": 45, "speed": 3}}])
    text = str(err.value)
    assert text.startswith("Step 1 (fan):") and text.endswith(".") and "\n" not in text
    assert "speed" in text and err.value.issues[0].code is Reason.UNKNOWN_ARG


def test_a_missing_value_is_asked_for_even_when_later_steps_depend_on_it() -> None:
    """With a known world, the step after an unreadable one must not be judged on guessed effects."""
    world = WorldState({"probe": "away"}, known=True)
    plan = Plan(status=PlanStatus.OK, domain="ultrasound",
                steps=[Step(skill="move_to_window", args={"organ": "kidney"}), Step(skill="make_contact", args={})])
    checked = validate_plan(plan, world)
    assert (checked.status, checked.code) == (PlanStatus.CLARIFY, Reason.MISSING) and "side" in (checked.question or "")
