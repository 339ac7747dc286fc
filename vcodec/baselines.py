"""Classical codecs as the bench's anchors: x264, x265 and SVT-AV1 through PyAV, on the same RGB frames as vcodec.

Each is set up the way a low-delay comparison is usually run: one I-frame every GOP frames (scene-cut detection off,
so the GOP really is fixed), no B-frames (frames are coded and decoded in display order), quality by CRF.

- x264, x265: `preset medium`, `tune zerolatency`, keyint = min-keyint = GOP, bframes 0.
- SVT-AV1: preset 8 (a usual speed/quality middle for SVT-AV1), `pred-struct=1` (low delay), keyint = GOP, no
  scene-change detection.

RGB goes to YUV with BT.709 limited range (and is tagged so), 4:2:0 by default (4:4:4 with `pix_fmt="yuv444p"`);
decoded pictures come back to RGB with the same matrix, so every codec is measured on RGB like vcodec. 4:2:0 needs
even sizes: an odd width or height is padded by repeating the last column or row and cropped after decoding (the
padding's bits are counted; bpp uses the true size). Bits are the sum of the encoder's packet sizes: the elementary
stream (parameter sets included, since they are sent in-band), with no container around it, less the encoders'
informational SEI (their version and options as text, which decoders skip and which would swamp small clips):
x265 is told not to write it (`info=0`); x264 cannot be, so its one such NAL unit is not counted.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from vcodec.errors import InputError

# SVT-AV1 prints its banner and per-stream info on stderr unless told otherwise (1 = errors only); it reads this
# when an encoder starts.
os.environ.setdefault("SVT_LOG", "1")

PIXEL_FORMATS = ("yuv420p", "yuv444p")
SVTAV1_PRESET = 8
_BT709 = 1  # H.273 code point for matrix, primaries and transfer
# x264's user-data-unregistered SEI (its version and options string) carries this UUID.
_X264_INFO_UUID = bytes.fromhex("dc45e9bde6d948b7962cd820d923eeef")
_START_CODE = re.compile(b"\x00\x00\x01")


@dataclass(frozen=True)
class Baseline:
    """One classical codec: how to call it, and the CRF scale the bench sweeps."""

    name: str
    encoder: str  # FFmpeg encoder name
    decoder: str  # FFmpeg decoder name
    crf_min: int
    crf_max: int
    crf_center: int  # where an automatic sweep starts
    crf_lattice: int  # automatic sweeps move from crf_center in multiples of this, so sequences share CRFs
    crf_per_halving: float  # about how many CRF steps halve the rate (to aim a sweep)
    db_per_crf: float  # about how much PSNR one CRF step costs (to aim a sweep)
    options: Callable[[int], dict]  # GOP -> encoder options (CRF added separately)
    summary: str  # settings, for descriptions

    def describe(self, gop: int, pix_fmt: str) -> str:
        return f"{self.name} ({self.encoder}, {self.summary}, keyint {gop}, no B-frames, {pix_fmt} BT.709 limited range)"


def _x26x_params(gop: int) -> str:
    return f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"


BASELINES: dict[str, Baseline] = {
    "x264": Baseline(
        "x264", "libx264", "h264", 0, 51, 28, 3, 6.0, 0.35,
        lambda gop: {"preset": "medium", "tune": "zerolatency", "x264-params": _x26x_params(gop)},
        "preset medium, tune zerolatency",
    ),
    "x265": Baseline(
        "x265", "libx265", "hevc", 0, 51, 28, 3, 6.0, 0.35,
        lambda gop: {"preset": "medium", "tune": "zerolatency", "x265-params": _x26x_params(gop) + ":info=0:log-level=error"},
        "preset medium, tune zerolatency",
    ),
    "svtav1": Baseline(
        "svtav1", "libsvtav1", "libdav1d", 1, 63, 35, 4, 8.0, 0.2,
        lambda gop: {"preset": str(SVTAV1_PRESET), "svtav1-params": f"pred-struct=1:keyint={gop}:scd=0"},
        f"preset {SVTAV1_PRESET}, low delay (pred-struct 1)",
    ),
}


def check_available(name: str, pix_fmt: str) -> Baseline:
    """The baseline called `name`, or InputError when it is unknown, missing from this PyAV, or cannot do pix_fmt."""
    if name not in BASELINES:
        raise InputError(f"unknown baseline '{name}' (choose from {', '.join(BASELINES)})")
    if pix_fmt not in PIXEL_FORMATS:
        raise InputError(f"pixel format must be one of {', '.join(PIXEL_FORMATS)}, got '{pix_fmt}'")
    b = BASELINES[name]
    try:
        codec = av.codec.Codec(b.encoder, "w")
        av.codec.Codec(b.decoder, "r")
    except Exception:
        raise InputError(f"baseline {name}: this PyAV/FFmpeg build has no {b.encoder} encoder or {b.decoder} decoder") from None
    formats = {f.name for f in (codec.video_formats or [])}
    if formats and pix_fmt not in formats:
        raise InputError(f"baseline {name}: {b.encoder} cannot encode {pix_fmt} (it takes {', '.join(sorted(formats))})")
    return b


@dataclass
class Coded:
    """One sequence through one baseline at one CRF."""

    bits: int  # counted: the packets less the informational SEI
    uncounted_bits: int  # that SEI
    packets: int
    keyframes: list[int]  # packet indices flagged as key frames
    pts: list[int | None]  # presentation time of each packet in coded order: 0, 1, 2, ... when nothing is reordered
    encode_seconds: float
    decode_seconds: float
    frames: int


def x264_info_bytes(data: bytes) -> int:
    """Bytes of the Annex B NAL units in `data` that are SEI messages holding x264's version string."""
    starts = [m.start() for m in _START_CODE.finditer(data)]
    total = 0
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        nal = data[start + 3 : end].rstrip(b"\x00")  # trailing zeros open the next start code
        if nal and nal[0] & 0x1F == 6 and _X264_INFO_UUID in nal[:32]:
            total += 3 + len(nal) + (1 if start and data[start - 1] == 0 else 0)
    return total


def _to_yuv(rgb: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    h, w = rgb.shape[:2]
    if pix_fmt == "yuv420p" and (h % 2 or w % 2):
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(format=pix_fmt, dst_colorspace=Colorspace.ITU709, src_color_range=ColorRange.JPEG,
                          dst_color_range=ColorRange.MPEG)


def _to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    rgb = frame.reformat(format="rgb24", src_colorspace=Colorspace.ITU709, src_color_range=ColorRange.MPEG,
                         dst_color_range=ColorRange.JPEG).to_ndarray()
    return rgb[:height, :width]


def code(
    baseline: Baseline,
    frames: list[np.ndarray],
    crf: int,
    gop: int,
    pix_fmt: str = "yuv420p",
    fps: Fraction = Fraction(25),
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> Coded:
    """Encode `frames` (uint8 RGB, one size) and decode them again; `on_frame(i, rgb)` sees each decoded picture.

    Timings cover colour conversion plus the codec (RGB in, RGB out, as for vcodec); `on_frame` is not timed.
    """
    if not baseline.crf_min <= crf <= baseline.crf_max:
        raise InputError(f"{baseline.name}: CRF must be in {baseline.crf_min}..{baseline.crf_max}, got {crf}")
    height, width = frames[0].shape[:2]
    enc = av.CodecContext.create(baseline.encoder, "w")
    even = pix_fmt == "yuv420p"  # 4:2:0 needs even sizes: _to_yuv pads, _to_rgb crops
    enc.width = width + width % 2 if even else width
    enc.height = height + height % 2 if even else height
    enc.pix_fmt = pix_fmt
    enc.time_base = Fraction(1) / fps
    enc.framerate = fps
    enc.gop_size = gop
    enc.max_b_frames = 0
    enc.colorspace, enc.color_primaries, enc.color_trc, enc.color_range = _BT709, _BT709, _BT709, 1
    enc.options = {**baseline.options(gop), "crf": str(crf)}
    packets = []
    t0 = time.perf_counter()
    try:
        for i, rgb in enumerate(frames):
            frame = _to_yuv(rgb, pix_fmt)
            frame.pts = i
            packets += enc.encode(frame)
        packets += enc.encode(None)
    except av.error.FFmpegError as e:
        raise InputError(f"{baseline.name} could not encode {width}x{height} at CRF {crf}: {e}") from None
    encode_seconds = time.perf_counter() - t0
    info_bits = 8 * sum(x264_info_bytes(bytes(p)) for p in packets) if baseline.encoder == "libx264" else 0
    bits = 8 * sum(p.size for p in packets) - info_bits
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]

    dec = av.CodecContext.create(baseline.decoder, "r")
    decode_seconds = 0.0
    decoded = 0

    def take(pictures) -> None:
        nonlocal decode_seconds, decoded
        for picture in pictures:
            t = time.perf_counter()
            rgb = _to_rgb(picture, width, height)
            decode_seconds += time.perf_counter() - t
            if on_frame:
                on_frame(decoded, rgb)
            decoded += 1

    for p in packets + [None]:
        t = time.perf_counter()
        pictures = dec.decode(p)
        decode_seconds += time.perf_counter() - t
        take(pictures)
    if decoded != len(frames):
        raise RuntimeError(f"{baseline.name} at CRF {crf}: {len(frames)} frames in, {decoded} decoded")
    return Coded(bits, info_bits, len(packets), keyframes, [p.pts for p in packets], encode_seconds, decode_seconds,
                 decoded)


def warm_up(baseline: Baseline, rgb: np.ndarray, pix_fmt: str = "yuv420p") -> None:
    """Code one frame untimed: a process's first encoder of a kind pays for library set-up (tables, threads)."""
    code(baseline, [rgb], baseline.crf_center, 1, pix_fmt)
