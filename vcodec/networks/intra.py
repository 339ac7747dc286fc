"""The I-frame network: a variable-rate mean-scale hyperprior (Balle 2018, Minnen 2018; gains after Cui 2021).

Pixel path:   x --g_a--> y * gain[q] ... y_hat / gain[q] --g_s--> x_hat      (float; may run in half precision)
Entropy path: y --h_a--> z;  z_hat --h_s--> (mu, log sigma) of y             (decides the parse; see tables.py)

`forward()` is the training view (noise for rates, straight-through rounding for the reconstruction); the
inference pieces (`analysis`, `hyper_analysis`, `entropy_parameters`, `synthesis`) are what the codec composes
with the entropy coder.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from vcodec import quality as Q
from vcodec.networks.layers import GDN, conv, deconv, lower_bound, pad_to_hyper
from vcodec.networks.priors import FactorizedPrior, bits, gaussian_likelihood

# Range of the standard deviations the coder knows (tables.SCALES spans the same).
SIGMA_MIN, SIGMA_MAX = 0.11, 256.0
LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
STRIDE_Y, STRIDE_Z = 16, 64
GAIN_REFERENCE_LAMBDA = 0.013  # the lambda whose gains start at 1


@dataclass(frozen=True)
class IntraConfig:
    n: int = 64  # channels of the transforms and of z
    m: int = 96  # channels of y
    levels: int = Q.LEVELS
    # The lambda each quality level was trained for (training only). Files without it used the old default.
    lambdas: tuple[float, ...] = Q.LAMBDAS_BEFORE_TABLES

    def __post_init__(self):
        lambdas = tuple(float(v) for v in self.lambdas)
        if len(lambdas) != self.levels or any(not 0 < a < b for a, b in zip(lambdas, lambdas[1:])) or lambdas[0] <= 0:
            raise ValueError(f"lambdas must be {self.levels} increasing positive numbers, got {list(self.lambdas)}")
        object.__setattr__(self, "lambdas", lambdas)

    def to_dict(self) -> dict:
        return {**asdict(self), "lambdas": list(self.lambdas)}


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass."""
    return x + (torch.round(x) - x).detach()


class IntraModel(nn.Module):
    def __init__(self, config: IntraConfig = IntraConfig()):
        super().__init__()
        n, m = config.n, config.m
        self.config = config
        self.g_a = nn.Sequential(
            conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m),
        )
        self.g_s = nn.Sequential(
            deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
            deconv(n, n), GDN(n, inverse=True), deconv(n, 3),
        )
        self.h_a = nn.Sequential(
            conv(m, n, 3, 1), nn.LeakyReLU(inplace=True), conv(n, n), nn.LeakyReLU(inplace=True), conv(n, n),
        )
        # ReLU and plain convolutions only: this is the part that an integer-exact twin must reproduce.
        self.h_s = nn.Sequential(
            deconv(n, m), nn.ReLU(inplace=True), deconv(m, m * 3 // 2), nn.ReLU(inplace=True),
            conv(m * 3 // 2, 2 * m, 3, 1),
        )
        self.z_prior = FactorizedPrior(n)
        # Gains start at sqrt(lambda / lambda_ref): at high rate the best quantizer step scales as 1/sqrt(lambda).
        init = torch.tensor([0.5 * math.log(lam / GAIN_REFERENCE_LAMBDA) for lam in config.lambdas])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, m))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, m))

    # -- quality -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def retarget(self, lambdas: tuple[float, ...]) -> None:
        """Move the gain tables to a new lambda table, for a fine-tune that widens or narrows the rate range: each
        new level starts from the learned gains interpolated at its lambda (linear in log lambda, and extrapolated
        along the end segments beyond the old range), so training resumes from a consistent model."""
        config = IntraConfig(self.config.n, self.config.m, len(lambdas), tuple(lambdas))
        if config.levels != self.config.levels:
            raise ValueError("a new lambda table must have as many levels as the model")
        old = [math.log(v) for v in self.config.lambdas]
        for table in (self.log_gain, self.log_inv_gain):
            rows = table.detach().clone()  # every new row reads the old rows
            for k, lam in enumerate(config.lambdas):
                x = math.log(lam)
                i = min(max(bisect.bisect_left(old, x), 1), len(old) - 1)  # segment [i-1, i], or an end segment
                t = (x - old[i - 1]) / (old[i] - old[i - 1])
                table.data[k] = (1 - t) * rows[i - 1] + t * rows[i]
        self.config = config

    def _interpolated(self, table: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        q = q.to(table.device, torch.float32).clamp(0, self.config.levels - 1)
        lo = q.floor().long().clamp(max=self.config.levels - 2)
        t = (q - lo)[:, None]
        logs = (1 - t) * table[lo] + t * table[lo + 1]
        return torch.exp(logs)[:, :, None, None]

    def gain(self, q: torch.Tensor) -> torch.Tensor:
        return self._interpolated(self.log_gain, q)

    def inverse_gain(self, q: torch.Tensor) -> torch.Tensor:
        return self._interpolated(self.log_inv_gain, q)

    # -- inference pieces ------------------------------------------------------------------------------------
    def analysis(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self.g_a(x) * self.gain(q).to(x.dtype)

    def hyper_analysis(self, y: torch.Tensor) -> torch.Tensor:
        return self.h_a(y)

    def entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log standard deviation of each element of y, given the decoded hyper-latent."""
        mu, log_sigma = self.h_s(z_hat).chunk(2, dim=1)
        return mu, log_sigma

    def synthesis(self, y_hat: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self.g_s(y_hat * self.inverse_gain(q).to(y_hat.dtype))

    @torch.no_grad()
    def coded_estimate(self, y: torch.Tensor, hyper: tuple[nn.Module, nn.Module] | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """A latent (B, M, h, w) of any size coded as the codec codes it (rounded; the hyper-analysis on the latent
        padded to a multiple of 4, the hyper-synthesis cropped back): estimated bits per item and decoded latent.
        `hyper`: (h_a, h_s) to run instead of the model's, in their own dtype (a bf16 copy), read back as float32."""
        h, w = y.shape[-2:]
        h_a, h_s = hyper or (self.h_a, self.h_s)
        dtype = next(h_a.parameters()).dtype
        z = torch.round(h_a(pad_to_hyper(y).to(dtype)).float())
        mu, log_sigma = (t[..., :h, :w].float() for t in h_s(z.to(dtype)).chunk(2, dim=1))
        sigma = torch.exp(lower_bound(log_sigma, LOG_SIGMA_MIN).clamp(max=LOG_SIGMA_MAX))
        residual = torch.round(y - mu)
        total = bits(self.z_prior.likelihood(z)) + bits(gaussian_likelihood(residual, sigma))
        return total, residual + mu

    # -- training and evaluation view ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction and bits per item. Training adds uniform noise for the rates; eval rounds as the coder does
        (its bits are the model's estimate of the real stream, which the tests hold the coder to)."""
        y = self.analysis(x, q)
        z = self.hyper_analysis(y)
        z_for_rate = z + torch.empty_like(z).uniform_(-0.5, 0.5) if self.training else torch.round(z)
        mu, log_sigma = self.entropy_parameters(_round_ste(z))
        y_for_rate = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y - mu) + mu
        # Probabilities in fp32 even under autocast: bf16 tails would make the rate term meaningless.
        with torch.autocast(device_type=x.device.type, enabled=False):
            bits_z = bits(self.z_prior.likelihood(z_for_rate.float()))
            sigma = torch.exp(lower_bound(log_sigma.float(), LOG_SIGMA_MIN).clamp(max=LOG_SIGMA_MAX))
            bits_y = bits(gaussian_likelihood(y_for_rate.float() - mu.float(), sigma))
        y_hat = _round_ste(y - mu) + mu
        x_hat = self.synthesis(y_hat, q)
        return {"x_hat": x_hat, "bits_y": bits_y, "bits_z": bits_z}
