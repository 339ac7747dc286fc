"""Integer-exact twin of the hyper-synthesis h_s: z_hat -> (mu, scale index), bit-identical on any machine.

Why: the scale index decides how every symbol of y is parsed; a one-ulp float difference between encoder and
decoder (another GPU, thread count or BLAS) flips indices and turns the rest of the stream into noise.

How: weights become integers with one power-of-two scale per layer, activations integers with ACT_FRAC_BITS
fractional bits, clamped to [0, ACT_MAX]. Convolutions run in float64 on integers whose every product and partial
sum stays below 2^53, so any summation order (any BLAS, any thread count) gives the exact same integers.
Rescaling is an exact power-of-two division followed by floor(x + 1/2). The scale index is an integer
comparison of the last layer's accumulator with integer thresholds, so no exp/log runs on the decision path.

Bounds (checked at export): |z| <= Z_CLAMP, activations <= ACT_MAX = 2^22, |weight| < 2^WEIGHT_BITS = 2^15,
fan-in <= 2^11 -> every partial sum < 2^(22 + 15 + 11) = 2^48 (plus the bias).
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
MAX_FAN_IN = 2**11
EXACT_LIMIT = 2.0**53


def _round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


class IntegerHyperSynthesis:
    """Built from a float h_s (nn.Sequential of ConvTranspose2d/Conv2d and ReLU) or from stored tensors."""

    def __init__(self, layers: list[dict], thresholds: np.ndarray, out_exp: int):
        self.layers = layers  # each: kind, weight (float64 ints), bias (float64 ints), exp, stride, padding, output_padding
        self.thresholds = torch.as_tensor(thresholds, dtype=torch.float64)  # integers at the accumulator scale
        self.out_exp = out_exp  # the last accumulator holds value * 2^out_exp

    # -- export ----------------------------------------------------------------------------------------------
    @classmethod
    def from_float(cls, h_s: nn.Sequential, log_thresholds: np.ndarray) -> "IntegerHyperSynthesis":
        mods = [m for m in h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        kinds = [m for m in h_s if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        if any(not isinstance(m, nn.ReLU) for m in kinds) or len(kinds) != len(mods) - 1:
            raise ValueError("integer h_s supports convolutions separated by ReLU only")
        layers = []
        in_exp = 0  # z is integer
        for i, m in enumerate(mods):
            w = m.weight.detach().double().cpu()
            b = m.bias.detach().double().cpu()
            exp = int(math.floor(math.log2((2**WEIGHT_BITS - 1) / float(w.abs().max()))))
            w_int = torch.round(w * 2.0**exp)
            b_int = torch.round(b * 2.0 ** (exp + in_exp))
            if float(b_int.abs().max()) >= 2.0**50:
                raise ValueError(f"layer {i} bias too large for exact integer sums")
            transposed = isinstance(m, nn.ConvTranspose2d)
            cin = w.shape[0] if transposed else w.shape[1]
            fan_in = cin * math.ceil(w.shape[2] / m.stride[0]) * math.ceil(w.shape[3] / m.stride[1])
            if fan_in > MAX_FAN_IN:
                raise ValueError(f"layer {i} has fan-in {fan_in} > {MAX_FAN_IN}: integer sums could lose exactness")
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
            if weight.abs().max() >= 2**WEIGHT_BITS:
                raise ValueError("integer weights exceed their bound")
            layers.append(dict(
                kind="deconv" if transposed else "conv", weight=weight,
                bias=tensors[f"{prefix}{i}.bias"].to(torch.float64), exp=exp, stride=stride, padding=padding,
                output_padding=output_padding,
            ))
            i += 1
        if not layers:
            raise ValueError("no integer hyper-synthesis in these weights")
        out_exp = layers[-1]["exp"] + ACT_FRAC_BITS
        return cls(layers, tensors[f"{prefix}thresholds"].to(torch.float64).numpy(), out_exp)

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
