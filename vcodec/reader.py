"""A .hfc stream opened for decoding: its checks, its models, and frames by position.

    import vcodec
    with vcodec.open("clip.hfc") as s:
        len(s), s.fps, s.width, s.height
        frame = s[500]           # uint8 RGB (H, W, 3)
        for frame in s: ...

A P-frame needs every frame from the I-frame before it, so reaching frame i means finding that I-frame through the
index and decoding forward; frames before i on the way are only entropy-decoded (their latent is what the next
frame is conditioned on), not synthesized. The reader remembers where its decoder stands, so reading frames in
order costs one frame each, as a plain decode does. `vcodec decode` writes its frames through this reader.
"""

from __future__ import annotations

import os
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

    def __init__(self, path: str | os.PathLike, device: str = "auto", model: str | os.PathLike | None = None):
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
            self.decoder = VideoDecoder(bundle, self.device, stem)
        except BaseException:
            self.reader.close()
            raise
        self._table: C.SeekTable | None = None
        self.index_damage: DamagedStream | None = None  # set when seeking found the index missing or damaged
        self._packets: Iterator[C.Packet] | None = None
        self._next = 0  # the frame self._packets yields next; the decoder holds the latent of the one before it
        self._last: tuple[int, np.ndarray] | None = None
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
        return self.header.fps

    # ------------------------------------------------------------------------------------------------- frames
    def __getitem__(self, i: int) -> np.ndarray:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"frames are indexed by an integer, not {type(i).__name__}")
        n = len(self)
        i = int(i) + n if i < 0 else int(i)
        if not 0 <= i < n:
            raise IndexError(f"frame {i} is outside the stream's {n} frames")
        if self._last is not None and self._last[0] == i:
            return self._last[1].copy()
        try:
            self._go_to(i)
            rgb = self.decoder.decode(self._next_packet(), self.width, self.height)
        except BaseException:
            self._packets = None  # the decoder's state is not to be trusted: the next read starts at an I-frame
            raise
        self.synthesized += 1
        self._last = (i, rgb.copy())  # the caller may write into what it gets
        return rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """Frames start, start + 1, ... (count of them, or to the end). The whole stream (the default) is read as
        it is, packet after packet, and checked against the index at the end, as `vcodec decode` always has."""
        if start or count is not None:
            end = len(self) if count is None else min(len(self), start + count)
            for i in range(start, end):
                yield self[i]
            return
        self._packets = self._last = None  # the decoder's state is this loop's from here
        for packet in self.reader.packets():
            rgb = self.decoder.decode(packet, self.width, self.height)
            self.synthesized += 1
            yield rgb

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
            self._packets = self.reader.packets(first)
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


def open(path: str | os.PathLike, device: str = "auto", model: str | os.PathLike | None = None) -> DecodedStream:
    """Open a .hfc stream for reading decoded frames (see DecodedStream); use it as a context manager."""
    return DecodedStream(path, device, model)
