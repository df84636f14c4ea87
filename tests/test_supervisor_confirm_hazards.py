"""``confirm_hazards``: the supervisor asks before the steps of chosen hazard classes too (issue 19: "confirm the
view" before the gantry moves), with the same one-question-per-step machinery; off, nothing changes."""

from __future__ import annotations

import pytest

from medrobot_llm.cli import build_parser
from medrobot_llm.core.command_set import Hazard
from medrobot_llm.safety.supervisor import Supervisor, SupervisorState
from medrobot_llm.backends.memory import MemoryBackend

from _helpers_supervisor import XRAY_MOTION, XRAY_TWO_SHOTS, check_confirmations, check_log, make_rig

S = SupervisorState


def test_a_motion_step_asks_first_when_motion_is_configured() -> None:
    rig = make_rig("xray", confirm_hazards=("motion",))
    assert rig.sup.submit_plan(XRAY_TWO_SHOTS).accepted
    rig.drive(confirm=False)
    q = rig.sup.pending
    assert rig.sup.state is S.AWAITING_CONFIRMATION and q is not None
    assert (q.step_index, q.skill, q.hazard) == (0, "move_to_view", Hazard.MOTION)
    assert q.text == "Confirm motion step 1 of 4: move_to_view(anatomy=pelvis, view=ap) — say 'confirm'"
    assert rig.sent() == [], "the gantry moved before its view was confirmed"
    assert rig.sup.confirm(0).accepted
    rig.drive(confirm=False)
    q = rig.sup.pending
    assert q is not None and q.step_index == 1 and q.hazard is Hazard.RADIATION  # the exposure keeps its own
    assert q.text.startswith("Confirm exposure 1 of 2") and rig.sent() == [(0, "move_to_view")]
    rig.drive()
    assert rig.sup.state is S.IDLE and [s for _, s in rig.sent()] == ["move_to_view", "take_shot", "adjust",
                                                                        "take_shot"]
    asked = [(r["step_index"], r["hazard"]) for r in rig.audit.records if r["kind"] == "question"]
    assert asked == [(0, "motion"), (1, "radiation"), (2, "motion"), (3, "radiation")]
    assert all(r["confirmed"] for r in rig.audit.records if r["kind"] == "step_sent")
    check_confirmations(rig.audit.records)
    check_log(rig.audit.records, rig.sup)


def test_without_the_option_motion_runs_unasked() -> None:
    rig = make_rig("xray")
    assert rig.sup.submit_plan(XRAY_MOTION).accepted
    rig.drive(confirm=False)
    assert rig.sup.state is S.IDLE and [s for _, s in rig.sent()] == ["move_to_view", "adjust", "park"]
    assert not [r for r in rig.audit.records if r["kind"] == "question"]
    session = next(r for r in rig.audit.records if r["kind"] == "session")
    assert session["config"]["confirm_hazards"] == []


def test_deny_of_a_motion_question_cancels_with_nothing_moved() -> None:
    rig = make_rig("xray", confirm_hazards=["motion"])
    assert rig.sup.submit_plan(XRAY_MOTION).accepted
    rig.drive(confirm=False)
    q = rig.sup.pending
    assert q is not None and q.step_index == 0 and q.hazard is Hazard.MOTION
    assert rig.sup.deny().accepted
    rig.settle()
    assert rig.sup.state is S.IDLE and rig.sup.plan is None and rig.sup.pending is None
    assert rig.sent() == [] and rig.backend.sent == []
    assert rig.backend.world_state().facts["view_set"] is False
    session = next(r for r in rig.audit.records if r["kind"] == "session")
    assert session["config"]["confirm_hazards"] == ["motion"]


def test_a_confirmation_for_the_next_step_does_not_release_the_motion() -> None:
    rig = make_rig("xray", confirm_hazards=("motion",))
    rig.sup.submit_plan(XRAY_MOTION)
    rig.drive(confirm=False)
    assert not rig.sup.confirm(1).accepted
    assert rig.sup.state is S.AWAITING_CONFIRMATION and rig.sent() == []


def test_an_unknown_hazard_class_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'motoin' is not a hazard class.*none, motion, contact, radiation"):
        Supervisor(MemoryBackend("xray"), None, watchdog_period_s=None, confirm_hazards=("motoin",))


@pytest.mark.parametrize(("argv", "want"), [
    (["web", "--domain", "xray"], True),
    (["web", "--domain", "xray", "--no-confirm-motion"], False),
    (["console", "--domain", "xray"], False),
    (["console", "--domain", "xray", "--confirm-motion"], True),
    (["bringup", "--domain", "xray"], False),
    (["bringup", "--domain", "xray", "--confirm-motion"], True),
])
def test_confirm_motion_is_on_for_the_page_and_off_elsewhere_unless_asked(argv: list[str], want: bool) -> None:
    assert build_parser().parse_args(argv).confirm_motion is want
