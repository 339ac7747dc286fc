"""Encoder and decoder: frames in, packets out (and back), with padding, quality, GOP and device choice.

One frame in -> one packet out. The pixel path (g_a, g_s) runs on the chosen device; the entropy path (integer
h_s, tables, rANS) runs on the CPU with integers, so a stream made anywhere decodes anywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch
from torch.nn import functional as F

from vcodec import container as C
from vcodec.entropy import TableCoder
from vcodec.errors import DamagedStream, InputError
from vcodec.networks.intra import STRIDE_Z
from vcodec.weights import ModelBundle


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"unknown device '{name}' (auto, cpu, cuda or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: torch sees no CUDA device here (use --device cpu)")
    return torch.device(name)


def padded_size(width: int, height: int) -> tuple[int, int]:
    return -(-width // STRIDE_Z) * STRIDE_Z, -(-height // STRIDE_Z) * STRIDE_Z


def stream_header(bundle: ModelBundle, width: int, height: int, fps: Fraction, colour: C.Colour, gop: int) -> C.Header:
    """The file header of a stream this encoder writes (the frame count is filled in when it is finished)."""
    pw, ph = padded_size(width, height)
    return C.Header(
        model=bundle.name, weights_hash=bundle.sha256, width=width, height=height, padded_width=pw, padded_height=ph,
        fps=Fraction(fps).limit_denominator(1_000_000), entropy_form=C.ENTROPY_INTEGER, colour=colour,
        gop=min(gop, C.MAX_FRAMES),
    )


@dataclass
class Timings:
    """Seconds spent per stage, for the bench's network-versus-entropy split."""

    network: float = 0.0
    entropy: float = 0.0
    frames: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class IntraSymbols:
    """Everything an I-frame's entropy coder sees: z, round(y - mu), the scale index of each y, and mu."""

    z: np.ndarray  # int64 (N, H/64, W/64)
    residual: np.ndarray  # int64 (M, H/16, W/16)
    scale_index: np.ndarray  # uint8 (M, H/16, W/16)
    mu: torch.Tensor  # float32 (M, H/16, W/16), exact on every machine (integer h_s)


class FrameCoder:
    """Codes one frame at a time with one model: the I-frame path of the codec."""

    def __init__(self, bundle: ModelBundle, device: torch.device):
        self.bundle = bundle
        self.device = device
        self.model = bundle.model.to(device).eval()
        self.y_coder = TableCoder(bundle.gaussian)
        self.z_coder = TableCoder(bundle.z_tables)
        self.timings = Timings()

    def _channel_map(self, shape: tuple[int, int, int]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0], dtype=np.int64)[:, None, None], shape)

    def _quality(self, q: float) -> torch.Tensor:
        return torch.tensor([float(q)], device=self.device)

    @torch.no_grad()
    def symbols(self, rgb: np.ndarray, quality: float) -> IntraSymbols:
        """The analysis half of encoding: what the entropy coder will be asked to code."""
        h, w = rgb.shape[:2]
        pw, ph = padded_size(w, h)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float().div_(255)
        if (pw, ph) != (w, h):
            x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        y = self.model.analysis(x, self._quality(quality))
        z = torch.round(self.model.hyper_analysis(y))[0].to("cpu", torch.int64).numpy()
        mu, scale_index = self.bundle.h_s(z)
        residual = torch.round(y[0].float().cpu() - mu).to(torch.int64).numpy()
        return IntraSymbols(z, residual, scale_index, mu)

    def encode_intra(self, rgb: np.ndarray, quality: float, index: int) -> C.Packet:
        quality = C.representable_quality(quality)  # exactly what the decoder will read from the packet
        t0 = time.perf_counter()
        s = self.symbols(rgb, quality)
        t1 = time.perf_counter()
        subs = [self.z_coder.encode(s.z, self._channel_map(s.z.shape)), self.y_coder.encode(s.residual, s.scale_index)]
        self.timings.network += t1 - t0  # the integer h_s counts as network: it is one
        self.timings.entropy += time.perf_counter() - t1
        self.timings.frames += 1
        return C.Packet(index, C.FRAME_I, quality, tuple(s.residual.shape), tuple(s.z.shape), subs)

    def parse_intra(self, packet: C.Packet) -> IntraSymbols:
        """The entropy-decoding half of decoding: symbols back from a packet, or DamagedStream."""
        cfg = self.bundle.config
        if packet.frame_type != C.FRAME_I:
            raise DamagedStream(f"frame {packet.index}: P-frames are not supported by this decoder", packet.index)
        if packet.latent_shape[0] != cfg.m or packet.hyper_shape[0] != cfg.n or len(packet.substreams) != 2:
            raise DamagedStream(f"frame {packet.index}: packet layout does not match model {self.bundle.name}", packet.index)
        if not 0 <= packet.quality <= cfg.levels - 1:
            raise DamagedStream(f"frame {packet.index}: quality {packet.quality:g} out of range", packet.index)
        try:
            z = self.z_coder.decode(packet.substreams[0], self._channel_map(packet.hyper_shape))
            mu, scale_index = self.bundle.h_s(z)
            if tuple(mu.shape) != packet.latent_shape:
                raise DamagedStream("latent shape mismatch")
            residual = self.y_coder.decode(packet.substreams[1], scale_index)
        except DamagedStream as e:
            raise DamagedStream(f"frame {packet.index}: {e}", packet.index) from None
        return IntraSymbols(z, residual, scale_index, mu)

    @torch.no_grad()
    def decode_intra(self, packet: C.Packet, width: int, height: int) -> np.ndarray:
        t0 = time.perf_counter()
        s = self.parse_intra(packet)
        t1 = time.perf_counter()
        y_hat = (torch.from_numpy(s.residual).float() + s.mu)[None].to(self.device)
        x = self.model.synthesis(y_hat, self._quality(packet.quality))[0, :, :height, :width]
        rgb = torch.nan_to_num(x.float(), 0.0).clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        self.timings.entropy += t1 - t0
        self.timings.network += time.perf_counter() - t1
        self.timings.frames += 1
        return rgb
