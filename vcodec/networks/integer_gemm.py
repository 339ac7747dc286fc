"""Exact integer matrix products on int8 digits: the fast arithmetic of the entropy path (networks/integer.py).

Why: the entropy path multiplies integers exactly, as float64 products whose sums stay below 2^53. Float64 GEMM
runs at ~26 G multiply-adds/s on a 2-core AVX-512 EPYC; an int8 x int8 -> int32 GEMM (`torch._int_mm`, oneDNN
with VNNI) at ~400-800 G. Several int8 products cost less than one float64 product, and give the same integers.

How: a weight matrix is split once into D_w balanced base-256 digits (w = sum_j w_j 256^j, w_j in [-128, 127]),
an integer operand into as many digits D_a as its largest magnitude needs (choosing D_a from the data is still
exact). One `_int_mm` computes every digit pair: each product is at most 2^14 in magnitude, and the int32 sums
stay below 2^31 (checked from the digits' bounds; a fan-in of at most MAX_FAN_IN = 2^14 always passes). Pairs of
the same weight 256^(i+j) are added in int32 (the top groups folded further in int32 while that provably fits),
and the rest recombined in float64 with power-of-two factors: exact while every partial sum stays below 2^53,
which `combine_exact` checks from the same bounds (with two weight digits and the documented bounds it always
holds, at about 2^51 + the bias; a third weight digit, needed for |w| > 32639, loosens the bound, and a layer
that fails it runs on float64). The caller's requantization scale (a power of two) and rounding offset are folded
into the recombination, so one float64 pass gives what the float64 path's floor(acc * 2^shift + 1/2) gives.

Only where int8 GEMM is fast: PyTorch runs `_int_mm` on oneDNN only on CPUs with AVX-512 VNNI (elsewhere a naive
loop, exact but slow), so `available()` asks for that, and checks once that extreme digits multiply exactly.
"""

from __future__ import annotations

from functools import lru_cache

import torch

EXACT_LIMIT = 2.0**53
INT32_LIMIT = 2**31
MAX_DIGITS = 3  # enough for |x| <= 2^22 (ACT_MAX) and for |w| < 2^15


def digit_capacity(digits: int) -> int:
    """The largest |x| that `digits` balanced base-256 digits hold (all digits 127, or all -128 less one)."""
    return 127 * (256**digits - 1) // 255


def digits_for(peak: float) -> int | None:
    """Fewest digits for integers of magnitude <= peak; None beyond MAX_DIGITS (or for NaN)."""
    for d in range(1, MAX_DIGITS + 1):
        if peak <= digit_capacity(d):
            return d
    return None


def digit_bounds(digits: int, peak: float) -> list[float]:
    """A bound on |digit i| of every integer of magnitude <= peak: 128 below the top one, and the top one's."""
    low = 128 * (256 ** (digits - 1) - 1) / 255  # the most the lower digits can hold
    return [128.0] * (digits - 1) + [min(128.0, (peak + low) / 256 ** (digits - 1))]


def split(x: torch.Tensor, digits: int, out: torch.Tensor) -> None:
    """Write the balanced base-256 digits of int32 `x` (|x| <= digit_capacity(digits)) into out[..., d, ...]:
    `out` is a list-like of `digits` int8 views, each shaped like x. x = sum_d out[d] * 256^d."""
    wraps = _narrowing_wraps()
    r = x
    for d in range(digits - 1):
        # The low digit is r - 256 floor((r + 128) / 256), in [-128, 127]: r mod 256 taken that way, which is what
        # narrowing int32 to int8 gives where it wraps (one pass instead of three).
        hi = r + 128
        hi >>= 8  # floor((r + 128) / 256)
        out[d].copy_(r if wraps else r - (hi << 8))
        r = hi
    out[digits - 1].copy_(r)


@lru_cache(maxsize=1)
def _narrowing_wraps() -> bool:
    """Whether torch narrows int32 to int8 modulo 256 here (C++20 defines the conversion so; GCC, Clang and MSVC
    documented it so before): checked on values around every wrap point, into contiguous and strided int8, long
    and short tensors. Where it does not, split() computes the low digit arithmetically."""
    edges = torch.arange(-40, 41, dtype=torch.int32)[:, None] * 256 + torch.tensor([-129, -128, 127, 128])
    x = torch.cat([torch.arange(-(1 << 23), (1 << 23) + 1, 97, dtype=torch.int32), edges.reshape(-1).to(torch.int32)])
    want = (x - ((x + 128) >> 8) * 256).to(torch.int16)  # the low digits, in a type that holds them as they are
    buf = torch.zeros((x.numel(), 2), dtype=torch.int8)
    buf[:, 1].copy_(x)  # a strided destination, as split() writes
    return bool(torch.equal(x.to(torch.int8).to(torch.int16), want) and torch.equal(buf[:, 1].to(torch.int16), want)
                and torch.equal(x[:5].to(torch.int8).to(torch.int16), want[:5]))


class WeightDigits:
    """A weight matrix (rows, K) of integers, |w| < 2^15, as int8 digits stacked along the rows: (D_w * rows, K),
    with the bounds the exactness checks need."""

    def __init__(self, w: torch.Tensor):
        self.rows, self.k = w.shape
        self.digits = digits_for(float(w.abs().max()) if w.numel() else 0.0)
        if self.digits is None:
            raise ValueError("weights too large for int8 digits")
        planes = torch.empty((self.digits, self.rows, self.k), dtype=torch.int8)
        split(w.to(torch.int32), self.digits, planes)  # |w| < 2^23 here, so int32 holds it
        self.matrix = planes.reshape(self.digits * self.rows, self.k).contiguous()
        # Per plane j and row: the sum of |w_j| over the row (int64: exact). The bounds: the largest of those per
        # plane, and the largest over rows of sum_j 256^j (the row's sum of |w_j|), which is sum_k sum_j |w_j| 256^j.
        row_sums = planes.to(torch.int32).abs_().sum(2, dtype=torch.int64)  # (digits, rows)
        if row_sums.numel():
            powers = torch.tensor([256**j for j in range(self.digits)], dtype=torch.int64)[:, None]
            self.plane_sums = [float(r) for r in row_sums.max(1).values]
            self.weighted_sum = float((row_sums * powers).sum(0).max())
        else:
            self.plane_sums, self.weighted_sum = [0.0] * self.digits, 0.0


def group_bounds(a_bounds: list[float], w: WeightDigits) -> list[float]:
    """A bound on each digit-pair group (the pairs of equal weight 256^(i+j)): |sum_k a_i w_j| <= |a_i|max *
    (the largest sum over a row of |w_j|)."""
    groups = [0.0] * (len(a_bounds) + w.digits - 1)
    for i, a in enumerate(a_bounds):
        for j, s in enumerate(w.plane_sums):
            groups[i + j] += a * s
    return groups


def int32_exact(a_bounds: list[float], w: WeightDigits) -> bool:
    """Every int32 sum of a group stays below 2^31."""
    return max(group_bounds(a_bounds, w)) < INT32_LIMIT


def combine_exact(a_bounds: list[float], w: WeightDigits, offset_peak: float) -> bool:
    """Every partial sum of the float64 recombination stays below 2^53: it is at most |offset| + A * max over rows
    of sum_k sum_j |w_j| 256^j, where A bounds sum_i |a_i| 256^i (power-of-two scaling keeps exactness)."""
    a_sum = sum(b * 256.0**i for i, b in enumerate(a_bounds))
    return offset_peak + a_sum * w.weighted_sum < EXACT_LIMIT


def matmul_combine(w: WeightDigits, cols: torch.Tensor, a_bounds: list[float], offset: torch.Tensor, scale: float,
                   out: torch.Tensor) -> torch.Tensor:
    """out = (offset + W @ A) * scale, exact, float64 (rows, n): `cols` (K, digits * n) int8 holds A's digits side by
    side (their bounds: a_bounds), `offset` (rows, 1) float64 is already scaled. The caller has checked
    int32_exact and combine_exact."""
    a_digits = len(a_bounds)
    n = cols.shape[1] // a_digits
    r = torch._int_mm(w.matrix, cols).view(w.digits, w.rows, a_digits, n)
    bounds = group_bounds(a_bounds, w)

    def group(s):
        pairs = [(i, s - i) for i in range(a_digits) if 0 <= s - i < w.digits]
        g = r[pairs[0][1], :, pairs[0][0]]
        for i, j in pairs[1:]:
            g = g + r[j, :, i]  # int32: below 2^31 (int32_exact)
        return g

    # The top groups folded in int32 (Horner) while that provably stays below 2^31: fewer float64 passes.
    top = len(bounds) - 1
    folded, bound = group(top), bounds[top]
    while top > 0 and 256 * bound + bounds[top - 1] < INT32_LIMIT:
        top -= 1
        folded = torch.add(group(top), folded, alpha=256)
        bound = 256 * bound + bounds[top]
    for s in range(top):
        if s == 0:
            torch.add(offset, group(0), alpha=scale, out=out)  # float64 from int32
        else:
            out.add_(group(s), alpha=scale * 256.0**s)
    if top == 0:
        torch.add(offset, folded, alpha=scale, out=out)
    else:
        out.add_(folded, alpha=scale * 256.0**top)
    return out


@lru_cache(maxsize=1)
def _hardware_ok() -> bool:
    try:
        caps = torch._C._cpu._get_cpu_capability()
    except Exception:  # noqa: BLE001  (an older or newer torch without it: stay on float64)
        return False
    if not caps.get("avx512_vnni", False) or not torch.backends.mkldnn.is_available():
        return False
    # Random and extreme digits at large K: a kernel that saturates (pmaddubsw-style, on either operand shifted to
    # unsigned) would fail here.
    g = torch.Generator().manual_seed(0)
    extreme = torch.tensor([127, -128], dtype=torch.int8)
    for k in (67, 4096):
        a = torch.randint(-128, 128, (37, k), generator=g, dtype=torch.int8)
        b = torch.randint(-128, 128, (k, 19), generator=g, dtype=torch.int8)
        signs = extreme[torch.randint(0, 2, a.shape, generator=g)], extreme[torch.randint(0, 2, b.shape, generator=g)]
        pairs = [(a, b), signs, (torch.full_like(a, 127), torch.full_like(b, -128)),
                 (torch.full_like(a, -128), torch.full_like(b, 127))]
        for x, y in pairs:
            if not torch.equal(torch._int_mm(x, y).double(), x.double() @ y.double()):  # float64: exact here
                return False
    return True


def available() -> bool:
    """int8 GEMM is fast and exact here (oneDNN with AVX-512 VNNI, and mkldnn not switched off)."""
    return bool(torch.backends.mkldnn.enabled) and _hardware_ok()
