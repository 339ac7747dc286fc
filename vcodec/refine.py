"""Encoder presets: the slower ones search for better symbols than g_a's one-shot guess; the decoder is unchanged.

A decoder defines the format, so an encoder may send any latent y and hyper-latent z it likes, and g_a's and
h_a's are not the best for the model's own g_s and entropy model (the amortization gap). `slow`, `slower` and
`veryslow` start from them and take Adam steps on the model's own objective for this one frame,

    w * lambda(q) * 255^2 * MSE(g_s(y_hat), x) + (bits(z_hat) + bits(y_hat | z_hat)) / pixels,

through the float networks: an I-frame's rate through h_s and the z prior, a P-frame's through STEM given the
previous decoded latent (so P-frames refine under their temporal prior). y and z are both free: z is no longer
h_a(y) but whatever hyper-latent makes the pair cheapest, which matters most at low rates, where z is a large
share of the bits. Both are rounded by stochastic Gumbel annealing (SGA, Yang et al. 2020, "Improving inference
for neural image compression"): each value rounded down or up at random, with odds from how near it is to each,
soft and noisy at the start and nearly hard at the end.

A preset keeps the quality that -q gives and saves bits: every few steps the hard-rounded point is priced by the
frame's own coder (the integer entropy path's code lengths, and the picture g_s makes of the latent the decoder
will hold), and the frame is coded from the cheapest one whose PSNR is within QUALITY_TOLERANCE_DB of g_a's own
coding (g_a's own point included: a frame never costs more bits than at `medium`, nor decodes worse by more than
that). Left alone, the search slides down the RD curve at low q and on P-frames (fewer bits, a lower PSNR) and
climbs at high q, so w follows the quality floor by dual ascent: it grows while the point is below the floor and
shrinks while it is above, in proportion to the gap in dB. The chosen symbols are then coded by the exact integer
path as any other frame's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from vcodec import quality as Q
from vcodec.networks.intra import LOG_SIGMA_MAX, LOG_SIGMA_MIN, IntraModel
from vcodec.networks.layers import lower_bound, pad_to_hyper
from vcodec.networks.pixel_path import FastTransform, native_bf16
from vcodec.networks.priors import bits, gaussian_likelihood
from vcodec.networks.stem import StemModel


@dataclass(frozen=True)
class Preset:
    iterations: int  # search steps per frame (0: g_a's and h_a's symbols as they are)
    lr_y: float = 0.0  # Adam step sizes, in units of the quantization step
    lr_z: float = 0.0
    tau_start: float = 0.5  # SGA temperature, annealed geometrically to tau_end
    tau_end: float = 0.2
    check_every: int = 10  # steps between pricings of the hard-rounded point
    p_distortion_weight: float = 1.0  # w's starting value on P-frames (1 on I-frames)


QUALITY_TOLERANCE_DB = 0.02  # how far below g_a's own PSNR a frame's chosen point may be
# At each pricing w is multiplied by exp(STEER_PER_DB * gap), gap the dB by which the point is below the floor
# (negative above it), and kept within 0.1 to 10 times its start.
STEER_PER_DB = 2.0

# Tuned on 4 training photos (photos-1024, 768x512 crops; never val) at q 1, 4, 7, and one training clip, on
# 2026-12-06. `python benchmarks/preset_search.py` (priced by the coder, 12 cases, each within 0.02 dB of g_a's
# PSNR or above; rerun 2026-12-07 with the final code): bits at q 1 / 4 / 7 slow -0.9 / -3.5 / -2.8 % (+0.01 /
# +0.05 / +0.24 dB), slower -6.7 / -6.9 / -5.5 % (+0.04 / +0.01 / +0.21 dB), veryslow -15.3 / -8.2 / -6.9 %
# (0.00 / -0.01 / +0.17 dB). Settings measured on the way (one-off runs of the same search, 30 or 80 steps):
# - Free search (w = 1, no floor): bits -18.6 / -5.8 / -0.5 % at q 1 / 4 / 7 for -0.29 / +0.01 / +0.28 dB: it
#   slides along the curve, not at -q's quality. The floor with the best-objective point instead of the cheapest,
#   or with w kept >= 1, or stepped by a fixed x1.3, saved fewer bits at equal quality.
# - The objective's fall after 80 free steps: 5.9 % as here; z held to h_a(y) 5.5 %; Adam 0.03 / 0.08 5.6 %;
#   tau_end 0.1 5.6 %; tau_start 0.3 / 0.8 5.7 / 5.6 %; 200 steps at half the step sizes 6.5 %.
# - P-frames (4 frames of WolfgangLanger_Pexels.mp4, 30 steps, free): at w = 1 -0.4 / -0.5 dB at q 1 / 4 for -10
#   / -17 % bits; at w = 2 the PSNR is held (+0.01 dB) at the same BD-rate (-5.4 % against -5.2 %): w starts at 2.
PRESETS = {
    "medium": Preset(0),
    "slow": Preset(30, 0.03, 0.05, check_every=5, p_distortion_weight=2.0),
    "slower": Preset(80, 0.02, 0.05, check_every=10, p_distortion_weight=2.0),
    "veryslow": Preset(200, 0.01, 0.03, check_every=20, p_distortion_weight=2.0),
}
DEFAULT_PRESET = "medium"


def soft_round(r: torch.Tensor, tau: float, generator: torch.Generator | None) -> torch.Tensor:
    """SGA: r rounded down or up at random, with odds from how close it is to each, as a Gumbel-softmax sample at
    temperature tau (differentiable in r); tau -> 0 gives plain rounding."""
    f = torch.floor(r).detach()
    d = (r - f).clamp(1e-4, 1 - 1e-4)  # distance to the integer below, in (0, 1)
    logits = torch.stack([-torch.atanh(d), -torch.atanh(1 - d)]) / tau
    u = torch.rand(logits.shape, generator=generator, device="cpu").to(r.device).clamp_(1e-9, 1 - 1e-9)
    w = torch.softmax(logits - torch.log(-torch.log(u)), dim=0)
    return f + w[1]


# (latent on the float model's quantization grid (1, M, h, w), hyper-latent z_hat (1, N, ...), integers) -> (the
# bits the coder will spend on them, the latent the decoder will hold (1, M, h, w) on the latent's device, the
# symbols): the frame's own coder (IntraCoder.price, InterCoder.price), so that the search is judged by what a
# decoder will see, not by its float model.
Pricer = Callable[[torch.Tensor, torch.Tensor], tuple[float, torch.Tensor, Any]]


class LatentSearch:
    """The search for one stream: the intra model (and, for P-frames, STEM) frozen, one frame at a time."""

    def __init__(self, intra: IntraModel, preset: Preset, stem: StemModel | None = None, seed: int = 0):
        self.intra, self.stem, self.preset = intra, stem, preset
        for model in (intra, stem):
            if model is not None:
                for p in model.parameters():
                    p.requires_grad_(False)  # only the symbols learn
        self.generator = torch.Generator().manual_seed(seed)  # the same stream from the same input, every run
        # The steps' g_s (forward and backward: most of a step's time) in bf16 where it is native, 2.5-3x faster
        # on an AMX CPU; its noise is far below SGA's. Every pricing, which decides what is coded, is float32.
        device = next(intra.parameters()).device
        self.step_g_s = (FastTransform(intra.g_s, torch.bfloat16, pixels_first=False).differentiable
                         if native_bf16(device) else intra.g_s)

    def hyper_latent(self, y: torch.Tensor, y_prev: torch.Tensor | None) -> torch.Tensor:
        """The encoder's usual z (before rounding): h_a of the latent, or STEM's h_a of it and the previous one."""
        if y_prev is None:
            return self.intra.hyper_analysis(pad_to_hyper(y))
        return self.stem.hyper_analysis(y, y_prev)

    def _measure(self, y, z, x, q, y_prev, quantize, g_s=None):
        """(bits per pixel, MSE, y_hat) of latent y and hyper-latent z for picture x (1, 3, H, W), both rounded by
        `quantize`, by the float model; the picture may be smaller than g_s's output (`g_s`: the synthesis to use,
        by default the model's own in float32). Without x: (bits, None, y_hat)."""
        z_hat = quantize(z)
        if y_prev is None:
            mu, log_sigma = (t[..., : y.shape[-2], : y.shape[-1]] for t in self.intra.entropy_parameters(z_hat))
            r = quantize(y - mu)
            sigma = torch.exp(lower_bound(log_sigma, LOG_SIGMA_MIN).clamp(max=LOG_SIGMA_MAX))
            rate = bits(self.intra.z_prior.likelihood(z_hat)).sum() + bits(gaussian_likelihood(r, sigma)).sum()
            y_hat = r + mu
        else:
            out = self.stem(y, y_prev, q, quantize=quantize, z_hat=z_hat)
            rate, y_hat = out["bits_y"].sum() + out["bits_z"].sum(), out["y_soft"]
        if x is None:
            return rate, None, y_hat
        h, w = x.shape[-2:]
        x_hat = (g_s or self.intra.g_s)(y_hat * self.intra.inverse_gain(q))[..., :h, :w].clamp(0, 1)
        return rate / (h * w), torch.mean((x_hat - x) ** 2), y_hat

    @torch.no_grad()
    def _grid(self, y, z, q, y_prev) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, z_hat) of the point, rounded as the coder rounds: y_hat = mu + an integer under the float entropy
        model, so that the coder's rounding against its integer twin's mu (within a hair) gives the same integers."""
        return self._measure(y, z, None, q, y_prev, torch.round)[2], torch.round(z)

    @torch.no_grad()
    def _priced(self, y, z_hat, x, q, price: Pricer) -> tuple[float, float, Any]:
        """(bpp, MSE of the decoder's picture, symbols) of a point as coded."""
        h, w = x.shape[-2:]
        coded_bits, y_decoded, symbols = price(y, z_hat)
        # Clamped as the decoder's pixels are: on bright or saturated pictures g_s overshoots [0, 1] by a lot
        # (0.5 dB of unclamped error on a val photo at q 5), and a search that chased that error lost real PSNR.
        x_hat = self.intra.synthesis(y_decoded.float(), q)[..., :h, :w].clamp(0, 1)
        return coded_bits / (h * w), float(torch.mean((x_hat - x) ** 2)), symbols

    def refine(self, y: torch.Tensor, x: torch.Tensor, q: torch.Tensor, price: Pricer,
               y_prev: torch.Tensor | None = None) -> Any:
        """The symbols (as `price` makes them) of the cheapest point found for picture x whose decoded picture is
        about as good as that of g_a's latent y (1, M, h, w) with its hyper-latent (within QUALITY_TOLERANCE_DB),
        or of those two."""
        preset = self.preset
        y = y.detach().float()
        z = self.hyper_latent(y, y_prev).detach()
        best_rate, floor_mse, best = self._priced(y, torch.round(z), x, q, price)  # exactly what `medium` codes
        if preset.iterations <= 0:
            return best
        start_weight = 1.0 if y_prev is None else preset.p_distortion_weight
        lam = Q.lambda_of(float(q), self.intra.config.lambdas) * 255.0**2 * start_weight
        floor_mse *= 10 ** (QUALITY_TOLERANCE_DB / 10)
        weight = 1.0  # w / start_weight
        var_y, var_z = y.clone().requires_grad_(True), z.clone().requires_grad_(True)
        opt = torch.optim.Adam([{"params": [var_y], "lr": preset.lr_y}, {"params": [var_z], "lr": preset.lr_z}])
        steps = preset.iterations
        for t in range(steps):
            tau = preset.tau_start * (preset.tau_end / preset.tau_start) ** (t / max(1, steps - 1))
            with torch.enable_grad():
                rate, mse, _ = self._measure(var_y, var_z, x, q, y_prev, lambda r: soft_round(r, tau, self.generator),
                                             self.step_g_s)
                loss = weight * lam * mse + rate
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            if (t + 1) % preset.check_every == 0 or t == steps - 1:
                rate, mse, point = self._priced(*self._grid(var_y.detach(), var_z.detach(), q, y_prev), x, q, price)
                if not (math.isfinite(rate) and math.isfinite(mse)):
                    break
                if mse <= floor_mse and rate < best_rate:
                    best_rate, best = rate, point
                gap_db = 10 * math.log10(max(mse, 1e-12) / floor_mse)
                weight = min(max(weight * math.exp(STEER_PER_DB * gap_db), 0.1), 10.0)
        return best
