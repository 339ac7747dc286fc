"""Quality levels: the integer q a user picks, and the rate-distortion trade-off each one was trained for.

One model covers every level: q selects learned gain vectors on the latent (networks/intra.py). Fractional q
between two levels interpolates them; training samples q uniformly over the whole range, so it is supported.
"""

from __future__ import annotations

import math

# lambda in  loss = lambda * 255^2 * MSE + bpp. Each model stores the table it was trained with (IntraConfig);
# these are the defaults. Files from before the table was stored were trained with this one (q=4 the classic 0.013,
# each step about x1.9), which spans only about 0.13 to 0.9 bpp on photos:
LAMBDAS_BEFORE_TABLES = (0.0009, 0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932)
LEVELS = len(LAMBDAS_BEFORE_TABLES)
# New runs (LAMBDAS, at the end of this file): about 0.05 to 1.2 bpp on photos, q=4 still at 0.013, each step x2.8.
DEFAULT_LAMBDA_RANGE = (0.0002, 0.3)
MIN_QUALITY, MAX_QUALITY = 0, LEVELS - 1
DEFAULT_QUALITY = 4
# The seeds' named regimes.
REGIMES = {"low": 1, "med": 4, "high": 6}


def lambda_of(q: float, table: tuple[float, ...]) -> float:
    """lambda of a (possibly fractional) quality: geometric interpolation between neighbouring levels."""
    if not MIN_QUALITY <= q <= len(table) - 1:
        raise ValueError(f"quality must be in {MIN_QUALITY}..{len(table) - 1}, got {q}")
    lo = min(int(math.floor(q)), len(table) - 2)
    t = q - lo
    return math.exp((1 - t) * math.log(table[lo]) + t * math.log(table[lo + 1]))


def lambda_table(lowest: float, highest: float, levels: int = LEVELS) -> tuple[float, ...]:
    """A model's lambdas, log-spaced from `lowest` (q = 0) to `highest` (the top level). The table is a training
    choice stored with each model: the decoder never needs it, only the gains learned for it."""
    if not (0 < lowest < highest and math.isfinite(highest)) or levels < 2:
        raise ValueError(f"a lambda range needs 0 < lowest < highest, got {lowest}, {highest}")
    step = (math.log(highest) - math.log(lowest)) / (levels - 1)
    return tuple(float(f"{math.exp(math.log(lowest) + k * step):.6g}") for k in range(levels))


def parse(text: str) -> float:
    """A quality as a user writes it: a number in 0..7 (fractions interpolate) or a regime name (low, med, high)."""
    name = text.strip().lower()
    if name in REGIMES:
        return float(REGIMES[name])
    try:
        q = float(name)
    except ValueError:
        raise ValueError(f"quality must be a number in {MIN_QUALITY}..{MAX_QUALITY} or one of "
                         f"{', '.join(REGIMES)}, got '{text}'") from None
    if not MIN_QUALITY <= q <= MAX_QUALITY:  # also refuses nan
        raise ValueError(f"quality must be in {MIN_QUALITY}..{MAX_QUALITY}, got {text}")
    return q


LAMBDAS = lambda_table(*DEFAULT_LAMBDA_RANGE)  # the table of new training runs
