"""The .hfc container: exact write/read, and the damaged-stream behaviour at every truncation and flipped byte."""

from __future__ import annotations

import io
import os
import random
import re
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vcodec import api
from vcodec import container as C
from vcodec.errors import DamagedStream

from conftest import read_video
from fuzz.mutations import layout


def _header(**kw) -> C.Header:
    base = dict(model="m", weights_hash=bytes(range(32)), width=97, height=75, padded_width=112, padded_height=80,
                fps=Fraction(30000, 1001), entropy_form=C.ENTROPY_INTEGER, gop=8, inter_model="p",
                inter_hash=bytes(range(32, 64)))
    base.update(kw)
    return C.Header(**base)


def test_write_read_gives_identical_header_and_packets(tmp_path):
    rng = random.Random(0)
    header = _header(colour=C.Colour(matrix=1, full_range=True, primaries=1, transfer=1))
    packets = [
        C.Packet(i, C.FRAME_I if i % 3 == 0 else C.FRAME_P, i / 2, (192, 5, 7), (128, 2, 2),
                 [rng.randbytes(rng.randrange(0, 300)) for _ in range(rng.randrange(1, 4))])
        for i in range(7)
    ]
    path = tmp_path / "s.hfc"
    with C.StreamWriter(path, header) as w:
        for p in packets:
            w.write(p)
    with C.StreamReader(path) as r:
        assert r.header == _header(colour=C.Colour(1, True, 1, 1), frame_count=7)
        got = list(r.packets())
        index = r.index()
    for a, b in zip(got, packets):
        b.nbytes = a.nbytes
        assert a == b
    assert len(got) == 7
    assert [e.frame_type for e in index] == [p.frame_type for p in packets]
    assert r.header_size + sum(p.nbytes for p in got) + 8 + 13 * 7 + 4 + 12 == path.stat().st_size
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_writer_failure_leaves_nothing(tmp_path):
    path = tmp_path / "s.hfc"
    with pytest.raises(RuntimeError):
        with C.StreamWriter(path, _header()) as w:
            w.write(C.Packet(0, C.FRAME_I, 4, (192, 8, 8), (128, 2, 2), [b"abcd"]))
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("field,value", [
    ("width", 0), ("height", C.MAX_SIDE + 1), ("padded_width", 64), ("fps", Fraction(0)), ("gop", C.MAX_FRAMES + 1),
])
def test_reader_refuses_impossible_headers(tmp_path, field, value):
    path = tmp_path / "bad.hfc"
    h = _header(**{field: value}) if field != "fps" else _header()
    blob = bytearray(h.pack())
    if field == "fps":  # write a zero numerator behind the packer's back, with a valid checksum
        h2 = _header(fps=Fraction(1, 1))
        blob = bytearray(h2.pack())
        off = blob.index((1).to_bytes(4, "little") + (1).to_bytes(4, "little"))
        blob[off : off + 4] = b"\0\0\0\0"
        import zlib

        blob[-4:] = zlib.crc32(bytes(blob[:-4])).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    with pytest.raises(DamagedStream):
        C.StreamReader(path)


def _clean_frames(stream: Path, tmp: Path) -> list[np.ndarray]:
    out = tmp / "clean"
    api.decode(stream, out, device="cpu")
    return read_video(out)[0]


def _check_damaged(data: bytes, tmp: Path, clean: list[np.ndarray], label: str) -> None:
    bad = tmp / "bad.hfc"
    bad.write_bytes(data)
    out = tmp / "out"
    with pytest.raises(DamagedStream) as info:
        api.decode(bad, out, device="cpu", overwrite=True)
    frame = info.value.frame
    if frame in (None, 0):
        assert not out.exists(), label
    else:
        frames, _ = read_video(out)
        assert len(frames) == frame, label
        for a, b in zip(frames, clean):
            assert np.array_equal(a, b), label
        import shutil

        shutil.rmtree(out)
    assert sorted(os.listdir(tmp)) == ["bad.hfc", "clean"], label


def test_every_truncation_is_reported(tiny_stream, tmp_path):
    data = tiny_stream.read_bytes()
    clean = _clean_frames(tiny_stream, tmp_path)
    assert len(clean) == 2
    for n in range(len(data)):
        _check_damaged(data[:n], tmp_path, clean, f"truncated to {n} bytes")


def test_every_flipped_byte_is_reported(tiny_stream, tmp_path):
    data = tiny_stream.read_bytes()
    clean = _clean_frames(tiny_stream, tmp_path)
    rng = random.Random(5)
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= rng.randrange(1, 256)
        _check_damaged(bytes(damaged), tmp_path, clean, f"byte {i} flipped")


# ------------------------------------------------------------------ the index must agree exactly with the packets
def _edit_index(data: bytes, edit) -> bytes:
    """`edit(body)` changes the index body (HFIX, count, entries) in place, and may resize it; then its CRC and the
    trailer are redone as an attacker would, so only the reader's consistency checks can catch the change."""
    at = layout(data).index_offset
    body = bytearray(data[at : len(data) - 4 - 12])
    edit(body)
    return data[:at] + bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))) + struct.pack("<Q", at) + C.TRAILER_MARK


def _set(fmt: str, field: int, value: int, entry: int):
    return lambda body: struct.pack_into(fmt, body, 8 + 13 * entry + field, value)


def _set_count(n: int):
    return lambda body: struct.pack_into("<I", body, 4, n)


def _index_edits(data: bytes) -> dict[str, bytes]:
    """Re-signed index edits of a 2-frame stream, each one a disagreement with the packets or the header."""
    lay = layout(data)
    size0, size1 = (h + p for _, h, p in lay.packets)
    edits = {
        "type P->I": _set("<B", 12, C.FRAME_I, 1),
        "type I->P, entry 0": _set("<B", 12, C.FRAME_P, 0),
        "unknown type": _set("<B", 12, 9, 1),
        "size +1": _set("<I", 8, size1 + 1, 1),
        "size -1": _set("<I", 8, size0 - 1, 0),
        "offset": _set("<Q", 0, lay.packets[1][0] + 1, 1),
        "offset 0": _set("<Q", 0, 0, 0),
        "entries swapped": lambda b: b.__setitem__(slice(8, 34), b[21:34] + b[8:21]),
        "count -1 (last entry dropped)": lambda b: (b.__delitem__(slice(21, 34)), _set_count(1)(b)),
        "count +1 (entry appended)": lambda b: (b.extend(b[21:34]), _set_count(3)(b)),
        "count 0": lambda b: (b.__delitem__(slice(8, 34)), _set_count(0)(b)),
    }
    assert _edit_index(data, lambda b: None) == data  # the editor changes nothing but what it is told
    out = {name: _edit_index(data, edit) for name, edit in edits.items()}
    assert all(blob != data for blob in out.values())
    return out


def test_index_disagreeing_with_the_packets_is_damage(tiny_stream, tmp_path):
    data = tiny_stream.read_bytes()
    clean = _clean_frames(tiny_stream, tmp_path)
    for name, blob in _index_edits(data).items():
        bad = tmp_path / "bad.hfc"
        bad.write_bytes(blob)
        with C.StreamReader(bad) as r:
            with pytest.raises(DamagedStream) as info:
                for _ in r.packets():
                    pass
            assert info.value.frame == 2 and "index" in str(info.value), (name, str(info.value))
            assert r.index_bytes is None, name  # a damaged index has no size to report
            with pytest.raises(DamagedStream, match="index"):
                r.index()  # used alone (to seek), it is checked against the packet headers and the header too
        _check_damaged(blob, tmp_path, clean, name)  # both frames written, identical to the clean ones, damage reported


def test_index_damage_names_the_entry_or_the_count(tiny_stream, tmp_path):
    edits = _index_edits(tiny_stream.read_bytes())
    bad = tmp_path / "bad.hfc"
    for name, message in [("type P->I", "entry 1 says frame type I, packet 1 is P"),
                          ("size +1", "entry 1 says"),
                          ("count -1 (last entry dropped)", "1 entries, but the header counts 2 frames"),
                          ("count +1 (entry appended)", "3 entries, but the header counts 2 frames")]:
        bad.write_bytes(edits[name])
        with C.StreamReader(bad) as r, pytest.raises(DamagedStream, match=re.escape(message)):
            list(r.packets())


def test_reader_reports_the_index_size_it_parsed(tiny_stream):
    with C.StreamReader(tiny_stream) as r:
        assert r.index_bytes is None  # not known before the index is read
        packets = list(r.packets())
        assert r.index_bytes == 8 + 13 * 2 + 4 + 12 == C.index_size(2)
        assert r.header_size + sum(p.nbytes for p in packets) + r.index_bytes == tiny_stream.stat().st_size
        entries = r.index()
    assert [(e.offset, e.size, e.frame_type) for e in entries] == [
        (r.header_size, packets[0].nbytes, C.FRAME_I), (r.header_size + packets[0].nbytes, packets[1].nbytes, C.FRAME_P)]


def test_packets_survive_index_lookups_in_between(tiny_stream):
    with C.StreamReader(tiny_stream) as r:
        got = []
        for p in r.packets():
            assert len(r.index()) == 2  # moves the file position
            got.append(p.nbytes)
    assert sum(got) + C.index_size(2) + r.header_size == tiny_stream.stat().st_size


def _resigned(blob: bytes, offset: int, value: bytes) -> bytes:
    import zlib

    out = bytearray(blob)
    out[offset : offset + len(value)] = value
    out[-4:] = zlib.crc32(bytes(out[:-4])).to_bytes(4, "little")
    return bytes(out)


def test_v2_header_names_both_models_and_is_checked(tmp_path):
    path = tmp_path / "h.hfc"
    blob = _header().pack()
    path.write_bytes(blob)
    with open(path, "rb") as f:
        h = C.read_header(f)
    assert (h.version, h.model, h.inter_model, h.inter_hash) == (2, "m", "p", bytes(range(32, 64)))
    assert C.read_header(io.BytesIO(_header(inter_model=None, inter_hash=None).pack())).inter_model is None
    for bad in (
        _resigned(blob, 12, (1).to_bytes(2, "little")),  # v1 names one model: the size no longer fits
        _resigned(blob, len(blob) - 4 - 32 - 1 - 1 - 1, b"\x02"),  # two extra models: more than v2 knows
        _resigned(blob, len(blob) - 4 - 32 - 1 - 1, b"\x09"),  # the inter name's length disagrees with the size
        _resigned(blob, len(blob) - 4 - 32 - 1, b"\xff"),  # not UTF-8
    ):
        with pytest.raises(DamagedStream):
            C.read_header(io.BytesIO(bad))


def test_gop_zero_means_only_the_first_frame_is_intra_in_v2_only():
    assert C.read_header(io.BytesIO(_header(gop=0).pack())).gop == 0
    v1 = _header(gop=0, version=1, inter_model=None, inter_hash=None, padded_width=128, padded_height=128)
    with pytest.raises(DamagedStream, match="GOP"):
        C.read_header(io.BytesIO(v1.pack()))


def test_a_p_frame_needs_a_p_frame_model(tmp_path):
    path = tmp_path / "s.hfc"
    with C.StreamWriter(path, _header(inter_model=None, inter_hash=None)) as w:
        w.write(C.Packet(0, C.FRAME_I, 1.0, (192, 5, 7), (128, 2, 2), [b"ab"]))
        w.write(C.Packet(1, C.FRAME_P, 1.0, (192, 5, 7), (128, 2, 2), [b"cd"]))
    with C.StreamReader(path) as r:
        packets = r.packets()
        assert next(packets).index == 0
        with pytest.raises(DamagedStream, match="names no P-frame model"):
            next(packets)
