"""The GOP orchestrator: frames in, packets out (and back), each frame an I-frame or a P-frame as the GOP says.

I-frames go through the intra coder (intra_coder.py), P-frames through the inter coder (inter_coder.py), which
conditions each one on the previous frame's decoded latent; both share the intra model's g_a and g_s. The pixel
path runs on the chosen device; the entropy path runs on the CPU with integers, so a stream made anywhere decodes
anywhere. A STEM P-frame's reconstruction is the intra model's g_s of its own latent, so nothing drifts along a
GOP: a long one costs only seeking and recovery after damage.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from vcodec import container as C
from vcodec import weights
from vcodec.errors import DamagedStream, InputError, ModelError
from vcodec.inter_coder import InterCoder
from vcodec.intra_coder import IntraCoder, timings_for
from vcodec.networks.pixel_path import native_bf16
from vcodec.refine import DEFAULT_PRESET, PRESETS, LatentSearch
from vcodec.weights import ModelBundle, StemBundle

# Frames from one I-frame to the next (benchmarks/gop.py measured the choice: see benchmarks/README.md).
DEFAULT_GOP = 32
# A P-frame's I-frame alternative is priced exactly only when the model's estimate of its bits is below this many
# times the P-frame's exact price. On the development clips the estimate lies within 0.3 % of the exact price on
# most frames and within 12 % on all (near-black frames the farthest), so above this margin the exact price could
# not choose the I-frame either; it spares 85 % of the exact prices (benchmarks/frame_type_filter.py).
INTRA_ESTIMATE_MARGIN = 1.25
ONLY_FIRST_INTRA = 0  # the stream's GOP field for --gop -1: only the first frame is an I-frame


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"unknown device '{name}' (auto, cpu, cuda or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: torch sees no CUDA device here (use --device cpu)")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> str:
    """The pixel path's precision (networks/pixel_path.py) for --precision on this device, or InputError."""
    from vcodec.networks.pixel_path import resolve_precision

    try:
        return resolve_precision(name, device)
    except ValueError as e:
        raise InputError(str(e)) from None


def padded_size(width: int, height: int, version: int = C.FORMAT_VERSION) -> tuple[int, int]:
    return C.padded(width, version), C.padded(height, version)


def is_intra(index: int, gop: int) -> bool:
    """Frame `index` is an I-frame: every gop-th frame, or only the first (gop 0)."""
    return index == 0 if gop == ONLY_FIRST_INTRA else index % gop == 0


def stream_header(bundle: ModelBundle, width: int, height: int, fps: Fraction, colour: C.Colour, gop: int,
                  stem: StemBundle | None = None) -> C.Header:
    """The file header of a stream this encoder writes (the frame count is filled in when it is finished). It
    names the P-frame model only when the stream will hold P-frames."""
    pw, ph = padded_size(width, height)
    inter = stem if stem is not None and gop != 1 else None
    return C.Header(
        model=bundle.name, weights_hash=bundle.sha256, width=width, height=height, padded_width=pw, padded_height=ph,
        fps=Fraction(fps).limit_denominator(1_000_000), entropy_form=C.ENTROPY_INTEGER, colour=colour,
        gop=min(gop, C.MAX_FRAMES), inter_model=inter.name if inter else None, inter_hash=inter.sha256 if inter else None,
    )


def choose_inter_model(bundle: ModelBundle, inter_model, gop: int | None, device) -> tuple[StemBundle | None, int]:
    """The P-frame model for this intra model and the stream's GOP field, from the user's --gop (None: not given;
    -1: only the first frame is an I-frame) and --inter-model: theirs, or the shipped one when it belongs to this
    intra model; all-intra when none does and P-frames were not asked for (ModelError when they were)."""
    header_gop = ONLY_FIRST_INTRA if gop == -1 else gop
    if header_gop == 1:
        return None, 1
    asked = gop is not None or inter_model is not None
    try:
        stem = weights.load_stem(inter_model or weights.DEFAULT_STEM_MODEL, device)
    except ModelError:
        if inter_model is not None or gop is not None:
            raise
        return None, 1  # no P-frame model installed: all-intra, as --gop 1
    if stem.intra_sha256 != bundle.sha256:
        if not asked:
            return None, 1  # the shipped P-frame model is for the shipped intra model, not this one
        raise ModelError(f"P-frame model '{stem.name}' was trained over intra model '{stem.intra_name}' (sha256 "
                         f"{stem.intra_sha256.hex()[:16]}...), not over '{bundle.name}' (sha256 {bundle.hash_hex[:16]}...); "
                         "give --gop 1 for all-intra, or --inter-model")
    return stem, DEFAULT_GOP if header_gop is None else header_gop


class VideoEncoder:
    """One frame in, one packet out, I or P as the GOP says; keeps the decoder's state (the decoded latent). With
    `adaptive`, a frame the GOP makes a P-frame is coded as an I-frame when that costs fewer bits."""

    def __init__(self, bundle: ModelBundle, device: torch.device, gop: int = 1, stem: StemBundle | None = None,
                 preset: str = DEFAULT_PRESET, adaptive: bool = True, precision: str = "auto"):
        if gop != 1 and stem is None:
            raise ValueError("a GOP longer than 1 needs a P-frame model")
        if preset not in PRESETS:
            raise InputError(f"unknown preset '{preset}' (one of {', '.join(PRESETS)})")
        self.timings = timings_for(device)
        self.intra = IntraCoder(bundle, device, self.timings, pick_precision(precision, device))
        self.inter = InterCoder(stem, self.intra) if stem is not None and gop != 1 else None
        self.search = (LatentSearch(self.intra.model, PRESETS[preset], self.inter.model if self.inter else None)
                       if PRESETS[preset].iterations else None)
        self.gop = gop
        self.adaptive = adaptive
        # the cheap estimate pays where bf16 is native (elsewhere it costs what the exact price costs), and while
        # the I-frame alternative keeps being clearly dearer (after a close call the next frame is priced exactly
        # at once: there an estimate would most likely be spent for nothing)
        self.estimate_intra = native_bf16(device)
        self._intra_was_clearly_dearer = True
        self.index = 0
        self.y_hat: torch.Tensor | None = None  # the previous frame's decoded latent, as the decoder has it
        self.symbols = None  # the last frame's symbols (tests compare them with the decoder's)

    def encode(self, rgb: np.ndarray, quality: float, raw: torch.Tensor | None = None) -> C.Packet:
        """The next frame's packet; `raw`: its g_a latent at gain 1, when rate control already computed it."""
        quality = C.representable_quality(quality)  # exactly what the decoder will read from the packet
        with self.timings.stage("read"):
            x = self.intra.picture(rgb)
        y = self.intra.analysis(x, quality, raw)
        intra = self.inter is None or is_intra(self.index, self.gop) or self.y_hat is None
        symbols = None
        if not intra and self.adaptive:
            intra, symbols = self._cheaper_type(y, quality)
        if self.search is not None:  # refined for the frame type it will be coded as, priced by its own coder
            with self.timings.stage("latent search"):
                if intra:
                    symbols = self.search.refine(y, x, self.intra.quality(quality), self.intra.price)
                else:
                    price = lambda y_, z_: self.inter.price(y_, self.y_hat, quality, z_)  # noqa: E731
                    y_prev = self.y_hat[None].to(y.device)
                    symbols = self.search.refine(y, x, self.intra.quality(quality), price, y_prev)
        if intra:
            symbols = self.intra.symbols_of(y) if symbols is None else symbols
            packet = self.intra.packet_of(symbols, quality, self.index)
        else:
            symbols = self.inter.symbols_of(y, self.y_hat, quality) if symbols is None else symbols
            packet = self.inter.packet_of(symbols, quality, self.index)
        self.symbols = symbols
        self.y_hat = symbols.decoded_latent()
        self.timings.frames += 1
        self.index += 1
        return packet

    def _cheaper_type(self, y: torch.Tensor, quality: float):
        """(intra, symbols): whether this frame costs fewer bits as an I-frame than as a P-frame, and its symbols as
        the cheaper one. Both are the integer path's real symbols, priced by the tables' code lengths (within a few
        bytes of the packets); the I-frame is priced so only when the model's estimate of its bits does not put it
        clearly above the P-frame (INTRA_ESTIMATE_MARGIN). Where the previous frame predicts nothing (a cut, a
        flash, motion the temporal prior cannot follow) an I-frame is the cheaper P-frame, and it restarts the
        chain."""
        as_p = self.inter.symbols_of(y, self.y_hat, quality)
        with self.timings.stage("frame type"):
            p_bits = self.inter.cost(as_p)
            if (self.estimate_intra and self._intra_was_clearly_dearer
                    and self.intra.estimated_bits(y) >= INTRA_ESTIMATE_MARGIN * p_bits):
                return False, as_p  # clearly dearer as an I-frame: not worth its exact price
        as_i = self.intra.symbols_of(y)  # at 1/64 resolution its entropy model costs a fraction of STEM's
        with self.timings.stage("frame type"):
            i_bits = self.intra.cost(as_i)
        self._intra_was_clearly_dearer = i_bits >= INTRA_ESTIMATE_MARGIN * p_bits
        intra = i_bits < p_bits
        return intra, as_i if intra else as_p


class VideoDecoder:
    """Packets in frame order -> pictures; a P-frame needs the frame before it decoded."""

    def __init__(self, bundle: ModelBundle, device: torch.device, stem: StemBundle | None = None,
                 precision: str = "auto"):
        self.timings = timings_for(device)
        self.intra = IntraCoder(bundle, device, self.timings, pick_precision(precision, device))
        self.inter = InterCoder(stem, self.intra) if stem is not None else None
        self.y_hat: torch.Tensor | None = None

    def decode(self, packet: C.Packet, width: int, height: int) -> np.ndarray:
        self.parse(packet)
        return self.picture(self.y_hat, packet.quality, width, height)

    def picture(self, y_hat: torch.Tensor, quality: float, width: int, height: int) -> np.ndarray:
        """g_s of a decoded latent, uint8 (height, width, 3); the decoder's state (its latent) stays as it is."""
        rgb = self.intra.reconstruct(y_hat, quality, width, height)
        self.timings.frames += 1
        return rgb

    def parse(self, packet: C.Packet):
        """A packet's symbols, keeping the state (the decoded latent, self.y_hat, which the next P-frame needs)."""
        if packet.frame_type == C.FRAME_I:
            s = self.intra.parse_intra(packet)
        else:
            if self.inter is None:
                raise DamagedStream(f"frame {packet.index}: a P-frame, but no P-frame model is loaded", packet.index)
            if self.y_hat is None:
                raise DamagedStream(f"frame {packet.index}: a P-frame with no decoded frame before it", packet.index)
            s = self.inter.parse_inter(packet, self.y_hat)
        self.y_hat = s.decoded_latent()
        return s
