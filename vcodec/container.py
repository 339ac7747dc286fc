"""The .hfc container, format v2 (docs/FORMAT.md; v1 is still read): header, packets, index. Bytes only: no torch,
no constriction.

Writing is streaming and atomic: packets go to a temp file beside the output as they come, the index and the final
frame count at the end, then one rename. Reading validates every length, shape and checksum against hard limits
before it allocates anything, and reports the first damage it meets as a `DamagedStream` naming the frame.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from array import array
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

from vcodec.errors import DamagedStream, OutputError

MAGIC = b"\x8bHFC\r\n\x1a\n"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# Pictures are padded to a multiple of this before the analysis transform: v1 padded to the hyper-latent's stride
# and coded the padding's latents; v2 pads to the latent's stride and codes only the picture's latents.
PAD_MULTIPLE = {1: 64, 2: 16}
LATENT_STRIDE, HYPER_STRIDE = 16, 4  # pixels per latent; latents per hyper-latent
MAX_EXTRA_MODELS = 1  # v2: the inter (P-frame) model, after the intra one
PACKET_MARK = b"HFPK"
INDEX_MARK = b"HFIX"
TRAILER_MARK = b"HFIE"
AUDIO_SECTION_MARK = b"HFAS"
AUDIO_PACKET_MARK = b"HFAU"
# v2 header flags; each adds its fields to the end of the header, in the order of the bits.
FLAG_AUDIO = 0x0001  # an audio section follows the video packets (its offset)
FLAG_TIMESTAMPS = 0x0002  # every packet carries its presentation time (a time base): a variable frame rate
FLAG_DISPLAY = 0x0004  # display metadata that is not the default (rotation, mirroring, sample aspect ratio)
KNOWN_FLAGS = FLAG_AUDIO | FLAG_TIMESTAMPS | FLAG_DISPLAY

FRAME_I, FRAME_P = 0, 1
FRAME_TYPES = {FRAME_I: "I", FRAME_P: "P"}
ENTROPY_FLOAT, ENTROPY_INTEGER = 0, 1
ENTROPY_FORMS = {ENTROPY_FLOAT: "float", ENTROPY_INTEGER: "integer"}
QUALITY_STEPS = 16  # quality is stored in sixteenths: q = stored / 16

# Hard limits, checked before any allocation (robustness: a stranger's bytes decide none of these).
MAX_SIDE = 16384
MAX_FRAMES = 10_000_000
MAX_CHANNELS = 1024
MAX_SUBSTREAMS = 16
MAX_PAYLOAD = 256 * 1024 * 1024
MAX_MODEL_NAME = 64
MAX_H273_MATRIX, MAX_H273_PRIMARIES, MAX_H273_TRANSFER = 14, 22, 18
HASH_BYTES = 32
MAX_AUDIO_STREAMS = 8
MAX_CODEC_NAME = 32
MAX_SAMPLE_RATE = 768_000
MAX_AUDIO_CHANNELS = 64
MAX_CODEC_PARAMETERS = 64 * 1024
MAX_AUDIO_PAYLOAD = 1024 * 1024
MAX_AUDIO_PACKETS = 100_000_000
MAX_TIMESTAMP = 2**62
MAX_TIME_BASE_TERM = 2**31 - 1  # a time base's terms, video's and audio's: what FFmpeg's AVRational holds
# The latest a frame or audio packet may be shown, in seconds from frame 0 (68 years; audio either side of it): so far
# that even in the finest time base a stream holds, 1/(2^31 - 1) s, it is under 2^62 ticks, which every output's int64
# timestamps hold. pts x time base beyond it is damage to a reader, and an encoder refuses such a source.
MAX_SECONDS = 2**31
MAX_ASPECT_TERM = 65535  # a sample aspect ratio's terms: what H.264 / HEVC VUI holds

# The file header body is PRE, the model name (PRE's last field bytes of UTF-8), then POST.
_HEADER_PRE = struct.Struct("<HHB")
_HEADER_POST = struct.Struct("<32sB6I5B2I")
_PACKET_FIXED = struct.Struct("<4sIBBHHHHHHB")
_TRAILER = struct.Struct("<Q4s")
_INDEX_ENTRY = struct.Struct("<QIB")
_AUDIO_OFFSET = struct.Struct("<Q")
_TIME_BASE = struct.Struct("<II")
_DISPLAY = struct.Struct("<HBII")  # rotation, mirror, sample aspect ratio
_PTS = struct.Struct("<q")
_PACKET_CRCS = struct.Struct("<II")  # a packet header ends with the payload's CRC and its own
SUBSTREAM_COUNT_AT = _PACKET_FIXED.size - 1  # the packet header's last fixed field: the substream count (u8)
_MODEL_COUNT = struct.Struct("<B")
_AUDIO_SECTION_HEAD = struct.Struct("<4sIB")
_AUDIO_STREAM_FIELDS = struct.Struct("<IBIIII")  # after the codec name: rate, channels, time base, packets, params
_AUDIO_PACKET = struct.Struct("<4sBBqqIIII")
AUDIO_PACKET_HEADER = _AUDIO_PACKET.size
_CODEC_NAME = re.compile(rb"[a-z0-9_]+\Z")
# The structs above by name, for tools that read or change a stream's bytes themselves (tests/fuzz/mutations.py):
# their fields in the order docs/FORMAT.md lists them.
STRUCTS = {"header_pre": _HEADER_PRE, "header_post": _HEADER_POST, "time_base": _TIME_BASE, "display": _DISPLAY,
           "packet": _PACKET_FIXED, "pts": _PTS, "packet_crcs": _PACKET_CRCS, "audio_section": _AUDIO_SECTION_HEAD,
           "audio_stream": _AUDIO_STREAM_FIELDS, "audio_packet": _AUDIO_PACKET, "index_entry": _INDEX_ENTRY}


def pts_offset(substreams: int) -> int:
    """Where a packet's pts starts, from its `HFPK` (docs/FORMAT.md): after the fixed fields and the substream
    lengths. The other fields of a timed packet's header follow it as they follow the lengths in an untimed one."""
    return _PACKET_FIXED.size + 4 * substreams


def packet_header_size(substreams: int, timed: bool) -> int:
    """Bytes of a packet's header, `HFPK` through its own CRC: the payload follows."""
    return pts_offset(substreams) + (_PTS.size if timed else 0) + _PACKET_CRCS.size


def time_in_range(ticks: int, time_base: Fraction) -> bool:
    """Whether `ticks` of `time_base` (either sign) are within MAX_SECONDS, in integers."""
    return abs(ticks) * time_base.numerator <= MAX_SECONDS * time_base.denominator


def time_base_in_range(time_base: Fraction) -> bool:
    return 0 < time_base.numerator <= MAX_TIME_BASE_TERM and 0 < time_base.denominator <= MAX_TIME_BASE_TERM


def representable_quality(q: float) -> float:
    """The nearest quality a packet can carry (sixteenths): encoders must use exactly what decoders will read."""
    return round(q * QUALITY_STEPS) / QUALITY_STEPS


@dataclass
class Colour:
    """How the source's pixels were turned into RGB (H.273 code points), so the decoder can write them back alike."""

    matrix: int = 1  # 1 BT.709, 5 BT.470BG, 6 SMPTE 170M (BT.601), 9 BT.2020 NCL, 0 RGB
    full_range: bool = False
    primaries: int = 2  # 2 = unspecified
    transfer: int = 2
    bit_depth: int = 8


@dataclass(frozen=True)
class Display:
    """How a player is to show the pictures, passed through from the source and never applied to the pixels (as
    `ffmpeg -c copy` keeps it): a rotation, a left-right mirror after it, and the shape of a sample."""

    rotation: int = 0  # degrees counter-clockwise, 0..359 (FFmpeg's display matrix, as VideoFrame.rotation reads it)
    mirror: bool = False  # flipped left to right after the rotation
    aspect: Fraction = Fraction(1)  # sample (pixel) aspect ratio, width : height

    @property
    def is_default(self) -> bool:
        return self.rotation == 0 and not self.mirror and self.aspect == 1


def _name_bytes(name: str) -> bytes:
    raw = name.encode("utf-8")
    if not 0 < len(raw) <= MAX_MODEL_NAME:
        raise ValueError("model name must be 1..64 bytes of UTF-8")
    return raw


def padded(size: int, version: int = FORMAT_VERSION) -> int:
    """A picture side as the analysis transform sees it: rounded up to the version's multiple."""
    k = PAD_MULTIPLE[version]
    return -(-size // k) * k


def hyper_side(latent_side: int) -> int:
    return -(-latent_side // HYPER_STRIDE)


@dataclass
class Header:
    model: str  # the intra (I-frame) model
    weights_hash: bytes
    width: int
    height: int
    padded_width: int
    padded_height: int
    fps: Fraction
    entropy_form: int = ENTROPY_FLOAT
    colour: Colour = field(default_factory=Colour)
    gop: int = 1  # v2: 0 = only the first frame is an I-frame
    frame_count: int = 0
    version: int = FORMAT_VERSION
    inter_model: str | None = None  # v2: the P-frame (STEM) model, when the stream may hold P-frames
    inter_hash: bytes | None = None
    has_audio: bool = False  # v2: an audio section follows the video packets
    audio_offset: int = 0  # where it starts (filled in when the stream is finished)
    time_base: Fraction | None = None  # v2: packets carry their pts in this time base (a variable frame rate)
    display: Display | None = None  # v2: display metadata, only when it is not the default

    @property
    def timed(self) -> bool:
        return self.time_base is not None

    def pack(self) -> bytes:
        name = _name_bytes(self.model)
        if len(self.weights_hash) != HASH_BYTES:
            raise ValueError("weights hash must be 32 bytes")
        if (self.has_audio or self.timed or self.display is not None) and self.version < 2:
            raise ValueError("v1 streams hold no audio, timestamps or display metadata")
        flags = ((FLAG_AUDIO if self.has_audio else 0) | (FLAG_TIMESTAMPS if self.timed else 0)
                 | (FLAG_DISPLAY if self.display is not None else 0))
        body = _HEADER_PRE.pack(self.version, flags, len(name)) + name + _HEADER_POST.pack(
            self.weights_hash, self.entropy_form, self.width, self.height, self.padded_width, self.padded_height,
            self.fps.numerator, self.fps.denominator, self.colour.matrix, int(self.colour.full_range),
            self.colour.primaries, self.colour.transfer, self.colour.bit_depth, self.gop, self.frame_count,
        )
        if self.version >= 2:
            if self.inter_model is None:
                body += b"\x00"
            else:
                inter = _name_bytes(self.inter_model)
                if self.inter_hash is None or len(self.inter_hash) != HASH_BYTES:
                    raise ValueError("inter model hash must be 32 bytes")
                body += b"\x01" + bytes([len(inter)]) + inter + self.inter_hash
        elif self.inter_model is not None:
            raise ValueError("v1 streams name one model")
        if self.has_audio:
            body += _AUDIO_OFFSET.pack(self.audio_offset)
        if self.timed:
            tb = self.time_base
            if not time_base_in_range(tb):
                raise ValueError(f"time base {tb} out of range")
            body += _TIME_BASE.pack(tb.numerator, tb.denominator)
        if self.display is not None:
            d = self.display
            if d.is_default or not _display_in_range(d.rotation, d.mirror, d.aspect.numerator, d.aspect.denominator):
                raise ValueError(f"display metadata {d} is the default or out of range")
            body += _DISPLAY.pack(d.rotation, int(d.mirror), d.aspect.numerator, d.aspect.denominator)
        blob = MAGIC + struct.pack("<I", len(MAGIC) + 4 + len(body) + 4) + body
        return blob + struct.pack("<I", zlib.crc32(blob))

    @property
    def size(self) -> int:
        return len(self.pack())


def _display_in_range(rotation: int, mirror: int, num: int, den: int) -> bool:
    return 0 <= rotation < 360 and mirror in (0, 1) and 0 < num <= MAX_ASPECT_TERM and 0 < den <= MAX_ASPECT_TERM


@dataclass
class Packet:
    """One coded frame: its header fields and its substreams (for an I-frame: z, then y)."""

    index: int
    frame_type: int
    quality: float
    latent_shape: tuple[int, int, int]
    hyper_shape: tuple[int, int, int]
    substreams: list[bytes]
    nbytes: int = 0  # size in the file, packet header included (set when read)
    pts: int | None = None  # presentation time in the header's time base (read and written only in timed streams)

    def pack(self, timed: bool = False) -> bytes:
        q = round(self.quality * QUALITY_STEPS)
        if not 0 <= q <= 255:
            raise ValueError("quality out of range")
        if not 0 < len(self.substreams) <= MAX_SUBSTREAMS:
            raise ValueError("bad substream count")
        if timed and (self.pts is None or not 0 <= self.pts <= MAX_TIMESTAMP):
            raise ValueError("a timed stream's packet needs a pts in 0..2^62")
        head = _PACKET_FIXED.pack(
            PACKET_MARK, self.index, self.frame_type, q, *self.latent_shape, *self.hyper_shape, len(self.substreams)
        )
        payload = b"".join(self.substreams)
        head += struct.pack(f"<{len(self.substreams)}I", *(len(s) for s in self.substreams))
        if timed:
            head += _PTS.pack(self.pts)
        head += struct.pack("<I", zlib.crc32(payload))
        head += struct.pack("<I", zlib.crc32(head))
        return head + payload


@dataclass
class IndexEntry:
    offset: int
    size: int
    frame_type: int
    pts: int | None = None  # not in the index itself: its packet's, when it carries one (or the writer may add it)


class DamagedAudio(DamagedStream):
    """Damage in the audio section: it costs the audio from there on, never a video frame."""


@dataclass
class AudioStream:
    """One audio stream of the source, kept as its coded packets (docs/FORMAT.md, audio section)."""

    codec: str  # FFmpeg's codec name: "aac", "opus", ...
    sample_rate: int
    channels: int
    time_base: Fraction  # of the packets' timestamps
    parameters: bytes  # what a muxer needs to copy the packets (a Matroska file of this track alone)
    packets: int = 0  # written when the stream is finished

    def pack(self) -> bytes:
        name = self.codec.encode("ascii")
        if not 0 < len(name) <= MAX_CODEC_NAME or not _CODEC_NAME.match(name):
            raise ValueError(f"bad audio codec name {self.codec!r}")
        if not 0 < len(self.parameters) <= MAX_CODEC_PARAMETERS:
            raise ValueError("audio codec parameters must be 1..64 KiB")
        if not time_base_in_range(Fraction(self.time_base)):
            raise ValueError(f"audio time base {self.time_base} out of range (terms 1..{MAX_TIME_BASE_TERM})")
        return bytes([len(name)]) + name + _AUDIO_STREAM_FIELDS.pack(
            self.sample_rate, self.channels, self.time_base.numerator, self.time_base.denominator, self.packets,
            len(self.parameters)) + self.parameters


@dataclass
class AudioPacket:
    """One coded audio packet, copied from the source; timestamps in its stream's time base, 0 being the moment the
    stream's first frame is shown."""

    stream: int
    pts: int
    dts: int
    duration: int
    keyframe: bool
    data: bytes

    def pack(self) -> bytes:
        head = _AUDIO_PACKET.pack(AUDIO_PACKET_MARK, self.stream, int(self.keyframe), self.pts, self.dts,
                                  self.duration, len(self.data), zlib.crc32(self.data), 0)[:-4]
        return head + struct.pack("<I", zlib.crc32(head)) + self.data


def pack_audio_section(streams: list[AudioStream]) -> bytes:
    body = b"".join(s.pack() for s in streams)
    head = AUDIO_SECTION_MARK + struct.pack("<IB", _AUDIO_SECTION_HEAD.size + len(body) + 4, len(streams)) + body
    return head + struct.pack("<I", zlib.crc32(head))


# ----------------------------------------------------------------------------------------------------- writing
class StreamWriter:
    """Streams packets into a temp file next to `path`; `close()` adds the index and renames it into place.

    Used as a context manager: an exception (Ctrl-C, full disk) removes the temp file and leaves `path` untouched.
    """

    def __init__(self, path: Path, header: Header, audio: list[AudioStream] | None = None):
        self.path = Path(path)
        self.header = header
        self.audio = list(audio or [])
        if len(self.audio) > MAX_AUDIO_STREAMS:
            raise ValueError(f"at most {MAX_AUDIO_STREAMS} audio streams")
        header.has_audio = bool(self.audio)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent or ".")
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror}") from None
        self.tmp = Path(tmp)
        self.file: BinaryIO = os.fdopen(fd, "w+b")
        # Audio packets wait in an unnamed temp file (gone however the process ends) until the video is written.
        self.audio_spool: BinaryIO | None = None
        if self.audio:
            try:
                self.audio_spool = tempfile.TemporaryFile(dir=self.path.parent or ".")
            except OSError as e:
                self.abort()
                raise OutputError(f"cannot write {self.path}: {e.strerror}") from None
        self.index: list[IndexEntry] = []
        self._guarded(self.file.write, header.pack())
        self.header_size = self.file.tell()

    def _guarded(self, action, *args):
        """Disk full, quota, I/O error: one clear error naming the output (the temp file goes in __exit__)."""
        try:
            return action(*args)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def write(self, packet: Packet) -> int:
        """Append one packet. Its pts, when it has one, is written only once the stream carries timestamps
        (carry_timestamps()); until then it is kept, so that the packets before that moment can carry theirs too."""
        if packet.index != len(self.index):
            raise ValueError("packets must be written in frame order")
        last = self.index[-1].pts if self.index else None
        if packet.pts is not None and (packet.pts <= last if last is not None else packet.pts != 0):
            raise ValueError("timestamps must start at 0 and increase")
        if (packet.pts is None) != (last is None) and self.index:
            raise ValueError("either every packet has a pts or none has")
        if self.header.timed and not time_in_range(packet.pts, self.header.time_base):
            raise ValueError(f"frame {packet.index} is shown later than {MAX_SECONDS} s")
        blob = packet.pack(self.header.timed)
        self.index.append(IndexEntry(self.file.tell(), len(blob), packet.frame_type, packet.pts))
        self._guarded(self.file.write, blob)
        return len(blob)

    def carry_timestamps(self, time_base: Fraction) -> None:
        """Make this a stream whose packets carry their pts (in `time_base`), from frame 0 on: the header gains the
        time base, and the packets written so far are written again with theirs. Done once, when the encoder finds
        the frames are not evenly spaced; a stream whose frames all are never pays for it."""
        if self.header.timed:
            return
        if any(e.pts is None for e in self.index):
            raise ValueError("the packets written so far have no pts")
        if self.index and not time_in_range(self.index[-1].pts, Fraction(time_base)):
            raise ValueError(f"frame {len(self.index) - 1} is shown later than {MAX_SECONDS} s")
        self.header.time_base = Fraction(time_base)
        self.header.pack()  # the time base is checked before anything is rewritten
        self._guarded(self._rewrite_timed)

    def _rewrite_timed(self) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent or ".")
        new = os.fdopen(fd, "w+b")
        try:
            new.write(self.header.pack())
            for e in self.index:
                self.file.seek(e.offset)
                blob = _with_pts(self.file.read(e.size), e.pts)
                e.offset, e.size = new.tell(), len(blob)
                new.write(blob)
        except BaseException:
            new.close()
            os.unlink(tmp)
            raise
        self.file.close()
        self.tmp.unlink(missing_ok=True)
        self.file, self.tmp = new, Path(tmp)
        self.header_size = self.header.size

    def write_audio(self, packet: AudioPacket) -> None:
        """Keep one audio packet (of stream packet.stream, in the order the source gave them)."""
        if not 0 <= packet.stream < len(self.audio):
            raise ValueError("no such audio stream")
        if not 0 < len(packet.data) <= MAX_AUDIO_PAYLOAD:
            raise ValueError("audio packet payload must be 1 byte .. 1 MiB")
        self.audio[packet.stream].packets += 1
        self._guarded(self.audio_spool.write, packet.pack())

    def close(self) -> int:
        """Finish the file; returns its size in bytes."""
        try:
            return self._guarded(self._finish)
        except BaseException:
            self.abort()
            raise

    def _finish(self) -> int:
        if self.audio:
            self.header.audio_offset = self.file.tell()
            self.file.write(pack_audio_section(self.audio))
            self.audio_spool.seek(0)
            shutil.copyfileobj(self.audio_spool, self.file)
            self.audio_spool.close()
        index_offset = self.file.tell()
        body = INDEX_MARK + struct.pack("<I", len(self.index))
        body += b"".join(_INDEX_ENTRY.pack(e.offset, e.size, e.frame_type) for e in self.index)
        body += struct.pack("<I", zlib.crc32(body))
        self.file.write(body + _TRAILER.pack(index_offset, TRAILER_MARK))
        self.header.frame_count = len(self.index)
        self.file.seek(0)
        self.file.write(self.header.pack())  # same size: only the frame count changed
        self.file.flush()
        os.fsync(self.file.fileno())
        size = self.file.seek(0, os.SEEK_END)
        self.file.close()
        os.chmod(self.tmp, 0o644 & ~_umask())
        os.replace(self.tmp, self.path)
        return size

    def abort(self) -> None:
        for f in (self.file, self.audio_spool):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass  # the buffered tail cannot be written either (disk full): it is being thrown away
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "StreamWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _with_pts(blob: bytes, pts: int) -> bytes:
    """A packet as written without a pts, written again with one (its header checksum recomputed)."""
    at = pts_offset(blob[SUBSTREAM_COUNT_AT])
    head = blob[:at] + _PTS.pack(pts) + blob[at : at + 4]  # the payload's CRC follows the pts; the header's is redone
    return head + struct.pack("<I", zlib.crc32(head)) + blob[at + _PACKET_CRCS.size :]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------------- reading
def _read_exact(f: BinaryIO, n: int) -> bytes | None:
    data = f.read(n)
    return data if len(data) == n else None


def read_header(f: BinaryIO) -> Header:
    magic = _read_exact(f, len(MAGIC) + 4)
    if magic is None or magic[: len(MAGIC)] != MAGIC:
        raise DamagedStream("not an .hfc stream (bad magic)")
    (size,) = struct.unpack("<I", magic[len(MAGIC) :])
    minimum = len(MAGIC) + 4 + _HEADER_PRE.size + 1 + _HEADER_POST.size + 4
    extra_most = (1 + MAX_EXTRA_MODELS * (1 + MAX_MODEL_NAME + HASH_BYTES) + _AUDIO_OFFSET.size + _TIME_BASE.size
                  + _DISPLAY.size)  # v2, at most
    if not minimum <= size <= minimum - 1 + MAX_MODEL_NAME + extra_most:
        raise DamagedStream("damaged header (impossible header size)")
    rest = _read_exact(f, size - len(magic))
    if rest is None:
        raise DamagedStream("truncated header")
    blob = magic + rest
    if struct.unpack("<I", blob[-4:])[0] != zlib.crc32(blob[:-4]):
        raise DamagedStream("damaged header (checksum mismatch)")
    body = rest[:-4]
    version, flags, name_len = _HEADER_PRE.unpack_from(body)
    if version not in READABLE_VERSIONS:
        raise DamagedStream(f"unsupported .hfc format version {version} (this vcodec reads versions "
                            f"{', '.join(map(str, READABLE_VERSIONS))})")
    if flags & ~KNOWN_FLAGS or (flags and version < 2):
        raise DamagedStream(f"unsupported header flags {flags:#06x} (a newer vcodec wrote this stream?)")
    fixed = _HEADER_PRE.size + name_len + _HEADER_POST.size
    if len(body) < fixed or (version == 1 and len(body) != fixed):
        raise DamagedStream("damaged header (name length disagrees with header size)")
    name = _decode_name(body[_HEADER_PRE.size : _HEADER_PRE.size + name_len])
    inter_model = inter_hash = time_base = display = None
    audio_offset = 0
    extra, at = body[fixed:], 0  # v2: the model list, then the fields of the flags set, in the order of the bits

    def take(fields: struct.Struct, what: str) -> tuple:
        nonlocal at
        if len(extra) < at + fields.size:
            raise DamagedStream(f"damaged header (no room for {what})")
        at += fields.size
        return fields.unpack_from(extra, at - fields.size)

    if version >= 2:
        (count,) = take(_MODEL_COUNT, "the model count")
        if count > MAX_EXTRA_MODELS:
            raise DamagedStream("damaged header (bad model count)")
        if count == 1:
            n = extra[at] if len(extra) > at else 0
            if not 0 < n <= MAX_MODEL_NAME or len(extra) < at + 1 + n + HASH_BYTES:
                raise DamagedStream("damaged header (model list disagrees with header size)")
            inter_model = _decode_name(extra[at + 1 : at + 1 + n])
            inter_hash = bytes(extra[at + 1 + n : at + 1 + n + HASH_BYTES])
            at += 1 + n + HASH_BYTES
    if flags & FLAG_AUDIO:
        (audio_offset,) = take(_AUDIO_OFFSET, "the audio section's offset")
        if audio_offset < size:
            raise DamagedStream("bad header: the audio section would start inside the header")
    if flags & FLAG_TIMESTAMPS:
        num, den = take(_TIME_BASE, "the time base")
        if not (0 < num <= MAX_TIME_BASE_TERM and 0 < den <= MAX_TIME_BASE_TERM):
            raise DamagedStream(f"bad header: time base {num}/{den} out of range")
        time_base = Fraction(num, den)
    if flags & FLAG_DISPLAY:
        rotation, mirror, num, den = take(_DISPLAY, "the display metadata")
        if not _display_in_range(rotation, mirror, num, den):
            raise DamagedStream("bad header: display metadata out of range")
        display = Display(rotation, bool(mirror), Fraction(num, den))
        if display.is_default:
            raise DamagedStream("bad header: display metadata flagged, but it holds the defaults")
    if at != len(extra):
        raise DamagedStream("damaged header (its fields disagree with its size)")
    fields = _HEADER_POST.unpack_from(body, _HEADER_PRE.size + name_len)
    (weights_hash, form, w, h, pw, ph, fn, fd, matrix, full, prim, trc, depth, gop, count) = fields
    header = Header(
        model=name, weights_hash=weights_hash, width=w, height=h, padded_width=pw, padded_height=ph,
        fps=Fraction(fn, fd) if fd else Fraction(0), entropy_form=form,
        colour=Colour(matrix, bool(full), prim, trc, depth), gop=gop, frame_count=count, version=version,
        inter_model=inter_model, inter_hash=inter_hash, has_audio=bool(flags & FLAG_AUDIO), audio_offset=audio_offset,
        time_base=time_base, display=display,
    )
    if full > 1:
        raise DamagedStream("bad header: range flag is neither 0 nor 1")
    _validate_header(header)
    return header


def _decode_name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DamagedStream("damaged header (model name is not UTF-8)") from None


def _validate_header(h: Header) -> None:
    if not (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE):
        raise DamagedStream(f"bad header: frame size {h.width}x{h.height} outside 1..{MAX_SIDE}")
    if not (h.width <= h.padded_width <= MAX_SIDE and h.height <= h.padded_height <= MAX_SIDE):
        raise DamagedStream("bad header: padded size smaller than the frame or too large")
    if (h.padded_width, h.padded_height) != (padded(h.width, h.version), padded(h.height, h.version)):
        raise DamagedStream(f"bad header: padded size is not the frame size rounded up to a multiple of "
                            f"{PAD_MULTIPLE[h.version]}")
    if h.fps <= 0 or h.fps.denominator > 1_000_000 or h.fps > 1000:
        raise DamagedStream("bad header: frame rate out of range")
    if h.entropy_form not in ENTROPY_FORMS:
        raise DamagedStream(f"bad header: unknown entropy form {h.entropy_form}")
    if h.frame_count > MAX_FRAMES or not (1 if h.version == 1 else 0) <= h.gop <= MAX_FRAMES:
        raise DamagedStream("bad header: frame count or GOP out of range")
    c = h.colour
    if c.matrix > MAX_H273_MATRIX or c.primaries > MAX_H273_PRIMARIES or c.transfer > MAX_H273_TRANSFER:
        raise DamagedStream("bad header: colour tags outside ITU-T H.273")
    if h.colour.bit_depth != 8:
        raise DamagedStream(f"bad header: bit depth {h.colour.bit_depth} (v1 streams are 8-bit)")


def _pts_fault(pts: int, index: int, after: int | None, time_base: Fraction) -> str | None:
    """What is wrong with frame `index`'s pts, given the pts of the frame before it (None: nothing, frame 0)."""
    if index == 0:
        return None if pts == 0 else f"frame 0's timestamp is {pts}, not 0"
    if after is None or not after < pts <= MAX_TIMESTAMP:
        return f"timestamp {pts} does not follow the frame before it ({after})"
    if not time_in_range(pts, time_base):
        return f"timestamp {pts} is {float(pts * time_base):.3g} s, later than any output holds ({MAX_SECONDS} s)"
    return None


def read_packet(f: BinaryIO, header: Header, expected_index: int, after: int | None = None) -> Packet | None:
    """The next packet, or None at a clean end of packets (the index follows). Damage raises DamagedStream. In a
    timed stream `after` is the pts of the frame before (for frame 0: none); a packet's pts must follow it."""
    start = f.tell()
    head = _read_exact(f, _PACKET_FIXED.size)
    if head is None or head[:4] == INDEX_MARK or (header.has_audio and head[:4] == AUDIO_SECTION_MARK):
        f.seek(start)  # no further packet: the caller checks the index and the frame count
        return None
    if head[:4] != PACKET_MARK:
        raise DamagedStream(f"frame {expected_index}: missing or damaged packet", expected_index)
    _, index, ftype, q, lc, lh, lw, hc, hh, hw, n_sub = _PACKET_FIXED.unpack(head)
    if not 0 < n_sub <= MAX_SUBSTREAMS:
        raise DamagedStream(f"frame {expected_index}: damaged packet header (substream count {n_sub})", expected_index)
    timed = header.timed
    tail = _read_exact(f, packet_header_size(n_sub, timed) - len(head))
    if tail is None:
        raise DamagedStream(f"frame {expected_index}: truncated packet header", expected_index)
    lengths = struct.unpack(f"<{n_sub}I", tail[: 4 * n_sub])
    pts = _PTS.unpack_from(tail, pts_offset(n_sub) - len(head))[0] if timed else None
    payload_crc, head_crc = _PACKET_CRCS.unpack(tail[-_PACKET_CRCS.size :])
    if zlib.crc32(head + tail[:-4]) != head_crc:
        raise DamagedStream(f"frame {expected_index}: damaged packet header (checksum mismatch)", expected_index)
    if index != expected_index:
        raise DamagedStream(f"frame {expected_index}: packet for frame {index} found instead", expected_index)
    fault = _pts_fault(pts, index, after, header.time_base) if timed else None
    if fault:
        raise DamagedStream(f"frame {index}: damaged packet header ({fault})", index)
    if ftype not in FRAME_TYPES:
        raise DamagedStream(f"frame {index}: unknown frame type {ftype}", index)
    if ftype == FRAME_P and header.inter_model is None:
        raise DamagedStream(f"frame {index}: a P-frame in a stream that names no P-frame model", index)
    expect_latent = (header.padded_height // LATENT_STRIDE, header.padded_width // LATENT_STRIDE)
    expect_hyper = tuple(hyper_side(v) for v in expect_latent)
    if (lh, lw) != expect_latent or (hh, hw) != expect_hyper or not (0 < lc <= MAX_CHANNELS and 0 < hc <= MAX_CHANNELS):
        raise DamagedStream(f"frame {index}: latent shapes disagree with the frame size", index)
    total = sum(lengths)
    if total > MAX_PAYLOAD:
        raise DamagedStream(f"frame {index}: declared payload of {total} bytes exceeds the limit", index)
    payload = _read_exact(f, total)
    if payload is None:
        raise DamagedStream(f"frame {index}: truncated packet payload", index)
    if zlib.crc32(payload) != payload_crc:
        raise DamagedStream(f"frame {index}: damaged payload (checksum mismatch)", index)
    subs, at = [], 0
    for n in lengths:
        subs.append(payload[at : at + n])
        at += n
    return Packet(index, ftype, q / QUALITY_STEPS, (lc, lh, lw), (hc, hh, hw), subs, f.tell() - start, pts)


def index_size(frames: int) -> int:
    """Bytes of the index and trailer of a stream of `frames` frames (docs/FORMAT.md: 8 + 13 x frames + 4 + 12)."""
    return 8 + frames * _INDEX_ENTRY.size + 4 + _TRAILER.size


_INDEX_CHUNK = 4096  # entries read at a time: checking the index takes constant memory


def _locate_index(f: BinaryIO, file_size: int, header: Header, header_size: int) -> tuple[int, int, bytes]:
    """Offset and entry count of the index, after checking its place, size and CRC; also a SHA-256 of its entries."""
    if file_size < header_size + _TRAILER.size:
        raise DamagedStream("stream has no index (truncated)")
    f.seek(file_size - _TRAILER.size)
    offset, mark = _TRAILER.unpack(f.read(_TRAILER.size))
    if mark != TRAILER_MARK or not header_size <= offset <= file_size - _TRAILER.size - 12:
        raise DamagedStream("stream has no valid index (truncated or damaged end)")
    f.seek(offset)
    head = f.read(8)
    if head[:4] != INDEX_MARK:
        raise DamagedStream("damaged index")
    (count,) = struct.unpack("<I", head[4:])
    if offset + index_size(count) != file_size:
        raise DamagedStream("damaged index (its size disagrees with the file)")
    if header.has_audio and header.audio_offset > offset:
        raise DamagedStream("damaged index (it starts before the audio section)")
    crc, digest, left = zlib.crc32(head), hashlib.sha256(), count * _INDEX_ENTRY.size
    while left:
        chunk = f.read(min(left, _INDEX_CHUNK * _INDEX_ENTRY.size))
        crc, left = zlib.crc32(chunk, crc), left - len(chunk)
        digest.update(chunk)
    (stored,) = struct.unpack("<I", f.read(4))
    if crc != stored:
        raise DamagedStream("damaged index (checksum mismatch)")
    if count != header.frame_count:
        raise DamagedStream(f"damaged index ({count} entries, but the header counts {header.frame_count} frames)")
    return offset, count, digest.digest()


def _index_entries(f: BinaryIO, offset: int, count: int) -> Iterator[IndexEntry]:
    for first in range(0, count, _INDEX_CHUNK):
        n = min(_INDEX_CHUNK, count - first)
        f.seek(offset + 8 + first * _INDEX_ENTRY.size)
        body = f.read(n * _INDEX_ENTRY.size)
        for k in range(n):
            yield IndexEntry(*_INDEX_ENTRY.unpack_from(body, k * _INDEX_ENTRY.size))


def _packet_extent(f: BinaryIO, offset: int, end: int, timed: bool) -> tuple[int, int, int, int | None] | None:
    """(frame index, frame type, size in bytes, pts) from the checked packet header at `offset`, or None if there
    is none."""
    f.seek(offset)
    head = _read_exact(f, _PACKET_FIXED.size) if offset + _PACKET_FIXED.size <= end else None
    if head is None or head[:4] != PACKET_MARK:
        return None
    _, index, ftype, *_, n_sub = _PACKET_FIXED.unpack(head)
    tail = _read_exact(f, packet_header_size(n_sub, timed) - len(head)) if 0 < n_sub <= MAX_SUBSTREAMS else None
    if tail is None or zlib.crc32(head + tail[:-4]) != struct.unpack("<I", tail[-4:])[0]:
        return None
    pts = _PTS.unpack_from(tail, pts_offset(n_sub) - len(head))[0] if timed else None
    return index, ftype, len(head) + len(tail) + sum(struct.unpack(f"<{n_sub}I", tail[: 4 * n_sub])), pts


def video_end(header: Header, index_offset: int) -> int:
    """Where the video packets end: at the audio section when there is one, else at the index."""
    return header.audio_offset if header.has_audio else index_offset


def _check_entries(f: BinaryIO, header: Header, header_size: int, offset: int, count: int) -> Iterator[IndexEntry]:
    """Every entry against the packet header it points at: contiguous from the file header to the end of the video
    packets, each one's offset, size and frame type those of packet i. Raises DamagedStream naming the first entry
    that disagrees (after yielding the ones before it: a caller keeps an entry only once the whole index passed).
    In a timed stream each entry also gets its packet's pts, which must follow the one before (else the packet is
    damaged, and DamagedStream names its frame)."""
    at, end = header_size, video_end(header, offset)
    last = None
    for i, e in enumerate(_index_entries(f, offset, count)):
        if e.offset != at:
            raise DamagedStream(f"damaged index (entry {i} says offset {e.offset}, packet {i} starts at {at})")
        found = _packet_extent(f, at, end, header.timed)
        if found is None:
            raise DamagedStream(f"damaged index (entry {i} points at no valid packet)")
        index, ftype, nbytes, e.pts = found
        if index != i:
            raise DamagedStream(f"damaged index (entry {i} points at the packet of frame {index})")
        if e.frame_type not in FRAME_TYPES or e.frame_type != ftype:
            raise DamagedStream(f"damaged index (entry {i} says frame type {_type_name(e.frame_type)}, "
                                f"packet {i} is {_type_name(ftype)})")
        if e.size != nbytes:
            raise DamagedStream(f"damaged index (entry {i} says {e.size} bytes, packet {i} has {nbytes})")
        fault = _pts_fault(e.pts, i, last, header.time_base) if header.timed else None
        if fault:
            raise DamagedStream(f"frame {i}: damaged packet header ({fault})", i)
        last = e.pts
        yield e
        at += nbytes
    if at != end:
        where = "the audio section" if header.has_audio else "the index"
        raise DamagedStream(f"damaged index (packets do not end where {where} starts)")


def _type_name(ftype: int) -> str:
    return FRAME_TYPES.get(ftype, str(ftype))


def read_index(f: BinaryIO, file_size: int, header: Header, header_size: int) -> list[IndexEntry]:
    """The index at the end of the file, checked entry by entry against the packet headers it points at (without
    reading payloads) and its count against the file header; DamagedStream if it is missing or disagrees."""
    offset, count, _ = _locate_index(f, file_size, header, header_size)
    return list(_check_entries(f, header, header_size, offset, count))


def read_audio_section(f: BinaryIO, header: Header, file_size: int) -> tuple[list[AudioStream], int]:
    """The audio section's stream descriptions and where its first packet starts; DamagedAudio if they are damaged."""
    at = header.audio_offset
    if at + _AUDIO_SECTION_HEAD.size > file_size:
        raise DamagedAudio("audio: the audio section is missing (truncated stream)")
    f.seek(at)
    mark, size, count = _AUDIO_SECTION_HEAD.unpack(f.read(_AUDIO_SECTION_HEAD.size))
    most = _AUDIO_SECTION_HEAD.size + MAX_AUDIO_STREAMS * (1 + MAX_CODEC_NAME + _AUDIO_STREAM_FIELDS.size
                                                          + MAX_CODEC_PARAMETERS) + 4
    if mark != AUDIO_SECTION_MARK or not _AUDIO_SECTION_HEAD.size + 4 < size <= most or at + size > file_size:
        raise DamagedAudio("audio: damaged audio section header")
    f.seek(at)
    blob = f.read(size)
    if len(blob) != size or zlib.crc32(blob[:-4]) != struct.unpack("<I", blob[-4:])[0]:
        raise DamagedAudio("audio: damaged audio section header (checksum mismatch)")
    if not 0 < count <= MAX_AUDIO_STREAMS:
        raise DamagedAudio(f"audio: damaged audio section header ({count} streams)")
    streams, p, end = [], _AUDIO_SECTION_HEAD.size, size - 4
    for k in range(count):
        n = blob[p] if p < end else 0
        name = blob[p + 1 : p + 1 + n]
        fields_at = p + 1 + n
        if not 0 < n <= MAX_CODEC_NAME or fields_at + _AUDIO_STREAM_FIELDS.size > end or not _CODEC_NAME.match(name):
            raise DamagedAudio(f"audio stream {k}: damaged description (codec name)")
        rate, channels, tb_num, tb_den, packets, m = _AUDIO_STREAM_FIELDS.unpack_from(blob, fields_at)
        params_at = fields_at + _AUDIO_STREAM_FIELDS.size
        if not (0 < rate <= MAX_SAMPLE_RATE and 0 < channels <= MAX_AUDIO_CHANNELS
                and 0 < tb_num <= MAX_TIME_BASE_TERM and 0 < tb_den <= MAX_TIME_BASE_TERM
                and packets <= MAX_AUDIO_PACKETS and 0 < m <= MAX_CODEC_PARAMETERS and params_at + m <= end):
            raise DamagedAudio(f"audio stream {k}: damaged description (a field is out of range)")
        streams.append(AudioStream(name.decode("ascii"), rate, channels, Fraction(tb_num, tb_den),
                                   bytes(blob[params_at : params_at + m]), packets))
        p = params_at + m
    if p != end:
        raise DamagedAudio("audio: damaged audio section header (its size disagrees with its streams)")
    return streams, at + size


def read_audio_packet(f: BinaryIO, streams: list[AudioStream], number: int) -> AudioPacket:
    """Audio packet `number` (counted over all streams) at the file's position; DamagedAudio naming it if damaged."""
    head = _read_exact(f, _AUDIO_PACKET.size)
    if head is None or head[:4] != AUDIO_PACKET_MARK:
        raise DamagedAudio(f"audio packet {number}: missing or damaged")
    _, stream, flags, pts, dts, duration, length, payload_crc, head_crc = _AUDIO_PACKET.unpack(head)
    if zlib.crc32(head[:-4]) != head_crc:
        raise DamagedAudio(f"audio packet {number}: damaged header (checksum mismatch)")
    if stream >= len(streams) or flags > 1 or not 0 < length <= MAX_AUDIO_PAYLOAD:
        raise DamagedAudio(f"audio packet {number}: damaged header (stream, flags or length out of range)")
    tb = streams[stream].time_base
    if max(abs(pts), abs(dts)) > MAX_TIMESTAMP or not (time_in_range(pts, tb) and time_in_range(dts, tb)):
        raise DamagedAudio(f"audio packet {number}: timestamp out of range")
    data = _read_exact(f, length)
    if data is None:
        raise DamagedAudio(f"audio packet {number}: truncated")
    if zlib.crc32(data) != payload_crc:
        raise DamagedAudio(f"audio packet {number}: damaged payload (checksum mismatch)")
    return AudioPacket(stream, pts, dts, duration, bool(flags), data)


class SeekTable:
    """The checked index in compact form (13 bytes a frame, as in the file; 8 more with the pts of a timed stream,
    from its packet headers): where each packet is, which are I-frames and when each is shown, for a reader that
    starts anywhere. Built only from an index that agreed with every packet header."""

    def __init__(self, entries: Iterator[IndexEntry], timed: bool = False):
        self.offsets, self.sizes, self.types = array("Q"), array("I"), bytearray()
        self.pts = array("q") if timed else None  # a timed stream's presentation times, from the packet headers
        for e in entries:
            self.offsets.append(e.offset)
            self.sizes.append(e.size)
            self.types.append(e.frame_type)
            if self.pts is not None:
                self.pts.append(e.pts)

    def __len__(self) -> int:
        return len(self.types)

    def entry(self, i: int) -> IndexEntry:
        return IndexEntry(self.offsets[i], self.sizes[i], self.types[i], self.pts[i] if self.pts is not None else None)

    def intra_at_or_before(self, i: int) -> int:
        """The I-frame a decoder must start from to reach frame i (frame 0 is always one in a valid stream)."""
        found = self.types.rfind(FRAME_I, 0, i + 1)
        if found < 0:
            raise DamagedStream(f"frame {i}: no I-frame at or before it", 0)
        return found


class StreamReader:
    """Reader of a .hfc file: header on open, then packets in order, from the first frame or, through the index,
    from any other; the index on demand.

    `index_bytes` is the size of the index and trailer as parsed (None until the index has been checked)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file: BinaryIO = open(self.path, "rb")
        self.index_bytes: int | None = None
        self._seek_table: SeekTable | None = None
        self._audio: tuple[list[AudioStream], int] | None = None  # stream descriptions, first packet's offset
        try:
            self.size = os.fstat(self.file.fileno()).st_size
            self.header = read_header(self.file)
            self.header_size = self.file.tell()
        except BaseException:
            self.file.close()
            raise

    def packets(self, start: int = 0) -> Iterator[Packet]:
        """Packets in frame order from frame `start`; raises DamagedStream at the first damage, including a missing
        index or frames, or an index that disagrees with the packets read (then every packet before it was intact).

        From frame 0 the index is checked at the end, against the packets read; from any other frame it is checked
        in full first (seek_table()), since it is what finds the packet, and each packet must match its entry."""
        if start:
            yield from self._packets_from(start)
            return
        at, i, last = self.header_size, 0, None
        read = hashlib.sha256()  # of the index entries these packets call for: checked against the index at the end
        while True:
            self.file.seek(at)  # the caller may have used the file in between (index(), say)
            packet = read_packet(self.file, self.header, i, last)
            if packet is None:
                break
            last = packet.pts
            read.update(_INDEX_ENTRY.pack(at, packet.nbytes, packet.frame_type))
            at += packet.nbytes
            yield packet
            i += 1
        if i < self.header.frame_count:
            raise DamagedStream(f"stream ends after {i} of {self.header.frame_count} frames", i)
        if i > self.header.frame_count:  # e.g. an unfinished temp file, whose header still says 0
            raise DamagedStream(f"stream holds {i} packets but its header counts {self.header.frame_count} frames", i)
        try:
            offset, count, digest = _locate_index(self.file, self.size, self.header, self.header_size)
            if video_end(self.header, offset) != at:
                where = "the audio section" if self.header.has_audio else "the index"
                raise DamagedStream(f"damaged index ({where} starts at {video_end(self.header, offset)}, the "
                                    f"packets end at {at})")
            if digest != read.digest():  # name the first entry that disagrees
                for _ in _check_entries(self.file, self.header, self.header_size, offset, count):
                    pass
                raise DamagedStream("damaged index (its entries disagree with the packets)")
        except DamagedStream as e:
            raise DamagedStream(str(e), i) from None
        self.index_bytes = index_size(count)

    def _packets_from(self, start: int) -> Iterator[Packet]:
        table = self.seek_table()
        if not 0 <= start < len(table):
            raise IndexError(f"frame {start} is outside the stream's {len(table)} frames")
        for i in range(start, len(table)):
            entry = table.entry(i)
            self.file.seek(entry.offset)
            packet = read_packet(self.file, self.header, i, table.pts[i - 1] if table.pts is not None and i else None)
            if packet is None:  # the index was checked against this packet's header: the file changed since
                raise DamagedStream(f"frame {i}: missing or damaged packet", i)
            if (packet.nbytes, packet.frame_type, packet.pts) != (entry.size, entry.frame_type, entry.pts):
                raise DamagedStream(f"frame {i}: damaged index (entry {i} disagrees with the packet)", i)
            yield packet

    def index(self) -> list[IndexEntry]:
        entries = read_index(self.file, self.size, self.header, self.header_size)
        self.index_bytes = index_size(len(entries))
        return entries

    def seek_table(self) -> SeekTable:
        """The index, checked in full against the packet headers and the file header (DamagedStream if it is
        missing or disagrees), kept in compact form for seeking; read once per reader."""
        if self._seek_table is None:
            offset, count, _ = _locate_index(self.file, self.size, self.header, self.header_size)
            entries = _check_entries(self.file, self.header, self.header_size, offset, count)
            table = SeekTable(entries, self.header.timed)
            self.index_bytes = index_size(count)
            self._seek_table = table
        return self._seek_table

    def audio_streams(self) -> list[AudioStream]:
        """The stream's audio streams ([] without an audio section); DamagedAudio if their description is damaged."""
        if not self.header.has_audio:
            return []
        if self._audio is None:
            self._audio = read_audio_section(self.file, self.header, self.size)
        return self._audio[0]

    @property
    def audio_section_bytes(self) -> int:
        """Size of the audio section's own header (its packets come after it)."""
        self.audio_streams()
        return self._audio[1] - self.header.audio_offset if self._audio else 0

    def audio_packets(self) -> Iterator[AudioPacket]:
        """Every audio packet in the order stored (by time); DamagedAudio at the first damage, including packets
        missing or left over, or timestamps that go back within a stream. The video packets are not needed: audio
        is found through the file header alone, so damaged video costs no audio (and the reverse)."""
        streams = self.audio_streams()
        if not streams:
            return
        at = self._audio[1]
        last_dts: list[int | None] = [None] * len(streams)
        left = [s.packets for s in streams]
        for number in range(sum(left)):
            self.file.seek(at)  # the caller may read video packets in between
            packet = read_audio_packet(self.file, streams, number)
            if not left[packet.stream]:
                raise DamagedAudio(f"audio packet {number}: more packets of stream {packet.stream} than it counts")
            if last_dts[packet.stream] is not None and packet.dts < last_dts[packet.stream]:
                raise DamagedAudio(f"audio packet {number}: its time goes back")
            left[packet.stream] -= 1
            last_dts[packet.stream] = packet.dts
            at = self.file.tell()
            yield packet
        self.file.seek(at)
        if self.file.read(4) != INDEX_MARK:
            raise DamagedAudio("audio: the audio section does not end where the index starts")

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "StreamReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
