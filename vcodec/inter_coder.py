"""P-frames: one picture -> one packet with STEM, conditioned on the previous frame's decoded latent, and back.

The analysis (g_a and the gains) and the synthesis are the intra model's: a P-frame differs from an I-frame only
in how its latent is entropy-coded. Its packet carries three substreams: z_t, then the checkerboard's anchors,
then the other half (two substreams, z_t and y, for a variant without the spatial prior). Both halves are coded
in raster order of their positions, each symbol with the Gaussian table of its scale index.

Everything the parse depends on comes from integers both sides hold bit for bit: z_t as sent, the previous
decoded latent and the decoded anchors in fixed point (integer.to_fixed of their float32 values), and the
integer-exact STEM (networks/stem_integer.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vcodec import container as C
from vcodec.entropy import TableCoder
from vcodec.errors import DamagedStream
from vcodec.intra_coder import IntraCoder, channel_map, coded_bits
from vcodec.networks.checkerboard import Positions
from vcodec.networks.integer import ACT_FRAC_BITS, to_fixed
from vcodec.weights import StemBundle


@dataclass
class InterSymbols:
    """Everything a P-frame's entropy coder sees (the two checkerboard halves merged back into one grid)."""

    z: np.ndarray  # int64 (N, ceil(h/4), ceil(w/4))
    residual: np.ndarray  # int64 (M, h, w)
    scale_index: np.ndarray  # uint8 (M, h, w)
    mu: torch.Tensor  # float32 (M, h, w), a multiple of 2^-8, exact on every machine

    def decoded_latent(self) -> torch.Tensor:
        return torch.from_numpy(self.residual).float() + self.mu


class InterCoder:
    def __init__(self, stem: StemBundle, intra: IntraCoder):
        if stem.intra_sha256 != intra.bundle.sha256:
            raise ValueError(f"P-frame model {stem.name} belongs to intra model {stem.intra_name} "
                             f"(sha256 {stem.intra_sha256.hex()[:16]}...), not to {intra.bundle.name}")
        self.stem = stem
        self.intra = intra
        self.model = stem.model.to(intra.device).eval()
        self.z_coder = TableCoder(stem.z_tables)
        self.y_coder = intra.y_coder  # the same 64 Gaussian tables
        self.timings = intra.timings

    def _passes(self, h: int, w: int) -> list[Positions]:
        if not self.stem.config.spm:
            return [Positions.every(h, w)]
        return [Positions.checkerboard(h, w, 0), Positions.checkerboard(h, w, 1)]

    @torch.no_grad()
    def symbols_of(self, y: torch.Tensor, y_prev: torch.Tensor, quality: float,
                   z: torch.Tensor | None = None) -> InterSymbols:
        """y (1, M, h, w) on the device, y_prev (M, h, w) float32 CPU -> what the entropy coder will code; z (1, N,
        ...; integers): the hyper-latent to send, by default round(h_a(y, y_prev))."""
        with self.timings.stage("h_a"):
            if z is None:
                z = torch.round(self.model.hyper_analysis(y, y_prev[None].to(y.device, y.dtype)))
            z = z[0].to("cpu", torch.int64).numpy()
            y = y[0].float().cpu()
        with self.timings.stage("entropy model"):
            return self._passes_over(z, y, y_prev, quality)

    def _passes_over(self, z: np.ndarray, y: torch.Tensor, y_prev: torch.Tensor, quality: float) -> InterSymbols:
        """The checkerboard passes of the integer STEM over y (M, h, w): each half's means and scales, from the
        anchors decoded before it."""
        m, h, w = y.shape
        prep = self.stem.integer.prepare(z, to_fixed(y_prev), quality)
        residual = torch.zeros(m, h, w, dtype=torch.int64)
        mu = torch.zeros(m, h, w)
        index_grid = torch.zeros(m, h, w, dtype=torch.uint8)
        decoded = None
        passes = self._passes(h, w)
        for k, where in enumerate(passes):
            mu_fixed, idx = self.stem.integer.parameters(prep, where, decoded)
            mu_here = (mu_fixed * 2.0**-ACT_FRAC_BITS).float()
            res = torch.round(where.take(y) - mu_here).to(torch.int64)
            where.put(residual, res)
            where.put(mu, mu_here)
            where.put(index_grid, torch.from_numpy(idx))
            if k + 1 < len(passes):  # the anchors for the next pass, zero elsewhere
                decoded = to_fixed(torch.where(where.mask, residual.float() + mu, torch.zeros(())))
        return InterSymbols(z, residual.numpy(), index_grid.numpy(), mu)

    def packet_of(self, s: InterSymbols, quality: float, index: int) -> C.Packet:
        """z_t's substream, then one per checkerboard half, each in raster order of its positions."""
        m, h, w = s.residual.shape
        with self.timings.stage("rANS"):
            subs = [self.z_coder.encode(s.z, channel_map(s.z.shape))]
            for where in self._passes(h, w):
                subs.append(self.y_coder.encode(where.take(torch.from_numpy(s.residual)).numpy(),
                                                where.take(torch.from_numpy(s.scale_index)).numpy()))
        return C.Packet(index, C.FRAME_P, quality, (m, h, w), tuple(s.z.shape), subs)

    def cost(self, s: InterSymbols) -> float:
        """The bits packet_of(s) will hold, within a few bytes (the halves' order changes no code length)."""
        return coded_bits(self.z_coder, self.y_coder, s)

    def price(self, y: torch.Tensor, y_prev: torch.Tensor, quality: float,
              z: torch.Tensor) -> tuple[float, torch.Tensor, InterSymbols]:
        """(bits, the decoder's latent (1, M, h, w) on y's device, symbols), as IntraCoder.price."""
        s = self.symbols_of(y, y_prev, quality, z)
        return self.cost(s), s.decoded_latent()[None].to(y.device), s

    def parse_inter(self, packet: C.Packet, y_prev: torch.Tensor) -> InterSymbols:
        """Symbols back from a P-frame packet given the previous decoded latent, or DamagedStream."""
        cfg = self.stem.config
        passes = 2 if cfg.spm else 1
        m, h, w = packet.latent_shape
        if m != cfg.m or packet.hyper_shape[0] != cfg.n or len(packet.substreams) != 1 + passes:
            raise DamagedStream(f"frame {packet.index}: packet layout does not match model {self.stem.name}", packet.index)
        if tuple(y_prev.shape) != packet.latent_shape:
            raise DamagedStream(f"frame {packet.index}: P-frame of another size than the frame before it", packet.index)
        if not 0 <= packet.quality <= self.intra.bundle.config.levels - 1:
            raise DamagedStream(f"frame {packet.index}: quality {packet.quality:g} out of range", packet.index)
        stage = self.timings.stage
        try:
            with stage("rANS"):
                z = self.z_coder.decode(packet.substreams[0], channel_map(packet.hyper_shape))
            with stage("entropy model"):
                prep = self.stem.integer.prepare(z, to_fixed(y_prev), packet.quality)
            if prep.hyper.shape[1:] != (h, w):
                raise DamagedStream("hyper-latent shape mismatch")
            residual = torch.zeros(m, h, w, dtype=torch.int64)
            mu = torch.zeros(m, h, w)
            index_grid = torch.zeros(m, h, w, dtype=torch.uint8)
            decoded = None
            passes = self._passes(h, w)
            for k, where in enumerate(passes):
                with stage("entropy model"):
                    mu_fixed, idx = self.stem.integer.parameters(prep, where, decoded)
                with stage("rANS"):
                    res = torch.from_numpy(self.y_coder.decode(packet.substreams[1 + k], idx))
                with stage("entropy model"):
                    where.put(residual, res)
                    where.put(mu, (mu_fixed * 2.0**-ACT_FRAC_BITS).float())
                    where.put(index_grid, torch.from_numpy(idx))
                    if k + 1 < len(passes):  # the anchors for the next pass, zero elsewhere
                        decoded = to_fixed(torch.where(where.mask, residual.float() + mu, torch.zeros(())))
        except DamagedStream as e:
            raise DamagedStream(f"frame {packet.index}: {e}", packet.index) from None
        return InterSymbols(z, residual.numpy(), index_grid.numpy(), mu)
