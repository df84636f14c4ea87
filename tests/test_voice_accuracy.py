"""Issue 7's acceptance for offline voice, end to end: espeak-ng speech made now, through pocketsphinx with the
grammar from skills/ and the rule planner, against the planner on the written command.

The targets: 90 % of the 63 commands give the right plan, all 20 stops are heard, silence and noise do
nothing. The corpus is decoded once, by ``benchmarks/voice_accuracy.py``'s own code with two worker
processes, so the test and the README figure cannot drift apart. Nothing here is timed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

#: the corpus is decoded in the first test's setup (~3-4 min of the 2 cores when nothing else runs); under other load
#: it took 9 min, past the suite's 5 min default, and its three tests errored instead of judging anything
pytestmark = [pytest.mark.voice, pytest.mark.slow, pytest.mark.timeout(1200)]

_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    sys.path.insert(0, str(_ROOT / "benchmarks"))
    try:
        from voice_accuracy import evaluate
    finally:
        sys.path.remove(str(_ROOT / "benchmarks"))
    result: dict[str, Any] = evaluate(tmp_path_factory.mktemp("voice-corpus"), workers=2, with_held_out=False)
    return result


def _misses(figures: dict[str, Any]) -> list[str]:
    return [f"{m['text']!r} -> {m['transcript']!r} ({m['confidence']:.2f}{', stop' if m['stop'] else ''})"
            for m in figures["misses"]]


def test_every_stop_is_heard_and_silence_and_noise_do_nothing(figures: dict[str, Any]) -> None:
    assert figures["stops"] == 20 and figures["stop_recall"] == 100.0, _misses(figures)
    assert figures["noise_clips"] == 8 and figures["false_actions"] == 0, figures["false"]
    assert figures["false_stops_on_commands"] == 0, _misses(figures)


def test_right_plan_share_meets_the_target(figures: dict[str, Any]) -> None:
    # measured 92.1 % (58 of 63); one more miss is still 90.5 %, two are below the target
    assert figures["commands"] >= 60
    assert figures["plan_accuracy"] >= 90.0, _misses(figures)


def test_no_more_commands_are_heard_as_another_moving_plan(figures: dict[str, Any]) -> None:
    # the worst miss: a plan that moves, not the one said. One of 63 today ("ninety" heard as "twenty" degrees,
    # which the supervisor still shows before anything moves); a grammar or decoder change must not add any
    assert figures["wrong_actions"] <= 1, [m for m in figures["misses"] if m.get("wrong_action")]
