"""The faster arithmetic of the entropy path gives exactly the float64 reference's integers: int8 digit products
(networks/integer_gemm.py) and float64 transposed convolutions phase by phase, at the documented bounds, on the
shipped models' stacks, and on odd small shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcodec.networks import integer as I
from vcodec.networks import integer_gemm as gemm

W_MAX = 2**I.WEIGHT_BITS - 1


@pytest.fixture(autouse=True)
def one_thread():
    """Small work: one thread is quicker, most of all on a busy machine (the thread test sets its own)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def gemm_calls(monkeypatch):
    """The weight digit count of every digit GEMM that runs (so a comparison cannot pass with the int8 path idle)."""
    if not gemm.available():
        pytest.skip("int8 GEMM (oneDNN with AVX-512 VNNI) is not available here")
    calls = []
    real = gemm.matmul_combine

    def counting(*args, **kw):
        calls.append(args[0].digits)
        return real(*args, **kw)

    monkeypatch.setattr(gemm, "matmul_combine", counting)
    monkeypatch.setattr(I, "FAST_PATH", True)
    return calls


@pytest.fixture
def subpixel_everywhere(monkeypatch):
    """No int8 path (as on a CPU without VNNI): transposed convolutions of every size in their float64 sub-pixel
    form; the calls of that form are counted."""
    monkeypatch.setattr(gemm, "available", lambda: False)
    monkeypatch.setattr(I, "FAST_PATH", True)
    monkeypatch.setattr(I, "SUBPIXEL_MIN_MACS", 0)
    calls = []
    real = I._FastLayer.deconv_float64

    def counting(self, a):
        calls.append(a.shape)
        return real(self, a)

    monkeypatch.setattr(I._FastLayer, "deconv_float64", counting)
    return calls


@pytest.fixture
def fast_everywhere(monkeypatch, gemm_calls):
    """Every layer, whatever its size, on the int8 path."""
    monkeypatch.setattr(I, "FAST_MIN_MACS", 0)
    monkeypatch.setattr(I, "FAST_MIN_MACS_POINTS", 0)
    return gemm_calls


def same(x, y) -> bool:
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y))
    if isinstance(x, np.ndarray):
        return x.dtype == y.dtype and np.array_equal(x, y)
    return x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)


def both(fn, calls):
    """fn() with FAST_PATH off (the float64 reference) and on; asserts the faster path ran (`calls` grew) and gave
    the same integers."""
    I.FAST_PATH = False
    try:
        plain = fn()
    finally:
        I.FAST_PATH = True
    before = len(calls)
    fast = fn()
    assert len(calls) > before, "the faster path did not run"
    assert same(plain, fast)
    return plain


def layer(kind, cin, cout, k, stride=1, padding=0, output_padding=0, relu=True, exp=15, rng=None, w_max=W_MAX,
          bias_max=2**49):
    rng = rng or np.random.default_rng(0)
    shape = (cin, cout, *k) if kind == "deconv" else (cout, cin, *k)
    w = rng.integers(-w_max, w_max + 1, shape).astype(np.float64)
    w.flat[:4] = [w_max, -w_max, w_max, -w_max]
    b = rng.integers(-bias_max, bias_max, (cout,)).astype(np.float64)
    return dict(kind=kind, weight=torch.from_numpy(w), bias=torch.from_numpy(b), exp=exp, stride=stride,
                padding=padding, output_padding=output_padding, relu=relu)


def edge_values(shape, peak, rng):
    """Random integers up to `peak` in magnitude, with the digit boundaries and the extremes among them."""
    x = rng.integers(-int(peak), int(peak) + 1, shape).astype(np.float64)
    edges = (0, 127, -128, 128, -129, 255, 256, 32639, 32640, -32896, -32897, peak, -peak)
    edges = [v for v in edges if abs(v) <= peak]
    flat = x.reshape(-1)
    flat[: len(edges)] = edges
    return torch.from_numpy(x)


# -- the bounds -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("peak", [40, 30000, I.ACT_MAX])
def test_convolutions_at_the_bounds(fast_everywhere, peak):
    """Fan-in at MAX_FAN_IN (3x3 over 1820 channels), |w| up to 2^15 - 1, |a| up to ACT_MAX, large biases."""
    rng = np.random.default_rng(int(peak))
    stack = I.IntegerStack([
        layer("conv", 1820, 6, (3, 3), padding=1, rng=rng, exp=20),
        layer("conv", 6, 5, (3, 3), stride=2, padding=1, relu=False, exp=12, rng=rng),  # signed, requantized
        layer("conv", 5, 4, (1, 1), relu=False, rng=rng),  # the raw accumulator
    ], in_exp=I.ACT_FRAC_BITS)
    assert I._fan_in(stack.layers[0]["weight"].shape, False, (1, 1)) <= I.MAX_FAN_IN
    a = edge_values((1, 1820, 5, 6), peak, rng)
    both(lambda: stack(a), fast_everywhere)


def test_largest_sums_are_exact(fast_everywhere):
    """Every product at its largest and of one sign (|w| = 2^15 - 1, a = ACT_MAX, fan-in 2^14): sums near 2^51."""
    w = torch.full((3, 4096, 2, 2), float(W_MAX), dtype=torch.float64)
    w[1] = -W_MAX
    bias = torch.tensor([2.0**49, -(2.0**49), 3.0], dtype=torch.float64)
    stack = I.IntegerStack([dict(kind="conv", weight=w, bias=bias, exp=30,
                                 stride=1, padding=0, output_padding=0, relu=False)], in_exp=I.ACT_FRAC_BITS)
    a = torch.full((1, 4096, 3, 3), I.ACT_MAX, dtype=torch.float64)
    out = both(lambda: stack(a), fast_everywhere)
    assert out[0, 0, 0, 0] == W_MAX * I.ACT_MAX * 2**14 + 2.0**49  # above 2^50: the bound is really reached


@pytest.mark.parametrize("geometry", [(5, 2, 2, 1), (4, 2, 1, 0), (3, 2, 1, 1), (5, 3, 2, 2), (2, 2, 0, 0),
                                      (3, 1, 1, 0)])
def test_transposed_convolutions(fast_everywhere, geometry):
    """Sub-pixel decomposition for every (kernel, stride, padding, output padding) of these shapes; the fan-in of
    the 5x5 stride 2 one (the shipped h_s's) at MAX_FAN_IN (1820 * 9)."""
    k, s, p, op = geometry
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    cin = I.MAX_FAN_IN // (-(-k // s)) ** 2 if geometry == (5, 2, 2, 1) else 300
    stack = I.IntegerStack([
        layer("deconv", cin, 3, (k, k), s, p, op, rng=rng, exp=22),
        layer("deconv", 3, 4, (k, k), s, p, op, relu=False, rng=rng),
    ], in_exp=0)
    for shape in [(1, 1), (2, 3), (3, 2)]:
        z = edge_values((1, cin, *shape), I.Z_CLAMP, rng)
        both(lambda: stack(z), fast_everywhere)


@pytest.mark.parametrize("geometry", [(5, 2, 2, 1), (4, 2, 1, 0), (5, 3, 2, 2), (3, 1, 1, 0)])
def test_transposed_convolutions_in_float64_phases(subpixel_everywhere, geometry):
    k, s, p, op = geometry
    rng = np.random.default_rng(k * 100 + s * 10 + p + 1)
    cin = I.MAX_FAN_IN // (-(-k // s)) ** 2 if geometry == (5, 2, 2, 1) else 300
    stack = I.IntegerStack([
        layer("deconv", cin, 3, (k, k), s, p, op, rng=rng, exp=22),
        layer("deconv", 3, 4, (k, k), s, p, op, relu=False, rng=rng),
    ], in_exp=0)
    for shape in [(1, 1), (2, 3)]:
        z = edge_values((1, cin, *shape), I.Z_CLAMP, rng)
        both(lambda: stack(z), subpixel_everywhere)


def test_points_at_the_bounds_and_against_int64(fast_everywhere):
    rng = np.random.default_rng(3)
    stack = I.IntegerStack([
        layer("conv", I.MAX_FAN_IN, 7, (1, 1), rng=rng, exp=24),
        layer("conv", 7, 5, (1, 1), relu=False, rng=rng),
    ], in_exp=I.ACT_FRAC_BITS)
    a = edge_values((I.MAX_FAN_IN, 9), I.ACT_MAX, rng)
    out = both(lambda: stack.points(a), fast_everywhere)
    w0, b0 = stack.layers[0]["weight"][:, :, 0, 0].long(), stack.layers[0]["bias"].long()
    acc = w0 @ a.long() + b0[:, None]  # exact int64, then the documented rounding
    hidden = ((acc.clamp_min(0) + 2**(24 + 8 - 8 - 1)) >> (24 + 8 - 8)).clamp_max(int(I.ACT_MAX))
    w1, b1 = stack.layers[1]["weight"][:, :, 0, 0].long(), stack.layers[1]["bias"].long()
    assert torch.equal(out.long(), w1 @ hidden + b1[:, None])


@pytest.mark.parametrize("exp", [-20, 0, 8, 40])
def test_requantization_scales(fast_everywhere, exp):
    """Shifts of either sign (exp + in_exp below and above ACT_FRAC_BITS), ReLU and signed layers."""
    rng = np.random.default_rng(exp + 50)
    stack = I.IntegerStack([
        layer("conv", 40, 6, (3, 3), padding=1, exp=exp, rng=rng, relu=False, w_max=900, bias_max=2**30),
        layer("conv", 6, 6, (3, 3), padding=1, exp=exp, rng=rng, w_max=900, bias_max=2**30),
        layer("conv", 6, 2, (1, 1), relu=False, rng=rng),
    ], in_exp=I.ACT_FRAC_BITS)
    a = edge_values((1, 40, 4, 5), 3000, rng)
    both(lambda: stack(a), fast_everywhere)


def test_weights_that_need_three_digits(fast_everywhere):
    """|w| > 32639 does not fit two balanced digits: a third one, same integers."""
    rng = np.random.default_rng(5)
    first = layer("conv", 30, 4, (3, 3), padding=1, rng=rng, exp=20)
    first["weight"][0, 0, 0, 0] = 32767.0
    stack = I.IntegerStack([first, layer("conv", 4, 3, (1, 1), relu=False, rng=rng)], in_exp=I.ACT_FRAC_BITS)
    a = edge_values((1, 30, 3, 4), I.ACT_MAX, rng)
    both(lambda: stack(a), fast_everywhere)
    assert 3 in fast_everywhere


def test_layers_it_cannot_take_stay_on_float64(fast_everywhere):
    """A shift beyond 2^-52, a transposed convolution padded beyond its kernel and one with an output phase no tap
    reaches run on float64, between layers that run on int8 digits; an input beyond ACT_MAX stays on float64 until
    a layer brings it back within bounds."""
    rng = np.random.default_rng(6)
    stack = I.IntegerStack([
        layer("conv", 20, 5, (3, 3), padding=1, rng=rng),
        layer("conv", 5, 5, (3, 3), padding=1, rng=rng, exp=64),
        layer("deconv", 5, 4, (2, 2), 2, 2, 1, rng=rng),
        layer("deconv", 4, 4, (1, 1), 2, 0, 1, rng=rng),
        layer("conv", 4, 3, (3, 3), padding=1, relu=False, rng=rng),
    ], in_exp=I.ACT_FRAC_BITS)
    a = edge_values((1, 20, 4, 4), 5000, rng)
    both(lambda: stack(a), fast_everywhere)
    assert [f is None for f in stack._fast_layers()] == [False, True, True, True, False]
    big = a.clone()
    big[0, 0, 0, 0] = 2 * I.ACT_MAX
    before = len(fast_everywhere)
    I.FAST_PATH = False
    plain = stack(big)
    I.FAST_PATH = True
    assert same(plain, stack(big)) and len(fast_everywhere) == before + 1  # only the last layer (3x3) is fast


def test_the_switch_keeps_to_float64(monkeypatch, fast_everywhere):
    stack = I.IntegerStack([layer("conv", 8, 4, (3, 3), padding=1)], in_exp=I.ACT_FRAC_BITS)
    monkeypatch.setattr(I, "FAST_PATH", False)
    stack(torch.ones(1, 8, 5, 5, dtype=torch.float64))
    assert fast_everywhere == []
    monkeypatch.setattr(I, "FAST_PATH", True)
    stack(torch.ones(1, 8, 5, 5, dtype=torch.float64))
    assert len(fast_everywhere) == 1


# -- the shipped models -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    from vcodec import weights

    return weights.load(weights.DEFAULT_MODEL, "cpu"), weights.load_stem(weights.DEFAULT_STEM_MODEL, "cpu")


@pytest.mark.parametrize("z_shape", [(1, 1), (1, 3), (3, 1), (5, 7), (4, 6)])
@pytest.mark.parametrize("path", ["fast_everywhere", "subpixel_everywhere"])
def test_shipped_intra_hyper_synthesis(models, request, path, z_shape):
    calls = request.getfixturevalue(path)
    bundle, _ = models
    rng = np.random.default_rng(z_shape[0] * 31 + z_shape[1])
    n = bundle.h_s.stack.input_channels()
    for z in (rng.integers(-40, 41, (n, *z_shape)), rng.integers(-2**15, 2**15, (n, *z_shape))):  # and clamped
        both(lambda: bundle.h_s(z), calls)


@pytest.mark.parametrize("latent", [(1, 1), (1, 3), (3, 1), (5, 7), (9, 14)])
def test_shipped_stem(models, fast_everywhere, latent):
    """prepare and both checkerboard passes of the shipped STEM, with realistic and with extreme latents."""
    from vcodec.networks.stem import anchor_mask

    _, stem = models
    cfg, integer = stem.config, stem.integer
    rng = np.random.default_rng(latent[0] * 7 + latent[1])
    h, w = latent
    where = anchor_mask(h, w)
    for scale, z_peak in ((60.0, 30), (2e5, 2**14)):  # ordinary values; values at ACT_MAX and Z_CLAMP
        y_prev = I.to_fixed(torch.from_numpy(rng.normal(0, scale, (cfg.m, h, w))).float())
        anchors = I.to_fixed(torch.where(where, torch.from_numpy(rng.normal(0, scale, (cfg.m, h, w))).float(), 0.0))
        z = rng.integers(-z_peak, z_peak + 1, (cfg.n, -(-h // 4), -(-w // 4)))

        def run():
            prep = integer.prepare(z, y_prev, 3.0)
            first, second = integer.parameters(prep, where), integer.parameters(prep, ~where, anchors)
            # the shared activations as float64 values: their dtype is each path's work dtype (int32 on int8)
            return [prep.hyper.double(), prep.temporal.double(), *first, *second]
        both(run, fast_everywhere)


def test_shipped_stacks_at_720p_sizes_on_one_and_two_threads(models, gemm_calls):
    """The real 720p geometry (z 12x20, latent 45x80) with the default size threshold, on 1 and 2 threads: every
    layer of h_s (four GEMMs for the sub-pixel phases of each transposed convolution) and of the TPM is fast."""
    bundle, stem = models
    rng = np.random.default_rng(9)
    z = rng.integers(-30, 31, (bundle.h_s.stack.input_channels(), 12, 20))
    y = I.to_fixed(torch.from_numpy(rng.normal(0, 40, (stem.config.m, 45, 80))).float())
    run = lambda: (*bundle.h_s(z), stem.integer.stacks["tpm"](y[None]))  # noqa: E731
    I.FAST_PATH = False
    plain = run()
    I.FAST_PATH = True
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            start = len(gemm_calls)
            assert same(plain, run())
            assert len(gemm_calls) - start == 4 + 4 + 1 + 3
    finally:
        torch.set_num_threads(before)


# -- scale index --------------------------------------------------------------------------------------------------


def test_scale_index_matches_searchsorted(models):
    bundle, _ = models
    rng = np.random.default_rng(11)
    jittered = torch.arange(63, dtype=torch.float64) * 1000.0 + torch.from_numpy(rng.integers(-200, 201, 63)).double()
    for t in (bundle.h_s.thresholds, jittered):
        t = torch.sort(t).values
        x = torch.from_numpy(rng.integers(int(t[0]) - 10**6, int(t[-1]) + 10**6, 40000)).double()
        x[:189] = torch.cat([t - 1, t, t + 1])
        x[189:191] = torch.tensor([-(2.0**52), 2.0**52])
        x = x.view(4, 100, 100)
        want = torch.searchsorted(t, x, right=True).to(torch.uint8).numpy()
        assert I._uniform_guess(t) is not None
        assert np.array_equal(I.scale_index(x, t), want)
    uneven = torch.tensor([0.0, 1.0, 2.0, 1000.0])  # no uniform guess: searchsorted
    assert I._uniform_guess(uneven) is None
    x = torch.linspace(-5, 1005, 20000, dtype=torch.float64).round()
    assert np.array_equal(I.scale_index(x, uneven), torch.searchsorted(uneven, x, right=True).numpy().astype(np.uint8))


@pytest.mark.parametrize("wraps", [True, False])
def test_digits_split_exactly(monkeypatch, wraps):
    """Both ways to the low digits (narrowing that wraps, which this machine should have, and arithmetic), into
    contiguous and strided digit planes."""
    assert gemm._narrowing_wraps()
    monkeypatch.setattr(gemm, "_narrowing_wraps", lambda: wraps)
    rng = np.random.default_rng(12)
    for digits in (1, 2, 3):
        cap = gemm.digit_capacity(digits)
        x = torch.from_numpy(rng.integers(-cap, cap + 1, 5000)).to(torch.int32)
        edges = [cap, -cap, 127, -127] + ([-128, 128, -129, 255, 256, -256] if digits > 1 else [])
        x[:len(edges)] = torch.tensor(edges, dtype=torch.int32)
        x_before = x.clone()
        for out in (torch.empty((digits, 5000), dtype=torch.int8),
                    torch.zeros((5000, digits, 3), dtype=torch.int8)[:, :, 1].t()):
            gemm.split(x, digits, out)
            back = sum(out[d].long() * 256**d for d in range(digits))
            assert torch.equal(back, x.long()) and torch.equal(x, x_before)
            assert int(out.min()) >= -128 and int(out.max()) <= 127
        assert gemm.digits_for(cap) == digits and gemm.digits_for(cap + 1) == (digits + 1 if digits < 3 else None)
