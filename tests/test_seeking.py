"""Seeking: `decode --start/--frames/--ss` and `vcodec.open` start at the I-frame at or before the frame asked for,
found through the index, and give exactly the frames a full decode gives there, decoding at most a GOP more."""

from __future__ import annotations

import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import vcodec
from vcodec import api
from vcodec import container as C
from vcodec.cli import main
from vcodec.errors import EXIT_DAMAGED, EXIT_USAGE, DamagedStream

from conftest import read_video, sample_frames, write_pngs
from fuzz.mutations import layout

GOP = 4
COUNT = 11  # I-frames at 0, 4, 8; the last GOP is short


def run(*args) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seek")
    src = write_pngs(root / "src", sample_frames(COUNT, 64, 48, start=3))
    out = root / "s.hfc"
    api.encode(src, out, quality=2, gop=GOP, fps=25, fixed_gop=True)  # the GOP's frame types exactly
    with C.StreamReader(out) as r:
        assert [e.frame_type for e in r.index()] == [C.FRAME_I if i % GOP == 0 else C.FRAME_P for i in range(COUNT)]
    return out


@pytest.fixture(scope="module")
def full(stream, tmp_path_factory) -> list[np.ndarray]:
    out = tmp_path_factory.mktemp("seek-full") / "all"
    api.decode(stream, out, device="cpu")
    frames = read_video(out)[0]
    assert len(frames) == COUNT
    return frames


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("start,count", [(0, 3), (4, 2), (6, 3), (7, 1), (9, 5), (10, None)])
def test_start_frames_give_the_full_decodes_frames(stream, full, tmp_path, start, count):
    out = tmp_path / "part"
    result = api.decode(stream, out, device="cpu", start=start, frames=count)
    end = COUNT if count is None else min(COUNT, start + count)
    assert same(read_video(out)[0], full[start:end])
    assert (result.start, result.frames) == (start, end - start)
    assert result.lead_in == start % GOP  # only the frames from the I-frame before `start`, never a whole GOP


def test_cli_start_and_ss(stream, full, tmp_path, capsys):
    assert run("decode", stream, tmp_path / "a", "--start", "5", "--frames", "2") == 0
    assert same(read_video(tmp_path / "a")[0], full[5:7])
    assert "frames 5..6" in capsys.readouterr().out
    # --ss: the first frame shown at or after that time (frame i at i / 25 s), in seconds or [HH:]MM:SS
    for ss, first in (("0.2", 5), ("0:00.21", 6), ("00:00:00.32", 8), ("0", 0)):
        out = tmp_path / f"ss{first}"
        assert run("decode", stream, out, "--ss", ss, "--frames", "1") == 0
        assert same(read_video(out)[0], full[first : first + 1]), ss
    assert api.frame_at(Fraction(1, 25), Fraction(25)) == 1 and api.frame_at(0.04, Fraction(25)) == 1


@pytest.mark.parametrize("args,words", [
    (["--start", "11"], "past the end"),
    (["--start", "-1"], "--start"),
    (["--frames", "0"], "--frames"),
    (["--ss", "1:xx"], "--ss"),
    (["--ss", "0.4", "--start", "2"], "not both"),
])
def test_bad_seeks_are_one_line_errors(stream, tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    assert run("decode", stream, "out", *args) == EXIT_USAGE
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], lines
    assert os.listdir(tmp_path) == []


def test_reader_random_and_sequential_access(stream, full):
    with vcodec.open(stream, device="cpu") as s:
        assert (len(s), s.width, s.height, s.fps) == (COUNT, 64, 48, Fraction(25))
        assert np.array_equal(s[6], full[6]) and s.lead_in == 2  # from the I-frame at 4
        assert np.array_equal(s[7], full[7]) and s.lead_in == 2  # the next frame costs one frame
        assert np.array_equal(s[7], full[7]) and s.synthesized == 2  # the same frame again costs nothing
        assert np.array_equal(s[2], full[2]) and s.lead_in == 4  # backwards: from the I-frame at 0
        assert np.array_equal(s[-1], full[10]) and s.lead_in == 6  # forwards past an I-frame: from the one at 8
        assert np.array_equal(s[np.int64(4)], full[4])
        for bad in (COUNT, -COUNT - 1):
            with pytest.raises(IndexError):
                s[bad]
        with pytest.raises(TypeError):
            s[1:3]
        before = (s.lead_in, s.synthesized)
        frames = [s[i] for i in range(COUNT)]  # in order: one frame each, after the first GOP's start
        assert same(frames, full) and (s.lead_in, s.synthesized) == (before[0], before[1] + COUNT)
        assert same(list(s), full)
        s[3][:] = 0  # a caller may write into what it gets: the reader's own copy stays as decoded
        assert np.array_equal(s[3], full[3])


def _damage_payload(stream: Path, tmp_path: Path, frame: int) -> Path:
    """A copy whose packet `frame` has one payload byte flipped (caught by its CRC when that packet is read)."""
    data = bytearray(stream.read_bytes())
    off, head, payload = layout(bytes(data)).packets[frame]
    data[off + head + payload // 2] ^= 0x40
    bad = tmp_path / "bad.hfc"
    bad.write_bytes(bytes(data))
    return bad


def test_damage_after_the_seek_point_writes_the_intact_frames_before_it(stream, full, tmp_path, capsys):
    bad = _damage_payload(stream, tmp_path, 7)
    assert run("decode", bad, tmp_path / "out", "--start", "5", "--frames", "4") == EXIT_DAMAGED
    err = capsys.readouterr().err
    assert "frame 7" in err and "2 intact frames" in err
    assert same(read_video(tmp_path / "out")[0], full[5:7])
    # damage in a GOP the seek skips costs nothing: frames 8.. come from the I-frame at 8
    assert run("decode", bad, tmp_path / "after", "--start", "8") == 0
    assert same(read_video(tmp_path / "after")[0], full[8:])
    with vcodec.open(bad, device="cpu") as s:
        assert np.array_equal(s[6], full[6])
        with pytest.raises(DamagedStream, match="frame 7"):
            s[7]
        assert np.array_equal(s[9], full[9])  # the reader goes on past the damage from the next I-frame


def test_a_damaged_index_still_seeks_by_reading_from_the_start(stream, full, tmp_path, capsys):
    data = bytearray(stream.read_bytes())
    at = layout(bytes(data)).index_offset
    struct.pack_into("<B", data, at + 8 + 13 * 5 + 12, C.FRAME_I)  # entry 5 says I-frame: re-signed, so only the
    end = len(data) - 12 - 4                                          # check against the packets sees it
    data[end : end + 4] = struct.pack("<I", zlib.crc32(bytes(data[at:end])))
    bad = tmp_path / "bad.hfc"
    bad.write_bytes(bytes(data))
    with C.StreamReader(bad) as r, pytest.raises(DamagedStream, match="entry 5"):
        r.seek_table()
    assert run("decode", bad, tmp_path / "out", "--start", "6", "--frames", "2") == EXIT_DAMAGED
    err = capsys.readouterr().err
    assert "entry 5" in err and "first frame" in err
    assert same(read_video(tmp_path / "out")[0], full[6:8])
    result_frames = []
    with vcodec.open(bad, device="cpu") as s:
        result_frames = [s[9], s[2]]
        assert s.index_damage is not None and s.lead_in == 9 + 2
    assert same(result_frames, [full[9], full[2]])


def test_container_reads_packets_from_any_frame(stream):
    with C.StreamReader(stream) as r:
        everything = list(r.packets())
        for start in (1, 4, COUNT - 1):
            got = list(r.packets(start))
            assert [p.index for p in got] == list(range(start, COUNT))
            assert got == everything[start:]
        table = r.seek_table()
        assert [table.intra_at_or_before(i) for i in range(COUNT)] == [i - i % GOP for i in range(COUNT)]
        with pytest.raises(IndexError):
            next(r.packets(COUNT))
