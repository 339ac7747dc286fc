"""g_a and g_s at inference, laid out and rounded as this device runs them fastest within their accuracy budget.

The pixel path only moves pixels, never the parse (docs/ARCHITECTURE.md), so it may trade the last bits of its
arithmetic for speed where that costs no visible quality. Two precisions:

- `fp32`: every layer in float32, channels-last (oneDNN's fast layout: about 2x NCHW on this CPU).
- `mixed` (the default where the device has native bf16: AVX512-BF16 or AMX on the CPU, bf16 on CUDA): the
  strided (de)convolutions inside each transform in bf16 with float32 accumulation, and the GDNs' normalisation
  sums (a 1x1 convolution of |x|) in bf16 with the product or quotient by x in float32. The layers that touch
  pixels (g_a's first, g_s's last) stay float32: that is where bf16 costs PSNR (0.03 dB at q = 7 for g_a's first
  layer alone). benchmarks/pixel_precision.py measures the plan; its numbers are in benchmarks/README.md.

Inputs and outputs are float32 NCHW-shaped tensors (channels-last in memory), so callers see no difference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vcodec.networks.layers import GDN, lower_bound

PRECISIONS = ("auto", "mixed", "fp32")
CHANNELS_LAST = torch.channels_last


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 convolutions run in hardware here (emulated bf16 would be slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` -> `mixed` where bf16 is native, else `fp32`; `mixed` where it is not is refused."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision '{name}' (one of {', '.join(PRECISIONS)})")
    if name == "auto":
        return "mixed" if native_bf16(device) else "fp32"
    if name == "mixed" and not native_bf16(device):
        raise ValueError(f"--precision mixed needs native bf16, which this {device.type} lacks (use fp32)")
    return name


class _Conv:
    """One (transposed) convolution with its weights stored once in the precision it runs in."""

    def __init__(self, layer: nn.Conv2d | nn.ConvTranspose2d, dtype: torch.dtype):
        self.transposed = isinstance(layer, nn.ConvTranspose2d)
        self.dtype = dtype
        self.weight = layer.weight.detach().to(dtype).contiguous(memory_format=CHANNELS_LAST)
        self.bias = None if layer.bias is None else layer.bias.detach().to(dtype)
        self.stride, self.padding = layer.stride, layer.padding
        self.output_padding = layer.output_padding if self.transposed else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.transposed:
            out = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)
        else:
            out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return out.float()


class _Gdn:
    """(I)GDN x / or * (beta + gamma |x|), its sums in `dtype` and the rest in float32."""

    def __init__(self, layer: GDN, dtype: torch.dtype):
        c = layer.gamma.shape[0]
        self.inverse = layer.inverse
        self.dtype = dtype
        self.gamma = lower_bound(layer.gamma, 0.0).detach().view(c, c, 1, 1).to(dtype)
        self.beta = lower_bound(layer.beta, layer.beta_min).detach().view(1, c, 1, 1).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        norm = F.conv2d(x.abs().to(self.dtype), self.gamma).float().add_(self.beta)
        return norm.mul_(x) if self.inverse else x / norm


class FastTransform:
    """An analysis or synthesis transform (alternating (de)convolutions and GDNs) under a precision plan; `inner`
    is the dtype of every layer but the first and last convolution, which stay float32."""

    def __init__(self, transform: nn.Sequential, inner: torch.dtype, pixels_first: bool):
        layers = list(transform)
        convs = [k for k, layer in enumerate(layers) if not isinstance(layer, GDN)]
        outer = convs[0] if pixels_first else convs[-1]  # the layer that touches pixels
        self.steps = []
        for k, layer in enumerate(layers):
            if isinstance(layer, GDN):
                self.steps.append(_Gdn(layer, inner))
            elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                self.steps.append(_Conv(layer, torch.float32 if k == outer else inner))
            else:
                raise TypeError(f"FastTransform does not know {type(layer).__name__}")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().contiguous(memory_format=CHANNELS_LAST)
        for step in self.steps:
            x = step(x)
        return x


class PixelPath:
    """g_a (pictures -> latents at gain 1) and g_s (latents / gain -> pictures) of an intra model, at inference."""

    def __init__(self, model, device: torch.device, precision: str = "auto"):
        self.precision = resolve_precision(precision, device)
        inner = torch.bfloat16 if self.precision == "mixed" else torch.float32
        self.g_a = FastTransform(model.g_a, inner, pixels_first=True)
        self.g_s = FastTransform(model.g_s, inner, pixels_first=False)
