"""Held-out evaluation while training: estimated bpp and PSNR-RGB of the model on a folder of pictures."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from vcodec.metrics import mse, psnr_from_mse
from vcodec.networks.intra import STRIDE_Z, IntraModel
from vcodec.train.data import IMAGE_SUFFIXES, find_files, load_image


def pad_to(x: torch.Tensor, multiple: int = STRIDE_Z) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


@torch.no_grad()
def evaluate_folder(model: IntraModel, folder: Path, qualities, device, max_side: int = 4096) -> dict:
    """Mean over pictures of the rounded-latent bit estimate (bpp of the true size) and of PSNR-RGB, per quality."""
    was_training = model.training
    model.eval()
    paths = find_files(Path(folder), IMAGE_SUFFIXES)
    rows = {}
    for q in qualities:
        bpp, psnr = [], []
        example = None
        for path in paths:
            x = load_image(path, max_side).to(device).float().div(255)[None]
            h, w = x.shape[-2:]
            out = model(pad_to(x), torch.tensor([float(q)], device=device))
            x_hat = out["x_hat"][..., :h, :w].clamp(0, 1)
            # Score what a decoder would write: 8-bit pixels.
            x_hat = torch.round(x_hat * 255) / 255
            bpp.append(float(out["bits_y"] + out["bits_z"]) / (h * w))
            psnr.append(psnr_from_mse(float(mse(x_hat, x))))
            if example is None:
                example = x_hat[0].cpu()
        rows[q] = {"bpp": sum(bpp) / len(bpp), "psnr": sum(psnr) / len(psnr), "example": example}
    model.train(was_training)
    return rows
