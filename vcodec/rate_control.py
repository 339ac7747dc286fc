"""Rate control: a target bitrate, bpp or PSNR-RGB for the stream, met by choosing each GOP's quality.

Quality changes only at I-frames: STEM learnt one quality per GOP (a P-frame's prior expects the previous latent at
its own scale). The planner looks ahead one GOP. Its frames go through g_a once; the per-quality gains multiply
g_a's output, so every candidate quality's latent comes from that one pass, and the encoder reuses it.

- Bitrate / bpp: the model's own rate estimate of the whole GOP (the intra hyperprior for the I-frame, the float
  STEM chain for the P-frames, both at 1/16 resolution and cheap beside g_a) at a few qualities, log-rate
  interpolated between them, gives the quality whose estimate meets the GOP's share of the budget: its frames'
  part of the target plus the error so far (all of it in the last GOP, half of it before). Packet and file
  overhead are counted exactly, and estimates are corrected by how real payloads compared with them so far.
- PSNR-RGB: the quality at which four frames spread over the GOP, reconstructed as I-frames (g_s of the rounded
  latent, as coded), reach the target (plus a small margin) on average; a P-frame's picture is as good as an
  I-frame's at the same quality, so the GOP's frames are about as good as those four.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from vcodec import container as C
from vcodec import quality as Q
from vcodec.errors import InputError

_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)(?:bit/s|bps|b)?\s*$")
# The probes stand for the GOP only roughly (0.1-0.2 dB either way on the sample clip): aim this much higher.
PSNR_MARGIN = 0.1
PACKET_HEADER_BYTES = 31  # a packet header's fixed part and its two CRCs (docs/FORMAT.md), plus 4 per substream


def parse_bitrate(text: str) -> float:
    """'800k', '1.5M', '750000' -> bits per second."""
    m = _RATE.match(str(text))
    if not m:
        raise InputError(f"--bitrate: expected a rate like 800k, 1.5M or 750000, got '{text}'")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if not 1e3 <= value <= 1e10:
        raise InputError(f"--bitrate must be between 1k and 10G bits/s, got '{text}'")
    return value


@dataclass(frozen=True)
class Target:
    kind: str  # "bitrate" (bits/s), "bpp" (bits per pixel of the picture) or "psnr" (dB, PSNR-RGB)
    value: float

    def __post_init__(self):
        if self.kind not in ("bitrate", "bpp", "psnr"):
            raise ValueError(f"unknown rate-control target {self.kind!r}")
        if not (math.isfinite(self.value) and self.value > 0):
            raise InputError(f"--{self.kind}: the target must be a positive number")


class QualityPlanner:
    """Chooses each GOP's quality for a VideoEncoder (codec.py), one GOP ahead.

    A bitrate is bits per second of the stream's duration. With evenly spaced frames that is frames / fps, and a GOP's
    share is its frames' part of the target; for a source whose frames carry their own times (a variable frame rate)
    `seconds(count, last)` says how long the next `count` frames are shown (None while they are evenly spaced), and a
    GOP's share is the target over that time."""

    def __init__(self, encoder, target: Target, width: int, height: int, fps, header_bytes: int,
                 seconds: Callable[[int, bool], float | None] | None = None):
        self.encoder, self.target = encoder, target
        self.pixels = width * height
        self.fps = float(fps)
        self.seconds_of = seconds if target.kind == "bitrate" else None
        self.seconds = 0.0  # of the GOPs coded so far, when a GOP was timed (then the budget counts seconds)
        self.timed = False
        if target.kind == "bitrate":
            self.frame_bits = target.value / float(fps)
        elif target.kind == "bpp":
            self.frame_bits = target.value * self.pixels
        else:
            self.frame_bits = None
        self.frames = 0
        self.spent_bits = 8.0 * (header_bytes + C.index_size(0))  # file overhead, whatever the frames
        self.estimated_payload = self.real_payload = 0.0
        self.substreams = (3 if encoder.inter.stem.config.spm else 2) if encoder.inter else 2

    # -- the model's view of a GOP at a quality ----------------------------------------------------------------
    @torch.no_grad()
    def _gop_bits(self, raws: list[torch.Tensor], q: float) -> float:
        intra = self.encoder.intra.model
        qq = self.encoder.intra.quality(q)
        gain = intra.gain(qq)
        total, y_hat = intra.coded_estimate(raws[0] * gain)
        bits = float(total.sum())
        for raw in raws[1:]:  # each P-frame as the encoder will code it: as an I-frame where that is cheaper
            y = raw * gain
            out = self.encoder.inter.model(y, y_hat, qq)
            as_p = float(out["bits_y"].sum() + out["bits_z"].sum())
            as_i, i_hat = intra.coded_estimate(y) if self.encoder.adaptive else (None, None)
            if as_i is not None and float(as_i.sum()) < as_p:
                bits, y_hat = bits + float(as_i.sum()), i_hat
            else:
                bits, y_hat = bits + as_p, out["y_hat"]
        return bits

    @torch.no_grad()
    def _intra_psnr(self, raw: torch.Tensor, x: torch.Tensor, q: float) -> float:
        intra = self.encoder.intra.model
        qq = self.encoder.intra.quality(q)
        _, y_hat = intra.coded_estimate(raw * intra.gain(qq))
        h, w = x.shape[-2:]
        x_hat = intra.synthesis(y_hat, qq)[..., :h, :w].clamp(0, 1)
        x_hat = torch.round(x_hat * 255) / 255  # as the decoder writes it
        mse = float(torch.mean((x_hat - x) ** 2))
        return 100.0 if mse == 0 else 10 * math.log10(1 / mse)

    @staticmethod
    def _solve(f, goal: float, rising: bool = True) -> float:
        """The quality in [0, 7] where f (monotone in q) meets `goal`: bracketing, then linear interpolation of f
        between the bracket's ends (f is close to linear in q for log-rate and for PSNR)."""
        lo, hi = float(Q.MIN_QUALITY), float(Q.MAX_QUALITY)
        f_lo, f_hi = f(lo), f(hi)
        if (goal <= f_lo) == rising:
            return lo
        if (goal >= f_hi) == rising:
            return hi
        for _ in range(2):
            mid = (lo + hi) / 2
            f_mid = f(mid)
            if (f_mid < goal) == rising:
                lo, f_lo = mid, f_mid
            else:
                hi, f_hi = mid, f_mid
        t = (goal - f_lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5
        return lo + min(1.0, max(0.0, t)) * (hi - lo)

    def plan(self, frames: list[np.ndarray], raws: list[torch.Tensor], last: bool) -> float:
        """The quality of the GOP made of `frames` (their g_a latents at gain 1: `raws`); `last`: no GOP follows."""
        if self.frame_bits is None:  # four frames spread over the GOP stand for it
            n = len(frames)
            probes = sorted({0, n // 3, 2 * n // 3, n - 1})
            xs = {i: self.encoder.intra.picture(frames[i]) for i in probes}
            q = self._solve(lambda v: sum(self._intra_psnr(raws[i], xs[i], v) for i in probes) / len(probes),
                            self.target.value + PSNR_MARGIN)
            return C.representable_quality(min(Q.MAX_QUALITY, q + 1 / C.QUALITY_STEPS / 2))  # at least the target
        n = len(frames)
        overhead = 8.0 * n * (PACKET_HEADER_BYTES + 4 * self.substreams) + 8 * 13 * n  # packet headers, index
        seconds = self.seconds_of(n, last) if self.seconds_of else None
        if seconds is not None:
            self.timed = True
            overhead += 8.0 * n * (C.packet_header_size(0, True) - C.packet_header_size(0, False))  # their pts
        if not self.timed:
            owed = self.frame_bits * (self.frames + n) - self.spent_bits  # this GOP's share, with the error so far
            share = self.frame_bits * n
        else:  # the target over the time the GOP is shown (frames before the first timed GOP: at 1 / fps each)
            seconds = float(seconds) if seconds is not None else n / self.fps
            owed = self.target.value * (self.seconds + seconds) - self.spent_bits
            share = self.target.value * seconds
        budget = max(0.05 * share, owed if last else share + 0.5 * (owed - share)) - overhead
        scale = self.real_payload / self.estimated_payload if self.estimated_payload else 1.0
        goal = math.log(max(1.0, budget / scale))
        q = self._solve(lambda v: math.log(max(1.0, self._gop_bits(raws, v))), goal)
        self._pending = (n, self._gop_bits(raws, C.representable_quality(q)),
                         float(seconds) if self.timed else n / self.fps)
        return C.representable_quality(q)

    def record(self, packet_bytes: list[int], payload_bytes: int) -> None:
        """What the GOP really cost once coded (packets as written, their payloads alone)."""
        n, estimate, seconds = getattr(self, "_pending", (len(packet_bytes), 0.0, len(packet_bytes) / self.fps))
        self.frames += n
        self.seconds += seconds
        self.spent_bits += 8.0 * (sum(packet_bytes) + 13 * n)
        if estimate:
            self.estimated_payload += estimate
            self.real_payload += 8.0 * payload_bytes


def gops(frames, gop: int):
    """(the frames of each GOP, whether it is the last), reading one frame ahead to know."""
    it = iter(frames)
    ahead = next(it, None)
    chunk = []
    while ahead is not None:
        chunk.append(ahead)
        ahead = next(it, None)
        if len(chunk) == gop or ahead is None:
            yield chunk, ahead is None
            chunk = []


def encode_at_target(encoder, planner: QualityPlanner, frames, gop: int, emit, before_gop=None) -> list[float]:
    """Encode `frames` with `encoder` (codec.VideoEncoder), one planned quality per GOP of `gop` frames (1: per
    frame); `emit(rgb, packet) -> bytes written` stores each packet. Returns the qualities chosen, GOP by GOP."""
    chosen = []
    for gop_frames, last in gops(frames, gop):
        if before_gop:
            before_gop()
        raws = [encoder.intra.raw_analysis(rgb) for rgb in gop_frames]  # its own stages: read, g_a
        with encoder.timings.stage("rate control"):
            q = planner.plan(gop_frames, raws, last)
        chosen.append(q)
        sizes, payload = [], 0
        for rgb, raw in zip(gop_frames, raws):
            packet = encoder.encode(rgb, q, raw)
            sizes.append(emit(rgb, packet))
            payload += sum(len(sub) for sub in packet.substreams)
        planner.record(sizes, payload)
    return chosen
