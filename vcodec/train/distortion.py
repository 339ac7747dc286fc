"""What a P-frame's latent error costs in pixels, for training STEM on latents.

With g_a and g_s frozen a P-frame's picture is fixed up to its quantization error e = y - y_hat, and y_hat =
round(y - mu) + mu depends on mu: a prior that puts mu where y - mu rounds to zero saves bits and moves e towards
+-0.5. Charged for its rate alone, STEM learns exactly that (a dead zone): P-frames lose 0.2 dB, and the next
frame, conditioned on a worse latent, costs more; along a GOP of 16 the P-frames of the sample clip climbed from
0.69 to 0.86 of an I-frame's bits at q = 2 and past 1.0 at q = 5 (2026-12-02, step 8,000 of the first run).

So the loss charges the error too, in the codec's own currency: lambda(q) * 255^2 * MSE + bits, with the pixel
MSE of a latent error taken from g_s's sensitivity to each latent channel (`synthesis_sensitivity`): one latent
element of channel c off by e changes the picture's sum of squared errors by about K_c * (inverse_gain_c * e)^2.
"""

from __future__ import annotations

import torch

from vcodec.networks.intra import IntraModel

SPACING = 4  # latents between perturbed elements: g_s's footprints barely overlap, and random signs cancel the rest


@torch.no_grad()
def synthesis_sensitivity(intra: IntraModel, crops: torch.Tensor, q_ref: float = 4.0, delta: float = 0.25,
                          seed: int = 0) -> torch.Tensor:
    """K (M,): the picture's sum of squared errors (RGB in [0, 1]) per unit squared change of one element of g_s's
    input, per latent channel, measured by finite differences on `crops` (B, M, h, w) of latents at gain 1."""
    g = torch.Generator().manual_seed(seed)
    qq = torch.full((crops.shape[0],), float(q_ref))
    _, y_hat = intra.coded_estimate(crops * intra.gain(qq))
    u = y_hat * intra.inverse_gain(qq)
    base = intra.g_s(u)
    m, h, w = u.shape[1:]
    grid = torch.zeros(h, w)
    grid[SPACING // 2 :: SPACING, SPACING // 2 :: SPACING] = 1
    count = float(grid.sum()) * u.shape[0]
    out = torch.empty(m)
    for c in range(m):
        signs = torch.where(torch.rand(u.shape[0], h, w, generator=g) < 0.5, -1.0, 1.0) * grid
        pert = u.clone()
        pert[:, c] += delta * signs
        out[c] = float(((intra.g_s(pert) - base) ** 2).sum()) / (count * delta**2)
    return out


def distortion_bits(error: torch.Tensor, sensitivity: torch.Tensor, inverse_gain: torch.Tensor,
                    lam: torch.Tensor) -> torch.Tensor:
    """lambda * 255^2 * MSE of the picture, times its pixel count (the units of bits), per item, for latent errors
    `error` (B, M, h, w); `inverse_gain` (B, M, 1, 1), `lam` (B,)."""
    sse = (error**2 * (sensitivity.view(1, -1, 1, 1) * inverse_gain**2)).flatten(1).sum(1)
    return lam * 255.0**2 * sse / 3.0
