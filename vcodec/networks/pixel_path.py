"""g_a and g_s at inference, laid out and rounded as this device runs them fastest within their accuracy budget.

The pixel path only moves pixels, never the parse (docs/ARCHITECTURE.md), so it may trade the last bits of its
arithmetic for speed where that costs no visible quality. Every plan runs channels-last (oneDNN's fast layout),
computes g_s's pixel layer in its sub-pixel form, and keeps the layers that touch pixels (g_a's first, g_s's last)
in float32. In `mixed` form a transform runs its inner (de)convolutions in bf16 with float32 accumulation, and its
GDNs' normalisation sums (a 1x1 convolution of |x|) in bf16, the rest in float32. The plans:

- `fp32`: both transforms in float32.
- `auto` (the default): g_a mixed where bf16 is native (AVX512-BF16 or AMX on the CPU, bf16 on CUDA), g_s float32,
  or, on a CPU with AMX, g_s's inner convolutions as split bf16 products (`_SplitConv`, layers of SPLIT_MIN_MACS
  multiply-adds or more, on up to SPLIT_MAX_THREADS threads). An encoder's g_a only picks the latent that is then
  quantized, so its bf16 noise costs nothing measurable; g_s draws the pictures, and its bf16 noise costs up to 4 dB
  on near-black frames at 56 dB (benchmarks/README.md, "Pixel-path precision"). Of that noise, the rounding of a
  convolution's inputs and weights is what costs; the rounding of its output alone costs 0.006-0.008 dB on average
  at q 4-7 (benchmarks/gs_rounding.py), and the split form rounds nothing else, in 23-30 instead of 30-39 ms for
  720p's largest layer where AMX runs bf16 (on AVX512-BF16 alone its three times the products would be slower than
  float32).
- `mixed`: both transforms mixed: faster decoding for that cost.

benchmarks/pixel_precision.py measures the plans. Inputs and outputs are float32 tensors shaped as NCHW
(channels-last in memory), so callers see no difference.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.nn import functional as F

from vcodec.networks.layers import GDN, lower_bound

# precision -> the inner dtype of (g_a, g_s); `auto` and `mixed` only where bf16 is native (resolve_precision).
PLANS = {
    "auto": (torch.bfloat16, torch.float32),
    "mixed": (torch.bfloat16, torch.bfloat16),
    "fp32": (torch.float32, torch.float32),
}
PRECISIONS = tuple(PLANS)
CHANNELS_LAST = torch.channels_last
# The inner arithmetic of `auto`'s g_s on a CPU with AMX, in place of a dtype: split bf16 products (_SplitConv)
SPLIT_BF16 = "split-bf16"
# Below this many multiply-adds a layer's split products cost about as much as float32 or more (the splitting and
# the float32 output around them). On a 2-core AMX Xeon, 2 threads (1 thread), benchmarks/gs_rounding.py --speed
# --threads 1,2: 1.30-1.52x (0.96-0.98x) at 25-50 M, 0.86-0.92x (0.76-0.79x) at 94-188 M, 0.68-0.69x at 737 M and
# 1.5 G, 0.89x (0.84x) at 5.9 G (720p's layers: 737 M, 1.5 G, 5.9 G), 0.91x (0.96x) at 13 G (1080p's largest).
# Small layers also keep their split weights unmade.
SPLIT_MIN_MACS = 200_000_000
# And with at most this many torch threads: the splitting and the float32 output stream through memory that more
# threads share, so the gain may shrink with more of them (measured on 1 and 2, above); past 4, unmeasured,
# float32 stays.
SPLIT_MAX_THREADS = 4


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 convolutions run in hardware here (emulated bf16 would be slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # torch's own probes (private: absent ones count as no)
        probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return any(bool(probe()) for probe in probes if probe is not None)
    return False


def amx_bf16(device: torch.device) -> bool:
    """Whether bf16 convolutions run on AMX tiles here: 6-7x float32's speed on 720p's largest g_s layer
    (benchmarks/gs_rounding.py --speed), where AVX512-BF16 alone gives at most 2x. oneDNN must be on and not held
    below AMX (ONEDNN_MAX_CPU_ISA): its fallbacks need not accumulate a bf16 convolution in float32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private: an absent probe counts as no
    if device.type != "cpu" or probe is None or not probe():
        return False
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    return "AMX" in isa or isa in ("ALL", "DEFAULT")


def resolve_precision(name: str, device: torch.device) -> str:
    """The plan a precision name gives on this device: `auto` is `fp32` where bf16 is not native, and `mixed` is
    refused there."""
    if name not in PLANS:
        raise ValueError(f"unknown precision '{name}' (one of {', '.join(PRECISIONS)})")
    if name == "auto" and not native_bf16(device):
        return "fp32"
    if name == "mixed" and not native_bf16(device):
        raise ValueError(f"--precision mixed needs native bf16, which this {device.type} lacks (use fp32)")
    return name


def _out_size(x: torch.Tensor, conv) -> tuple[int, int]:
    """The spatial size of a (non-transposed) convolution's output for input x."""
    k = conv.weight.shape[-2:]
    return tuple((x.shape[-2 + i] + 2 * conv.padding[i] - k[i]) // conv.stride[i] + 1 for i in range(2))


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
        if self.dtype != torch.float32 and not self.transposed and min(_out_size(x, self)) <= 1:
            # oneDNN's bf16 kernel on an AMX Xeon returned values up to 1e36 for an output one pixel wide (g_a's
            # last layer, 10x80 and 13x94 pictures, 2026-12-02); such outputs are tiny, so float32 costs nothing
            return F.conv2d(x.float(), self.weight.float(), None if self.bias is None else self.bias.float(),
                            self.stride, self.padding)
        return self.run(x.to(self.dtype), self.weight, self.bias).float()

    def run(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This layer's convolution with other weights of the same geometry (_SplitConv's stacked ones)."""
        if self.transposed:
            return F.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding)
        return F.conv2d(x, weight, bias, self.stride, self.padding)


class _SubpixelConv:
    """A transposed convolution whose output is `stride` times its input (as layers.deconv makes them), computed as
    the same sum rearranged: a stride-1 convolution to stride^2 times the channels, then a pixel shuffle. For the
    64 -> 3 pixel layer of g_s it runs in half the time on this CPU (oneDNN is poor at 3 output channels); for
    64 -> 64 layers the transposed form is faster, so only the pixel layer takes this path."""

    def __init__(self, layer: nn.ConvTranspose2d):
        (s, _), (k, _), (p, _) = layer.stride, layer.kernel_size, layer.padding
        if layer.output_padding[0] != s - 1 or k != 2 * p + 1 or layer.groups != 1:
            raise ValueError("a sub-pixel form needs an output exactly `stride` times the input")
        w = layer.weight.detach().double()  # (C_in, C_out, k, k)
        c_in, c_out = w.shape[:2]
        # Output pixel s*I + a takes input I + d through tap a + p - s*d, for the d that keep the tap in the kernel.
        reach = max(abs(d) for a in range(s) for d in range(-k, k + 1) if 0 <= a + p - s * d < k)
        size = 2 * reach + 1
        sub = torch.zeros(c_out * s * s, c_in, size, size, dtype=torch.float64, device=w.device)
        for a in range(s):
            for b in range(s):
                rows = [c * s * s + a * s + b for c in range(c_out)]
                for di in range(-reach, reach + 1):
                    for dj in range(-reach, reach + 1):
                        ty, tx = a + p - s * di, b + p - s * dj
                        if 0 <= ty < k and 0 <= tx < k:
                            sub[rows, :, di + reach, dj + reach] = w[:, :, ty, tx].t()
        self.weight = sub.float().contiguous(memory_format=CHANNELS_LAST)
        self.bias = None if layer.bias is None else layer.bias.detach().float().repeat_interleave(s * s)
        self.stride, self.reach = s, reach

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.phases(x), self.stride)

    def phases(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution before its pixel shuffle: (1, C_out * s * s, h, w), channels-last in memory."""
        return F.conv2d(x.float(), self.weight, self.bias, 1, self.reach)

    def to_uint8(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The layer's picture, its top-left height x width, as uint8 (height, width, C_out): the bytes of
        picture_bytes(self(x)[0, :, :height, :width]), from two passes over the phase tensor and one strided copy
        that is the pixel shuffle, the crop, the move of the channels last and the cast at once."""
        raw = self.phases(x)
        s, (_, cs2, h, w) = self.stride, raw.shape
        if raw.device.type != "cpu" or raw.stride(1) != 1 or height > s * h or width > s * w:
            return picture_bytes(F.pixel_shuffle(raw, s)[0, :, :height, :width]).contiguous()
        # x 255 then clamped to [0, 255] is clamped to [0, 1] then x 255 (the same products); a NaN passes both and
        # becomes 0, as picture_bytes's first step makes it.
        v = raw.mul_(255).clamp_(0, 255).nan_to_num_(0.0).round_()
        c = cs2 // (s * s)  # channel k = colour * s * s + row phase * s + column phase (pixel_shuffle's order)
        v = v.permute(0, 2, 3, 1).reshape(h, w, c, s, s).permute(0, 3, 1, 4, 2).reshape(h * s, w * s, c)
        return torch.empty((height, width, c), dtype=torch.uint8).copy_(v[:height, :width])


class _SplitConv:
    """A (transposed) convolution from bf16 products, as accurate as float32 but for one rounding of its output to
    bf16. x = hi + lo, hi its upper 16 bits (exactly a bf16) and lo the rest (rounded to bf16: 2^-8 of lo), and
    W = W_hi + W_lo likewise, so x W = [hi, lo, hi] . [W_hi, W_hi, W_lo] up to lo W_lo (~2^-15 of |x||W|): one bf16
    convolution over three times the input channels, accumulated in float32 (oneDNN's bf16 kernels round only the
    result). The bias goes in as b_hi there and b_lo after, in float32."""

    def __init__(self, layer: nn.Conv2d | nn.ConvTranspose2d):
        self.plain = _Conv(layer, torch.float32)  # the layer as float32 runs it, and where the split does not pay
        self.macs_per_position = self.plain.weight.numel()  # inputs x outputs x taps
        self._split: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # made on the first large input

    def split_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[W_hi, W_hi, W_lo] along the input channels (bf16), b_hi (bf16) and b_lo (float32, broadcastable)."""
        if self._split is None:
            plain = self.plain
            w = plain.weight
            b = plain.bias if plain.bias is not None else w.new_zeros(w.shape[1] if plain.transposed else w.shape[0])
            w_hi = w.to(torch.bfloat16)
            w_lo = (w - w_hi.float()).to(torch.bfloat16)
            stacked = torch.cat([w_hi, w_hi, w_lo], dim=0 if plain.transposed else 1)  # the input channels' axis
            b_hi = b.to(torch.bfloat16)
            self._split = stacked.contiguous(memory_format=CHANNELS_LAST), b_hi, (b - b_hi.float()).view(1, -1, 1, 1)
        return self._split

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        n, c, h, w = x.shape
        plain = self.plain
        # multiply-adds: each input position of a transposed convolution, each output position of a convolution
        positions = h * w if plain.transposed else math.prod(_out_size(x, plain))
        thin = not plain.transposed and min(_out_size(x, plain)) <= 1
        small = n * positions * self.macs_per_position < SPLIT_MIN_MACS
        if x.requires_grad or thin or small or torch.get_num_threads() > SPLIT_MAX_THREADS:
            # gradients do not pass the bit split; one-pixel-wide outputs stay float32 as in _Conv; small layers,
            # and many threads, are faster (or not known to be slower) in float32
            return plain(x)
        weight, bias_hi, bias_lo = self.split_weights()
        parts = torch.empty((n, 3 * c, h, w), dtype=torch.bfloat16, memory_format=CHANNELS_LAST)
        hi = x.view(torch.int32).bitwise_and(-65536).view(torch.float32)  # the upper 16 bits: exact in bf16
        parts[:, :c].copy_(hi)
        parts[:, c:2 * c].copy_(x - hi)
        parts[:, 2 * c:].copy_(parts[:, :c])
        return plain.run(parts, weight, bias_hi).float().add_(bias_lo)


def picture_bytes(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) float in [0, 1] -> uint8 (H, W, C) on the CPU (a permuted view): NaN -> 0, clamped, x 255, rounded
    half to even."""
    return torch.nan_to_num(x.float(), 0.0).clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu()


class _Gdn:
    """(I)GDN: x / or * (beta + gamma |x|), the sum gamma |x| (a 1x1 convolution) in `dtype` and the rest in float32
    (beta too: rounding it to bf16 would move every norm)."""

    def __init__(self, layer: GDN, dtype: torch.dtype):
        c = layer.gamma.shape[0]
        self.inverse = layer.inverse
        self.dtype = dtype
        self.gamma = lower_bound(layer.gamma, 0.0).detach().view(c, c, 1, 1).to(dtype)
        self.beta = lower_bound(layer.beta, layer.beta_min).detach().view(1, c, 1, 1).float()
        self.beta_flat = self.beta.flatten()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32 == x.dtype:  # beta as the convolution's bias: one pass less over x's size
            norm = F.conv2d(x.abs(), self.gamma, self.beta_flat)
        else:
            magnitude = x.to(self.dtype).abs_()  # the cast first: half the bytes
            norm = F.conv2d(magnitude, self.gamma).float().add_(self.beta)
        return norm.mul_(x) if self.inverse else x / norm


class FastTransform:
    """An analysis or synthesis transform (alternating (de)convolutions and GDNs) under a precision plan; `inner`
    is the dtype of every layer but the first and last convolution, which stay float32, or SPLIT_BF16: the inner
    convolutions as split bf16 products, the GDNs in float32."""

    def __init__(self, transform: nn.Sequential, inner: torch.dtype | str, pixels_first: bool):
        layers = list(transform)
        convs = [k for k, layer in enumerate(layers) if not isinstance(layer, GDN)]
        outer = convs[0] if pixels_first else convs[-1]  # the layer that touches pixels
        split = inner == SPLIT_BF16
        self.steps = []
        for k, layer in enumerate(layers):
            if isinstance(layer, GDN):
                self.steps.append(_Gdn(layer, torch.float32 if split else inner))
            elif isinstance(layer, nn.ConvTranspose2d) and k == outer:
                self.steps.append(_SubpixelConv(layer))
            elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and split and k != outer:
                self.steps.append(_SplitConv(layer))
            elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                self.steps.append(_Conv(layer, torch.float32 if k == outer or split else inner))
            else:
                raise TypeError(f"FastTransform does not know {type(layer).__name__}")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.differentiable(x)

    def differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """The same, with gradients to x where they are enabled (the encoder's latent search; weights are fixed)."""
        x = x.float().contiguous(memory_format=CHANNELS_LAST)
        for step in self.steps:
            x = step(x)
        return x

    @torch.no_grad()
    def picture(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """A synthesis transform's picture as uint8 (height, width, 3) on the CPU: the bytes of
        picture_bytes(self(x)[0, :, :height, :width]), with the pixel layer's shuffle, the rounding, the crop and
        the layout change fused (about 6 ms less per 720p frame on a 2-core CPU)."""
        last = self.steps[-1]
        if not isinstance(last, _SubpixelConv) or x.shape[0] != 1:
            return picture_bytes(self(x)[0, :, :height, :width]).contiguous()
        x = x.float().contiguous(memory_format=CHANNELS_LAST)
        for step in self.steps[:-1]:
            x = step(x)
        return last.to_uint8(x, height, width)


class PixelPath:
    """g_a (pictures -> latents at gain 1) and g_s (latents / gain -> pictures) of an intra model, at inference."""

    def __init__(self, model, device: torch.device, precision: str = "auto"):
        self.precision = resolve_precision(precision, device)
        analysis, synthesis = PLANS[self.precision]
        if self.precision == "auto" and amx_bf16(device):
            synthesis = SPLIT_BF16
        self.g_a = FastTransform(model.g_a, analysis, pixels_first=True)
        self.g_s = FastTransform(model.g_s, synthesis, pixels_first=False)
