"""Rate-distortion objectives: lambda * 255^2 * MSE + bpp (default) or lambda_ms * (1 - MS-SSIM) + bpp."""

from __future__ import annotations

import torch

from vcodec.metrics import ms_ssim, mse

# MS-SSIM is on a different scale than 255^2 * MSE; this factor maps each quality's lambda to a comparable rate.
MS_SSIM_LAMBDA_FACTOR = 2400.0
METRICS = ("mse", "ms-ssim")


def rd_loss(x: torch.Tensor, out: dict[str, torch.Tensor], lam: torch.Tensor, metric: str = "mse") -> dict:
    """Per-sample lambdas (B,). Returns the scalar loss and its parts for logging."""
    pixels = x.shape[2] * x.shape[3]
    bpp = (out["bits_y"] + out["bits_z"]) / pixels
    err = mse(out["x_hat"], x)
    if metric == "mse":
        distortion = 255.0**2 * err
    elif metric == "ms-ssim":
        distortion = MS_SSIM_LAMBDA_FACTOR * (1.0 - ms_ssim(out["x_hat"].clamp(0, 1), x))
    else:
        raise ValueError(f"unknown distortion metric {metric!r} (mse or ms-ssim)")
    loss = (lam * distortion + bpp).mean()
    return {"loss": loss, "bpp": bpp.detach().mean(), "mse": err.detach().mean()}
