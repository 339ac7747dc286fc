"""The integer probability tables the entropy coder uses, and how they are built.

Tables are built once, at export, and stored with the weights as integer counts. A decoder never re-derives a
probability from floats, so every machine reads identical tables (DESIGN.md, determinism rule).

- Gaussian tables: one per entry of the discrete scale table, over the residual round(y - mu) in [-R, R], plus
  one escape symbol (index 2R+1) for anything outside, which is then coded exactly.
- Factorized tables: one per channel of z, over [lo, lo + n - 2], plus an escape symbol (index n - 1).

All counts of one table sum to 2^PMF_BITS and every symbol has a count >= 1, so anything can be coded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PMF_BITS = 20
PMF_TOTAL = 1 << PMF_BITS
SCALE_COUNT = 64
SCALE_MIN, SCALE_MAX = 0.11, 256.0
# Residuals beyond TAIL standard deviations are escaped: a 6-sigma tail is 2e-9 of the mass.
TAIL_SIGMAS = 6.0
Z_TAIL_MASS = 2.0**-24
Z_MAX_HALF_RANGE = 1024


def scale_table() -> np.ndarray:
    """SCALE_COUNT log-spaced standard deviations from SCALE_MIN to SCALE_MAX (float64)."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_COUNT))


def log_scale_thresholds(scales: np.ndarray) -> np.ndarray:
    """Boundaries in log(sigma) between neighbouring table entries (geometric midpoints).

    scale index = number of thresholds <= log(sigma): each sigma snaps to its nearest entry in the log domain.
    """
    logs = np.log(scales)
    return (logs[:-1] + logs[1:]) / 2


def quantize_pmf(p: np.ndarray, total: int = PMF_TOTAL) -> np.ndarray:
    """Integer counts >= 1 summing exactly to `total`, close to total * p / sum(p)."""
    p = np.asarray(p, dtype=np.float64)
    p = np.maximum(p, 0) / max(p.sum(), 1e-300)
    if len(p) > total:
        raise ValueError("table larger than its total count")
    counts = np.maximum(1, np.round(p * (total - len(p))).astype(np.int64))
    # Whatever rounding left over goes to (or comes from) the largest entries, which feel it least.
    diff = total - int(counts.sum())
    order = np.argsort(-counts, kind="stable")
    i = 0
    while diff != 0:
        j = order[i % len(order)]
        step = 1 if diff > 0 else -1
        if counts[j] + step >= 1:
            counts[j] += step
            diff -= step
        i += 1
    return counts.astype(np.int32)


@dataclass
class RaggedTables:
    """Several count tables stored flat: table k is counts[offsets[k] : offsets[k + 1]]."""

    counts: np.ndarray  # int32
    offsets: np.ndarray  # int64, len = tables + 1
    low: np.ndarray  # int32: the symbol value of position 0 of each table (-R for Gaussians)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def table(self, k: int) -> np.ndarray:
        return self.counts[self.offsets[k] : self.offsets[k + 1]]

    def sizes(self) -> np.ndarray:
        """Number of entries of each table, escape included."""
        return np.diff(self.offsets)

    def validate(self) -> None:
        sizes = self.sizes()
        if np.any(sizes < 2) or self.offsets[0] != 0 or self.offsets[-1] != len(self.counts):
            raise ValueError("malformed probability tables")
        if np.any(self.counts < 1):
            raise ValueError("probability tables hold a zero count")
        sums = np.add.reduceat(self.counts.astype(np.int64), self.offsets[:-1])
        if np.any(sums != PMF_TOTAL):
            raise ValueError("probability tables are not normalized")


def _ragged(tables: list[np.ndarray], low: list[int]) -> RaggedTables:
    offsets = np.zeros(len(tables) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in tables])
    return RaggedTables(np.concatenate(tables).astype(np.int32), offsets, np.asarray(low, dtype=np.int32))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.vectorize(math.erfc)(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0))


def gaussian_tables(scales: np.ndarray) -> RaggedTables:
    tables, low = [], []
    for sigma in scales:
        half = max(1, int(math.ceil(TAIL_SIGMAS * sigma)))
        edges = np.arange(-half, half + 2, dtype=np.float64) - 0.5
        cdf = _normal_cdf(edges / sigma)
        pmf = np.diff(cdf)
        tail = 2.0 * _normal_cdf(-(half + 0.5) / sigma)
        tables.append(quantize_pmf(np.append(pmf, tail)))
        low.append(-half)
    return _ragged(tables, low)


def factorized_tables(cdf, channels: int) -> RaggedTables:
    """Tables of a per-channel cumulative distribution `cdf(values (C, K)) -> (C, K)` (float64 numpy).

    Each channel's support is the integer range outside which its mass is below Z_TAIL_MASS on either side.
    """
    grid = np.arange(-Z_MAX_HALF_RANGE, Z_MAX_HALF_RANGE + 2, dtype=np.float64) - 0.5
    c = cdf(np.broadcast_to(grid, (channels, len(grid))).copy())
    tables, low = [], []
    for k in range(channels):
        row = np.clip(c[k], 0.0, 1.0)
        first = int(np.searchsorted(row, Z_TAIL_MASS, side="right"))  # first edge with mass below it >= tail
        last = int(np.searchsorted(row, 1.0 - Z_TAIL_MASS, side="left"))
        first = min(max(first - 1, 0), len(grid) - 2)
        last = max(min(last, len(grid) - 1), first + 1)
        pmf = np.diff(row[first : last + 1])
        tail = row[first] + (1.0 - row[last])
        tables.append(quantize_pmf(np.append(pmf, tail)))
        low.append(int(grid[first] + 0.5))
    return _ragged(tables, low)
