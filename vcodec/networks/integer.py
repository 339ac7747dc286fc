"""Integer-exact twin of the hyper-synthesis h_s: z_hat -> (mu, scale index), bit-identical on any machine.

Why: the scale index decides how every symbol of y is parsed; a one-ulp float difference between encoder and
decoder (another GPU, thread count or BLAS) flips indices and turns the rest of the stream into noise.

How: weights become integers with one power-of-two scale per layer, activations integers with ACT_FRAC_BITS
fractional bits, clamped to [0, ACT_MAX]. Convolutions run in float64 on integers whose every product and partial
sum stays below 2^53, so any summation order (any BLAS, any thread count) gives the exact same integers.
Rescaling is an exact power-of-two division followed by floor(x + 1/2). The scale index is an integer
comparison of the last layer's accumulator with integer thresholds, so no exp/log runs on the decision path.

Bounds (checked at export): |z| <= Z_CLAMP = 2^14 and activations <= ACT_MAX = 2^22 (so every input is
<= 2^22), |weight| < 2^WEIGHT_BITS = 2^15, fan-in <= MAX_FAN_IN = 2^14, |bias| < BIAS_LIMIT = 2^50. Every product
is then < 2^(22 + 15) = 2^37 and every partial sum, bias included, < 2^(37 + 14) + 2^50 = 2^51 + 2^50 < 2^52:
below 2^53, so each is an exactly representable integer whatever the order of summation, with a factor of two
to spare (and floor(acc * 2^-k + 1/2) stays exact too). A fan-in of 2^14 covers h_s up to M = 1213 latent
channels (its widest layer has fan-in 9 * 3M/2); the standard N=128 / M=192 needs 2592.
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


def _round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def _fan_in(weight_shape, transposed: bool, stride: tuple[int, int], groups: int = 1) -> int:
    """Most products summed into one output: a transposed convolution of stride s sees ceil(k / s) taps per axis."""
    # weight: (C_out, C_in / groups, kh, kw) for a convolution, (C_in, C_out / groups, kh, kw) transposed.
    cin = weight_shape[0] // groups if transposed else weight_shape[1]
    kh, kw = weight_shape[2:]
    sh, sw = (max(1, s) for s in stride) if transposed else (1, 1)
    return cin * math.ceil(kh / sh) * math.ceil(kw / sw)


def fan_in(m: nn.Conv2d | nn.ConvTranspose2d) -> int:
    return _fan_in(m.weight.shape, isinstance(m, nn.ConvTranspose2d), m.stride, m.groups)


def check_exportable(h_s: nn.Sequential) -> None:
    """Raise ValueError when `h_s` cannot get an exact integer twin (wrong layer kinds or a fan-in over MAX_FAN_IN).

    The trainer calls this before a run starts, so no one trains for hours a model that cannot be exported."""
    mods = [m for m in h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    others = [m for m in h_s if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if any(not isinstance(m, nn.ReLU) for m in others) or len(others) != len(mods) - 1:
        raise ValueError("integer h_s supports convolutions separated by ReLU only")
    for i, m in enumerate(mods):
        if fan_in(m) > MAX_FAN_IN:
            raise ValueError(
                f"h_s layer {i} has fan-in {fan_in(m)} > {MAX_FAN_IN}: its integer twin could lose exactness"
            )


class IntegerHyperSynthesis:
    """Built from a float h_s (nn.Sequential of ConvTranspose2d/Conv2d and ReLU) or from stored tensors."""

    def __init__(self, layers: list[dict], thresholds: np.ndarray, out_exp: int):
        self.layers = layers  # each: kind, weight (float64 ints), bias (float64 ints), exp, stride, padding, output_padding
        self.thresholds = torch.as_tensor(thresholds, dtype=torch.float64)  # integers at the accumulator scale
        self.out_exp = out_exp  # the last accumulator holds value * 2^out_exp

    # -- export ----------------------------------------------------------------------------------------------
    @classmethod
    def from_float(cls, h_s: nn.Sequential, log_thresholds: np.ndarray) -> "IntegerHyperSynthesis":
        check_exportable(h_s)
        mods = [m for m in h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        layers = []
        in_exp = 0  # z is integer
        for i, m in enumerate(mods):
            w = m.weight.detach().double().cpu()
            b = m.bias.detach().double().cpu()
            exp = int(math.floor(math.log2((2**WEIGHT_BITS - 1) / float(w.abs().max()))))
            w_int = torch.round(w * 2.0**exp)
            b_int = torch.round(b * 2.0 ** (exp + in_exp))
            if float(b_int.abs().max()) >= BIAS_LIMIT:
                raise ValueError(f"layer {i} bias too large for exact integer sums")
            transposed = isinstance(m, nn.ConvTranspose2d)
            layers.append(dict(
                kind="deconv" if transposed else "conv", weight=w_int, bias=b_int, exp=exp,
                stride=m.stride[0], padding=m.padding[0], output_padding=m.output_padding[0] if transposed else 0,
            ))
            in_exp = ACT_FRAC_BITS
        out_exp = layers[-1]["exp"] + ACT_FRAC_BITS
        thresholds = np.ceil(np.asarray(log_thresholds, dtype=np.float64) * 2.0**out_exp)
        return cls(layers, thresholds, out_exp)

    # -- storage ---------------------------------------------------------------------------------------------
    def tensors(self, prefix: str = "int.h_s.") -> dict[str, torch.Tensor]:
        out = {f"{prefix}thresholds": self.thresholds.to(torch.int64)}
        for i, layer in enumerate(self.layers):
            out[f"{prefix}{i}.weight"] = layer["weight"].to(torch.int16)  # |w| < 2^15 by construction
            out[f"{prefix}{i}.bias"] = layer["bias"].to(torch.int64)
            geometry = [layer["exp"], layer["stride"], layer["padding"], layer["output_padding"], int(layer["kind"] == "deconv")]
            out[f"{prefix}{i}.geometry"] = torch.tensor(geometry, dtype=torch.int32)
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "int.h_s.") -> "IntegerHyperSynthesis":
        layers = []
        i = 0
        while f"{prefix}{i}.weight" in tensors:
            exp, stride, padding, output_padding, transposed = tensors[f"{prefix}{i}.geometry"].tolist()
            weight = tensors[f"{prefix}{i}.weight"].to(torch.float64)
            bias = tensors[f"{prefix}{i}.bias"]
            if weight.dim() != 4 or weight.abs().max() >= 2**WEIGHT_BITS or bias.abs().max() >= BIAS_LIMIT:
                raise ValueError("integer weights or biases exceed their bounds")
            if _fan_in(weight.shape, bool(transposed), (stride, stride)) > MAX_FAN_IN:  # a hostile file too
                raise ValueError(f"integer h_s layer {i} has a fan-in over {MAX_FAN_IN}")
            layers.append(dict(
                kind="deconv" if transposed else "conv", weight=weight,
                bias=bias.to(torch.float64), exp=exp, stride=stride, padding=padding,
                output_padding=output_padding,
            ))
            i += 1
        if not layers:
            raise ValueError("no integer hyper-synthesis in these weights")
        out_exp = layers[-1]["exp"] + ACT_FRAC_BITS
        return cls(layers, tensors[f"{prefix}thresholds"].to(torch.float64).numpy(), out_exp)

    def float_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight, bias) of each layer as the float network's values, exactly what the integers stand for. Model
        files store h_s only in this integer form; the float h_s (training, evaluation) is rebuilt from it."""
        out, in_exp = [], 0
        for layer in self.layers:
            out.append((layer["weight"] * 2.0 ** -layer["exp"], layer["bias"] * 2.0 ** -(layer["exp"] + in_exp)))
            in_exp = ACT_FRAC_BITS
        return out

    # -- inference -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, z: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """z: integer array (C, h, w) -> mu (M, 4h, 4w) float32 tensor, scale index (M, 4h, 4w) uint8."""
        a = torch.from_numpy(np.asarray(z, dtype=np.float64)).clamp(-Z_CLAMP, Z_CLAMP)[None]
        in_exp = 0
        for i, layer in enumerate(self.layers):
            if layer["kind"] == "deconv":
                acc = F.conv_transpose2d(a, layer["weight"], layer["bias"], layer["stride"], layer["padding"], layer["output_padding"])
            else:
                acc = F.conv2d(a, layer["weight"], layer["bias"], layer["stride"], layer["padding"])
            if i == len(self.layers) - 1:
                break
            shift = ACT_FRAC_BITS - (layer["exp"] + in_exp)
            a = _round_half_up(acc.clamp_min(0) * 2.0**shift).clamp_max(ACT_MAX)
            in_exp = ACT_FRAC_BITS
        acc = acc[0]
        m = acc.shape[0] // 2
        mu = (acc[:m] * 2.0**-self.out_exp).float()
        index = torch.searchsorted(self.thresholds, acc[m:].contiguous(), right=True)
        return mu, index.to(torch.uint8).numpy()
