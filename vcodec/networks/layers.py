"""Building blocks shared by the networks: strided convolutions, (inverse) GDN and a bounded parameter.

Only float layers live here. They run on the pixel path (g_a, g_s), where a last-bit difference between devices
changes pixels but never the parse of a stream.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

HYPER_STRIDE = 4  # a hyper-latent covers 4x4 latents (64x64 pixels)


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it would push x back above the bound.

    A plain clamp would freeze a parameter that once crossed the bound; this keeps it trainable.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that exactly multiplies the spatial size by `stride`."""
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


class GDN(nn.Module):
    """Simplified generalized divisive normalization (Johnston et al. 2019): y_i = x_i / (b_i + sum_j g_ij |x_j|).

    The |x| form needs no square root and trains as well as Balle's original; `inverse=True` multiplies instead
    (IGDN, used in the synthesis transform).
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(gamma_init * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = lower_bound(self.beta, self.beta_min)
        gamma = lower_bound(self.gamma, 0.0)
        c = gamma.shape[0]
        norm = nn.functional.conv2d(x.abs(), gamma.view(c, c, 1, 1), beta)
        return x * norm if self.inverse else x / norm


def pad_to_hyper(y: torch.Tensor) -> torch.Tensor:
    """Replicate-pad a latent to a multiple of HYPER_STRIDE, the size a hyper-analysis needs."""
    h, w = y.shape[-2:]
    ph, pw = -h % HYPER_STRIDE, -w % HYPER_STRIDE
    return F.pad(y, (0, pw, 0, ph), mode="replicate") if ph or pw else y
