"""Quality levels: the integer q a user picks, and the rate-distortion trade-off each one was trained for.

One model covers every level: q selects learned gain vectors on the latent (networks/intra.py). Fractional q
between two levels interpolates them; training samples q uniformly over the whole range, so it is supported.
"""

from __future__ import annotations

import math

# lambda in  loss = lambda * 255^2 * MSE + bpp ; q=4 is the classic 0.013 operating point, each step about x1.9.
LAMBDAS = (0.0009, 0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932)
LEVELS = len(LAMBDAS)
MIN_QUALITY, MAX_QUALITY = 0, LEVELS - 1
DEFAULT_QUALITY = 4
# The seeds' named regimes.
REGIMES = {"low": 1, "med": 4, "high": 6}


def lambda_of(q: float) -> float:
    """lambda of a (possibly fractional) quality: geometric interpolation between neighbouring levels."""
    if not MIN_QUALITY <= q <= MAX_QUALITY:
        raise ValueError(f"quality must be in {MIN_QUALITY}..{MAX_QUALITY}, got {q}")
    lo = min(int(math.floor(q)), MAX_QUALITY - 1)
    t = q - lo
    return math.exp((1 - t) * math.log(LAMBDAS[lo]) + t * math.log(LAMBDAS[lo + 1]))


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
