"""The watchdog halts the robot when the supervisor's authenticated heartbeat stops, and only a genuine new beat
brings it back: forged, replayed or out-of-order beats change nothing.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrobot_llm.core.clock import ManualClock
from medrobot_llm.core.reasons import Reason
from medrobot_llm.safety import capability
from medrobot_llm.safety.heartbeat import DEFAULT_WINDOW_S, PURPOSE, Heartbeat, HeartbeatSigner, Watchdog
from medrobot_llm.safety.signing import Untrusted, graph_key, mac

SECRET = b"s" * 32


def _setup() -> tuple[HeartbeatSigner, Watchdog, ManualClock]:
    clock = ManualClock(1_700_000_000.0)
    return HeartbeatSigner(SECRET, clock=clock), Watchdog(SECRET, clock=clock), clock


def _ignored(dog: Watchdog, wire: str) -> Untrusted:
    with pytest.raises(Untrusted) as exc:
        dog.offer(wire)
    return exc.value


def test_halted_until_the_first_valid_beat() -> None:
    signer, dog, _ = _setup()
    watch = dog.check()
    assert watch.halted and watch.code is Reason.NO_HEARTBEAT and "no valid supervisor heartbeat yet" in watch.message
    with pytest.raises(Untrusted) as exc:
        dog.require_alive()
    assert exc.value.code is Reason.NO_HEARTBEAT
    dog.offer(signer.beat().to_wire())
    assert not dog.check().halted
    dog.require_alive()


def test_halts_when_beats_stop_and_comes_back_only_with_a_new_valid_one() -> None:
    signer, dog, clock = _setup()
    last = signer.beat().to_wire()
    dog.offer(last)
    clock.advance(DEFAULT_WINDOW_S)
    assert not dog.check().halted  # at the edge of the window
    clock.advance(0.01)
    watch = dog.check()
    assert watch.halted and watch.code is Reason.NO_HEARTBEAT and "old" in watch.message
    assert _ignored(dog, last).code in (Reason.REPLAYED, Reason.STALE_MESSAGE)
    assert dog.check().halted
    dog.offer(signer.beat().to_wire())
    assert not dog.check().halted


def test_transitions_are_reported_once_each() -> None:
    signer, dog, clock = _setup()
    first = dog.transition()
    assert first is not None and first.halted and dog.transition() is None
    dog.offer(signer.beat().to_wire())
    back = dog.transition()
    assert back is not None and not back.halted and dog.transition() is None
    clock.advance(DEFAULT_WINDOW_S / 2)
    dog.offer(signer.beat().to_wire())
    assert dog.transition() is None
    clock.advance(DEFAULT_WINDOW_S + 0.01)
    halt = dog.transition()
    assert halt is not None and halt.halted and halt.code is Reason.NO_HEARTBEAT and dog.transition() is None


def test_a_forged_beat_does_not_revive_the_robot() -> None:
    _, dog, clock = _setup()
    forged = HeartbeatSigner(b"x" * 32, instance="medrobot_supervisor", clock=clock).beat()
    err = _ignored(dog, forged.to_wire())
    assert err.code is Reason.BAD_SIGNATURE and err.claimed == "medrobot_supervisor"
    assert dog.check().halted


def test_a_capability_mac_is_not_a_heartbeat() -> None:
    signer, dog, _ = _setup()
    hb = signer.beat()
    as_capability = replace(hb, mac=mac(graph_key(SECRET, ""), capability.PURPOSE, hb.fields()))
    assert _ignored(dog, as_capability.to_wire()).code is Reason.BAD_SIGNATURE


def test_another_graphs_beats_neither_keep_this_supervisor_alive_nor_release_this_robot() -> None:
    """Graph A's beats, copied onto graph B (one keys folder for both), are ignored there: B's dead supervisor
    stays dead, and A's reset releases nothing on B."""
    clock = ManualClock(1_700_000_000.0)
    on_a = HeartbeatSigner(SECRET, graph="ros-domain=25;range=LOCALHOST", clock=clock)
    b = Watchdog(SECRET, graph="ros-domain=26;range=LOCALHOST", clock=clock)
    for beat in (on_a.beat(), on_a.release(), on_a.beat()):
        err = _ignored(b, beat.to_wire())
        assert err.code is Reason.BAD_SIGNATURE and "another graph" in err.message
    assert b.check().halted
    Watchdog(SECRET, graph="ros-domain=25;range=LOCALHOST", clock=clock).offer(on_a.beat().to_wire())


def test_a_beat_whose_release_is_after_its_own_stamp_is_ignored() -> None:
    """No supervisor releases the robot after the beat that says so: a release dated ahead is not one of its."""
    signer, dog, _ = _setup()
    hb = signer.beat()
    ahead = replace(hb, released_ms=hb.stamp_ms + 1)
    ahead = replace(ahead, mac=mac(graph_key(SECRET, ""), PURPOSE, ahead.fields()))
    assert _ignored(dog, ahead.to_wire()).code is Reason.STALE_MESSAGE
    assert dog.check().halted


def test_two_releases_in_one_millisecond_are_never_stamped_before_the_release() -> None:
    signer, dog, _ = _setup()
    signer.release()
    dog.offer(signer.release().to_wire())
    assert not dog.check().halted


def test_out_of_order_and_replayed_beats_are_ignored() -> None:
    signer, dog, clock = _setup()
    one, two = signer.beat().to_wire(), signer.beat().to_wire()
    dog.offer(two)
    assert _ignored(dog, one).code is Reason.REPLAYED
    assert _ignored(dog, two).code is Reason.REPLAYED
    clock.advance(DEFAULT_WINDOW_S + 0.01)
    assert dog.check().halted  # the ignored beats did not refresh anything


def test_a_recorded_beat_of_a_dead_supervisor_is_stale() -> None:
    """Issue 15's attack 4 with a recording: the old instance's beats are genuine but too old to count."""
    signer, _, clock = _setup()
    recorded = [signer.beat().to_wire() for _ in range(5)]
    clock.advance(60.0)
    dog = Watchdog(SECRET, clock=clock)  # a skill server (re)started after the supervisor was killed
    for wire in recorded:
        assert _ignored(dog, wire).code is Reason.STALE_MESSAGE
    assert dog.check().halted


def test_a_beat_from_the_future_is_refused() -> None:
    clock = ManualClock(1_700_000_000.0)
    ahead = HeartbeatSigner(SECRET, clock=ManualClock(1_700_000_000.0 + 2 * DEFAULT_WINDOW_S)).beat()
    assert _ignored(Watchdog(SECRET, clock=clock), ahead.to_wire()).code is Reason.STALE_MESSAGE


def test_a_restarted_supervisor_is_followed_from_its_first_beat() -> None:
    signer, dog, clock = _setup()
    for _ in range(3):
        dog.offer(signer.beat().to_wire())
    clock.advance(5.0)
    restarted = HeartbeatSigner(SECRET, clock=clock)
    hb = dog.offer(restarted.beat().to_wire())
    assert hb.seq == 1 and dog.check().instance == restarted.instance and not dog.check().halted


@pytest.mark.parametrize("wire", [
    "nope", "[]", json.dumps({"instance": "x", "seq": 1}), "[" * 70_000, "[" * 50_000,
    json.dumps({"instance": "x", "seq": True, "stamp_ms": 1, "mac": "0" * 64}),
    json.dumps({"instance": "", "seq": 1, "stamp_ms": 1, "mac": "0" * 64}),
    json.dumps({"instance": "x", "seq": 1, "stamp_ms": 1.0, "mac": "0" * 64}),
    json.dumps({"instance": "x", "seq": 1, "stamp_ms": 1, "mac": "0" * 65}),
])
def test_malformed_beats_are_ignored(wire: str) -> None:
    _, dog, _ = _setup()
    assert _ignored(dog, wire).code is Reason.MALFORMED
    assert dog.check().halted


# -- properties ---------------------------------------------------------------------------------------------------

_CHANGES: dict[str, st.SearchStrategy[Any]] = {
    "instance": st.text(min_size=1, max_size=64), "seq": st.integers(-5, 2**40), "stamp_ms": st.integers(0, 2**45),
    "released_ms": st.integers(1, 2**45)}


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(sorted(_CHANGES)), data=st.data())
def test_any_single_field_change_is_ignored(field: str, data: st.DataObject) -> None:
    signer, dog, _ = _setup()
    hb = signer.beat()
    value = data.draw(_CHANGES[field].filter(lambda v: v != getattr(hb, field)))
    assert _ignored(dog, replace(hb, **{field: value}).to_wire()).code is Reason.BAD_SIGNATURE
    assert dog.check().halted


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(0, 255))
def test_any_bit_flip_of_the_mac_is_ignored(bit: int) -> None:
    signer, dog, _ = _setup()
    hb = signer.beat()
    raw = bytearray(bytes.fromhex(hb.mac))
    raw[bit // 8] ^= 1 << (bit % 8)
    assert _ignored(dog, replace(hb, mac=raw.hex()).to_wire()).code is Reason.BAD_SIGNATURE
    assert dog.check().halted


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=1, max_size=64).filter(lambda k: k != SECRET))
def test_any_other_key_is_ignored(key: bytes) -> None:
    _, dog, clock = _setup()
    assert _ignored(dog, HeartbeatSigner(key, clock=clock).beat().to_wire()).code is Reason.BAD_SIGNATURE
    assert dog.check().halted


@settings(max_examples=100, deadline=None)
@given(gaps=st.lists(st.floats(0, 3 * DEFAULT_WINDOW_S).filter(lambda g: abs(g - DEFAULT_WINDOW_S) > 1e-6),
                    min_size=1, max_size=12))  # not within float rounding of the edge itself
def test_the_verdict_follows_the_last_valid_beat_only(gaps: list[float]) -> None:
    """Beats at random gaps, each followed by a replay of an older one: halted exactly when the gap since the last
    genuine beat is over the window."""
    signer, dog, clock = _setup()
    first = signer.beat().to_wire()
    dog.offer(first)
    for gap in gaps:
        clock.advance(gap)
        with pytest.raises(Untrusted):
            dog.offer(first)
        assert dog.check().halted is (gap > DEFAULT_WINDOW_S)
        dog.offer(signer.beat().to_wire())
        assert not dog.check().halted


def test_beat_round_trips_through_its_wire_form() -> None:
    signer, _, _ = _setup()
    hb = signer.beat()
    assert Heartbeat.from_wire(hb.to_wire()) == hb


def test_a_release_is_carried_by_every_later_beat_and_only_rises() -> None:
    signer, dog, clock = _setup()
    assert dog.offer(signer.beat().to_wire()).released_ms == 0
    clock.advance(0.2)
    released = dog.offer(signer.release().to_wire())
    assert released.released_ms == round(clock() * 1000)
    clock.advance(0.2)
    later = dog.offer(signer.beat().to_wire())
    assert later.released_ms == released.released_ms
    again = dog.offer(signer.release().to_wire())  # same millisecond or not: a second release is later
    assert again.released_ms > released.released_ms


def test_a_forged_release_is_ignored() -> None:
    signer, dog, clock = _setup()
    genuine = signer.beat()
    forged = replace(genuine, released_ms=genuine.stamp_ms)  # claims a reset the supervisor never made
    assert _ignored(dog, forged.to_wire()).code is Reason.BAD_SIGNATURE
