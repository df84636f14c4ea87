"""The voice benchmark's voices, sample rates, held-out split and synthesis, for the voice tests: imported from
``benchmarks/voice_bench.py`` in this one place, so that every test speaks what the benchmark speaks and holds out
what it holds out."""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent.parent / "benchmarks")
sys.path.insert(0, _BENCH)
try:
    from voice_bench import SAMPLE_RATES, VOICES, Item, held_out, synthesize
finally:
    sys.path.remove(_BENCH)

__all__ = ["SAMPLE_RATES", "VOICES", "Item", "held_out", "synthesize"]
