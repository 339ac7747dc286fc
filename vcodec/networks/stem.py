"""The P-frame network: a Spatio-Temporal Entropy Model (STEM, Sun et al. 2021) over the intra model's latents.

A P-frame's latent y_t = g_a(x_t) * gain[q] (the intra model's own analysis and gains, frozen) is coded with a
Gaussian whose mean and scale come from

- the temporal prior (TPM): ReLU convolutions over the previous decoded latent y_hat_{t-1};
- a P hyper-latent z_t = h_a(y_t, y_hat_{t-1}) (its own factorized prior), decoded by h_s at 1/16 resolution;
- the spatial prior (SPM): a checkerboard context, two passes (He et al. 2021): anchors first, from the two
  priors alone; then the other half, also from the decoded anchors around it;
- a fusion of 1x1 convolutions, whose last layer also sees y_hat_{t-1} itself (a linear skip that starts as
  the identity on the means: "the same as before" is the first guess, motion and change are learned on top).

Everything after z_t (h_s, TPM, SPM, fusion) is the entropy path and gets an integer-exact twin
(networks/integer.py): ReLU and plain convolutions only. h_a runs on the encoder alone and may be anything.

There are no motion vectors and no pixel residual; the reconstruction is the intra model's g_s(y_hat_t), so a
P-frame looks like an I-frame of the same quality and only the rate falls. With g_a frozen that makes the rate
the whole training loss, and training runs on cached latents (train/latents.py).

Variants (`VARIANTS`, for the ablation of the STEM paper's table): `full`; `no-spm` (one pass); `no-tpm` (no
y_hat_{t-1} at all: a hyperprior with a checkerboard context, trained on P-frames); `no-spm-tpm` (a plain
hyperprior); `residual` (codes y_t - y_hat_{t-1} with a hyperprior of its own: the classic residual coder).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from vcodec.networks.checkerboard import anchor_mask
from vcodec.networks.intra import LOG_SIGMA_MAX, LOG_SIGMA_MIN, _round_ste
from vcodec.networks.layers import conv, deconv, lower_bound, pad_to_hyper
from vcodec.networks.priors import FactorizedPrior, bits, gaussian_likelihood

VARIANTS: dict[str, dict] = {
    "full": dict(tpm=True, spm=True, residual=False),
    "residual": dict(tpm=False, spm=False, residual=True),
    "no-spm": dict(tpm=True, spm=False, residual=False),
    "no-tpm": dict(tpm=False, spm=True, residual=False),
    "no-spm-tpm": dict(tpm=False, spm=False, residual=False),
}


@dataclass(frozen=True)
class StemConfig:
    m: int = 128  # latent channels: the intra model's M
    n: int = 64  # channels of z_t and of the hyper-analysis: the intra model's N
    c: int = 64  # width of the temporal and spatial priors' features
    hidden: int = 192  # width of the fusion
    variant: str = "full"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown STEM variant {self.variant!r} (one of {', '.join(VARIANTS)})")
        if min(self.m, self.n, self.c, self.hidden) < 1:
            raise ValueError("STEM widths must be positive")

    @property
    def tpm(self) -> bool:
        return VARIANTS[self.variant]["tpm"]

    @property
    def spm(self) -> bool:
        return VARIANTS[self.variant]["spm"]

    @property
    def residual(self) -> bool:
        return VARIANTS[self.variant]["residual"]

    @property
    def skip(self) -> bool:
        """Whether the last fusion layer sees y_hat_{t-1} (the learned skip; `residual` adds it outright)."""
        return self.tpm

    def fusion_inputs(self) -> int:
        return 2 * self.m + self.c * (int(self.tpm) + int(self.spm)) + 1  # hyper parameters, priors, quality plane

    def to_dict(self) -> dict:
        return asdict(self)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


class StemModel(nn.Module):
    """The hyperprior half (h_a, h_s, z prior) has the intra model's shapes, and a new run starts from the intra
    model's weights there with the fusion passing the hyperprior's parameters through (`start_from`): training
    begins at exactly the intra model's rate and learns what the temporal and spatial priors add."""

    FROM_INTRA = ("h_a.", "h_s.", "z_prior.")  # the parameters `start_from` takes from the intra model

    def __init__(self, config: StemConfig = StemConfig()):
        super().__init__()
        self.config = cfg = config
        m, n, c = cfg.m, cfg.n, cfg.c
        a_in = 2 * m if cfg.tpm else m
        self.h_a = nn.Sequential(
            conv(a_in, n, 3, 1), nn.LeakyReLU(inplace=True), conv(n, n), nn.LeakyReLU(inplace=True), conv(n, n),
        )
        # The entropy path: ReLU and plain convolutions only (integer twins, networks/integer.py).
        self.h_s = nn.Sequential(
            deconv(n, m), nn.ReLU(inplace=True), deconv(m, m * 3 // 2), nn.ReLU(inplace=True),
            conv(m * 3 // 2, 2 * m, 3, 1),
        )
        self.tpm = nn.Sequential(
            conv(m, c, 3, 1), nn.ReLU(inplace=True), conv(c, c, 3, 1), nn.ReLU(inplace=True),
            conv(c, c, 3, 1), nn.ReLU(inplace=True),
        ) if cfg.tpm else None
        self.ctx = nn.Sequential(conv(m, c, 3, 1), nn.ReLU(inplace=True)) if cfg.spm else None
        self.fusion = nn.Sequential(
            conv1x1(cfg.fusion_inputs(), cfg.hidden), nn.ReLU(inplace=True),
            conv1x1(cfg.hidden, cfg.hidden), nn.ReLU(inplace=True),
        )
        # Sees the fusion, the hyperprior's own (mu, log sigma) and, with a TPM, y_hat_{t-1}: linear skips.
        self.out = conv1x1(cfg.hidden + 2 * m + (m if cfg.skip else 0), 2 * m)
        self.z_prior = FactorizedPrior(n)

    @torch.no_grad()
    def start_from(self, intra) -> None:
        """A new run's start: h_a, h_s and the z prior from the intra model (h_a's weights on y_hat_{t-1} zero),
        and a last layer that passes h_s's (mu, log sigma) through, with the fusion and the skip of y_hat_{t-1}
        at (almost) zero. The model then codes a P-frame exactly as the intra model codes it, and training only
        has to learn what the temporal and spatial priors add: from scratch, the hyperprior alone takes the
        CPU tens of thousands of steps."""
        cfg = self.config
        if (intra.config.m, intra.config.n) != (cfg.m, cfg.n):
            raise ValueError("STEM must have the intra model's M and N to start from it")
        self.h_s.load_state_dict(intra.h_s.state_dict())
        self.z_prior.load_state_dict(intra.z_prior.state_dict())
        own, theirs = self.h_a.state_dict(), intra.h_a.state_dict()
        for k, v in theirs.items():
            if own[k].shape == v.shape:
                own[k].copy_(v)
            else:  # the first layer, which also sees y_hat_{t-1}: its weights on y, and zero on the rest
                own[k].zero_()
                own[k][:, : v.shape[1]].copy_(v)
        self.h_a.load_state_dict(own)
        w = self.out.weight
        w.mul_(0.01)
        w[:, cfg.hidden : cfg.hidden + 2 * cfg.m, 0, 0].copy_(torch.eye(2 * cfg.m))
        if cfg.skip:
            w[:, cfg.hidden + 2 * cfg.m :].zero_()
        self.out.bias.zero_()

    # -- the pieces the codec composes ------------------------------------------------------------------------
    def hyper_input(self, y: torch.Tensor, y_prev: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.tpm:
            return torch.cat([y, y_prev], 1)
        return y - y_prev if cfg.residual else y

    def hyper_analysis(self, y: torch.Tensor, y_prev: torch.Tensor) -> torch.Tensor:
        """z_t (float; the encoder rounds it), for a latent of any size."""
        return self.h_a(pad_to_hyper(self.hyper_input(y, y_prev)))

    def hyper_features(self, z_hat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The hyperprior's own (mu, log sigma), cropped to the latent's size: the fusion's first input."""
        return self.h_s(z_hat)[..., : size[0], : size[1]]

    def temporal_features(self, y_prev: torch.Tensor) -> torch.Tensor | None:
        return self.tpm(y_prev) if self.tpm is not None else None

    def context_features(self, anchors: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        """SPM features from the decoded anchors (zero elsewhere); None (first pass) gives those of no context."""
        if self.ctx is None:
            return None
        return self.ctx(anchors if anchors is not None else torch.zeros_like(like))

    def parameters_from(self, feats: list[torch.Tensor], q: torch.Tensor, y_prev: torch.Tensor):
        """(mu, log sigma) from the priors' features (hyper, temporal, spatial: those the variant has)."""
        b, _, h, w = feats[0].shape
        plane = q.to(feats[0].dtype).view(-1, 1, 1, 1).expand(b, 1, h, w)
        hidden = torch.cat([self.fusion(torch.cat([*feats, plane], 1)), feats[0]], 1)
        if self.config.skip:
            hidden = torch.cat([hidden, y_prev], 1)
        mu, log_sigma = self.out(hidden).chunk(2, 1)
        if self.config.residual:
            mu = mu + y_prev
        return mu, log_sigma

    # -- training and evaluation view ----------------------------------------------------------------------
    def forward(self, y: torch.Tensor, y_prev: torch.Tensor, q: torch.Tensor, quantize=None,
                z_hat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Bits of one P-frame's latent y (B, M, h, w) given the previous decoded latent, and its decoded latent.

        z_t's rate takes uniform noise in training (rounding in eval); y's is always that of the rounded symbols.
        The decoded latent (what the next frame is conditioned on) is the coder's: round(y - mu) + mu, without
        gradient. `quantize` (residual -> quantized residual, differentiable) replaces the rounding of y's rate and
        adds `y_soft` = quantize(y - mu) + mu with its gradient: the encoder's latent search (refine.py), which also
        chooses the decoded hyper-latent itself (`z_hat`, in place of round(h_a(y, y_prev)))."""
        h, w = y.shape[-2:]
        if z_hat is None:
            z = self.hyper_analysis(y, y_prev)
            z_for_rate = z + torch.empty_like(z).uniform_(-0.5, 0.5) if self.training else torch.round(z)
            z_hat = _round_ste(z)
        else:
            z_for_rate = z_hat
        feats = [self.hyper_features(z_hat, (h, w))]
        temporal = self.temporal_features(y_prev)
        if temporal is not None:
            feats.append(temporal)
        if self.ctx is not None:
            anchors = anchor_mask(h, w, y.device)
            with torch.no_grad():  # pass 1: the anchors' parameters, to decode them (no gradient: they are data)
                first = self.context_features(None, y)
                mu1, _ = self.parameters_from([*feats, first], q, y_prev)
                y_anchor = torch.where(anchors, torch.round(y - mu1) + mu1, torch.zeros_like(y))
            # One pass over all positions: anchors see the first pass's (empty) context, the others their anchors.
            spatial = torch.where(anchors, self.context_features(None, y), self.context_features(y_anchor, y))
            feats.append(spatial)
        mu, log_sigma = self.parameters_from(feats, q, y_prev)
        # y's rate is that of the symbols really coded, round(y - mu), with a straight-through gradient for mu, in
        # training too: uniform noise would charge every symbol for the width of its rounding interval, and a
        # temporal prior earns most of its keep on symbols it makes certain (p(0) near 1), which noise never shows.
        if quantize is not None:
            residual = quantize(y - mu)
        else:
            residual = _round_ste(y - mu) if self.training else torch.round(y - mu)
        with torch.autocast(device_type=y.device.type, enabled=False):
            bits_z = bits(self.z_prior.likelihood(z_for_rate.float()))
            sigma = torch.exp(lower_bound(log_sigma.float(), LOG_SIGMA_MIN).clamp(max=LOG_SIGMA_MAX))
            bits_y = bits(gaussian_likelihood(residual.float(), sigma))
        y_hat = (torch.round(y - mu) + mu).detach()
        # The quantization error y - y_hat as a function of mu (the rounding held): what a distortion term sees.
        error = (y - mu) - torch.round(y - mu).detach()
        out = {"bits_y": bits_y, "bits_z": bits_z, "y_hat": y_hat, "error": error}
        if quantize is not None:
            out["y_soft"] = residual + mu
        return out

    def entropy_modules(self) -> dict[str, nn.Sequential]:
        """The networks that decide the parse, by name, as the integer twin stores them."""
        mods = {"h_s": self.h_s, "fusion": self.fusion, "out": nn.Sequential(self.out)}  # h_s: linear last layer
        if self.tpm is not None:
            mods["tpm"] = self.tpm
        if self.ctx is not None:
            mods["ctx"] = self.ctx
        return mods
