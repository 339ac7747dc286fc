"""Image quality metrics on torch tensors in [0, 1]: PSNR, PSNR-YUV 4:2:0 and MS-SSIM (Wang et al. 2003).

Shared by training (differentiable MS-SSIM loss) and by the bench, so both measure the same thing.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW, _SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per batch item, of (B, C, H, W) tensors."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def psnr_from_mse(err: float, peak: float = 1.0) -> float:
    return float("inf") if err <= 0 else 10.0 * math.log10(peak * peak / err)


def _gaussian_window(channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(_WINDOW, dtype=torch.float64) - _WINDOW // 2
    g = torch.exp(-(x**2) / (2 * _SIGMA**2))
    g = (g / g.sum()).to(device=device, dtype=dtype)
    return (g[:, None] * g[None, :]).expand(channels, 1, _WINDOW, _WINDOW).contiguous()


def _ssim_terms(a: torch.Tensor, b: torch.Tensor, window: torch.Tensor):
    c = a.shape[1]
    c1, c2 = _K1**2, _K2**2
    mu_a = F.conv2d(a, window, groups=c)
    mu_b = F.conv2d(b, window, groups=c)
    var_a = F.conv2d(a * a, window, groups=c) - mu_a**2
    var_b = F.conv2d(b * b, window, groups=c) - mu_b**2
    cov = F.conv2d(a * b, window, groups=c) - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return (luminance * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per batch item of (B, C, H, W) tensors in [0, 1].

    Pictures too small for five scales (the smallest side must stay >= 11 at the coarsest one) use as many scales
    as fit, with the standard weights renormalized over them.
    """
    a, b = a.float(), b.float()
    side = min(a.shape[-2:])
    if side < _WINDOW:
        raise ValueError(f"MS-SSIM needs pictures of at least {_WINDOW}x{_WINDOW}, got {tuple(a.shape[-2:])}")
    scales = min(len(MS_SSIM_WEIGHTS), 1 + int(math.floor(math.log2(side / _WINDOW))))
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=a.device)
    weights = weights / weights.sum()
    window = _gaussian_window(a.shape[1], a.device, a.dtype)
    factors = []
    for i in range(scales):
        ssim, cs = _ssim_terms(a, b, window)
        if i == scales - 1:
            factors.append(ssim.clamp_min(1e-6))
        else:
            factors.append(cs.clamp_min(1e-6))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    stacked = torch.stack(factors, dim=1)
    return torch.prod(stacked ** weights[None, :], dim=1)


# BT.709 luma weights; Cb and Cr are (B - Y) / 1.8556 and (R - Y) / 1.5748 (full range: Y in [0, 1], Cb, Cr in
# [-0.5, 0.5], so one peak of 1 serves all three planes).
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB


def rgb_to_yuv709(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Y, Cb, Cr planes (B, 1, H, W) of (B, 3, H, W) RGB in [0, 1]: BT.709, full range, float (no rounding)."""
    x = x.float()
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = _KR * r + _KG * g + _KB * b
    return y, (b - y) / (2 * (1 - _KB)), (r - y) / (2 * (1 - _KR))


def subsample_420(plane: torch.Tensor) -> torch.Tensor:
    """4:2:0 chroma by averaging each 2x2 block. An odd width or height first repeats the last column or row, so
    the edge sample is the mean of its (1 or 2) real neighbours: the picture keeps ceil(W/2) x ceil(H/2) samples."""
    h, w = plane.shape[-2:]
    if h % 2 or w % 2:
        plane = F.pad(plane, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(plane, 2)


def psnr_yuv420(a: torch.Tensor, b: torch.Tensor, exact: float = float("inf")) -> dict[str, float]:
    """PSNR of Y, U, V and their 6:1:1 mix, (6 Y + U + V) / 8 (the weighting of JVET and CompressAI), for one
    picture pair (1, 3, H, W) in [0, 1]: both go to BT.709 full-range YCbCr, chroma to 4:2:0 (subsample_420).
    A plane without error scores `exact`."""
    ya, ua, va = rgb_to_yuv709(a)
    yb, ub, vb = rgb_to_yuv709(b)
    planes = {"y": (ya, yb), "u": (subsample_420(ua), subsample_420(ub)), "v": (subsample_420(va), subsample_420(vb))}
    scores = {k: min(exact, psnr_from_mse(float(mse(p, q)[0]))) for k, (p, q) in planes.items()}
    scores["yuv"] = (6 * scores["y"] + scores["u"] + scores["v"]) / 8
    return scores
