"""Entropy coding: exact round trips for every table, escapes included, and tables that are sound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vcodec import tables as T
from vcodec.entropy import CorruptPayload, TableCoder

SCALES = T.scale_table()
GAUSSIAN = T.gaussian_tables(SCALES)


@pytest.fixture(scope="module")
def gaussian_coder():
    return TableCoder(GAUSSIAN)


def test_tables_are_normalized_and_cover_six_sigma():
    GAUSSIAN.validate()
    assert len(GAUSSIAN) == T.SCALE_COUNT == 64
    half_ranges = -GAUSSIAN.low
    assert np.all(half_ranges >= np.ceil(T.TAIL_SIGMAS * SCALES) - 1e-9)
    assert SCALES[0] == pytest.approx(0.11) and SCALES[-1] == pytest.approx(256.0)


def test_quantized_table_is_close_to_the_gaussian():
    # The coder's table for sigma=3 must cost at most 0.5 % more than the ideal Gaussian entropy.
    k = int(np.argmin(np.abs(SCALES - 3.0)))
    counts = GAUSSIAN.table(k).astype(np.float64)
    q = counts / counts.sum()
    sigma = SCALES[k]
    edges = np.arange(GAUSSIAN.low[k], -GAUSSIAN.low[k] + 2) - 0.5
    p = np.diff(T._normal_cdf(edges / sigma))
    cross = -(p * np.log2(q[:-1])).sum()
    entropy = -(p[p > 0] * np.log2(p[p > 0])).sum()
    assert cross <= entropy * 1.005


def test_every_scale_index_round_trips_with_escapes(gaussian_coder):
    rng = np.random.default_rng(1)
    which = np.repeat(np.arange(64), 200)
    values = np.round(rng.normal(size=which.size) * SCALES[which] * 1.5).astype(np.int64)
    # Values far outside every table: escaped and coded exactly, never clipped.
    values[::97] = rng.integers(-(2**31) + 1, 2**31 - 1, size=values[::97].size)
    data = gaussian_coder.encode(values, which)
    assert np.array_equal(gaussian_coder.decode(data, which), values)
    # as the decoder's scale indices come (uint8), laid out as a latent
    assert np.array_equal(gaussian_coder.decode(data, which.astype(np.uint8).reshape(64, 200)), values.reshape(64, 200))


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(1, 9)),
    seed=st.integers(0, 2**32 - 1),
    spread=st.floats(0.01, 50.0),
)
def test_random_symbols_round_trip(gaussian_coder, shape, seed, spread):
    rng = np.random.default_rng(seed)
    which = rng.integers(0, 64, size=shape)
    values = np.round(rng.standard_cauchy(size=shape) * spread).clip(-(2**31) + 1, 2**31 - 1).astype(np.int64)
    data = gaussian_coder.encode(values, which)
    assert len(data) % 4 == 0
    assert np.array_equal(gaussian_coder.decode(data, which), values)


def test_factorized_tables_round_trip():
    # A logistic CDF per channel, with different widths and offsets.
    widths = np.array([0.3, 1.0, 4.0, 20.0])
    centres = np.array([0.0, -2.0, 5.0, 0.5])

    def cdf(x):
        return 0.5 * (1 + np.tanh((x - centres[:, None]) / widths[:, None] / 2))

    z = T.factorized_tables(cdf, 4)
    z.validate()
    coder = TableCoder(z)
    rng = np.random.default_rng(3)
    which = np.broadcast_to(np.arange(4)[:, None, None], (4, 5, 6))
    values = np.round(rng.logistic(size=which.shape) * widths[:, None, None] + centres[:, None, None]).astype(np.int64)
    values[2, 0, 0] = 10**6
    assert np.array_equal(coder.decode(coder.encode(values, which), which), values)


def test_too_large_value_is_refused_not_clipped(gaussian_coder):
    with pytest.raises(ValueError):
        gaussian_coder.encode(np.array([2**40]), np.array([3]))


def test_damaged_substream_is_reported(gaussian_coder):
    which = np.arange(64)
    data = gaussian_coder.encode(np.arange(64) - 32, which)
    with pytest.raises(CorruptPayload):
        gaussian_coder.decode(data[:-1], which)
    with pytest.raises(CorruptPayload):
        gaussian_coder.decode(data + b"\x01\x00\x00\x00", which)


def test_substream_ending_in_a_zero_word_is_reported(gaussian_coder):
    """constriction refuses such a buffer when the coder is built, before any symbol: found by fuzz_streams.py."""
    which = np.arange(64)
    data = gaussian_coder.encode(np.arange(64) - 32, which)
    for damaged in (data + b"\x00" * 4, b"\x00" * 4):
        with pytest.raises(CorruptPayload):
            gaussian_coder.decode(damaged, which)


@pytest.mark.parametrize("spread,seed", [(0.3, 0), (4.0, 1), (400.0, 2)])
def test_cost_is_the_substreams_size(gaussian_coder, spread, seed):
    """What the encoder's I/P decision prices (TableCoder.cost) is what encode() writes, escapes included, within
    the coder's last words."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(GAUSSIAN), (96, 20, 30))
    symbols = np.round(rng.normal(0, spread * (1 + which / 8))).astype(np.int64)
    written = 8 * len(gaussian_coder.encode(symbols, which))
    priced = gaussian_coder.cost(symbols, which)
    assert abs(written - priced) <= 64 + 0.002 * written, (written, priced)
