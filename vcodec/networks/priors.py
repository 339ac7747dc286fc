"""Differentiable probability models used while training: the factorized prior of z and the Gaussian of y.

At run time neither is evaluated: their integer tables (vcodec/tables.py) are what the coder sees.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vcodec.networks.layers import lower_bound

LIKELIHOOD_FLOOR = 1e-9


class FactorizedPrior(nn.Module):
    """A learned, per-channel, non-parametric density (Balle et al. 2018, appendix 6.1).

    Each channel owns a small monotone network f_c; sigmoid(f_c(x)) is its cumulative distribution. Monotonicity
    comes from softplus-positive matrices and tanh gates bounded below -1.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        widths = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.gates = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = math.log(math.expm1(1.0 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, widths[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(widths) - 2:
                self.gates.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))

    @property
    def channels(self) -> int:
        return self.matrices[0].shape[0]

    def cdf_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, K) values per channel -> (C, 1, K) logits of the cumulative distribution."""
        h = x
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            h = torch.matmul(F.softplus(m), h) + b
            if i < len(self.gates):
                h = h + torch.tanh(self.gates[i]) * torch.tanh(h)
        return h

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """Probability mass of the unit interval centred on each value of z (B, C, H, W)."""
        c = z.shape[1]
        v = z.transpose(0, 1).reshape(c, 1, -1)
        upper = self.cdf_logits(v + 0.5)
        lower = self.cdf_logits(v - 0.5)
        # Evaluate on the side of the median where both sigmoids are small, for precision in the tails.
        flip = -torch.sign(upper + lower).detach()
        p = (torch.sigmoid(flip * upper) - torch.sigmoid(flip * lower)).abs()
        p = p.reshape(c, z.shape[0], *z.shape[2:]).transpose(0, 1)
        return lower_bound(p, LIKELIHOOD_FLOOR)


def gaussian_likelihood(residual: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Mass of N(0, sigma) on the unit interval around `residual` (= y - mu), computed on the far tail."""
    r = residual.abs()
    upper = torch.special.ndtr((0.5 - r) / sigma)
    lower = torch.special.ndtr((-0.5 - r) / sigma)
    return lower_bound(upper - lower, LIKELIHOOD_FLOOR)


def bits(likelihood: torch.Tensor) -> torch.Tensor:
    """Total information content per batch item, in bits."""
    return -torch.log2(likelihood).flatten(1).sum(1)
