"""Hostile variants of a real .hfc stream, for the fuzz test, the long-run fuzzer and the atheris harness.

Plain damage (flipped bytes, truncation) is caught by the CRCs. To reach the checks behind them, the structured
mutations set a field to a hostile value and then *re-sign* the stream: every CRC is recomputed, as an attacker
would, so the reader's length, shape, limit and consistency checks must do the work.
"""

from __future__ import annotations

import random
import re
import struct
import zlib
from dataclasses import dataclass, field

from vcodec import container as C

_U32 = struct.Struct("<I")


def fields(struct_name: str, names: list[str]) -> dict[str, tuple[int, str]]:
    """Offset and struct format of each named field of one of the container's structs (vcodec.container.STRUCTS),
    from the struct's own format: `names` are its fields in order (a padding-free little-endian struct)."""
    codes = []
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", C.STRUCTS[struct_name].format.lstrip("<")):
        codes += [count + code] if code == "s" else [code] * int(count or 1)  # "6I": six fields; "32s": one
    assert len(codes) == len(names), (struct_name, codes, names)
    out, at = {}, 0
    for name, code in zip(names, codes):
        out[name] = (at, "<" + code)
        at += struct.calcsize("<" + code)
    return out


_HEADER_PRE = fields("header_pre", ["version", "flags", "name_len"])
_HEADER_POST = fields("header_post", ["hash", "entropy_form", "width", "height", "padded_width", "padded_height",
                                      "fps_num", "fps_den", "matrix", "full_range", "primaries", "transfer",
                                      "bit_depth", "gop", "frame_count"])
_TIME_BASE = fields("time_base", ["tb_num", "tb_den"])
_DISPLAY = fields("display", ["rotation", "mirror", "sar_num", "sar_den"])
# After `HFPK`: the fixed fields of a packet header, then 4 bytes per substream, the pts (timed streams), two CRCs.
PACKET_FIELDS = {k: v for k, v in fields("packet", ["mark", "index", "type", "quality", "latent_c", "latent_h",
                                                    "latent_w", "hyper_c", "hyper_h", "hyper_w", "substreams"]).items()
                 if k != "mark"}
LENGTHS_AT = C.STRUCTS["packet"].size  # the substream lengths follow the fixed fields
# An audio packet's header fields (docs/FORMAT.md) and where its payload length is.
AUDIO_FIELDS = {k: v for k, v in fields("audio_packet", ["mark", "stream", "flags", "pts", "dts", "duration", "length",
                                                         "payload_crc", "head_crc"]).items()
                if k in ("stream", "flags", "pts", "dts", "duration", "length")}
AUDIO_LENGTH = AUDIO_FIELDS["length"][0]
# The audio section: its head (mark, size, stream count), then per stream the codec name's length and name, then
# these fields, then the codec parameters.
_AUDIO_SECTION = fields("audio_section", ["mark", "size", "count"])
_AUDIO_STREAM = fields("audio_stream", ["rate", "channels", "tb_num", "tb_den", "packets", "params_len"])
_INDEX_ENTRY = fields("index_entry", ["offset", "size", "type"])


@dataclass
class Layout:
    """Where things are in a well-formed stream."""

    name_len: int
    header_size: int
    packets: list[tuple[int, int, int]]  # (offset, header length, payload length)
    index_offset: int
    flags: int = 0  # the header's
    audio_offset: int | None = None  # the audio section, when the stream has one
    audio_header_size: int = 0
    audio_packets: list[tuple[int, int]] = field(default_factory=list)  # (offset, payload length)

    def header_field(self, name: str) -> tuple[int, str]:
        """Offset and struct format of a header field."""
        pre_at = len(C.MAGIC) + _U32.size  # the magic and the header size come first
        if name in _HEADER_PRE:
            off, fmt = _HEADER_PRE[name]
            return pre_at + off, fmt
        end = self.header_size - _U32.size  # the flags' own fields end the header (time base, display), then its CRC
        display_at = end - C.STRUCTS["display"].size
        if name in _DISPLAY:
            off, fmt = _DISPLAY[name]
            return display_at + off, fmt
        if name in _TIME_BASE:
            off, fmt = _TIME_BASE[name]
            at = (display_at if self.flags & C.FLAG_DISPLAY else end) - C.STRUCTS["time_base"].size
            return at + off, fmt
        off, fmt = _HEADER_POST[name]
        return pre_at + C.STRUCTS["header_pre"].size + self.name_len + off, fmt

    def audio_field(self, data: bytes, name: str) -> tuple[int, str]:
        """Offset and struct format of a field of the audio section's head or of its first stream's description."""
        a = self.audio_offset
        if name in _AUDIO_SECTION:
            off, fmt = _AUDIO_SECTION[name]
            return a + off, fmt
        name_at = a + C.STRUCTS["audio_section"].size
        if name == "name_len":
            return name_at, "<B"
        off, fmt = _AUDIO_STREAM[name]
        return name_at + 1 + data[name_at] + off, fmt

    def audio_parameters(self, data: bytes) -> tuple[int, int]:
        """Where the first audio stream's codec parameters are, and their length."""
        at, fmt = self.audio_field(data, "params_len")
        return at + struct.calcsize(fmt), struct.unpack_from(fmt, data, at)[0]




def header_fields(flags: int) -> list[str]:
    """The header fields a mutation may set, those of the flags set included."""
    names = ["version", "flags", "name_len", "entropy_form", "width", "height", "padded_width", "padded_height",
             "fps_num", "fps_den", "matrix", "full_range", "bit_depth", "gop", "frame_count"]
    if flags & C.FLAG_TIMESTAMPS:
        names += ["tb_num", "tb_den"]
    if flags & C.FLAG_DISPLAY:
        names += ["rotation", "mirror", "sar_num", "sar_den"]
    return names


def timed(flags: int) -> bool:
    """Whether the packets carry a pts (header flag bit 1)."""
    return bool(flags & C.FLAG_TIMESTAMPS)


def substreams(data: bytes, off: int) -> int:
    """The substream count of the packet at `off`."""
    return data[off + C.SUBSTREAM_COUNT_AT]


def pts_at(data: bytes, off: int) -> int:
    """Where the pts of the (timed) packet at `off` is."""
    return off + C.pts_offset(substreams(data, off))


def layout(data: bytes) -> Layout:
    name_len = data[16]
    header_size = _U32.unpack_from(data, 8)[0]
    flags = struct.unpack_from("<H", data, 14)[0]
    packets = []
    at = header_size
    while data[at : at + 4] == C.PACKET_MARK:
        n = substreams(data, at)
        lengths = struct.unpack_from(f"<{n}I", data, at + LENGTHS_AT)
        head = C.packet_header_size(n, timed(flags))
        packets.append((at, head, sum(lengths)))
        at += head + sum(lengths)
    if data[at : at + 4] != C.AUDIO_SECTION_MARK:
        return Layout(name_len, header_size, packets, at, flags)
    audio_offset, audio_header_size = at, _U32.unpack_from(data, at + 4)[0]
    audio, at = [], at + audio_header_size
    while data[at : at + 4] == C.AUDIO_PACKET_MARK:
        length = _U32.unpack_from(data, at + AUDIO_LENGTH)[0]
        audio.append((at, length))
        at += C.AUDIO_PACKET_HEADER + length
    return Layout(name_len, header_size, packets, at, flags, audio_offset, audio_header_size, audio)


def resign(data: bytearray, lay: Layout) -> None:
    """Recompute every CRC where the original layout says it lives."""
    h = lay.header_size
    data[h - 4 : h] = _U32.pack(zlib.crc32(bytes(data[: h - 4])))
    for off, head, payload in lay.packets:
        if C.packet_header_size(substreams(data, off), timed(lay.flags)) != head:
            continue  # the mutation changed the substream count: leave this packet's CRCs as they were
        start = off + head
        data[off + head - 8 : off + head - 4] = _U32.pack(zlib.crc32(bytes(data[start : start + payload])))
        data[off + head - 4 : off + head] = _U32.pack(zlib.crc32(bytes(data[off : off + head - 4])))
    if lay.audio_offset is not None:
        a, n = lay.audio_offset, lay.audio_header_size
        data[a + n - 4 : a + n] = _U32.pack(zlib.crc32(bytes(data[a : a + n - 4])))
        for off, length in lay.audio_packets:
            h = C.AUDIO_PACKET_HEADER
            data[off + h - 8 : off + h - 4] = _U32.pack(zlib.crc32(bytes(data[off + h : off + h + length])))
            data[off + h - 4 : off + h] = _U32.pack(zlib.crc32(bytes(data[off : off + h - 4])))
    i = lay.index_offset
    if data[i : i + 4] == C.INDEX_MARK and len(data) >= i + 8:
        count = _U32.unpack_from(data, i + 4)[0]
        end = i + 8 + 13 * count
        if end + 4 <= len(data):
            data[end : end + 4] = _U32.pack(zlib.crc32(bytes(data[i:end])))


HOSTILE_U32 = [0, 1, 2, 63, 64, 65, 1000, 16384, 16385, 65535, 2**31 - 1, 2**32 - 1]
HOSTILE_U16 = [0, 1, 2, 3, 7, 255, 1024, 1025, 65535]
HOSTILE_U8 = [0, 1, 2, 7, 16, 17, 112, 113, 255]


def _hostile(fmt: str, rng: random.Random, value: int) -> int:
    pool = {"<I": HOSTILE_U32, "<H": HOSTILE_U16, "<B": HOSTILE_U8}[fmt]
    choice = rng.choice(pool + [value + 1, max(0, value - 1), value * 2])
    limit = {"<I": 2**32 - 1, "<H": 2**16 - 1, "<B": 255}[fmt]
    return min(choice, limit)


MAX_TRIES = 100


def mutate(clean: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One hostile variant of `clean` and a short description of what was done; never `clean` itself (a mutation that
    happens to change nothing, say a field set to the value it had, is drawn again, so every case is a real one)."""
    for _ in range(MAX_TRIES):
        data, kind = _mutate_once(clean, rng)
        if data != clean:
            return data, kind
    raise RuntimeError(f"{MAX_TRIES} mutations in a row left the stream unchanged")


# Mutations after which a stream can never decode in full: each breaks something that a CRC or a structural check
# of the reader must catch (a re-signed index must still agree exactly with the packets and the header). The others
# (a re-signed header field, payload byte or substream split) may yield a different but well-formed stream.
NEVER_OK = ("flip", "truncate", "append", "index", "trailer", "splice.", "packet.index", "packet.type",
            "audio.splice", "audio.length", "audio.stream")
ONLY_REFUSED = ("hash",)  # other weights named: refused before any frame is decoded


def allowed_outcomes(kind: str) -> set[str]:
    if kind.startswith(ONLY_REFUSED):
        return {"refused"}
    if kind.startswith(NEVER_OK):
        return {"damaged"}
    return {"ok", "damaged", "refused"}


def _mutate_once(clean: bytes, rng: random.Random) -> tuple[bytes, str]:
    data = bytearray(clean)
    lay = layout(clean)
    kinds = ["flip", "truncate", "header", "packet", "payload", "lengths", "index", "trailer", "splice", "append",
             "hash"]
    kind = rng.choice(kinds + (["audio"] * 3 if lay.audio_packets else []))  # streams with audio: audio mutations too
    if kind == "audio":
        return _mutate_audio(data, lay, rng)
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] ^= rng.randrange(1, 256)
        return bytes(data), kind
    if kind == "truncate":
        return bytes(data[: rng.randrange(len(data))]), kind
    if kind == "append":
        return bytes(data) + rng.randbytes(rng.randint(1, 64)), kind
    if kind == "hash":
        off, _ = lay.header_field("hash")
        data[off + rng.randrange(32)] ^= 0xFF
        resign(data, lay)
        return bytes(data), kind
    if kind == "header":
        name = rng.choice(header_fields(lay.flags))
        off, fmt = lay.header_field(name)
        value = struct.unpack_from(fmt, data, off)[0]
        struct.pack_into(fmt, data, off, _hostile(fmt, rng, value))
        resign(data, lay)
        return bytes(data), f"header.{name}"
    off, head, payload = rng.choice(lay.packets)
    if kind == "packet":
        names = list(PACKET_FIELDS) + (["pts"] * 3 if timed(lay.flags) else [])
        name = rng.choice(names)
        if name == "pts":  # after the substream lengths
            at = pts_at(data, off)
            value = struct.unpack_from("<q", data, at)[0]
            new = rng.choice([0, -1, 1, value - 1, value + 1, 2**62, 2**62 + 1, 2**63 - 1, -(2**63)])
            struct.pack_into("<q", data, at, new)
            resign(data, lay)
            return bytes(data), "packet.pts"
        rel, fmt = PACKET_FIELDS[name]
        value = struct.unpack_from(fmt, data, off + rel)[0]
        struct.pack_into(fmt, data, off + rel, _hostile(fmt, rng, value))
        resign(data, lay)
        return bytes(data), f"packet.{name}"
    if kind == "lengths":
        n = substreams(data, off)
        lengths = list(struct.unpack_from(f"<{n}I", data, off + LENGTHS_AT))
        k = rng.randrange(n)
        if rng.random() < 0.5 and n > 1:  # move bytes between substreams: same total, wrong split
            shift = rng.randint(-lengths[k], sum(lengths) - lengths[k])
            lengths[k] += shift
            lengths[(k + 1) % n] -= shift
            lengths = [max(0, x) for x in lengths]
        else:
            lengths[k] = _hostile("<I", rng, lengths[k])
        struct.pack_into(f"<{n}I", data, off + LENGTHS_AT, *lengths)
        resign(data, lay)
        return bytes(data), "packet.lengths"
    if kind == "payload":
        start = off + head
        if payload:
            for _ in range(rng.randint(1, 8)):
                data[start + rng.randrange(payload)] = rng.randrange(256)
        resign(data, lay)
        return bytes(data), "payload"
    if kind == "index":
        i = lay.index_offset
        count = _U32.unpack_from(data, i + 4)[0]
        if rng.random() < 0.3:
            struct.pack_into("<I", data, i + 4, _hostile("<I", rng, count))
        elif count:
            e = i + 8 + C.STRUCTS["index_entry"].size * rng.randrange(count)
            field = rng.choice(list(_INDEX_ENTRY.values()))
            value = rng.choice([0, 1, len(data), 2**32 - 1, 2**63]) if field[1] == "<Q" else rng.choice([0, 1, 255, 2**32 - 1])
            value = min(value, {"<Q": 2**64 - 1, "<I": 2**32 - 1, "<B": 255}[field[1]])
            struct.pack_into(field[1], data, e + field[0], value)
        resign(data, lay)
        return bytes(data), "index"
    if kind == "trailer":
        struct.pack_into("<Q", data, len(data) - 12, rng.choice([0, 1, lay.header_size, len(data), 2**64 - 1]))
        return bytes(data), "trailer"
    # splice: drop, duplicate or swap whole packets, then re-sign what can be re-signed
    packets = [bytes(data[o : o + h + p]) for o, h, p in lay.packets]
    op = rng.choice(["drop", "duplicate", "swap"])
    if op == "drop" and packets:
        packets.pop(rng.randrange(len(packets)))
    elif op == "duplicate" and packets:
        j = rng.randrange(len(packets))
        packets.insert(j, packets[j])
    elif len(packets) > 1:
        packets[0], packets[1] = packets[1], packets[0]
    body = bytes(data[: lay.header_size]) + b"".join(packets) + bytes(data[lay.index_offset :])
    return body, f"splice.{op}"


def _mutate_audio(data: bytearray, lay: Layout, rng: random.Random) -> tuple[bytes, str]:
    """A hostile audio section: a field of its header or of a packet set to a hostile value, payload or codec
    parameter bytes changed, or packets dropped, duplicated or swapped; re-signed, so the checks behind the CRCs
    (and the muxer's) must catch what is wrong."""
    what = rng.choice(["section", "params", "packet", "payload", "splice"])
    if what == "splice":
        packets = [bytes(data[o : o + C.AUDIO_PACKET_HEADER + n]) for o, n in lay.audio_packets]
        op = rng.choice(["drop", "duplicate", "swap"])
        j = rng.randrange(len(packets))
        if op == "drop":
            packets.pop(j)
        elif op == "duplicate":
            packets.insert(j, packets[j])
        elif len(packets) > 1:
            k = (j + 1) % len(packets)
            packets[j], packets[k] = packets[k], packets[j]
        else:
            packets.pop(j)
        start, end = lay.audio_packets[0][0], lay.index_offset
        body = bytes(data[:start]) + b"".join(packets) + bytes(data[end:])
        return _reindexed(body, end - start - sum(map(len, packets))), f"audio.splice.{op}"
    if what == "section":
        name = rng.choice(["count", "name_len", "rate", "channels", "tb_num", "tb_den", "packets", "params_len"])
        at, fmt = lay.audio_field(data, name)
        value = struct.unpack_from(fmt, data, at)[0]
        struct.pack_into(fmt, data, at, _hostile(fmt, rng, value))
        resign(data, lay)
        return bytes(data), f"audio.section.{name}"
    if what == "params":
        params_at, params_len = lay.audio_parameters(data)
        for _ in range(rng.randint(1, 8)):
            data[params_at + rng.randrange(params_len)] = rng.randrange(256)
        resign(data, lay)
        return bytes(data), "audio.params"
    off, length = rng.choice(lay.audio_packets)
    if what == "payload":
        for _ in range(rng.randint(1, 8)):
            data[off + C.AUDIO_PACKET_HEADER + rng.randrange(length)] = rng.randrange(256)
        resign(data, lay)
        return bytes(data), "audio.payload"
    name = rng.choice(list(AUDIO_FIELDS))
    rel, fmt = AUDIO_FIELDS[name]
    value = struct.unpack_from(fmt, data, off + rel)[0]
    if fmt == "<q":
        new = rng.choice([0, -1, value + 1, value - 1000, -(2**62), 2**62 + 1, 2**63 - 1, -(2**63)])
    else:
        new = _hostile(fmt, rng, value)
    struct.pack_into(fmt, data, off + rel, new)
    resign(data, lay)
    return bytes(data), f"audio.{name}"


def _reindexed(data: bytes, shrink: int) -> bytes:
    """`data` after its audio packets changed size by -shrink bytes: the index and trailer moved, so the trailer's
    offset is redone (the index itself holds only video offsets, which did not move)."""
    at = len(data) - 12
    offset = struct.unpack_from("<Q", data, at)[0] - shrink
    return data[:at] + struct.pack("<Q", offset) + data[at + 8 :]
