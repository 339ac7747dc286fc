"""Hostile streams: hypothesis drives structured and random mutations of a real stream through the decoder.

Every case must end as a full decode, a DamagedStream with the intact frames written, or a clean refusal, in
bounded time, without leaving files behind. `benchmarks/fuzz_streams.py` runs the same mutations for longer.
"""

from __future__ import annotations

import random
import resource

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.harness import decode_bytes
from fuzz.mutations import layout, mutate

OUTCOMES: dict[str, int] = {}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_streams_never_crash(tiny_stream, tmp_path, seed):
    clean = tiny_stream.read_bytes()
    data, kind = mutate(clean, random.Random(seed))
    outcome = decode_bytes(data, tmp_path / "case")
    OUTCOMES[f"{kind}:{outcome}"] = OUTCOMES.get(f"{kind}:{outcome}", 0) + 1


def test_fuzz_memory_stays_bounded(tiny_stream, tmp_path):
    clean = tiny_stream.read_bytes()
    rng = random.Random(7)
    decode_bytes(clean, tmp_path / "warm")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(150):
        data, _ = mutate(clean, rng)
        decode_bytes(data, tmp_path / "case")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak RSS grew by {grown_mb:.0f} MB over 150 hostile streams"


def test_clean_stream_still_decodes(tiny_stream, tmp_path):
    assert decode_bytes(tiny_stream.read_bytes(), tmp_path / "clean") == "ok"
    assert len(layout(tiny_stream.read_bytes()).packets) == 2
