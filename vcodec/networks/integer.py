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

ACT_FRAC_BITS = 8
ACT_MAX = float(2**22)
WEIGHT_BITS = 15
Z_CLAMP = float(2**14)
MAX_FAN_IN = 2**14
BIAS_LIMIT = 2.0**50
EXACT_LIMIT = 2.0**53
CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


_round_half_up = round_half_up  # the name earlier code used


def to_fixed(x: torch.Tensor) -> torch.Tensor:
    """A float tensor (a decoded latent) as integers with ACT_FRAC_BITS fractional bits, clamped to +-ACT_MAX:
    float64, exact, and the same on every machine for the same float32 input."""
    return round_half_up(x.double() * 2.0**ACT_FRAC_BITS).clamp_(-ACT_MAX, ACT_MAX)


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
    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        """a: float64 integers (1, C, h, w) at 2^in_exp, |a| <= 2^22 -> activations, or the last accumulator."""
        exp_in = self.in_exp
        for layer in self.layers:
            if layer["kind"] == "deconv":
                acc = F.conv_transpose2d(a, layer["weight"], layer["bias"], layer["stride"], layer["padding"],
                                         layer["output_padding"])
            else:
                acc = F.conv2d(a, layer["weight"], layer["bias"], layer["stride"], layer["padding"])
            a = self._requantize(acc, layer, exp_in)
            exp_in = ACT_FRAC_BITS
        return a

    @torch.no_grad()
    def points(self, a: torch.Tensor) -> torch.Tensor:
        """For a stack of 1x1 convolutions only: a (C, n) float64 integers at chosen positions -> (C_out, n).
        The same integers as __call__ at those positions, for a fraction of the work (one checkerboard half)."""
        exp_in = self.in_exp
        for layer in self.layers:
            if layer["kind"] != "conv" or layer["weight"].shape[2:] != (1, 1):
                raise ValueError("points() needs 1x1 convolutions")
            acc = layer["weight"][:, :, 0, 0] @ a + layer["bias"][:, None]
            a = self._requantize(acc, layer, exp_in)
            exp_in = ACT_FRAC_BITS
        return a

    def _requantize(self, acc: torch.Tensor, layer: dict, exp_in: int) -> torch.Tensor:
        last = layer is self.layers[-1]
        if last and not layer["relu"]:
            return acc  # at 2^out_exp: the caller reads mu and the scale index from it
        shift = ACT_FRAC_BITS - (layer["exp"] + exp_in)
        if layer["relu"]:
            return round_half_up(acc.clamp_min(0) * 2.0**shift).clamp_max(ACT_MAX)
        return round_half_up(acc * 2.0**shift).clamp(-ACT_MAX, ACT_MAX)


def _channels(layer: dict) -> tuple[int, int]:
    w = layer["weight"]
    return (w.shape[0], w.shape[1]) if layer["kind"] == "deconv" else (w.shape[1], w.shape[0])


def scale_index(acc_log_sigma: torch.Tensor, thresholds: torch.Tensor) -> np.ndarray:
    """Scale index of each accumulator value: how many integer thresholds are <= it (uint8)."""
    return torch.searchsorted(thresholds, acc_log_sigma.contiguous(), right=True).to(torch.uint8).numpy()


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
