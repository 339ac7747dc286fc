"""Integer-exact convolution stacks: the entropy path (intra h_s; STEM's h_s, TPM, SPM and fusion), bit-identical
on any machine.

Why: the scale index decides how every symbol of y is parsed; a one-ulp float difference between encoder and
decoder (another GPU, thread count or BLAS) flips indices and turns the rest of the stream into noise.

How: weights become integers with one power-of-two scale per layer, activations integers with ACT_FRAC_BITS
fractional bits, clamped to [0, ACT_MAX] after a ReLU (to [-ACT_MAX, ACT_MAX] for signed inputs such as a decoded
latent). Convolutions run in float64 on integers whose every product and partial sum stays below 2^53, so any
summation order (any BLAS, any thread count) gives the exact same integers. Rescaling is an exact power-of-two
division followed by floor(x + 1/2). A scale index is an integer comparison of the last layer's accumulator with
integer thresholds, so no exp/log runs on the decision path.

Where int8 GEMM is fast (oneDNN with AVX-512 VNNI) the larger layers compute the same integers from int8 digit
products instead (integer_gemm.py, `_FastLayer` below; 3-5x faster than float64 there). The float64 arithmetic
stays the reference: FAST_PATH = False uses it everywhere, and it runs wherever the int8 form is unavailable, not
provably exact for the values at hand, or not faster (small layers).

Bounds (checked at export and at load): |input| <= 2^22 (z is clamped to Z_CLAMP = 2^14, activations and
fixed-point latents to ACT_MAX = 2^22), |weight| < 2^WEIGHT_BITS = 2^15, fan-in <= MAX_FAN_IN = 2^14,
|bias| < BIAS_LIMIT = 2^50. Every product is then < 2^(22 + 15) = 2^37 and every partial sum, bias included,
< 2^(37 + 14) + 2^50 = 2^51 + 2^50 < 2^52: below 2^53, so each is an exactly representable integer whatever the
order of summation, with a factor of two to spare (and floor(acc * 2^-k + 1/2) stays exact too). A fan-in of
2^14 covers h_s up to M = 1213 latent channels (its widest layer has fan-in 9 * 3M/2); the standard N=128 / M=192
needs 2592.

A stack is convolutions and transposed convolutions, each followed by one ReLU or by nothing. Several inputs of
the same fixed point (ACT_FRAC_BITS) may be concatenated in front of any stack: concatenation is exact.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vcodec.networks import integer_gemm as gemm

ACT_FRAC_BITS = 8
ACT_MAX = float(2**22)
WEIGHT_BITS = 15
Z_CLAMP = float(2**14)
MAX_FAN_IN = 2**14
BIAS_LIMIT = 2.0**50
EXACT_LIMIT = 2.0**53
CONVS = (nn.Conv2d, nn.ConvTranspose2d)
# The arithmetic of IntegerStack: int8-digit GEMMs (integer_gemm.py) where they are available, exact (checked per
# layer and call) and worth it, float64 elsewhere. Both give the same integers; False keeps to float64 (the
# reference the tests compare with).
FAST_PATH = True
# Below these many multiply-adds per layer float64 is about as fast: the int8 path costs some 0.1 ms more per layer
# (measured on a 2-core AVX-512 EPYC, 1 and 2 threads: the crossover lies between about 1 and 10 M for convolutions,
# the higher the fewer output channels, and between about 1 and 3 M for 1x1 products at chosen positions).
FAST_MIN_MACS = 6_000_000
FAST_MIN_MACS_POINTS = 2_000_000
# Transposed convolutions left to float64 (no int8 path here) run as s*s stride-1 convolutions, their sub-pixel
# form, from this size on: the same sums, faster than conv_transpose2d's GEMM and col2im (h_s's 128 -> 192 one at
# 720p: 1.7x on one thread).
SUBPIXEL_MIN_MACS = 5_000_000


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return (x + 0.5).floor_()


_round_half_up = round_half_up  # the name earlier code used


def to_fixed(x: torch.Tensor) -> torch.Tensor:
    """A float tensor (a decoded latent) as integers with ACT_FRAC_BITS fractional bits, clamped to +-ACT_MAX:
    float64, exact, and the same on every machine for the same float32 input."""
    x = x.to(torch.float64, copy=True)  # a copy, so the in-place steps below never touch the caller's tensor
    return x.mul_(2.0**ACT_FRAC_BITS).add_(0.5).floor_().clamp_(-ACT_MAX, ACT_MAX)  # round_half_up, in place


def _fan_in(weight_shape, transposed: bool, stride: tuple[int, int], groups: int = 1) -> int:
    """Most products summed into one output: a transposed convolution of stride s sees ceil(k / s) taps per axis."""
    # weight: (C_out, C_in / groups, kh, kw) for a convolution, (C_in, C_out / groups, kh, kw) transposed.
    cin = weight_shape[0] // groups if transposed else weight_shape[1]
    kh, kw = weight_shape[2:]
    sh, sw = (max(1, s) for s in stride) if transposed else (1, 1)
    return cin * math.ceil(kh / sh) * math.ceil(kw / sw)


def fan_in(m: nn.Conv2d | nn.ConvTranspose2d) -> int:
    return _fan_in(m.weight.shape, isinstance(m, nn.ConvTranspose2d), m.stride, m.groups)


def _layers_of(stack: nn.Sequential) -> list[tuple[nn.Module, bool]]:
    """(convolution, followed by ReLU) for each layer; ValueError for anything an integer twin cannot reproduce."""
    mods = list(stack)
    out = []
    i = 0
    while i < len(mods):
        m = mods[i]
        if not isinstance(m, CONVS) or m.groups != 1 or m.bias is None or m.dilation not in ((1, 1), 1):
            raise ValueError("integer stacks support plain convolutions (with bias) and ReLU only")
        relu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
        if i + 1 < len(mods) and not relu and not isinstance(mods[i + 1], CONVS):
            raise ValueError("integer stacks support plain convolutions (with bias) and ReLU only")
        out.append((m, relu))
        i += 2 if relu else 1
    if not out:
        raise ValueError("an integer stack needs at least one convolution")
    return out


def check_stack_exportable(stack: nn.Sequential) -> None:
    """Raise ValueError when `stack` cannot get an exact integer twin (layer kinds, or a fan-in over MAX_FAN_IN).

    The trainers call this before a run starts, so no one trains for hours a model that cannot be exported."""
    for i, (m, _) in enumerate(_layers_of(stack)):
        if fan_in(m) > MAX_FAN_IN:
            raise ValueError(f"layer {i} has fan-in {fan_in(m)} > {MAX_FAN_IN}: its integer twin could lose exactness")


def check_exportable(h_s: nn.Sequential) -> None:
    """The intra h_s: convolutions separated by ReLU, the last one linear (it gives mu and log sigma)."""
    layers = _layers_of(h_s)
    if any(not relu for _, relu in layers[:-1]) or layers[-1][1]:
        raise ValueError("integer h_s supports convolutions separated by ReLU only")
    try:
        check_stack_exportable(h_s)
    except ValueError as e:
        raise ValueError(f"h_s {e}") from None


class IntegerStack:
    """The integer twin of a stack: built from the float nn.Sequential or from stored tensors.

    `in_exp` is the fixed point of its input (0 for z, ACT_FRAC_BITS for activations and latents). Layers with a
    ReLU give activations at ACT_FRAC_BITS; a last layer without one gives its raw accumulator, at 2^out_exp."""

    def __init__(self, layers: list[dict], in_exp: int):
        self.layers = layers  # kind, weight and bias (float64 integers), exp, stride, padding, output_padding, relu
        self.in_exp = in_exp
        self._fast: list | None = None  # the layers' int8-digit forms, built on first use

    @property
    def out_exp(self) -> int:
        """The scale of a last linear layer's accumulator (activations are at ACT_FRAC_BITS)."""
        last = self.layers[-1]
        in_exp = self.in_exp if len(self.layers) == 1 else ACT_FRAC_BITS
        return last["exp"] + in_exp

    @property
    def ends_in_relu(self) -> bool:
        return bool(self.layers[-1]["relu"])

    # -- export ----------------------------------------------------------------------------------------------
    @classmethod
    def from_float(cls, stack: nn.Sequential, in_exp: int = ACT_FRAC_BITS) -> "IntegerStack":
        check_stack_exportable(stack)
        layers = []
        exp_in = in_exp
        for i, (m, relu) in enumerate(_layers_of(stack)):
            w = m.weight.detach().double().cpu()
            b = m.bias.detach().double().cpu()
            peak = float(w.abs().max())
            exp = int(math.floor(math.log2((2**WEIGHT_BITS - 1) / peak))) if peak > 0 else 0
            w_int = torch.round(w * 2.0**exp)
            b_int = torch.round(b * 2.0 ** (exp + exp_in))
            if float(b_int.abs().max()) >= BIAS_LIMIT:
                raise ValueError(f"layer {i} bias too large for exact integer sums")
            transposed = isinstance(m, nn.ConvTranspose2d)
            layers.append(dict(
                kind="deconv" if transposed else "conv", weight=w_int, bias=b_int, exp=exp,
                stride=m.stride[0], padding=m.padding[0], output_padding=m.output_padding[0] if transposed else 0,
                relu=relu,
            ))
            exp_in = ACT_FRAC_BITS
        return cls(layers, in_exp)

    # -- storage ---------------------------------------------------------------------------------------------
    def tensors(self, prefix: str, relu_flags: bool = True) -> dict[str, torch.Tensor]:
        """int16 weights, int64 biases, int32 geometry (exp, stride, padding, output padding, transposed[, relu])."""
        out = {}
        for i, layer in enumerate(self.layers):
            out[f"{prefix}{i}.weight"] = layer["weight"].to(torch.int16)  # |w| < 2^15 by construction
            out[f"{prefix}{i}.bias"] = layer["bias"].to(torch.int64)
            geometry = [layer["exp"], layer["stride"], layer["padding"], layer["output_padding"],
                        int(layer["kind"] == "deconv")] + ([int(layer["relu"])] if relu_flags else [])
            out[f"{prefix}{i}.geometry"] = torch.tensor(geometry, dtype=torch.int32)
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str, in_exp: int) -> "IntegerStack":
        """Stored layers, checked against the exactness bounds (a hostile file too). Geometry without a ReLU flag
        (the intra h_s's) means ReLU after every layer but the last."""
        layers = []
        i = 0
        while f"{prefix}{i}.weight" in tensors:
            geometry = tensors[f"{prefix}{i}.geometry"].tolist()
            if len(geometry) not in (5, 6):
                raise ValueError(f"integer layer {prefix}{i} has a malformed geometry")
            exp, stride, padding, output_padding, transposed = geometry[:5]
            relu = geometry[5] if len(geometry) == 6 else None
            weight = tensors[f"{prefix}{i}.weight"].to(torch.float64)
            bias = tensors[f"{prefix}{i}.bias"]
            if weight.dim() != 4 or weight.abs().max() >= 2**WEIGHT_BITS or bias.abs().max() >= BIAS_LIMIT:
                raise ValueError("integer weights or biases exceed their bounds")
            if bias.shape != (weight.shape[1] if transposed else weight.shape[0],):
                raise ValueError(f"integer layer {prefix}{i}: bias does not match its weight")
            if not (1 <= stride <= 4 and 0 <= padding <= 8 and 0 <= output_padding < stride and -64 <= exp <= 64):
                raise ValueError(f"integer layer {prefix}{i}: implausible geometry {geometry}")
            if _fan_in(weight.shape, bool(transposed), (stride, stride)) > MAX_FAN_IN:
                raise ValueError(f"integer layer {prefix}{i} has a fan-in over {MAX_FAN_IN}")
            layers.append(dict(
                kind="deconv" if transposed else "conv", weight=weight, bias=bias.to(torch.float64), exp=exp,
                stride=stride, padding=padding, output_padding=output_padding, relu=relu,
            ))
            i += 1
        if not layers:
            raise ValueError(f"no integer layers {prefix}* in these weights")
        for k, layer in enumerate(layers):
            if layer["relu"] is None:
                layer["relu"] = k < len(layers) - 1
        for a, b in zip(layers, layers[1:]):  # channels must chain
            if _channels(a)[1] != _channels(b)[0]:
                raise ValueError(f"integer layers {prefix}*: channel counts do not chain")
        return cls(layers, in_exp)

    def input_channels(self) -> int:
        return _channels(self.layers[0])[0]

    def output_channels(self) -> int:
        return _channels(self.layers[-1])[1]

    def float_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight, bias) of each layer as the float network's values, exactly what the integers stand for."""
        out, exp_in = [], self.in_exp
        for layer in self.layers:
            out.append((layer["weight"] * 2.0 ** -layer["exp"], layer["bias"] * 2.0 ** -(layer["exp"] + exp_in)))
            exp_in = ACT_FRAC_BITS
        return out

    # -- inference -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, a: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """a: float64 integers (1, C, h, w) at 2^in_exp, |a| <= 2^22 -> activations, or the last accumulator;
        float64, or int32 with `dtype` int32 for a stack that ends in a ReLU (its activations, <= ACT_MAX).

        With FAST_PATH each layer runs on int8 digits where that is available, exact and worth it, and a large
        transposed convolution left to float64 runs phase by phase; else as the reference. The same integers."""
        if dtype == torch.int32 and not self.ends_in_relu:
            raise ValueError("only activations come as int32")
        fast = self._fast_layers() if a.dim() == 4 and a.shape[0] == 1 else None
        int8 = fast is not None and gemm.available()
        ints = None  # int32 (C, h, w) and its peak, while the layers run on int8 digits
        for i, layer in enumerate(self.layers):
            plan = fast[i] if fast else None
            shape = ints[0].shape[1:] if ints else a.shape[2:]
            if int8 and plan is not None and plan.worth_it(shape, FAST_MIN_MACS):
                ints = ints or _to_ints(a[0])
                out = plan.conv(*ints) if ints else None
                if out is not None:
                    ints, a = (out, None) if isinstance(out, tuple) else (None, out[None])
                    continue
            if ints:
                a, ints = ints[0][None].double(), None
            exp_in = self.in_exp if i == 0 else ACT_FRAC_BITS
            if plan is not None and plan.deconv and plan.worth_it(shape, SUBPIXEL_MIN_MACS):
                a = self._requantize(plan.deconv_float64(a), layer, exp_in)
            else:
                a = self._plain_layer(a, layer, exp_in)
        if ints:
            return ints[0][None] if dtype == torch.int32 else ints[0][None].double()
        return a.to(dtype)

    @torch.no_grad()
    def points(self, a: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """For a stack of 1x1 convolutions only: a (C, n) integers at chosen positions -> (C_out, n). The same
        integers as __call__ at those positions, for a fraction of the work (one checkerboard half).

        `a` is float64, or int32 (the same integers, |a| <= ACT_MAX: the int8 path reads int32 directly); the
        result is float64, or in `dtype` int32 where the last layer gives activations (`work_dtype()`)."""
        for layer in self.layers:
            if layer["kind"] != "conv" or layer["weight"].shape[2:] != (1, 1):
                raise ValueError("points() needs 1x1 convolutions")
        if dtype == torch.int32 and not self.ends_in_relu:
            raise ValueError("only activations come as int32")
        fast, n = (self._fast_layers() if gemm.available() else None), a.shape[-1]
        ints = None
        if a.dtype == torch.int32:  # no positions at all: the float64 path, as _to_ints decides for float64
            ints, a = (_peaked(a), None) if a.numel() else (None, a.double())
        for i, layer in enumerate(self.layers):
            plan = fast[i] if fast else None
            if plan is not None and plan.worth_it((1, n), FAST_MIN_MACS_POINTS):
                ints = ints or _to_ints(a)
                out = plan.points(*ints) if ints else None
                if out is not None:
                    ints, a = (out, None) if isinstance(out, tuple) else (None, out)
                    continue
            if ints:
                a, ints = ints[0].double(), None
            exp_in = self.in_exp if i == 0 else ACT_FRAC_BITS
            a = self._requantize(layer["weight"][:, :, 0, 0] @ a + layer["bias"][:, None], layer, exp_in)
        if ints:
            return ints[0] if dtype == torch.int32 else ints[0].double()
        return a.to(dtype)

    def _plain_layer(self, a: torch.Tensor, layer: dict, exp_in: int) -> torch.Tensor:
        """One layer in float64: the reference arithmetic."""
        if layer["kind"] == "deconv":
            acc = F.conv_transpose2d(a, layer["weight"], layer["bias"], layer["stride"], layer["padding"],
                                     layer["output_padding"])
        else:
            acc = F.conv2d(a, layer["weight"], layer["bias"], layer["stride"], layer["padding"])
        return self._requantize(acc, layer, exp_in)

    def _fast_layers(self) -> list | None:
        """Each layer's faster form (None where it has none), built on first use; None when FAST_PATH is off."""
        if not FAST_PATH:
            return None
        if self._fast is None:
            self._fast = [_FastLayer.build(layer, self.in_exp if i == 0 else ACT_FRAC_BITS, layer is self.layers[-1])
                          for i, layer in enumerate(self.layers)]
        return self._fast

    def _requantize(self, acc: torch.Tensor, layer: dict, exp_in: int) -> torch.Tensor:
        last = layer is self.layers[-1]
        if last and not layer["relu"]:
            return acc  # at 2^out_exp: the caller reads mu and the scale index from it
        shift = ACT_FRAC_BITS - (layer["exp"] + exp_in)
        if layer["relu"]:
            return round_half_up(acc.clamp_min(0) * 2.0**shift).clamp_max(ACT_MAX)
        return round_half_up(acc * 2.0**shift).clamp(-ACT_MAX, ACT_MAX)


def work_dtype() -> torch.dtype:
    """The dtype that activations between stacks are best kept in here: int32 where the int8 path reads them (half
    the bytes of float64, and no conversion), float64 elsewhere. Both hold the same integers (|a| <= ACT_MAX)."""
    return torch.int32 if FAST_PATH and gemm.available() else torch.float64


def _peaked(a: torch.Tensor) -> tuple[torch.Tensor, float]:
    """int32 integers (at least one) -> (them, peak |a|)."""
    lo, hi = torch.aminmax(a)
    return a, float(max(-int(lo), int(hi)))


def _to_ints(a: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """float64 integers -> (int32, peak |a|); None beyond ACT_MAX (or NaN): those stay on the float64 path."""
    if a.numel() == 0:
        return None
    lo, hi = torch.aminmax(a)
    peak = max(-float(lo), float(hi))
    return (a.to(torch.int32), peak) if peak <= ACT_MAX else None


class _FastLayer:
    """One layer's faster forms, each giving the float64 path's integers: convolutions over int8 digits
    (integer_gemm.py) and, for a transposed convolution, float64 convolutions phase by phase.

    A transposed convolution of stride s is s*s stride-1 convolutions, one per output phase r (output s*m + r sums
    w[s*t + r + p] * a[m - t] over t: the sub-pixel form, only the taps each phase uses), interleaved after. The
    requantization (scale 2^shift, rounding offset 1/2) is folded into the recombination of the digits."""

    @classmethod
    def build(cls, layer: dict, exp_in: int, last: bool) -> "_FastLayer | None":
        try:
            return cls(layer, exp_in, last)
        except ValueError:  # a geometry or scale this form does not cover: that layer stays on float64
            return None

    def __init__(self, layer: dict, exp_in: int, last: bool):
        w, s, p = layer["weight"], layer["stride"], layer["padding"]
        self.deconv = layer["kind"] == "deconv"
        if self.deconv:
            cin, cout, kh, kw = w.shape
            (y_lo, y_hi), (x_lo, x_hi) = _taps(kh, s, p), _taps(kw, s, p)
            self.kernel, self.pad, self.stride, self.phases = (y_hi - y_lo + 1, x_hi - x_lo + 1), (y_hi, x_hi), 1, s
            self.geometry = (s, p, layer["output_padding"], kh, kw)
            self.parts = []  # (weight digits, kernel window offset, window size, output phase)
            self.float_parts = []  # the same with float64 weights
            for ry in range(s):
                for rx in range(s):
                    # window position j uses tap s * (t_max - j) + r + p of the kernel
                    jy = [j for j in range(self.kernel[0]) if 0 <= s * (y_hi - j) + ry + p < kh]
                    jx = [j for j in range(self.kernel[1]) if 0 <= s * (x_hi - j) + rx + p < kw]
                    if not jy or not jx:
                        raise ValueError("an output phase without taps")
                    sub = w[:, :, [s * (y_hi - j) + ry + p for j in jy]][:, :, :, [s * (x_hi - j) + rx + p for j in jx]]
                    sub = sub.permute(1, 0, 2, 3).contiguous()  # (C_out, C_in, ty, tx): a convolution's weight
                    self.float_parts.append((sub, (jy[0], jx[0]), (len(jy), len(jx)), ry * s + rx))
                    self._add_part(sub.reshape(cout, -1), (jy[0], jx[0]), (len(jy), len(jx)), ry * s + rx)
        else:
            cout, cin, kh, kw = w.shape
            self.kernel, self.pad, self.stride, self.phases = (kh, kw), (p, p), s, 1
            self.parts = []
            self._add_part(w.reshape(cout, -1), (0, 0), (kh, kw), 0)
        self.cin, self.cout = cin, cout
        self.bias = bias = layer["bias"]
        shift = ACT_FRAC_BITS - (layer["exp"] + exp_in)
        if last and not layer["relu"]:
            self.mode, self.scale, half = "acc", 1.0, 0.0  # the raw accumulator
        else:
            if shift < -52:  # the offset 2^(-shift-1) would not add exactly: float64 path
                raise ValueError("requantization shift out of range")
            self.mode = "relu" if layer["relu"] else "signed"
            self.scale, half = 2.0**shift, (2.0 ** (-shift - 1) if shift < 0 else 0.0)
        # floor(acc * 2^shift + 1/2) = floor((acc + half) * 2^shift); after a ReLU's clamp at 0 the truncating
        # int32 cast is that floor.
        self.offset = ((bias + half) * self.scale)[:, None]
        self.offset_peak = float((bias + half).abs().max())

    def _add_part(self, matrix: torch.Tensor, at: tuple[int, int], size: tuple[int, int], phase: int) -> None:
        self.parts.append((gemm.WeightDigits(matrix), at, size, phase))

    def _out_shape(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Outputs per phase (oh, ow), and the layer's output size."""
        if self.deconv:
            st, p, op, k_h, k_w = self.geometry
            out_h, out_w = (h - 1) * st - 2 * p + k_h + op, (w - 1) * st - 2 * p + k_w + op
            return -(-out_h // st), -(-out_w // st), out_h, out_w
        (kh, kw), (ph, pw), s = self.kernel, self.pad, self.stride
        oh, ow = (h + 2 * ph - kh) // s + 1, (w + 2 * pw - kw) // s + 1
        return oh, ow, oh, ow

    def worth_it(self, shape, least: int) -> bool:
        """Enough work (at least `least` multiply-adds) for the int8 GEMMs to beat float64."""
        oh, ow = self._out_shape(*shape)[:2]
        return sum(d.rows * d.k for d, *_ in self.parts) * max(oh, 0) * max(ow, 0) >= least

    def deconv_float64(self, a: torch.Tensor) -> torch.Tensor:
        """A transposed convolution's accumulator (1, C_out, h', w') in float64, phase by phase: the products and
        sums of conv_transpose2d in another order, so the same integers (every partial sum stays below 2^53)."""
        _, c, h, w = a.shape
        oh, ow, out_h, out_w = self._out_shape(h, w)
        (kh, kw), (ph, pw), st = self.kernel, self.pad, self.phases
        hb, wb = max(ph + h, oh - 1 + kh), max(pw + w, ow - 1 + kw)
        x = F.pad(a, (pw, wb - w - pw, ph, hb - h - ph))
        out = torch.empty((1, self.cout, oh, st, ow, st), dtype=torch.float64)
        for weight, (y0, x0), (ty, tx), phase in self.float_parts:
            window = x[:, :, y0:y0 + oh + ty - 1, x0:x0 + ow + tx - 1]
            out[:, :, :, phase // st, :, phase % st] = F.conv2d(window, weight, self.bias)
        return out.view(1, self.cout, st * oh, st * ow)[:, :, :out_h, :out_w].contiguous()

    def _accumulate(self, peak: float, n: int, window) -> torch.Tensor | None:
        """The scaled accumulator (C_out, phases, n) float64, or None where not provably exact. window(digits) ->
        a function (at, size) -> the (K, digits * n) int8 columns of that kernel window."""
        digits = gemm.digits_for(peak)
        if digits is None:
            return None
        bounds = gemm.digit_bounds(digits, peak)
        for w, *_ in self.parts:
            if not (gemm.int32_exact(bounds, w) and gemm.combine_exact(bounds, w, self.offset_peak)):
                return None
        cols = window(digits)
        acc = torch.empty((self.cout, self.phases**2, n), dtype=torch.float64)
        for w, at, size, phase in self.parts:
            gemm.matmul_combine(w, cols(at, size), bounds, self.offset, self.scale, out=acc[:, phase])
        return acc

    def _finish(self, acc: torch.Tensor):
        """Requantized activations as (int32, peak), or the float64 accumulator of a last linear layer."""
        if self.mode == "acc":
            return acc
        if self.mode == "relu":
            ints = acc.clamp_(0.0, ACT_MAX).to(torch.int32)
            return ints, float(ints.max())
        ints = acc.floor_().clamp_(-ACT_MAX, ACT_MAX).to(torch.int32)
        lo, hi = torch.aminmax(ints)
        return ints, float(max(-int(lo), int(hi)))

    def points(self, ints: torch.Tensor, peak: float):
        """ints (C, n) -> (int32 (C_out, n), peak), or the float64 accumulator; None: use the float64 path."""
        c, n = ints.shape

        def window(digits):
            buf = torch.empty((c, digits, n), dtype=torch.int8)
            gemm.split(ints, digits, buf.unbind(1))
            return lambda at, size: buf.view(c, digits * n)

        acc = self._accumulate(peak, n, window)
        if acc is None:
            return None
        out = self._finish(acc.view(self.cout, n))
        return out

    def conv(self, ints: torch.Tensor, peak: float):
        """ints (C, h, w) -> (int32 (C_out, h', w'), peak), or the float64 accumulator (C_out, h', w')."""
        c, h, w = ints.shape
        (kh, kw), (ph, pw), s = self.kernel, self.pad, self.stride
        oh, ow, out_h, out_w = self._out_shape(h, w)
        if oh <= 0 or ow <= 0:
            return None
        hb, wb = max(ph + h, (oh - 1) * s + kh), max(pw + w, (ow - 1) * s + kw)

        def window(digits):
            buf = torch.zeros((c, digits, hb, wb), dtype=torch.int8)
            gemm.split(ints, digits, [buf[:, d, ph:ph + h, pw:pw + w] for d in range(digits)])
            sc, sd = buf.stride(0), buf.stride(1)

            def cols(at, size):
                view = buf.as_strided((c, *size, digits, oh, ow), (sc, wb, 1, sd, s * wb, s), at[0] * wb + at[1])
                return view.reshape(c * size[0] * size[1], digits * oh * ow)
            return cols

        acc = self._accumulate(peak, oh * ow, window)
        if acc is None:
            return None
        out = self._finish(acc)
        x = out[0] if isinstance(out, tuple) else out
        st = self.phases  # interleave the phases: (C, ry, rx, m, n) -> (C, m, ry, n, rx), then the output size
        x = x.view(self.cout, st, st, oh, ow).permute(0, 3, 1, 4, 2).reshape(self.cout, st * oh, st * ow)
        x = x[:, :out_h, :out_w]
        return (x, out[1]) if isinstance(out, tuple) else x.contiguous()


def _taps(k: int, s: int, p: int) -> tuple[int, int]:
    """The range of t over which a transposed convolution's output phases r (s*m + r) sum w[s*t + r + p] a[m - t]."""
    lo = min(-((r + p) // s) for r in range(s))  # ceil(-(r + p) / s)
    hi = max((k - 1 - r - p) // s for r in range(s))
    if hi < 0 or hi < lo:
        raise ValueError("transposed convolution padding beyond its kernel")
    return lo, hi


def _channels(layer: dict) -> tuple[int, int]:
    w = layer["weight"]
    return (w.shape[0], w.shape[1]) if layer["kind"] == "deconv" else (w.shape[1], w.shape[0])


def scale_index(acc_log_sigma: torch.Tensor, thresholds: torch.Tensor) -> np.ndarray:
    """Scale index of each accumulator value: how many integer thresholds are <= it (uint8)."""
    if acc_log_sigma.numel() >= 16384 and FAST_PATH:
        guess = _uniform_guess(thresholds)
        if guess is not None:
            return _scale_index_uniform(acc_log_sigma, thresholds, *guess).numpy()
    return torch.searchsorted(thresholds, acc_log_sigma.contiguous(), right=True).to(torch.uint8).numpy()


def _uniform_guess(thresholds: torch.Tensor) -> tuple[float, float] | None:
    """(c, 1/step) such that g = floor((x - c) / step) is the scale index of x or one less, for thresholds within
    `dev` of a uniform grid of `step` (the table's are: log-uniform scales, rounded up to integers); None else."""
    t = thresholds
    if t.dim() != 1 or not 2 <= len(t) <= 254:
        return None
    step = (float(t[-1]) - float(t[0])) / (len(t) - 1)
    if not step > 0:
        return None
    dev = float((t - (float(t[0]) + step * torch.arange(len(t), dtype=torch.float64))).abs().max())
    dev += 1e-6 * step  # room for the rounding of (x - c) / step near the grid, where |x - c| <= ~len(t) step
    if not 2 * dev < step:
        return None
    return float(t[0]) + dev - step, 1.0 / step


def _scale_index_uniform(x: torch.Tensor, thresholds: torch.Tensor, c: float, inv_step: float) -> torch.Tensor:
    """searchsorted(right=True) for near-uniform thresholds in fewer passes: a guess g with threshold g - 1 <= x
    (every threshold below g is <= x) and threshold g + 1 > x, so the index is g + (threshold g <= x).

    Why exact: with t_i within dev of t_0 + i step and g = floor((x - t_0 - dev) / step) + 1, every i < g has
    t_i <= t_0 + i step + dev <= x, and every i > g has t_i >= t_0 + i step - dev > x + step - 2 dev > x."""
    n = len(thresholds)
    g = torch.sub(x, c).mul_(inv_step).floor_().clamp_(0, n).to(torch.uint8)
    ext = torch.cat([thresholds, thresholds.new_full((1,), math.inf)])
    return g.add_(x >= torch.take(ext, g.long()))


def thresholds_at(log_thresholds: np.ndarray, out_exp: int) -> np.ndarray:
    """The log-sigma thresholds of the scale table as integers at an accumulator's scale."""
    return np.ceil(np.asarray(log_thresholds, dtype=np.float64) * 2.0**out_exp)


class IntegerHyperSynthesis:
    """The intra h_s: z_hat -> (mu, scale index). Built from a float h_s or from stored tensors."""

    def __init__(self, stack: IntegerStack, thresholds: np.ndarray):
        self.stack = stack
        self.thresholds = torch.as_tensor(thresholds, dtype=torch.float64)  # integers at the accumulator scale
        self.out_exp = stack.out_exp  # the last accumulator holds value * 2^out_exp

    @property
    def layers(self) -> list[dict]:
        return self.stack.layers

    # -- export ----------------------------------------------------------------------------------------------
    @classmethod
    def from_float(cls, h_s: nn.Sequential, log_thresholds: np.ndarray) -> "IntegerHyperSynthesis":
        check_exportable(h_s)
        stack = IntegerStack.from_float(h_s, in_exp=0)  # z is integer
        return cls(stack, thresholds_at(log_thresholds, stack.out_exp))

    # -- storage ---------------------------------------------------------------------------------------------
    def tensors(self, prefix: str = "int.h_s.") -> dict[str, torch.Tensor]:
        out = {f"{prefix}thresholds": self.thresholds.to(torch.int64)}
        out.update(self.stack.tensors(prefix, relu_flags=False))  # the layout of files since the first release
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "int.h_s.") -> "IntegerHyperSynthesis":
        if f"{prefix}0.weight" not in tensors:
            raise ValueError("no integer hyper-synthesis in these weights")
        stack = IntegerStack.from_tensors(tensors, prefix, in_exp=0)
        if stack.ends_in_relu or any(not layer["relu"] for layer in stack.layers[:-1]):
            raise ValueError("integer h_s must be convolutions separated by ReLU")
        return cls(stack, tensors[f"{prefix}thresholds"].to(torch.float64).numpy())

    def float_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Model files store h_s only in this integer form; the float h_s (training, evaluation) is rebuilt from it."""
        return self.stack.float_weights()

    # -- inference -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, z: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """z: integer array (C, h, w) -> mu (M, 4h, 4w) float32 tensor, scale index (M, 4h, 4w) uint8."""
        a = torch.from_numpy(np.asarray(z, dtype=np.float64)).clamp(-Z_CLAMP, Z_CLAMP)[None]
        acc = self.stack(a)[0]
        m = acc.shape[0] // 2
        mu = (acc[:m] * 2.0**-self.out_exp).float()
        return mu, scale_index(acc[m:], self.thresholds)
