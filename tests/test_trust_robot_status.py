"""The supervisor takes a robot status only as the skill server signed it, fresh and in order (safety.robot_status):
forged, altered, replayed, stale or other-graph reports are each refused with their reason, and change nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from medrobot_llm.core.clock import ManualClock
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety.robot_status import SIGNATURE, StatusSigner, StatusVerifier
from medrobot_llm.safety.signing import Untrusted

SECRET = b"s" * 32
GRAPH = "ros-domain=25;range=LOCALHOST"
WINDOW_S = 1.0
STATUS: dict[str, Any] = {"domain": "xray", "halted": False, "halt_reason": "", "halted_at": None, "busy": False,
                          "world": {"known": True, "facts": {"view_set": False, "source_angle_deg": 12.5}},
                          "telemetry": {"kv": 70}, "supervisor": {"alive": True, "instance": "ab12"}, "mono": 3.25}


def _setup() -> tuple[StatusSigner, StatusVerifier, ManualClock]:
    clock = ManualClock(1_700_000_000.0)
    return (StatusSigner(SECRET, graph=GRAPH, clock=clock),
            StatusVerifier(SECRET, graph=GRAPH, window_s=WINDOW_S, clock=clock), clock)


def _refused(verifier: StatusVerifier, wire: str) -> Untrusted:
    with pytest.raises(Untrusted) as exc:
        verifier.offer(wire)
    return exc.value


def test_a_signed_status_is_taken_with_every_field_as_sent() -> None:
    signer, verifier, _ = _setup()
    wire = signer.sign(json.dumps(STATUS))
    assert json.loads(wire)[SIGNATURE]["instance"] == signer.instance  # readers of the topic see the fields as before
    assert {k: v for k, v in json.loads(wire).items() if k != SIGNATURE} == STATUS
    assert verifier.offer(wire) == STATUS
    assert verifier.offer(signer.sign(json.dumps(STATUS))) == STATUS  # the next one, numbered after it


def test_a_status_with_a_forged_mac_is_refused() -> None:
    _, verifier, clock = _setup()
    forged = StatusSigner(b"x" * 32, graph=GRAPH, clock=clock).sign(json.dumps(STATUS))
    err = _refused(verifier, forged)
    assert err.code is Reason.BAD_SIGNATURE and "forged" in err.message
    obj = json.loads(forged)
    obj[SIGNATURE]["mac"] = "0" * 64
    assert _refused(verifier, json.dumps(obj)).code is Reason.BAD_SIGNATURE


def test_a_status_signed_for_another_graph_is_refused() -> None:
    _, verifier, clock = _setup()
    other = StatusSigner(SECRET, graph="ros-domain=26;range=LOCALHOST", clock=clock).sign(json.dumps(STATUS))
    err = _refused(verifier, other)
    assert err.code is Reason.BAD_SIGNATURE and "another graph" in err.message


@pytest.mark.parametrize("change", [
    {"halted": True},  # a halt the robot did not report
    {"halted": False, "halt_reason": "", "halted_at": None, "forged": True},  # the attack: a halt hidden, a field added
    {"world": {"known": True, "facts": {"view_set": True, "source_angle_deg": 12.5}}},  # a made-up world
    {"mono": 4.25},  # a dead skill server's clock moved on
])
def test_a_status_altered_after_signing_is_refused(change: dict[str, Any]) -> None:
    signer, verifier, _ = _setup()
    obj = json.loads(signer.sign(json.dumps(STATUS)))
    obj.update(change)
    err = _refused(verifier, json.dumps(obj))
    assert err.code is Reason.BAD_SIGNATURE and err.claimed == signer.instance


def test_its_own_numbers_cannot_be_altered_either() -> None:
    signer, verifier, _ = _setup()
    obj = json.loads(signer.sign(json.dumps(STATUS)))
    obj[SIGNATURE]["seq"] += 1000  # so that a replay would count as new
    assert _refused(verifier, json.dumps(obj)).code is Reason.BAD_SIGNATURE


def test_a_replay_of_a_status_already_taken_or_older_is_refused() -> None:
    signer, verifier, _ = _setup()
    first, second = signer.sign(json.dumps(STATUS)), signer.sign(json.dumps(STATUS))
    verifier.offer(second)
    err = _refused(verifier, second)
    assert err.code is Reason.REPLAYED and "not after status 2" in err.message
    assert _refused(verifier, first).code is Reason.REPLAYED  # an older one, arriving late
    verifier.offer(signer.sign(json.dumps(STATUS)))


def test_a_status_stamped_outside_the_window_is_refused_either_way() -> None:
    signer, verifier, clock = _setup()
    old = signer.sign(json.dumps(STATUS))
    clock.advance(WINDOW_S + 0.01)
    err = _refused(verifier, old)  # never taken, so only its stamp gives it away (a supervisor started after)
    assert err.code is Reason.STALE_MESSAGE and "window" in err.message
    ahead = StatusSigner(SECRET, graph=GRAPH, clock=ManualClock(clock() + WINDOW_S + 0.01)).sign(json.dumps(STATUS))
    assert _refused(verifier, ahead).code is Reason.STALE_MESSAGE
    clock.advance(-0.01)
    verifier.offer(old)  # at the edge of the window: still taken


def test_a_refused_status_changes_nothing() -> None:
    signer, verifier, clock = _setup()
    wire = signer.sign(json.dumps(STATUS))
    _refused(verifier, StatusSigner(b"x" * 32, instance=signer.instance, graph=GRAPH, clock=clock).sign(
        json.dumps(STATUS)))
    verifier.offer(wire)  # a forgery under the genuine instance id did not move its count


def test_a_restarted_skill_server_is_a_new_instance_taken_at_once() -> None:
    signer, verifier, _ = _setup()
    for _ in range(5):
        verifier.offer(signer.sign(json.dumps(STATUS)))
    restarted = StatusSigner(SECRET, graph=GRAPH, clock=signer.clock)
    assert restarted.instance != signer.instance
    assert verifier.offer(restarted.sign(json.dumps(STATUS))) == STATUS  # its number 1 is below the last one's 5


@pytest.mark.parametrize("wire", [
    json.dumps(STATUS),  # unsigned: what every skill server sent before, and what a keyless node can write
    "not json",
    "[1, 2]",
    json.dumps({**STATUS, SIGNATURE: "ab"}),
    json.dumps({**STATUS, SIGNATURE: {"instance": "a", "seq": "1", "stamp_ms": 1, "mac": "0" * 64}}),
    json.dumps({**STATUS, SIGNATURE: {"instance": "a" * 65, "seq": 1, "stamp_ms": 1, "mac": "0" * 64}}),
    json.dumps({**STATUS, SIGNATURE: {"instance": "a", "seq": 1, "stamp_ms": 1, "mac": "0" * 64, "x": 1}}),
    json.dumps({**STATUS, SIGNATURE: {"instance": "a", "seq": 1, "stamp_ms": 1, "mac": "0" * 64},
                "mono": float("nan")}),
    "{" + " " * 70_000 + "}",
])
def test_a_status_without_a_well_formed_signature_is_malformed(wire: str) -> None:
    _, verifier, _ = _setup()
    assert _refused(verifier, wire).code is Reason.MALFORMED


def test_a_status_that_already_holds_a_signature_field_is_not_signed() -> None:
    signer, _, _ = _setup()
    with pytest.raises(ValueError):
        signer.sign(json.dumps({**STATUS, SIGNATURE: {}}))
