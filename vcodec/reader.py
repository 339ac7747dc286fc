"""A .hfc stream opened for decoding: its checks, its models, and frames by position.

    import vcodec
    with vcodec.open("clip.hfc") as s:
        len(s), s.fps, s.width, s.height
        frame = s[500]           # uint8 RGB (H, W, 3)
        s.time_of(500)           # when it is shown, in seconds (a Fraction): 500 / fps, or its own timestamp
        for frame in s: ...

A P-frame needs every frame from the I-frame before it, so reaching frame i means finding that I-frame through the
index and decoding forward; frames before i on the way are only entropy-decoded (their latent is what the next
frame is conditioned on), not synthesized. The reader remembers where its decoder stands, so reading frames in
order costs one frame each, as a plain decode does. `vcodec decode` writes its frames through this reader.
"""

from __future__ import annotations

import math
import os
from array import array
from bisect import bisect_left
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from vcodec import container as C
from vcodec.errors import DamagedStream, InputError, ModelError


def _load_models(h: C.Header, device, model: str | os.PathLike | None):
    """The intra model (the user's --model, or the one the stream names, looked up among the shipped models only,
    never opened as a path) and the P-frame model the stream names, each checked against the stream's hashes."""
    from vcodec import weights

    if model:
        bundle = weights.load(model, device)
    elif not weights.is_model_name(h.model):
        raise ModelError(f"the stream names model {ascii(h.model)}, which is not a model name ({weights.MODEL_NAME_RULE}); "
                         "to use a weights file, give it with --model")
    else:
        bundle = weights.load_named(h.model, device)
    if bundle.sha256 != h.weights_hash:
        raise ModelError(
            f"stream was made with model '{h.model}' (weights sha256 {h.weights_hash.hex()[:16]}...), but the loaded "
            f"weights {bundle.path} are '{bundle.name}' (sha256 {bundle.hash_hex[:16]}...)"
        )
    if h.inter_model is None:
        return bundle, None
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
    return bundle, stem


def seconds_of(seconds: Fraction | float | str) -> Fraction:
    """A time as --ss gives it, exactly (a float to the microsecond); InputError when it is negative."""
    t = Fraction(seconds) if not isinstance(seconds, float) else Fraction(seconds).limit_denominator(1_000_000)
    if t < 0:
        raise InputError("--ss must be >= 0")
    return t


def frame_at(seconds: Fraction | float | str, fps: Fraction) -> int:
    """The first frame shown at or after `seconds` (frame i is shown at i / fps), as ffmpeg's -ss picks it."""
    return math.ceil(seconds_of(seconds) * fps)


def open_reader(path: str | os.PathLike) -> C.StreamReader:
    """The container reader of `path`, with a missing file or a folder as one-line user errors."""
    try:
        return C.StreamReader(Path(path))
    except FileNotFoundError:
        raise InputError(f"input not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not an .hfc stream") from None


class DecodedStream:
    """The frames of a .hfc stream, decoded on demand: len(), iteration and s[i] (see the module doc).

    Damage raises DamagedStream when a damaged frame is asked for (frames before it stay readable). An index that is
    missing or damaged does not stop sequential reading: the reader then reads from the first frame on, and
    `index_damage` says what was wrong (vcodec decode reports it after writing the frames)."""

    def __init__(self, path: str | os.PathLike, device: str = "auto", model: str | os.PathLike | None = None,
                 precision: str = "auto"):
        from vcodec.codec import VideoDecoder, pick_device
        from vcodec.media import SIZE_LIMIT, too_large

        self.path = Path(path)
        self.reader = open_reader(path)
        try:
            h = self.header = self.reader.header
            if too_large(h.width, h.height):  # what the encoder refuses to make; would cost tens of GB to decode
                raise DamagedStream(f"bad header: frame size {h.width}x{h.height} is larger than this version "
                                    f"decodes ({SIZE_LIMIT}); nothing written")
            if h.entropy_form != C.ENTROPY_INTEGER:
                raise DamagedStream(f"stream uses the {C.ENTROPY_FORMS[h.entropy_form]} entropy form, which this "
                                    "decoder does not read")
            self.device = pick_device(device)
            bundle, stem = _load_models(h, self.device, model)
            self.decoder = VideoDecoder(bundle, self.device, stem, precision)
        except BaseException:
            self.reader.close()
            raise
        self._table: C.SeekTable | None = None
        self.index_damage: DamagedStream | None = None  # set when seeking found the index missing or damaged
        self._packets: Iterator[C.Packet] | None = None
        self._next = 0  # the frame self._packets yields next; the decoder holds the latent of the one before it
        self._last: tuple[int, np.ndarray, int] | None = None  # the frame decoded last: position, pixels, pts
        self._read_pts: array | None = None  # a timed stream's pts, read from the packets when the index is damaged
        self.synthesized = 0  # frames fully decoded (entropy decoding and synthesis)
        self.lead_in = 0  # frames only entropy-decoded, on the way from an I-frame to a frame asked for

    # ------------------------------------------------------------------------------------------- what it holds
    def __len__(self) -> int:
        return self.header.frame_count

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def fps(self) -> Fraction:
        """The frame rate; for a stream with timestamps (a variable frame rate), the source's average."""
        return self.header.fps

    @property
    def timed(self) -> bool:
        """Whether the stream carries each frame's own time (a variable frame rate source)."""
        return self.header.timed

    @property
    def display(self) -> C.Display | None:
        """Rotation, mirroring and sample aspect ratio for showing the frames (None: the defaults); never applied."""
        return self.header.display

    @property
    def time_base(self) -> Fraction:
        """The unit of pts(): the stream's time base, or one frame (1 / fps) for a stream without timestamps."""
        return self.header.time_base if self.timed else 1 / self.header.fps

    def _position(self, i: int) -> int:
        """Frame i as s[i] counts it: a negative i counts from the end."""
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"frames are indexed by an integer, not {type(i).__name__}")
        n = len(self)
        i = int(i) + n if i < 0 else int(i)
        if not 0 <= i < n:
            raise IndexError(f"frame {i} is outside the stream's {n} frames")
        return i

    def pts(self, i: int) -> int:
        """Frame i's presentation time in time_base (0 for frame 0; a negative i counts from the end, as s[i] does).
        Needs the index of a timed stream; when it is damaged, the packets are read from the first frame on to find
        the times (DamagedStream past the damage)."""
        i = self._position(i)
        if not self.timed:
            return i
        table = self._seek_table()
        if table is not None:
            return table.pts[i]
        known = self._pts_read()
        if i >= len(known):
            raise DamagedStream(f"frame {i}: its time is not known ({self.index_damage}, and the packets are damaged "
                                f"from frame {len(known)} on)", len(known))
        return known[i]

    def time_of(self, i: int) -> Fraction:
        """When frame i is shown, in seconds from frame 0 (a negative i counts from the end, as s[i] does);
        time_of(len(s)) is when the stream ends (its last frame shown for one average frame's time)."""
        if isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i == len(self):
            return self.time_of(i - 1) + 1 / self.fps if i else Fraction(0)
        i = self._position(i)
        if not self.timed:
            return Fraction(i) / self.fps
        return self.pts(i) * self.time_base

    @property
    def times(self) -> list[Fraction]:
        """time_of(i) of every frame, in seconds."""
        return [self.time_of(i) for i in range(len(self))]

    def frame_at(self, seconds: Fraction | float) -> int:
        """The first frame shown at or after `seconds` (as ffmpeg's -ss picks it); len(self) when there is none."""
        if not self.timed:
            return frame_at(seconds, self.fps)
        t = seconds_of(seconds)
        ticks = math.ceil(t / self.time_base)
        table = self._seek_table()
        known = table.pts if table is not None else self._pts_read()
        i = bisect_left(known, ticks)
        if i == len(known) < len(self):
            raise DamagedStream(f"the frame at {float(t):.3f} s cannot be found ({self.index_damage}, and the packets "
                                f"are damaged from frame {len(known)} on)", len(known))
        return i

    def _pts_read(self) -> array:
        if self._read_pts is None:
            self._read_pts = array("q")
            try:
                for packet in self.reader.packets():
                    self._read_pts.append(packet.pts)
            except DamagedStream:
                pass  # the times are known up to the damage
        return self._read_pts

    # ------------------------------------------------------------------------------------------------- frames
    def __getitem__(self, i: int) -> np.ndarray:
        i = self._position(i)
        if self._last is not None and self._last[0] == i:
            return self._last[1].copy()
        try:
            self._go_to(i)
            packet = self._next_packet()
            rgb = self.decoder.decode(packet, self.width, self.height)
        except BaseException:
            self._packets = None  # the decoder's state is not to be trusted: the next read starts at an I-frame
            raise
        self.synthesized += 1
        self._last = (i, rgb.copy(), i if packet.pts is None else packet.pts)  # the caller may write into what it gets
        return rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """Frames start, start + 1, ... (count of them, or to the end). The whole stream (the default) is read as
        it is, packet after packet, and checked against the index at the end, as `vcodec decode` always has."""
        for _, rgb in self.frames_with_pts(start, count):
            yield rgb

    def frames_with_pts(self, start: int = 0, count: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(pts, frame) for the frames frames() gives: each frame's time in time_base, read from its own packet."""
        if start or count is not None:
            end = len(self) if count is None else min(len(self), start + count)
            for i in range(start, end):
                rgb = self[i]
                yield self._last[2], rgb
            return
        self._packets = self._last = None  # the decoder's state is this loop's from here
        for packet in self.decoder.timings.timed(self.reader.packets(), "container"):
            rgb = self.decoder.decode(packet, self.width, self.height)
            self.synthesized += 1
            yield packet.index if packet.pts is None else packet.pts, rgb

    def _seek_table(self) -> C.SeekTable | None:
        """The checked index, or None (and index_damage says why) when it is missing or damaged."""
        if self._table is None and self.index_damage is None:
            try:
                self._table = self.reader.seek_table()
            except DamagedStream as e:
                self.index_damage = e
        return self._table

    def _go_to(self, i: int) -> None:
        """Make frame i the next packet: continue forward when the decoder stands between i's I-frame and i, else
        restart at that I-frame (found through the index; frame 0 when there is no usable index)."""
        table = self._seek_table()
        first = table.intra_at_or_before(i) if table is not None else 0
        if self._packets is None or not first <= self._next <= i:
            self._packets = self.decoder.timings.timed(self.reader.packets(first), "container")
            self._next = first
        while self._next < i:
            self.decoder.parse(self._next_packet())
            self.lead_in += 1

    def _next_packet(self) -> C.Packet:
        try:
            packet = next(self._packets)
        except StopIteration:  # the reader raises for every missing frame: only a changed file gets here
            raise DamagedStream(f"frame {self._next}: missing packet", self._next) from None
        self._next += 1
        return packet

    # ------------------------------------------------------------------------------------------------ closing
    def close(self) -> None:
        self._packets = None
        self.reader.close()

    def __enter__(self) -> "DecodedStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open(path: str | os.PathLike, device: str = "auto", model: str | os.PathLike | None = None,
         precision: str = "auto") -> DecodedStream:
    """Open a .hfc stream for reading decoded frames (see DecodedStream); use it as a context manager.
    `precision`: the pixel path's (auto, mixed or fp32: vcodec/networks/pixel_path.py); the symbols never depend on it."""
    return DecodedStream(path, device, model, precision)
