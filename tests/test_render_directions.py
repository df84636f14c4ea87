"""Issue 17: a read-back says the direction of every signed amount in words, from the command set's own sign
words, so a side heard wrong is caught before anything moves (a minus sign is not)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.consoles.render import directions, render_plan
from medrobot_llm.consoles.voice.console import spoken_readback
from medrobot_llm.core.command_set import DOMAINS, load_command_set
from medrobot_llm.core.plan import Plan, PlanStatus, Step


def _signed() -> list[tuple[str, str, dict[str, str], str, tuple[str, ...], tuple[str, ...]]]:
    """(domain, skill, the enum choice, the number argument, positive words, negative words) for every amount
    whose sign the command set names, found the way the renderer must find them: from skills/."""
    out = []
    for domain in DOMAINS:
        cs = load_command_set(domain)
        for skill in cs.skills.values():
            for name, arg in skill.args.items():
                if arg.type != "number":
                    continue
                if arg.positive:
                    out.append((domain, skill.name, {}, name, arg.positive, arg.negative))
                for other, other_arg in skill.args.items():
                    for entity in other_arg.entities if other_arg.type == "enum" else ():
                        for value, ev in cs.entities[entity].values.items():
                            if ev.positive and name != other:
                                out.append((domain, skill.name, {other: value}, name, ev.positive, ev.negative))
    return out


SIGNED = _signed()


def test_every_signed_axis_of_the_command_set_is_covered() -> None:
    """The gantry's five axes, the probe's rotation and its two tilt axes: all the sign words skills/ has."""
    assert {(d, s, tuple(c.values())) for d, s, c, *_ in SIGNED} >= {
        ("xray", "adjust", (axis,)) for axis in ("tilt", "orbit", "cranial_caudal", "left_right", "up_down")
    } | {("ultrasound", "rotate_probe", ()), ("ultrasound", "tilt_probe", ("roll",)),
         ("ultrasound", "tilt_probe", ("pitch",))}


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(SIGNED), amount=st.integers(min_value=1, max_value=30))
def test_a_signed_amount_is_read_back_with_its_direction_word(
        case: tuple[str, str, dict[str, str], str, tuple[str, ...], tuple[str, ...]], amount: int) -> None:
    domain, skill, chosen, name, positive, negative = case
    cs = load_command_set(domain)
    for value, word, other in ((amount, positive[0], negative[0]), (-amount, negative[0], positive[0])):
        step = Step(skill=skill, args={**chosen, name: value})
        said = directions(cs, step)
        assert len(said) == 1 and said[0].startswith(f"{word} {amount}"), said
        plan = Plan(domain=domain, status=PlanStatus.OK, steps=[step])
        for read in (render_plan, spoken_readback):
            text = read(plan)
            assert re.search(rf"\b{re.escape(word)} {amount}\b", text), text
            assert not re.search(rf"\b{re.escape(other)} {amount}\b", text), text


def test_an_amount_with_no_sign_words_reads_as_before() -> None:
    """A zero move, or a number the command set gives no direction (a depth), adds nothing."""
    cs = load_command_set("xray")
    assert directions(cs, Step(skill="adjust", args={"axis": "left_right", "amount": 0})) == []
    plan = Plan(domain="ultrasound", status=PlanStatus.OK, steps=[Step(skill="set_imaging", args={"depth_mm": 80})])
    assert "(" not in render_plan(plan).splitlines()[1].split(")", 1)[1], render_plan(plan)


@settings(max_examples=40, deadline=None)
@given(offset=st.lists(st.integers(min_value=-50, max_value=50), min_size=3, max_size=3))
def test_a_surgery_offset_is_read_back_component_by_component_in_words(offset: list[int]) -> None:
    """command-set.md: an offset is [x toward the patient's left, y toward the head, z up] from the target."""
    cs = load_command_set("surgery")
    axes = cs.skills["move_to"].args["offset_mm"].axes
    assert [a[0] for a in axes] == ["toward the patient's left", "toward the head", "up"]
    said = directions(cs, Step(skill="move_to", args={"arm": "psm1", "target": "needle", "offset_mm": offset}))
    assert said == [f"{words[0 if v > 0 else 1]} {abs(v)} mm" for words, v in zip(axes, offset, strict=True) if v]
