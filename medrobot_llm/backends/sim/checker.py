"""``check_scene``: the conformance a backend owes the rest of the system, checked the same way for all.

Like Gymnasium's env checker, it is shipped rather than kept in the tests, so a new scene or a hardware
backend is held to the contract the sim scenes are: it implements exactly its domain's skills, reports
a typed, known world state, stops within one control step of a cancel or a halt and stays halted until
cleared. A backend that can ``reset(seed)`` (a simulation) must also reproduce a rollout from its seed,
leave numpy's global RNG alone, own its physics client and release it on ``close``.

Nothing here imports pybullet unless the backend under check has a physics client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medrobot_llm.core.jsonable import jsonable
from medrobot_llm.backends.base import CancelToken, FailureKind, Feedback, LoopBackend, SkillBackend
from medrobot_llm.core.command_set import DOMAINS, FactSpec, load_command_set
from medrobot_llm.core.plan import Step
from medrobot_llm.core.validator import WorldState

__all__ = ["PROBE_STEPS", "SceneCheckError", "check_scene", "scene_problems"]

#: per domain, a step that moves from the world a reset leaves: the checker cancels and halts it mid-way
PROBE_STEPS: dict[str, Step] = {
    "surgery": Step(skill="move_to", args={"arm": "psm1", "target": "handover_point"}),
    "ultrasound": Step(skill="move_to_window", args={"organ": "kidney", "side": "left"}),
    "xray": Step(skill="move_to_view", args={"anatomy": "femur", "side": "left"}),
}

#: control steps a rollout runs after a reset when comparing two of them
_ROLLOUT_STEPS = 5


class SceneCheckError(AssertionError):
    """The backend breaks the contract; ``problems`` lists every broken clause."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"{name} fails check_scene:\n- " + "\n- ".join(problems))
        self.problems = problems


@runtime_checkable
class Resettable(Protocol):
    """A backend that rebuilds its world from a seed (a simulation), Gymnasium-style."""

    def reset(self, seed: int | None = None) -> dict[str, Any]: ...

    def observation(self) -> dict[str, Any]: ...


def check_scene(backend: SkillBackend, *, seed: int = 0, probe: Step | None = None) -> None:
    """Raise ``SceneCheckError`` listing every clause of the contract ``backend`` breaks.

    ``probe`` is a step that moves from the state the backend starts in (default: ``PROBE_STEPS`` of its
    domain). A resettable backend is reset to ``seed`` before each part and left reset to it.
    """
    problems = scene_problems(backend, seed=seed, probe=probe)
    if problems:
        raise SceneCheckError(type(backend).__name__, problems)


def scene_problems(backend: SkillBackend, *, seed: int = 0, probe: Step | None = None) -> list[str]:
    """Every broken clause of the contract, as sentences (empty: the backend conforms)."""
    domain = getattr(backend, "domain", "")
    if domain not in DOMAINS:
        return [f"domain {domain!r} is not one of {', '.join(DOMAINS)}"]
    problems = _skill_problems(backend, domain)
    if isinstance(backend, Resettable):
        problems += _reset_problems(backend, seed)
        backend.reset(seed=seed)
    problems += _world_state_problems(backend, domain)
    step = probe if probe is not None else PROBE_STEPS[domain]
    problems += _stop_problems(backend, step, seed, halt=False)
    problems += _stop_problems(backend, step, seed, halt=True)
    if isinstance(backend, Resettable):
        backend.reset(seed=seed)
    if hasattr(backend, "client"):
        problems += _client_problems(backend, seed)
    return problems


def _skill_problems(backend: SkillBackend, domain: str) -> list[str]:
    wanted = set(load_command_set(domain).skills)
    have = set(backend.implemented_skills())
    out = []
    if wanted - have:
        out.append(f"skills of the {domain} command set not implemented: {', '.join(sorted(wanted - have))}")
    if have - wanted:
        out.append(f"skills implemented that the {domain} command set lacks: {', '.join(sorted(have - wanted))}")
    return out


def _world_state_problems(backend: SkillBackend, domain: str) -> list[str]:
    state = backend.world_state()
    if not isinstance(state, WorldState):
        return [f"world_state() returned {type(state).__name__}, not a WorldState"]
    out = [] if state.known else ["world_state() is not known=True: a backend reports every fact it has"]
    facts = load_command_set(domain).facts
    for key, value in state.facts.items():
        spec = _fact_spec(facts, key)
        if spec is None:
            out.append(f"world-state fact {key!r} is not a fact of the {domain} command set")
        elif value not in spec.values:
            out.append(f"world-state fact {key} = {value!r} is not one of {list(spec.values)}")
    return out


def _fact_spec(facts: Mapping[str, FactSpec], key: str) -> FactSpec | None:
    """The spec of ``key``, directly (``probe``) or through its family (``located[needle]`` -> ``located[X]``)."""
    if key in facts:
        return facts[key]
    head, bracket, _ = key.partition("[")
    if not bracket:
        return None
    return next((spec for name, spec in facts.items() if name.startswith(head + "[")), None)


def _stop_problems(backend: SkillBackend, step: Step, seed: int, *, halt: bool) -> list[str]:
    """Stop the probe at its first control step: nothing may run past the step that saw the stop."""
    what = "halt" if halt else "cancel"
    if isinstance(backend, Resettable):
        backend.reset(seed=seed)
    token = CancelToken()
    after: list[Feedback] = []
    stopped: list[bool] = []

    def stop_at_first(fb: Feedback) -> None:
        if stopped:
            after.append(fb)
        elif halt:
            stopped.append(True)
            backend.halt("check_scene")
        else:
            stopped.append(True)
            token.cancel("check_scene")

    result = backend.execute(step, token, stop_at_first)
    out = []
    expected = FailureKind.HALTED if halt else FailureKind.CANCELLED
    if not stopped:
        return [f"the probe step {step.skill} gave no feedback, so a {what} could not be tried: {result.message}"]
    if result.success or result.failure is not expected:
        out.append(f"a {what} during {step.skill} ended it with {result.failure.value}, not {expected.value}")
    if len(after) > 1:
        out.append(f"{step.skill} ran {len(after)} more control steps after a {what}, not at most one")
    if halt:
        if not backend.halted:
            out.append("halt() did not latch")
        again = backend.execute(step, CancelToken())
        if again.success or again.failure is not FailureKind.HALTED:
            out.append(f"a step ran while halted ({again.failure.value}: {again.message})")
        backend.clear_halt()
        if backend.halted:
            out.append("clear_halt() left the halt latched")
    elif backend.halted:
        out.append("a cancel latched a halt")
    return out


def _rollout(scene: Resettable, seed: int) -> str:
    scene.reset(seed=seed)
    if isinstance(scene, LoopBackend):
        for _ in range(_ROLLOUT_STEPS):
            scene.advance()
    return json.dumps(scene.observation(), sort_keys=True, default=jsonable)


def _reset_problems(scene: Resettable, seed: int) -> list[str]:
    out = []
    global_rng = repr(np.random.get_state())
    first = _rollout(scene, seed)
    if _rollout(scene, seed) != first:
        out.append(f"reset(seed={seed}) twice gave two rollouts")
    if _rollout(scene, seed + 1) == first:
        out.append(f"reset(seed={seed + 1}) gave the same rollout as seed {seed}: the seed is not used")
    if repr(np.random.get_state()) != global_rng:
        out.append("reset or a control step drew from numpy's global RNG")
    rng = getattr(scene, "np_random", None)
    if not isinstance(rng, np.random.Generator):
        out.append("the scene has no np_random Generator of its own")
    return out


def _client_problems(scene: Any, seed: int) -> list[str]:
    """A sibling built alike must get its own client, roll out the same, and release its client on close."""
    import pybullet

    out = []
    sibling = type(scene)()
    try:
        ours, theirs = int(scene.client._client), int(sibling.client._client)
        if ours == theirs:
            out.append("two scenes share one physics client")
        if sibling.np_random is scene.np_random:
            out.append("two scenes share one RNG")
        if _rollout(sibling, seed) != _rollout(scene, seed):
            out.append(f"two scenes reset to seed {seed} roll out differently")
    finally:
        sibling.close()
    if pybullet.isConnected(physicsClientId=theirs):
        out.append("close() did not release the physics client")
    scene.reset(seed=seed)
    return out
