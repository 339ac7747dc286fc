"""Hostile streams: hypothesis drives structured and random mutations of a real stream through the decoder.

Every case must end as a full decode (every frame the header counts), a DamagedStream with the intact frames written,
or a clean refusal, in bounded time, without leaving files behind; mutations that must be caught (see
fuzz/mutations.py) may not decode as "ok". `benchmarks/fuzz_streams.py` runs the same mutations for longer.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import harness
from fuzz.harness import Crash, decode_bytes
from fuzz.mutations import allowed_outcomes, layout, mutate
from vcodec import container as C

from conftest import REPO

OUTCOMES: dict[str, int] = {}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_streams_never_crash(tiny_stream, tmp_path, seed):
    clean = tiny_stream.read_bytes()
    data, kind = mutate(clean, random.Random(seed))
    outcome = decode_bytes(data, tmp_path / "case", allowed_outcomes(kind))
    OUTCOMES[f"{kind}:{outcome}"] = OUTCOMES.get(f"{kind}:{outcome}", 0) + 1


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_timed_streams_never_crash(tiny_timed_stream, tmp_path, seed):
    """The same for a stream with timestamps and display metadata, decoded to .mkv (which writes both)."""
    clean = tiny_timed_stream.read_bytes()
    data, kind = mutate(clean, random.Random(seed))
    decode_bytes(data, tmp_path / "case", allowed_outcomes(kind), suffix=".mkv")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_streams_with_every_flag_never_crash(tiny_all_flags_stream, tmp_path, seed):
    """A stream with timestamps, display metadata and audio at once (as a phone's clip would make it), decoded to
    .mkv, which writes all three: the mutations of each flag's fields among the others."""
    data, kind = mutate(tiny_all_flags_stream.read_bytes(), random.Random(seed))
    decode_bytes(data, tmp_path / "case", allowed_outcomes(kind), suffix=".mkv")


def test_a_stream_with_every_flag_gets_every_flags_mutations(tiny_all_flags_stream, tmp_path):
    clean = tiny_all_flags_stream.read_bytes()
    assert layout(clean).flags == C.FLAG_AUDIO | C.FLAG_TIMESTAMPS | C.FLAG_DISPLAY
    kinds = {mutate(clean, random.Random(seed))[1] for seed in range(1500)}
    assert {"packet.pts", "header.tb_num", "header.tb_den", "header.rotation", "header.sar_den", "audio.pts",
            "audio.section.tb_den", "audio.splice.swap"} <= kinds, kinds
    assert decode_bytes(clean, tmp_path / "clean", {"ok"}, suffix=".mkv") == "ok"


def test_timed_streams_get_their_own_mutations(tiny_timed_stream):
    clean = tiny_timed_stream.read_bytes()
    kinds = {mutate(clean, random.Random(seed))[1] for seed in range(1500)}
    assert {"packet.pts", "header.tb_num", "header.tb_den", "header.rotation", "header.mirror", "header.sar_num",
            "header.sar_den"} <= kinds
    assert decode_bytes(clean, tiny_timed_stream.parent / "clean", {"ok"}, suffix=".mkv") == "ok"


def test_every_mutation_changes_the_stream(tiny_stream):
    clean = tiny_stream.read_bytes()
    kinds = set()
    for seed in range(1500):  # about 2 % of raw draws change nothing (a field set to its own value): none may count
        data, kind = mutate(clean, random.Random(seed))
        assert data != clean, f"seed {seed}: mutation {kind} left the stream unchanged"
        kinds.add(kind.split(".")[0])
    assert kinds == {"flip", "truncate", "header", "packet", "payload", "index", "trailer", "splice", "append", "hash"}


def test_harness_catches_wrong_outcomes(tiny_stream, tmp_path, monkeypatch):
    clean = tiny_stream.read_bytes()
    assert decode_bytes(clean, tmp_path / "a", {"ok"}) == "ok"
    with pytest.raises(Crash, match="expected one of"):
        decode_bytes(clean, tmp_path / "b", allowed_outcomes("index"))  # an index mutation may never decode "ok"
    real = harness.api.decode

    def drops_a_frame(stream, out, **kw):  # an "ok" that wrote fewer frames than the header counts
        result = real(stream, out, **kw)
        sorted(out.iterdir())[-1].unlink()
        result.frames -= 1
        return result

    monkeypatch.setattr(harness.api, "decode", drops_a_frame)
    with pytest.raises(Crash, match="header counts 2"):
        decode_bytes(clean, tmp_path / "c")


def test_fuzz_memory_stays_bounded(tiny_stream):
    """150 hostile streams in a fresh process (an earlier test in this one would set the peak and hide any growth)."""
    done = subprocess.run([sys.executable, str(REPO / "tests" / "fuzz" / "memory_probe.py"), str(tiny_stream), "150"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads(done.stdout.splitlines()[-1])
    (now0, peak0), (now1, peak1), (now2, _) = m["before"], m["after"], m["control"]
    assert now2 - now1 > 25, f"the meter does not see 32 MB held ({now1:.1f} -> {now2:.1f} MB)"
    assert now1 - now0 < 10 and peak1 - peak0 < 10, (
        f"resident memory grew over 150 hostile streams: now {now0:.1f} -> {now1:.1f} MB, peak {peak0:.1f} -> {peak1:.1f} MB")


def test_clean_stream_still_decodes(tiny_stream, tmp_path):
    assert decode_bytes(tiny_stream.read_bytes(), tmp_path / "clean") == "ok"
    assert len(layout(tiny_stream.read_bytes()).packets) == 2


def _cli_cases(clean: bytes) -> list[tuple[str, bytes]]:
    cases = [("clean", clean)]
    rng = random.Random(11)
    seen = set()
    while len(seen) < 7:  # a handful of different kinds, the must-catch ones among them
        data, kind = mutate(clean, rng)
        if kind.split(".")[0] not in seen:
            seen.add(kind.split(".")[0])
            cases.append((kind, data))
    return cases


def test_hostile_streams_through_the_cli(tiny_stream, tmp_path, capfd):
    """The real command line on mutated streams: a known exit code and one line of error, never a traceback."""
    from vcodec.cli import main

    codes = set()
    for i, (kind, data) in enumerate(_cli_cases(tiny_stream.read_bytes())):
        stream = tmp_path / f"case{i}.hfc"
        stream.write_bytes(data)
        capfd.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["decode", str(stream), str(tmp_path / f"out{i}"), "--device", "cpu"])
        code = done.value.code
        err = capfd.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip() and "━" not in ln and not ln.lstrip().startswith("decode ")]
        assert code in {0, 1, 2, 3}, (kind, code, err)
        assert "Traceback" not in err and len(lines) <= 1, (kind, err)
        assert (len(lines) == 1) == (code != 0), (kind, code, err)  # a failure says why, in one line
        codes.add(code)
    assert {0, 2, 3} <= codes, codes  # the clean stream, damage and a weights-hash mutation (refused) all seen
