"""I-frames: one picture -> one packet with the intra model (mean-scale hyperprior), and back.

The picture is padded to a multiple of 16 (replicate) for g_a; the latent covers the picture and only its own
symbols are coded. The hyper-analysis sees the latent padded to a multiple of 4 (replicate), and the hyper-synthesis'
output is cropped back to the latent's size. (Streams of format v1 padded the picture to 64 and coded every latent;
their shapes are multiples of 4 already, so the same code decodes them.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from vcodec import container as C
from vcodec.allocator import keep_large_buffers
from vcodec.entropy import TableCoder
from vcodec.errors import DamagedStream
from vcodec.networks.layers import pad_to_hyper
from vcodec.networks.pixel_path import PixelPath, native_bf16, picture_bytes
from vcodec.stages import Timings
from vcodec.weights import ModelBundle


@dataclass
class IntraSymbols:
    """Everything an I-frame's entropy coder sees: z, round(y - mu), the scale index of each y, and mu."""

    z: np.ndarray  # int64 (N, ceil(h/4), ceil(w/4))
    residual: np.ndarray  # int64 (M, h, w)
    scale_index: np.ndarray  # uint8 (M, h, w)
    mu: torch.Tensor  # float32 (M, h, w), exact on every machine (integer h_s)

    def decoded_latent(self) -> torch.Tensor:
        """y_hat = residual + mu, float32 on the CPU: bit for bit what the decoder holds."""
        return torch.from_numpy(self.residual).float() + self.mu


def timings_for(device: torch.device) -> Timings:
    """Stage timings that wait for a GPU at each stage's end (its work is asynchronous)."""
    return Timings(torch.cuda.synchronize if device.type == "cuda" else None)


def coded_bits(z_coder: TableCoder, y_coder: TableCoder, s) -> float:
    """The bits a frame's symbols (intra or inter: z, residual, scale index) take in their substreams, within a few
    bytes: how the encoder chooses a frame's type without coding it twice."""
    return z_coder.cost(s.z, channel_map(s.z.shape)) + y_coder.cost(s.residual, s.scale_index)


def channel_map(shape: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[0], dtype=np.int64)[:, None, None], shape)


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> uint8 (H, W, 3) on the CPU."""
    return picture_bytes(x).numpy()


class IntraCoder:
    """The I-frame path: analysis (g_a, shared with P-frames), entropy coding, synthesis (g_s, shared too)."""

    def __init__(self, bundle: ModelBundle, device: torch.device, timings: Timings | None = None,
                 precision: str = "auto"):
        keep_large_buffers()  # a frame's activations reused, not page-faulted in again, layer after layer
        self.bundle = bundle
        self.device = device
        self.model = bundle.model.to(device).eval()
        self.pixels = PixelPath(self.model, device, precision)  # g_a and g_s as this device runs them fastest
        self.y_coder = TableCoder(bundle.gaussian)
        self.z_coder = TableCoder(bundle.z_tables)
        self.timings = timings or timings_for(device)
        self._estimate_hyper: tuple | None = None  # estimated_bits's h_a and h_s, made at its first call

    def quality(self, q: float) -> torch.Tensor:
        return torch.tensor([float(q)], device=self.device)

    def picture(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1] on the device."""
        return torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float().div_(255)

    @torch.no_grad()
    def raw_analysis(self, rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (H, W, 3) or picture() -> g_a(x) at gain 1, (1, M, ceil(H/16), ceil(W/16)) on the device: every
        quality's latent is this times its gains (rate control estimates several from one pass)."""
        if isinstance(rgb, np.ndarray):
            with self.timings.stage("read"):
                x = self.picture(rgb)
        else:
            x = rgb
        with self.timings.stage("g_a"):
            h, w = x.shape[-2:]
            ph, pw = C.padded(h) - h, C.padded(w) - w
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            return self.pixels.g_a(x).contiguous()

    def analysis(self, rgb: np.ndarray | torch.Tensor, quality: float, raw: torch.Tensor | None = None) -> torch.Tensor:
        """y = g_a(x) * gain[q] (the same numbers as IntraModel.analysis), from `raw` when it is at hand."""
        raw = self.raw_analysis(rgb) if raw is None else raw
        return raw * self.model.gain(self.quality(quality)).to(raw.dtype)

    @torch.no_grad()
    def symbols_of(self, y: torch.Tensor, z: torch.Tensor | None = None) -> IntraSymbols:
        """The symbols of latent y (1, M, h, w) with hyper-latent z (1, N, ...; integers), by default h_a's."""
        h, w = y.shape[-2:]
        with self.timings.stage("h_a"):
            z = torch.round(self.model.hyper_analysis(pad_to_hyper(y))) if z is None else z
            z = z[0].to("cpu", torch.int64).numpy()
        with self.timings.stage("entropy model"):
            mu, scale_index = self.bundle.h_s(z)
            mu, scale_index = mu[:, :h, :w], np.ascontiguousarray(scale_index[:, :h, :w])
            residual = torch.round(y[0].float().cpu() - mu).to(torch.int64).numpy()
        return IntraSymbols(z, residual, scale_index, mu)

    @torch.no_grad()
    def estimated_bits(self, y: torch.Tensor) -> float:
        """The model's estimate of the bits of latent y (1, M, h, w) as an I-frame (IntraModel.coded_estimate),
        its hyper networks in bf16 where that is native (a copy made once): mostly within 0.3 % of
        cost(symbols_of(y)), at most 12 % on the development clips, for less than half its time
        (benchmarks/frame_type_filter.py)."""
        if self._estimate_hyper is None:
            dtype = torch.bfloat16 if native_bf16(self.device) else torch.float32
            self._estimate_hyper = tuple(copy.deepcopy(net).to(dtype) for net in (self.model.h_a, self.model.h_s))
        total, _ = self.model.coded_estimate(y, self._estimate_hyper)
        return float(total.sum())

    def symbols(self, rgb: np.ndarray, quality: float) -> IntraSymbols:
        """The analysis half of encoding: what the entropy coder will be asked to code."""
        return self.symbols_of(self.analysis(rgb, quality))

    def packet_of(self, s: IntraSymbols, quality: float, index: int) -> C.Packet:
        with self.timings.stage("rANS"):
            subs = [self.z_coder.encode(s.z, channel_map(s.z.shape)), self.y_coder.encode(s.residual, s.scale_index)]
        return C.Packet(index, C.FRAME_I, quality, tuple(s.residual.shape), tuple(s.z.shape), subs)

    def cost(self, s: IntraSymbols) -> float:
        """The bits packet_of(s) will hold, within a few bytes."""
        return coded_bits(self.z_coder, self.y_coder, s)

    def price(self, y: torch.Tensor, z: torch.Tensor) -> tuple[float, torch.Tensor, IntraSymbols]:
        """(bits, the decoder's latent (1, M, h, w) on y's device, symbols) of latent y with hyper-latent z: what
        the encoder's latent search (refine.py) weighs."""
        s = self.symbols_of(y, z)
        return self.cost(s), s.decoded_latent()[None].to(y.device), s

    def encode_intra(self, rgb: np.ndarray, quality: float, index: int) -> C.Packet:
        quality = C.representable_quality(quality)  # exactly what the decoder will read from the packet
        y = self.analysis(rgb, quality)
        self.timings.frames += 1
        return self.packet_of(self.symbols_of(y), quality, index)

    def parse_intra(self, packet: C.Packet) -> IntraSymbols:
        """The entropy-decoding half of decoding: symbols back from a packet, or DamagedStream."""
        cfg = self.bundle.config
        if packet.frame_type != C.FRAME_I:
            raise DamagedStream(f"frame {packet.index}: not an I-frame", packet.index)
        if packet.latent_shape[0] != cfg.m or packet.hyper_shape[0] != cfg.n or len(packet.substreams) != 2:
            raise DamagedStream(f"frame {packet.index}: packet layout does not match model {self.bundle.name}", packet.index)
        if not 0 <= packet.quality <= cfg.levels - 1:
            raise DamagedStream(f"frame {packet.index}: quality {packet.quality:g} out of range", packet.index)
        _, h, w = packet.latent_shape
        stage = self.timings.stage
        try:
            with stage("rANS"):
                z = self.z_coder.decode(packet.substreams[0], channel_map(packet.hyper_shape))
            with stage("entropy model"):
                mu, scale_index = self.bundle.h_s(z)
            if mu.shape[1] < h or mu.shape[2] < w:
                raise DamagedStream("latent shape mismatch")
            mu, scale_index = mu[:, :h, :w], np.ascontiguousarray(scale_index[:, :h, :w])
            with stage("rANS"):
                residual = self.y_coder.decode(packet.substreams[1], scale_index)
        except DamagedStream as e:
            raise DamagedStream(f"frame {packet.index}: {e}", packet.index) from None
        return IntraSymbols(z, residual, scale_index, mu)

    @torch.no_grad()
    def reconstruct(self, y_hat: torch.Tensor, quality: float, width: int, height: int) -> np.ndarray:
        """g_s of a decoded latent (M, h, w), cropped to the picture: uint8 (height, width, 3)."""
        with self.timings.stage("g_s"):
            y = y_hat[None].to(self.device) * self.model.inverse_gain(self.quality(quality))
            return self.pixels.g_s.picture(y, height, width).numpy()

    def decode_packet(self, packet: C.Packet, width: int, height: int) -> tuple[np.ndarray, torch.Tensor]:
        """(picture, decoded latent) of an I-frame packet."""
        y_hat = self.parse_intra(packet).decoded_latent()
        rgb = self.reconstruct(y_hat, packet.quality, width, height)
        self.timings.frames += 1
        return rgb, y_hat

    def decode_intra(self, packet: C.Packet, width: int, height: int) -> np.ndarray:
        return self.decode_packet(packet, width, height)[0]
