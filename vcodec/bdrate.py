"""BD-rate (Bjøntegaard delta rate) of a test curve against an anchor, with the `bjontegaard` package.

The package integrates log-rate as a function of quality over the quality range both curves cover, with a
piecewise interpolation (Akima by default, as its authors recommend; PCHIP, the JVET CTC sheet's method, on
request). It never extrapolates, but a number integrated over a sliver of the curves says little, so we report
"n/a" with the reason when the curves' overlap (their common quality range over the shorter curve's range) is
under MIN_OVERLAP, or when they have no common quality range at all.

Points that do not improve on a cheaper point of the same curve (PSNR falling as rate rises) are left out first:
the interpolation needs quality to rise with rate, and such a point is never an operating point anyone would pick.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from vcodec.errors import InputError

METHODS = ("akima", "pchip")
DEFAULT_METHOD = "akima"
MIN_OVERLAP = 0.5  # of the shorter curve's quality range


@dataclass
class BDRate:
    percent: float | None  # None: not computable, see `reason`
    reason: str = ""
    dropped: int = 0  # points left out because they did not improve on a cheaper one
    anchor_range: tuple[float, float] | None = None  # quality span of the points used
    test_range: tuple[float, float] | None = None

    def text(self) -> str:
        return "n/a" if self.percent is None else f"{self.percent:+.1f} %"

    def ranges(self) -> str:
        if not (self.anchor_range and self.test_range):
            return ""
        (a0, a1), (t0, t1) = self.anchor_range, self.test_range
        return f"anchor {a0:.1f}..{a1:.1f} dB, test {t0:.1f}..{t1:.1f} dB"

    def note(self) -> str:
        """The reason for an n/a with the ranges it comes from; empty for a number."""
        return f"{self.reason}: {self.ranges()}" if self.reason and self.ranges() else self.reason


def require_package():
    try:
        import bjontegaard
    except ImportError:
        raise InputError("BD-rates need the bjontegaard package: pip install 'vcodec[bench]'") from None
    return bjontegaard


def rising_front(rates: list[float], qualities: list[float]) -> tuple[list[float], list[float]]:
    """The points, by increasing rate, whose quality beats every cheaper point (finite values only)."""
    pairs = sorted((r, q) for r, q in zip(rates, qualities) if math.isfinite(r) and r > 0 and math.isfinite(q))
    keep_r, keep_q = [], []
    for r, q in pairs:
        if keep_q and (q <= keep_q[-1] or r == keep_r[-1]):
            continue
        keep_r.append(r)
        keep_q.append(q)
    return keep_r, keep_q


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, method: str = DEFAULT_METHOD,
            min_overlap: float = MIN_OVERLAP) -> BDRate:
    """Average rate difference of test against anchor at equal quality, in percent (negative: test needs fewer bits)."""
    if method not in METHODS:
        raise InputError(f"BD-rate method must be one of {', '.join(METHODS)}, got '{method}'")
    bjontegaard = require_package()
    ar, aq = rising_front(list(anchor_rate), list(anchor_quality))
    tr, tq = rising_front(list(test_rate), list(test_quality))
    dropped = len(list(anchor_rate)) - len(ar) + len(list(test_rate)) - len(tr)
    for label, q in (("anchor", aq), ("test", tq)):
        if len(q) < 2:
            return BDRate(None, f"the {label} curve has {len(q)} usable point{'s' if len(q) != 1 else ''} (2 needed)", dropped)
    lo, hi = max(aq[0], tq[0]), min(aq[-1], tq[-1])
    spans = {"anchor_range": (aq[0], aq[-1]), "test_range": (tq[0], tq[-1])}
    if hi <= lo:
        return BDRate(None, "no overlap", dropped, **spans)
    shorter = min(aq[-1] - aq[0], tq[-1] - tq[0])
    if (hi - lo) < min_overlap * shorter:
        return BDRate(None, f"overlap {100 * (hi - lo) / shorter:.0f} % < {100 * min_overlap:.0f} %", dropped, **spans)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its overlap warning: we checked overlap ourselves
        value = float(bjontegaard.bd_rate(ar, aq, tr, tq, method=method, require_matching_points=False, min_overlap=0.0))
    if not math.isfinite(value):
        return BDRate(None, "the interpolation did not give a finite value", dropped, **spans)
    return BDRate(value, "", dropped, **spans)


@dataclass
class BDPSNR:
    """Average quality difference of test against anchor at equal rate, in dB (positive: test is better)."""

    db: float | None  # None: not computable, see `reason`
    reason: str = ""

    def text(self) -> str:
        return "n/a" if self.db is None else f"{self.db:+.2f} dB"


def bd_psnr(anchor_rate, anchor_quality, test_rate, test_quality, method: str = DEFAULT_METHOD,
            min_overlap: float = MIN_OVERLAP) -> BDPSNR:
    """BD-PSNR over the rate range both curves cover (in log rate). Well defined where BD-rate is not: two codecs
    spending the same bits at very different qualities, as an early-trained model does against a mature codec."""
    if method not in METHODS:
        raise InputError(f"BD-PSNR method must be one of {', '.join(METHODS)}, got '{method}'")
    bjontegaard = require_package()
    ar, aq = rising_front(list(anchor_rate), list(anchor_quality))
    tr, tq = rising_front(list(test_rate), list(test_quality))
    if min(len(ar), len(tr)) < 2:
        return BDPSNR(None, "fewer than 2 usable points")
    lo, hi = max(math.log(ar[0]), math.log(tr[0])), min(math.log(ar[-1]), math.log(tr[-1]))
    shorter = min(math.log(ar[-1] / ar[0]), math.log(tr[-1] / tr[0]))
    if hi <= lo:
        return BDPSNR(None, "no overlap in rate")
    if hi - lo < min_overlap * shorter:
        return BDPSNR(None, f"rate overlap {100 * (hi - lo) / shorter:.0f} % < {100 * min_overlap:.0f} %")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(bjontegaard.bd_psnr(ar, aq, tr, tq, method=method, require_matching_points=False, min_overlap=0.0))
    return BDPSNR(value if math.isfinite(value) else None, "" if math.isfinite(value) else "not finite")
