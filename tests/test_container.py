"""The .hfc container: exact write/read, and the damaged-stream behaviour at every truncation and flipped byte."""

from __future__ import annotations

import os
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vcodec import api
from vcodec import container as C
from vcodec.errors import DamagedStream

from conftest import read_video


def _header(**kw) -> C.Header:
    base = dict(model="m", weights_hash=bytes(range(32)), width=97, height=75, padded_width=128, padded_height=128,
                fps=Fraction(30000, 1001), entropy_form=C.ENTROPY_INTEGER, gop=8)
    base.update(kw)
    return C.Header(**base)


def test_write_read_gives_identical_header_and_packets(tmp_path):
    rng = random.Random(0)
    header = _header(colour=C.Colour(matrix=1, full_range=True, primaries=1, transfer=1))
    packets = [
        C.Packet(i, C.FRAME_I if i % 3 == 0 else C.FRAME_P, i / 2, (192, 8, 8), (128, 2, 2),
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
    ("width", 0), ("height", C.MAX_SIDE + 1), ("padded_width", 64), ("fps", Fraction(0)), ("gop", 0),
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
