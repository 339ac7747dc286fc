"""The .hfc container, format v1 (docs/FORMAT.md): header, packets, index. Bytes only: no torch, no constriction.

Writing is streaming and atomic: packets go to a temp file beside the output as they come, the index and the final
frame count at the end, then one rename. Reading validates every length, shape and checksum against hard limits
before it allocates anything, and reports the first damage it meets as a `DamagedStream` naming the frame.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

from vcodec.errors import DamagedStream, OutputError

MAGIC = b"\x8bHFC\r\n\x1a\n"
FORMAT_VERSION = 1
PACKET_MARK = b"HFPK"
INDEX_MARK = b"HFIX"
TRAILER_MARK = b"HFIE"

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

# The file header body is PRE, the model name (PRE's last field bytes of UTF-8), then POST.
_HEADER_PRE = struct.Struct("<HHB")
_HEADER_POST = struct.Struct("<32sB6I5B2I")
_PACKET_FIXED = struct.Struct("<4sIBBHHHHHHB")
_TRAILER = struct.Struct("<Q4s")
_INDEX_ENTRY = struct.Struct("<QIB")


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


@dataclass
class Header:
    model: str
    weights_hash: bytes
    width: int
    height: int
    padded_width: int
    padded_height: int
    fps: Fraction
    entropy_form: int = ENTROPY_FLOAT
    colour: Colour = field(default_factory=Colour)
    gop: int = 1
    frame_count: int = 0
    version: int = FORMAT_VERSION

    def pack(self) -> bytes:
        name = self.model.encode("utf-8")
        if not 0 < len(name) <= MAX_MODEL_NAME:
            raise ValueError("model name must be 1..64 bytes of UTF-8")
        if len(self.weights_hash) != HASH_BYTES:
            raise ValueError("weights hash must be 32 bytes")
        body = _HEADER_PRE.pack(self.version, 0, len(name)) + name + _HEADER_POST.pack(
            self.weights_hash, self.entropy_form, self.width, self.height, self.padded_width, self.padded_height,
            self.fps.numerator, self.fps.denominator, self.colour.matrix, int(self.colour.full_range),
            self.colour.primaries, self.colour.transfer, self.colour.bit_depth, self.gop, self.frame_count,
        )
        blob = MAGIC + struct.pack("<I", len(MAGIC) + 4 + len(body) + 4) + body
        return blob + struct.pack("<I", zlib.crc32(blob))

    @property
    def size(self) -> int:
        return len(self.pack())


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

    def pack(self) -> bytes:
        q = round(self.quality * QUALITY_STEPS)
        if not 0 <= q <= 255:
            raise ValueError("quality out of range")
        if not 0 < len(self.substreams) <= MAX_SUBSTREAMS:
            raise ValueError("bad substream count")
        head = _PACKET_FIXED.pack(
            PACKET_MARK, self.index, self.frame_type, q, *self.latent_shape, *self.hyper_shape, len(self.substreams)
        )
        payload = b"".join(self.substreams)
        head += struct.pack(f"<{len(self.substreams)}I", *(len(s) for s in self.substreams))
        head += struct.pack("<I", zlib.crc32(payload))
        head += struct.pack("<I", zlib.crc32(head))
        return head + payload


@dataclass
class IndexEntry:
    offset: int
    size: int
    frame_type: int


# ----------------------------------------------------------------------------------------------------- writing
class StreamWriter:
    """Streams packets into a temp file next to `path`; `close()` adds the index and renames it into place.

    Used as a context manager: an exception (Ctrl-C, full disk) removes the temp file and leaves `path` untouched.
    """

    def __init__(self, path: Path, header: Header):
        self.path = Path(path)
        self.header = header
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent or ".")
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror}") from None
        self.tmp = Path(tmp)
        self.file: BinaryIO = os.fdopen(fd, "w+b")
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
        if packet.index != len(self.index):
            raise ValueError("packets must be written in frame order")
        blob = packet.pack()
        self.index.append(IndexEntry(self.file.tell(), len(blob), packet.frame_type))
        self._guarded(self.file.write, blob)
        return len(blob)

    def close(self) -> int:
        """Finish the file; returns its size in bytes."""
        try:
            return self._guarded(self._finish)
        except BaseException:
            self.abort()
            raise

    def _finish(self) -> int:
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
        try:
            self.file.close()
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
    if not minimum <= size <= minimum - 1 + MAX_MODEL_NAME:
        raise DamagedStream("damaged header (impossible header size)")
    rest = _read_exact(f, size - len(magic))
    if rest is None:
        raise DamagedStream("truncated header")
    blob = magic + rest
    if struct.unpack("<I", blob[-4:])[0] != zlib.crc32(blob[:-4]):
        raise DamagedStream("damaged header (checksum mismatch)")
    body = rest[:-4]
    version, flags, name_len = _HEADER_PRE.unpack_from(body)
    if version != FORMAT_VERSION:
        raise DamagedStream(f"unsupported .hfc format version {version} (this vcodec reads version {FORMAT_VERSION})")
    if flags:
        raise DamagedStream(f"unsupported header flags {flags:#06x} (a newer vcodec wrote this stream?)")
    if len(body) != _HEADER_PRE.size + name_len + _HEADER_POST.size:
        raise DamagedStream("damaged header (name length disagrees with header size)")
    try:
        name = body[_HEADER_PRE.size : _HEADER_PRE.size + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise DamagedStream("damaged header (model name is not UTF-8)") from None
    fields = _HEADER_POST.unpack_from(body, _HEADER_PRE.size + name_len)
    (weights_hash, form, w, h, pw, ph, fn, fd, matrix, full, prim, trc, depth, gop, count) = fields
    header = Header(
        model=name, weights_hash=weights_hash, width=w, height=h, padded_width=pw, padded_height=ph,
        fps=Fraction(fn, fd) if fd else Fraction(0), entropy_form=form,
        colour=Colour(matrix, bool(full), prim, trc, depth), gop=gop, frame_count=count, version=version,
    )
    if full > 1:
        raise DamagedStream("bad header: range flag is neither 0 nor 1")
    _validate_header(header)
    return header


def _validate_header(h: Header) -> None:
    if not (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE):
        raise DamagedStream(f"bad header: frame size {h.width}x{h.height} outside 1..{MAX_SIDE}")
    if not (h.width <= h.padded_width <= MAX_SIDE and h.height <= h.padded_height <= MAX_SIDE):
        raise DamagedStream("bad header: padded size smaller than the frame or too large")
    if h.padded_width % 64 or h.padded_height % 64 or h.padded_width - h.width >= 64 or h.padded_height - h.height >= 64:
        raise DamagedStream("bad header: padded size is not the frame size rounded up to a multiple of 64")
    if h.fps <= 0 or h.fps.denominator > 1_000_000 or h.fps > 1000:
        raise DamagedStream("bad header: frame rate out of range")
    if h.entropy_form not in ENTROPY_FORMS:
        raise DamagedStream(f"bad header: unknown entropy form {h.entropy_form}")
    if h.frame_count > MAX_FRAMES or not 1 <= h.gop <= MAX_FRAMES:
        raise DamagedStream("bad header: frame count or GOP out of range")
    c = h.colour
    if c.matrix > MAX_H273_MATRIX or c.primaries > MAX_H273_PRIMARIES or c.transfer > MAX_H273_TRANSFER:
        raise DamagedStream("bad header: colour tags outside ITU-T H.273")
    if h.colour.bit_depth != 8:
        raise DamagedStream(f"bad header: bit depth {h.colour.bit_depth} (v1 streams are 8-bit)")


def read_packet(f: BinaryIO, header: Header, expected_index: int) -> Packet | None:
    """The next packet, or None at a clean end of packets (the index follows). Damage raises DamagedStream."""
    start = f.tell()
    head = _read_exact(f, _PACKET_FIXED.size)
    if head is None or head[:4] == INDEX_MARK:
        f.seek(start)  # no further packet: the caller checks the index and the frame count
        return None
    if head[:4] != PACKET_MARK:
        raise DamagedStream(f"frame {expected_index}: missing or damaged packet", expected_index)
    _, index, ftype, q, lc, lh, lw, hc, hh, hw, n_sub = _PACKET_FIXED.unpack(head)
    if not 0 < n_sub <= MAX_SUBSTREAMS:
        raise DamagedStream(f"frame {expected_index}: damaged packet header (substream count {n_sub})", expected_index)
    tail = _read_exact(f, 4 * n_sub + 8)
    if tail is None:
        raise DamagedStream(f"frame {expected_index}: truncated packet header", expected_index)
    lengths = struct.unpack(f"<{n_sub}I", tail[: 4 * n_sub])
    payload_crc, head_crc = struct.unpack("<II", tail[4 * n_sub :])
    if zlib.crc32(head + tail[:-4]) != head_crc:
        raise DamagedStream(f"frame {expected_index}: damaged packet header (checksum mismatch)", expected_index)
    if index != expected_index:
        raise DamagedStream(f"frame {expected_index}: packet for frame {index} found instead", expected_index)
    if ftype not in FRAME_TYPES:
        raise DamagedStream(f"frame {index}: unknown frame type {ftype}", index)
    expect_latent = (header.padded_height // 16, header.padded_width // 16)
    expect_hyper = (header.padded_height // 64, header.padded_width // 64)
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
    return Packet(index, ftype, q / QUALITY_STEPS, (lc, lh, lw), (hc, hh, hw), subs, f.tell() - start)


def read_index(f: BinaryIO, file_size: int, header_size: int) -> list[IndexEntry]:
    """The index at the end of the file, validated; DamagedStream if it is missing or inconsistent."""
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
    if offset + 8 + count * _INDEX_ENTRY.size + 4 + _TRAILER.size != file_size:
        raise DamagedStream("damaged index (its size disagrees with the file)")
    body = f.read(count * _INDEX_ENTRY.size)
    (crc,) = struct.unpack("<I", f.read(4))
    if zlib.crc32(head + body) != crc:
        raise DamagedStream("damaged index (checksum mismatch)")
    entries = [IndexEntry(*_INDEX_ENTRY.unpack_from(body, i * _INDEX_ENTRY.size)) for i in range(count)]
    at = header_size
    for i, e in enumerate(entries):
        if e.offset != at or e.frame_type not in FRAME_TYPES:
            raise DamagedStream(f"damaged index (entry {i} points outside the packets)")
        at += e.size
    if at != offset:
        raise DamagedStream("damaged index (packets do not end where the index starts)")
    return entries


class StreamReader:
    """Sequential reader of a .hfc file: header on open, then packets in order; the index on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file: BinaryIO = open(self.path, "rb")
        try:
            self.size = os.fstat(self.file.fileno()).st_size
            self.header = read_header(self.file)
            self.header_size = self.file.tell()
        except BaseException:
            self.file.close()
            raise

    def packets(self) -> Iterator[Packet]:
        """Packets in frame order; raises DamagedStream at the first damage, including a missing index or frames."""
        self.file.seek(self.header_size)
        i = 0
        while True:
            packet = read_packet(self.file, self.header, i)
            if packet is None:
                break
            yield packet
            i += 1
        if i < self.header.frame_count:
            raise DamagedStream(f"stream ends after {i} of {self.header.frame_count} frames", i)
        if i > self.header.frame_count:  # e.g. an unfinished temp file, whose header still says 0
            raise DamagedStream(f"stream holds {i} packets but its header counts {self.header.frame_count} frames", i)
        try:
            self.index()
        except DamagedStream as e:
            raise DamagedStream(str(e), i) from None

    def index(self) -> list[IndexEntry]:
        return read_index(self.file, self.size, self.header_size)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "StreamReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
