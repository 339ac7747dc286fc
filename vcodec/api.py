"""The Python API behind the command line: encode(), decode(), probe().

    import vcodec
    vcodec.encode("in.mp4", "out.hfc", quality=4)
    vcodec.decode("out.hfc", "back.mp4")
    info = vcodec.probe("out.hfc")
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from vcodec import container as C
from vcodec import quality as Q
from vcodec.errors import DamagedStream, InputError, ModelError
from vcodec.media import SIZE_LIMIT, check_picture_size, check_sink_path, open_sink, open_source, too_large
from vcodec.paths import check_output, named_path


@dataclass
class EncodeResult:
    frames: int
    bytes: int
    width: int
    height: int
    fps: Fraction
    seconds: float
    psnr: float | None = None  # mean PSNR-RGB over frames, when asked for
    timings: dict = field(default_factory=dict)
    gop: int = 1  # as recorded in the stream (0: only the first frame is an I-frame)
    inter_model: str | None = None  # the P-frame model, when the stream holds P-frames
    p_frames: int = 0

    @property
    def bpp(self) -> float:
        return self.bytes * 8 / max(1, self.width * self.height * self.frames)


@dataclass
class DecodeResult:
    frames: int
    width: int
    height: int
    fps: Fraction
    seconds: float
    timings: dict = field(default_factory=dict)


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    err = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if err == 0 else 10 * math.log10(255.0**2 / err)


def _load_bundle(model: str | os.PathLike, device):
    """The user's own choice (--model): a shipped model's name or a path to a weights file."""
    from vcodec import weights

    return weights.load(model, device)


def _load_named_bundle(name: str, device):
    """The model a stream names: a bare name, looked up among the shipped models only, never opened as a path."""
    from vcodec import weights

    if not weights.is_model_name(name):
        raise ModelError(f"the stream names model {ascii(name)}, which is not a model name ({weights.MODEL_NAME_RULE}); "
                         "to use a weights file, give it with --model")
    return weights.load_named(name, device)


def _load_inter_bundle(h: C.Header, bundle, device):
    """The P-frame model a stream names (shipped models only), checked against its hash and its intra model."""
    from vcodec import weights

    if h.inter_model is None:
        return None
    if not weights.is_model_name(h.inter_model):
        raise ModelError(f"the stream names P-frame model {ascii(h.inter_model)}, which is not a model name "
                         f"({weights.MODEL_NAME_RULE})")
    stem = weights.load_stem_named(h.inter_model, device)
    if stem.sha256 != h.inter_hash:
        raise ModelError(f"stream was made with P-frame model '{h.inter_model}' (weights sha256 "
                         f"{h.inter_hash.hex()[:16]}...), but the installed '{stem.name}' has sha256 {stem.hash_hex[:16]}...")
    if stem.intra_sha256 != bundle.sha256:
        raise ModelError(f"P-frame model '{stem.name}' belongs to intra model '{stem.intra_name}', not to the "
                         f"loaded '{bundle.name}'")
    return stem


def encode(
    input: str | os.PathLike,
    output: str | os.PathLike,
    quality: float = Q.DEFAULT_QUALITY,
    frames: int | None = None,
    start: int = 0,
    gop: int | None = None,
    fps: Fraction | float | None = None,
    device: str = "auto",
    model: str | os.PathLike | None = None,
    overwrite: bool = False,
    psnr: bool = False,
    on_start: Callable[[dict], None] | None = None,
    on_frame: Callable[[int, int, int, float | None], None] | None = None,
    inter_model: str | os.PathLike | None = None,
) -> EncodeResult:
    """Encode a video, .y4m, folder of PNG frames or image into a .hfc stream written atomically at `output`.

    `gop`: frames from one I-frame to the next (1: all-intra; -1: only the first frame is an I-frame; None: the
    default, with P-frames when a P-frame model for this intra model is installed)."""
    from vcodec.codec import VideoDecoder, VideoEncoder, choose_inter_model, pick_device, stream_header
    from vcodec.weights import DEFAULT_MODEL

    output = Path(output)
    if not Q.MIN_QUALITY <= quality <= Q.MAX_QUALITY:
        raise InputError(f"quality must be in {Q.MIN_QUALITY}..{Q.MAX_QUALITY}, got {quality:g}")
    if frames is not None and frames < 1:
        raise InputError("--frames must be at least 1")
    if start < 0:
        raise InputError("--start must be >= 0")
    if gop is not None and (gop < -1 or gop == 0 or gop > C.MAX_FRAMES):
        raise InputError("--gop must be at least 1, or -1 (only the first frame is an I-frame)")
    if fps is not None and not 0 < float(fps) <= 1000:
        raise InputError("--fps must be in (0, 1000]")
    check_output(output, overwrite, (Path(input),))
    rate = Fraction(fps).limit_denominator(1001) if fps is not None else None
    dev = pick_device(device)
    t0 = time.perf_counter()
    with open_source(input, rate) as source:
        info = source.info
        check_picture_size(info.width, info.height, input)  # sources check their header; this is what they decoded
        bundle = _load_bundle(model or DEFAULT_MODEL, dev)
        stem, header_gop = choose_inter_model(bundle, inter_model, gop, dev)
        coder = VideoEncoder(bundle, dev, header_gop, stem)
        checker = VideoDecoder(bundle, dev, stem) if psnr else None  # its own timings: the check is not encoding work
        header = stream_header(bundle, info.width, info.height, info.fps, info.colour, header_gop, stem)
        fps_out = header.fps
        expected = None
        if info.frame_count is not None:
            expected = max(0, info.frame_count - start)
            if frames is not None:
                expected = min(expected, frames)
        if on_start:
            on_start({"width": info.width, "height": info.height, "fps": fps_out, "frames": expected,
                      "source": info.description, "model": bundle.name, "device": str(dev)})
        total = 0
        n = 0
        p_frames = 0
        scores = []
        with C.StreamWriter(output, header) as writer:
            for rgb in source.frames(start, frames):
                packet = coder.encode(rgb, quality)
                nbytes = writer.write(packet)
                p_frames += packet.frame_type == C.FRAME_P
                score = None
                if checker:
                    score = psnr_rgb(checker.decode(packet, info.width, info.height), rgb)
                    scores.append(score)
                total += nbytes
                n += 1
                if on_frame:
                    on_frame(n, nbytes, total, score)
            if n == 0:
                raise InputError(f"{input}: no frames to encode (start {start} is past the end?)")
        size = output.stat().st_size
    mean_psnr = sum(scores) / len(scores) if scores else None
    return EncodeResult(n, size, info.width, info.height, fps_out, time.perf_counter() - t0, mean_psnr,
                        asdict(coder.timings), header.gop, header.inter_model, p_frames)


def decode(
    input: str | os.PathLike,
    output: str | os.PathLike,
    device: str = "auto",
    model: str | os.PathLike | None = None,
    overwrite: bool = False,
    codec: str | None = None,
    crf: int | None = None,
    on_start: Callable[[dict], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> DecodeResult:
    """Decode a .hfc stream to a video, .y4m or PNG-frame folder.

    A damaged stream raises DamagedStream after the intact frames before the damage were written (as a complete
    output); when no frame is intact, nothing is written.
    """
    from vcodec.codec import VideoDecoder, pick_device

    output = named_path(output)  # '.' and '..' name a folder
    check_output(output, overwrite, (Path(input),))
    check_sink_path(output, codec, crf)
    dev = pick_device(device)
    t0 = time.perf_counter()
    try:
        reader = C.StreamReader(Path(input))
    except FileNotFoundError:
        raise InputError(f"input not found: {input}") from None
    except IsADirectoryError:
        raise InputError(f"{input} is a folder, not an .hfc stream") from None
    with reader:
        h = reader.header
        if too_large(h.width, h.height):  # what the encoder refuses to make; would cost tens of GB to decode
            raise DamagedStream(f"bad header: frame size {h.width}x{h.height} is larger than this version decodes "
                                f"({SIZE_LIMIT}); nothing written")
        if h.entropy_form != C.ENTROPY_INTEGER:
            raise DamagedStream(f"stream uses the {C.ENTROPY_FORMS[h.entropy_form]} entropy form, which this decoder does not read")
        bundle = _load_bundle(model, dev) if model else _load_named_bundle(h.model, dev)
        if bundle.sha256 != h.weights_hash:
            raise ModelError(
                f"stream was made with model '{h.model}' (weights sha256 {h.weights_hash.hex()[:16]}...), but the loaded "
                f"weights {bundle.path} are '{bundle.name}' (sha256 {bundle.hash_hex[:16]}...)"
            )
        stem = _load_inter_bundle(h, bundle, dev)
        coder = VideoDecoder(bundle, dev, stem)
        if on_start:
            on_start({"width": h.width, "height": h.height, "fps": h.fps, "frames": h.frame_count, "model": h.model})
        sink = None
        n = 0
        damage = None
        try:
            try:
                for packet in reader.packets():
                    rgb = coder.decode(packet, h.width, h.height)
                    if sink is None:
                        sink = open_sink(output, h.width, h.height, h.fps, h.colour, codec, crf)
                    sink.write(rgb)
                    n += 1
                    if on_frame:
                        on_frame(n)
            except DamagedStream as e:
                damage = e  # the intact frames before it are still published
            if sink is not None:
                sink.close()
        except BaseException:
            if sink is not None:
                sink.abort()  # also when publishing failed: no temp file or folder is left behind
            raise
        if damage is not None:
            if sink is not None:
                raise DamagedStream(f"{damage}; wrote the {n} intact frame{'s' if n != 1 else ''} before it to {output}",
                                    damage.frame) from None
            raise DamagedStream(f"{damage}; no intact frame, nothing written", damage.frame) from None
        if sink is None:
            raise DamagedStream("stream holds no frames; nothing written", 0)
    return DecodeResult(n, h.width, h.height, h.fps, time.perf_counter() - t0, asdict(coder.timings))


def probe(input: str | os.PathLike) -> dict:
    """Describe a stream like ffprobe: header, per-frame rows, section sizes, and the first damage if any."""
    path = Path(input)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an .hfc stream")
    with C.StreamReader(path) as reader:
        h = reader.header
        pixels = h.width * h.height
        rows = []
        damage = None
        try:
            for p in reader.packets():
                rows.append({
                    "index": p.index, "type": C.FRAME_TYPES[p.frame_type], "quality": p.quality,
                    "latent_shape": list(p.latent_shape), "hyper_shape": list(p.hyper_shape),
                    "substream_bytes": [len(s) for s in p.substreams], "bytes": p.nbytes, "bpp": p.nbytes * 8 / pixels,
                })
        except DamagedStream as e:
            damage = {"frame": e.frame, "message": str(e)}
        return {
            "file": str(path),
            "file_bytes": reader.size,
            "format_version": h.version,
            "model": h.model,
            "weights_sha256": h.weights_hash.hex(),
            "inter_model": h.inter_model,
            "inter_weights_sha256": h.inter_hash.hex() if h.inter_hash else None,
            "entropy_form": C.ENTROPY_FORMS[h.entropy_form],
            "width": h.width,
            "height": h.height,
            "padded_width": h.padded_width,
            "padded_height": h.padded_height,
            "fps": f"{h.fps.numerator}/{h.fps.denominator}",
            "fps_float": float(h.fps),
            "colour": {"matrix": h.colour.matrix, "full_range": h.colour.full_range, "primaries": h.colour.primaries,
                       "transfer": h.colour.transfer, "bit_depth": h.colour.bit_depth},
            "gop": h.gop,
            "frame_count": h.frame_count,
            "duration_s": h.frame_count / float(h.fps),
            "header_bytes": reader.header_size,
            "index_bytes": reader.index_bytes,  # as parsed; None when the stream is damaged
            "bpp": reader.size * 8 / (pixels * max(1, h.frame_count)),
            "bitrate_kbps": reader.size * 8 / 1000 / max(1e-9, h.frame_count / float(h.fps)),
            "frames": rows,
            "damage": damage,
        }
