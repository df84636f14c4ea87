"""Conformance over the scene registry: every registered scene passes the shipped ``check_scene`` (its
own physics client and RNG, ``reset(seed)`` determinism, a typed world state, exactly its domain's skills,
stopping within one control step, ``close`` releasing the client), and the checker fails what breaks it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pybullet")

from medrobot_llm.backends.base import CancelToken, FeedbackFn, StepResult
from medrobot_llm.backends.memory import MemoryBackend
from medrobot_llm.backends.sim import REGISTRY, SCENE_FOR_DOMAIN, make, register, scene_ids
from medrobot_llm.backends.sim.checker import SceneCheckError, check_scene
from medrobot_llm.core.command_set import DOMAINS, load_command_set
from medrobot_llm.core.plan import Step
from medrobot_llm.core.validator import WorldState

pytestmark = pytest.mark.sim


def _rollout(scene: Any, seed: int) -> str:
    scene.reset(seed=seed)
    for _ in range(5):
        scene.advance()
    return json.dumps(scene.observation(), sort_keys=True, default=str)


def test_the_registry_is_explicit_and_versioned() -> None:
    assert set(SCENE_FOR_DOMAIN.values()) <= set(REGISTRY)
    assert all(i.rsplit("-", 1)[1].startswith("v") for i in scene_ids())
    with pytest.raises(KeyError, match="unknown scene"):
        make("SurgeryScene-v9")
    with pytest.raises(ValueError, match="Name-vN"):
        register("SurgeryScene", "medrobot_llm.backends.sim.surgery.scene:SurgeryScene")
    with pytest.raises(ValueError, match="already registered"):
        register("SurgeryScene-v0", "medrobot_llm.backends.sim.surgery.scene:SurgeryScene")


@pytest.mark.parametrize("scene_id", scene_ids())
def test_scene_owns_its_client_and_rng_and_a_seed_fixes_the_rollout(scene_id: str) -> None:
    global_state = repr(np.random.get_state())
    a, b = make(scene_id), make(scene_id)
    try:
        assert a.scene_id == scene_id and a.domain in SCENE_FOR_DOMAIN
        assert a.client._client != b.client._client              # each scene its own physics client
        first = _rollout(a, 3)
        assert _rollout(b, 3) == first                           # same seed, same rollout, other client
        assert _rollout(a, 4) != first                           # another seed, another world
        assert a.np_random is not b.np_random
        assert a.world_state().known
        assert repr(np.random.get_state()) == global_state   # numpy's global RNG untouched
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("scene_id", scene_ids())
def test_every_registered_scene_passes_check_scene(scene_id: str) -> None:
    scene = make(scene_id)
    try:
        assert scene.scene_id == scene_id and SCENE_FOR_DOMAIN[scene.domain] == scene_id
        check_scene(scene)
    finally:
        scene.close()


@pytest.mark.parametrize("scene_id", scene_ids())
def test_each_scene_implements_exactly_its_domains_skills(scene_id: str) -> None:
    scene = make(scene_id)
    try:
        assert set(scene.skills()) == set(load_command_set(scene.domain).skills)
    finally:
        scene.close()


@pytest.mark.parametrize("scene_id", scene_ids())
def test_a_scene_says_how_many_cycles_each_skill_may_take_as_the_skill_declares(scene_id: str) -> None:
    scene = make(scene_id)
    try:
        for name, cls in scene.skills().items():
            assert scene.cycles_at_most(Step(skill=name)) == cls.max_steps
        assert scene.cycles_at_most(Step(skill="no_such_skill")) is None
        assert MemoryBackend(scene.domain).cycles_at_most(Step(skill=next(iter(scene.skills())))) is None
    finally:
        scene.close()


def test_a_skill_declared_to_end_in_its_first_cycle_does() -> None:
    scene = make("ultrasound")
    try:
        scene.reset(seed=1)
        assert scene.cycles_at_most(Step(skill="set_imaging")) == 1
        cycles: list[object] = []
        assert scene.execute(Step(skill="set_imaging", args={"gain_pct": 70}), CancelToken(), cycles.append).success
        assert len(cycles) == 1
    finally:
        scene.close()


@pytest.mark.parametrize("domain", DOMAINS)
def test_check_scene_takes_any_backend_with_a_domain(domain: str) -> None:
    check_scene(MemoryBackend(domain))


class _Careless(MemoryBackend):
    """A backend that lacks a skill, runs one its domain lacks, reports a fact it should not and never
    sees a cancel."""

    def implemented_skills(self) -> frozenset[str]:
        return (super().implemented_skills() - {"grasp"}) | {"dance"}

    def world_state(self) -> WorldState:
        state = super().world_state()
        return WorldState({**state.facts, "holding[psm1]": "scalpel", "mood": "calm"}, known=True)

    def execute(self, step: Step, token: CancelToken, on_feedback: FeedbackFn | None = None) -> StepResult:
        return super().execute(step, CancelToken(), on_feedback)


def test_check_scene_names_every_clause_a_backend_breaks() -> None:
    with pytest.raises(SceneCheckError) as caught:
        check_scene(_Careless("surgery", steps_per_skill=4))
    text = "\n".join(caught.value.problems)
    assert "not implemented: grasp" in text
    assert "command set lacks: dance" in text
    assert "holding[psm1] = 'scalpel'" in text and "'mood' is not a fact" in text
    assert "a cancel during move_to ended it with none, not cancelled" in text
    assert "3 more control steps after a cancel" in text
