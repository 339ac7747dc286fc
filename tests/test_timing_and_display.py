"""Variable frame rate sources and display metadata: a source whose frames are unevenly spaced keeps each frame's time
through encode, seeking and decode (audio in sync), a constant-rate one is written as before timestamps existed, and
rotation and sample aspect ratio reach the decoded file. Damaged timestamp and display fields are damage."""

from __future__ import annotations

import json
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import vcodec
from vcodec import api
from vcodec import container as C
from vcodec.cli import main
from vcodec.display import orientation
from vcodec.errors import EXIT_DAMAGED, DamagedStream
from vcodec.timing import SourceClock

from conftest import REPO, read_video, sample_frames
from fuzz.mutations import layout, resign

VFR_PTS = [0, 1, 2, 4, 5, 8, 9, 10]  # in tenths of a second: frames 3, 6 and 7 of a 10 fps clip were dropped
RATE = 44100


def run(*args) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


def make_clip(path: Path, pts: list[int], time_base: Fraction = Fraction(1, 10), rate: int = 10,
              rotation: int | None = None, mirror: bool = False, aspect: Fraction | None = None,
              audio: bool = False) -> Path:
    """64x48 frames of the sample clip at the given pts (H.264 at a nominal `rate`), beside a sine in AAC as long
    as the video."""
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        if aspect is not None:
            video.codec_context.sample_aspect_ratio = aspect
        if rotation is not None:
            video.set_display_rotation(rotation, hflip=mirror)
        sound = c.add_stream("aac", rate=RATE) if audio else None
        for p, rgb in zip(pts, sample_frames(len(pts), 64, 48)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            for packet in video.encode(frame):
                c.mux(packet)
        if sound is not None:
            sound.layout = "stereo"
            total, t = round((pts[-1] + 1) * time_base * RATE), 0
            while t < total:
                n = min(1024, total - t)
                tone = (0.5 * np.sin(2 * np.pi * 440 * (np.arange(n) + t) / RATE)).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = RATE, t
                t += n
                for packet in sound.encode(frame):
                    c.mux(packet)
        for s in [video] + ([sound] if sound else []):
            for packet in s.encode():
                c.mux(packet)
    return path


def video_times(path: Path) -> tuple[list[Fraction], Fraction]:
    """The decoded file's frame times (seconds) and its video time base."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [f.pts * stream.time_base for f in c.decode(stream)], Fraction(stream.time_base)


def same_times(got: list[Fraction], tick: Fraction, want: list[Fraction]) -> bool:
    """Times equal within one tick of the output's time base, counted from the first frame (Matroska starts its
    video after the audio's priming)."""
    return len(got) == len(want) and all(abs((g - got[0]) - w) <= tick for g, w in zip(got, want))


def audio_seconds(path: Path) -> float:
    """The decoded length of a file's first audio stream."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        assert stream.codec_context.name == "aac"  # copied, not re-encoded
        return sum(f.samples for f in c.decode(stream)) / RATE


def flags_of(stream: Path) -> int:
    return struct.unpack_from("<H", stream.read_bytes(), 14)[0]


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("vfr") / "vfr.mp4", VFR_PTS, audio=True)


@pytest.fixture(scope="module")
def vfr_stream(vfr_clip) -> Path:
    out = vfr_clip.with_name("vfr.hfc")
    assert run("encode", vfr_clip, out, "-q", "0") == 0
    return out


@pytest.fixture(scope="module")
def display_stream(tmp_path_factory) -> Path:
    clip = make_clip(tmp_path_factory.mktemp("display") / "turned.mp4", [0, 1, 2], rotation=90,
                     aspect=Fraction(4, 3))
    out = clip.with_name("turned.hfc")
    assert run("encode", clip, out, "-q", "0") == 0
    return out


SECONDS = [Fraction(p, 10) for p in VFR_PTS]


# ------------------------------------------------------------------------------------------- deciding the rate
def test_the_clock_calls_rounded_times_even_and_anything_else_variable():
    def clock(pts, rate, tb, start=0, count=None):
        c = SourceClock(Fraction(rate), Fraction(tb), Fraction(0), start, count, lambda note: None)
        for p in pts:
            c.see(p)
        return c

    ms = Fraction(1, 1000)
    assert not clock([round(i * 1000 / 30) for i in range(90)], 30, ms).timed  # 33, 67, 100: rounding, not jitter
    assert not clock([i * 3003 for i in range(50)], Fraction(30000, 1001), Fraction(1, 90000)).timed
    late = [i * 3003 for i in range(50)]
    late[40] += 2  # two ticks off, once
    assert clock(late, Fraction(30000, 1001), Fraction(1, 90000)).timed
    c = clock(VFR_PTS, Fraction(80, 11), Fraction(1, 10), start=3, count=3)
    assert c.timed and [c.take() for _ in range(3)] == [0, 1, 4] and c.end == Fraction(5, 10)
    assert c.origin == Fraction(4, 10)  # frames 0..3 are not evenly spaced: frame 3's own time
    notes = []
    repaired = SourceClock(Fraction(10), Fraction(1, 10), Fraction(0), 0, None, notes.append)
    for p in (0, 1, 1, None, 2):
        repaired.see(p)
    assert [repaired.take() for _ in range(5)] == [0, 1, 2, 3, 4] and len(notes) == 1


def test_a_constant_rate_source_is_written_as_before(tmp_path):
    """No flag, no extra byte: the header and packet sizes of the format without timestamps (bytes checked against
    the committed encoder on tests/data/bikes-48.mp4 when this was written)."""
    clip = make_clip(tmp_path / "cfr.mkv", [round(i * 1000 / 30) for i in range(4)], Fraction(1, 1000), rate=30)
    out = tmp_path / "cfr.hfc"
    result = api.encode(clip, out, quality=0, device="cpu")
    assert not result.timed and result.display is None
    assert flags_of(out) == 0
    data = out.read_bytes()
    lay = layout(data)
    with C.StreamReader(out) as r:
        h = r.header
        assert not h.timed and h.fps == 30
        assert lay.header_size == 92 + len(h.model) + 33 + len(h.inter_model)
        packets = list(r.packets())
    assert [head for _, head, _ in lay.packets] == [23 + 4 * len(p.substreams) + 8 for p in packets]
    assert all(p.pts is None for p in packets)
    with vcodec.open(out, device="cpu") as s:
        assert s.times == [Fraction(i, 30) for i in range(4)] and not s.timed


def test_old_streams_have_no_timestamps_and_decode_as_before(tiny_stream):
    for path in (tiny_stream, REPO / "tests" / "data" / "v1-100x70-q2.hfc"):
        with vcodec.open(path, device="cpu") as s:
            assert not s.timed and s.display is None
            assert s.times == [Fraction(i) / s.fps for i in range(len(s))]
            assert s.frame_at(Fraction(1) / s.fps) == 1


# --------------------------------------------------------------------------------------------- VFR round trip
def test_a_vfr_stream_carries_the_flag_and_every_frames_time(vfr_stream, vfr_clip):
    assert flags_of(vfr_stream) & C.FLAG_TIMESTAMPS
    with av.open(str(vfr_clip)) as c:
        source_tb = Fraction(c.streams.video[0].time_base)
    with vcodec.open(vfr_stream, device="cpu") as s:
        assert s.timed and s.time_base == source_tb
        assert s.times == SECONDS
        assert s.time_of(len(s)) == SECONDS[-1] + 1 / s.fps  # the last frame: one average frame
        assert [s.frame_at(t) for t in (0, Fraction(3, 10), Fraction(4, 10), Fraction(41, 100), 2)] == [0, 3, 3, 4, 8]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_decode_writes_each_frame_at_its_time_with_the_audio(vfr_stream, vfr_clip, tmp_path, suffix):
    out = tmp_path / f"back{suffix}"
    assert run("decode", vfr_stream, out) == 0
    times, tick = video_times(out)
    assert same_times(times, tick, SECONDS), (times, tick)
    # the audio's length, within one AAC frame (Matroska keeps the encoder's priming frame, which MP4 hides)
    assert abs(audio_seconds(out) - audio_seconds(vfr_clip)) <= 1024 / RATE + 1e-6


def test_start_frames_and_ss_use_the_frames_own_times(vfr_stream, vfr_clip, tmp_path):
    out = tmp_path / "part.mp4"
    assert run("decode", vfr_stream, out, "--start", "3", "--frames", "3") == 0
    times, tick = video_times(out)
    assert same_times(times, tick, [Fraction(0), Fraction(1, 10), Fraction(4, 10)])  # frames 3, 4, 5: 0.4, 0.5, 0.8
    assert abs(audio_seconds(out) - 0.5) <= 1024 / RATE + 1e-6  # the audio of 0.4 .. 0.9 s (frame 6 is at 0.9)
    assert run("decode", vfr_stream, tmp_path / "ss.mp4", "--ss", "0.6", "--frames", "2") == 0
    times, tick = video_times(tmp_path / "ss.mp4")  # the first frame at or after 0.6 s is frame 5 (0.8 s)
    assert same_times(times, tick, [Fraction(0), Fraction(1, 10)])
    assert run("encode", vfr_clip, tmp_path / "part.hfc", "-q", "0", "--start", "3", "--frames", "3") == 0
    with vcodec.open(tmp_path / "part.hfc", device="cpu") as s:
        assert s.times == [Fraction(0), Fraction(1, 10), Fraction(4, 10)]  # the source's frames 3, 4, 5
    rows = api.probe(tmp_path / "part.hfc")["audio"]
    assert abs(rows[0]["duration_s"] - 0.5) <= 2 * 1024 / RATE


def test_outputs_without_timestamps_say_so_once(vfr_stream, tmp_path, capsys):
    capsys.readouterr()
    assert run("decode", vfr_stream, tmp_path / "flat.y4m") == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "frame times" in line]
    assert len(err) == 1 and "y4m holds a constant rate" in err[0]
    assert len(read_video(tmp_path / "flat.y4m")[0]) == len(VFR_PTS)


# ------------------------------------------------------------------------------------------- display metadata
def test_every_orientation_is_read_from_what_pyav_writes(tmp_path):
    for rotation in (0, 90, 180, 270):
        for mirror in (False, True):
            path = make_clip(tmp_path / f"o{rotation}{mirror}.mp4", [0], rotation=rotation, mirror=mirror)
            with av.open(str(path)) as c:
                frame = next(c.decode(video=0))
                matrix = [struct.unpack("<9i", bytes(d)[:36]) for d in frame.side_data
                          if d.type.name == "DISPLAYMATRIX"]
            if rotation == 0 and not mirror:
                assert matrix == []  # the identity is not written
            else:
                assert orientation(matrix[0]) == (rotation, mirror)
    assert orientation((65536, 0, 0, 0, 2 * 65536, 0, 0, 0, 1 << 30)) is None  # a stretch is no rotation


def test_rotation_and_aspect_ratio_reach_the_decoded_file(display_stream, tmp_path, capsys):
    assert flags_of(display_stream) & C.FLAG_DISPLAY and not flags_of(display_stream) & C.FLAG_TIMESTAMPS
    with vcodec.open(display_stream, device="cpu") as s:
        assert s.display == C.Display(90, False, Fraction(4, 3))
    capsys.readouterr()
    for name, extra in (("back.mp4", []), ("back.mkv", []), ("h264.mkv", ["--codec", "libx264"])):
        assert run("decode", display_stream, tmp_path / name, *extra) == 0
        with av.open(str(tmp_path / name)) as c:
            stream = c.streams.video[0]
            assert next(c.decode(stream)).rotation == 90, name
            if name != "back.mkv":
                assert stream.sample_aspect_ratio == Fraction(4, 3), name
    err = capsys.readouterr().err  # FFV1 cannot be given the aspect ratio through PyAV: said once, for back.mkv
    assert err.count("sample aspect ratio 4:3 is not written") == 1
    frames = read_video(tmp_path / "back.mkv")[0]
    assert frames[0].shape == (48, 64, 3)  # the pixels are not turned


def test_info_shows_the_rate_and_the_display(vfr_stream, display_stream, capsys):
    capsys.readouterr()
    assert run("info", vfr_stream) == 0
    text = capsys.readouterr().out
    assert "variable frame rate" in text and "80/11 on average" in text and "0.8000" in text
    assert run("info", vfr_stream, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["variable_frame_rate"] and [f["time_s"] for f in data["frames"]] == [float(t) for t in SECONDS]
    assert data["display"] is None
    assert run("info", display_stream) == 0
    text = capsys.readouterr().out
    assert "rotation 90° counter-clockwise, sample aspect ratio 4:3" in text and "variable" not in text
    assert run("info", display_stream, "--json") == 0
    assert json.loads(capsys.readouterr().out)["display"] == {"rotation": 90, "mirror": False,
                                                             "sample_aspect_ratio": "4:3"}


# ---------------------------------------------------------------------------------------------------- damage
def _resigned(stream: Path, tmp_path: Path, change) -> Path:
    data = bytearray(stream.read_bytes())
    lay = layout(bytes(data))
    change(data, lay)
    resign(data, lay)
    out = tmp_path / "bad.hfc"
    out.write_bytes(bytes(data))
    return out


def _set_pts(frame: int, value: int):
    def change(data: bytearray, lay) -> None:
        off = lay.packets[frame][0]
        struct.pack_into("<q", data, off + 23 + 4 * data[off + 22], value)
    return change


def test_a_timestamp_that_goes_back_is_damage_at_its_frame(vfr_stream, tmp_path, capsys):
    bad = _resigned(vfr_stream, tmp_path, _set_pts(3, 1024))  # frame 2 is at 2048
    out = tmp_path / "out.mp4"
    assert run("decode", bad, out) == EXIT_DAMAGED
    assert "frame 3" in capsys.readouterr().err
    times, tick = video_times(out)
    assert same_times(times, tick, SECONDS[:3])  # the intact frames before it, at their times
    assert run("decode", bad, tmp_path / "seek.mp4", "--start", "5") == EXIT_DAMAGED  # seeking meets it too
    assert not (tmp_path / "seek.mp4").exists()


def test_a_first_frame_not_at_zero_or_a_flipped_pts_byte_writes_nothing_or_stops(vfr_stream, tmp_path):
    bad = _resigned(vfr_stream, tmp_path, _set_pts(0, 5))
    with pytest.raises(DamagedStream, match="frame 0"):
        api.decode(bad, tmp_path / "none.mp4", device="cpu")
    assert not (tmp_path / "none.mp4").exists()
    data = bytearray(vfr_stream.read_bytes())  # not re-signed: the packet header's CRC catches it
    off = layout(bytes(data)).packets[4][0]
    data[off + 23 + 4 * data[off + 22]] ^= 0x40
    (tmp_path / "flip.hfc").write_bytes(bytes(data))
    with pytest.raises(DamagedStream, match="frame 4") as info:
        api.decode(tmp_path / "flip.hfc", tmp_path / "four.mkv", device="cpu")
    assert info.value.frame == 4 and len(video_times(tmp_path / "four.mkv")[0]) == 4


def test_a_damaged_index_costs_no_frame_its_time(vfr_stream, tmp_path, capsys):
    """The times are in the packets: with the index damaged, --ss still finds its frame, reading from frame 0."""
    data = bytearray(vfr_stream.read_bytes())
    data[layout(bytes(data)).index_offset + 8] ^= 0xFF  # entry 0's offset: the index's checksum fails
    bad = tmp_path / "bad.hfc"
    bad.write_bytes(bytes(data))
    assert run("decode", bad, tmp_path / "ss.mp4", "--ss", "0.45", "--frames", "2") == EXIT_DAMAGED
    assert "read from the first frame instead" in capsys.readouterr().err
    times, tick = video_times(tmp_path / "ss.mp4")  # frames 4 and 5: 0.5 and 0.8 s
    assert same_times(times, tick, [Fraction(0), Fraction(3, 10)])


@pytest.mark.parametrize("field,value,words", [
    ("tb_den", 0, "time base"), ("tb_num", 2**31, "time base"),
    ("rotation", 360, "display metadata out of range"), ("mirror", 2, "display metadata out of range"),
    ("sar_den", 0, "display metadata out of range"),
])
def test_hostile_header_fields_are_refused(vfr_stream, display_stream, tmp_path, field, value, words):
    stream = vfr_stream if field.startswith("tb") else display_stream

    def change(data: bytearray, lay) -> None:
        off, fmt = lay.header_field(field)
        struct.pack_into(fmt, data, off, value)

    bad = _resigned(stream, tmp_path, change)
    with pytest.raises(DamagedStream, match=words):
        C.StreamReader(bad)
    assert run("decode", bad, tmp_path / "out.mp4") == EXIT_DAMAGED and not (tmp_path / "out.mp4").exists()


def test_defaults_behind_the_display_flag_and_unknown_flags_are_refused(display_stream, tmp_path):
    def defaults(data: bytearray, lay) -> None:
        for field, value in (("rotation", 0), ("sar_num", 1), ("sar_den", 1)):
            off, fmt = lay.header_field(field)
            struct.pack_into(fmt, data, off, value)

    with pytest.raises(DamagedStream, match="holds the defaults"):
        C.StreamReader(_resigned(display_stream, tmp_path, defaults))

    def unknown(data: bytearray, lay) -> None:
        struct.pack_into("<H", data, 14, flags_of(display_stream) | 0x0008)

    with pytest.raises(DamagedStream, match="unsupported header flags"):
        C.StreamReader(_resigned(display_stream, tmp_path, unknown))


# ------------------------------------------------------------------------------------------------ the writer
def test_the_writer_adds_timestamps_to_the_packets_already_written(tmp_path):
    header = C.Header(model="m", weights_hash=bytes(32), width=64, height=48, padded_width=64, padded_height=48,
                      fps=Fraction(25), entropy_form=C.ENTROPY_INTEGER, gop=0)
    packets = [C.Packet(i, C.FRAME_I, 1, (8, 3, 4), (8, 1, 1), [bytes([i]) * (i + 1)], pts=pts)
               for i, pts in enumerate((0, 3600, 7200, 14400))]
    path = tmp_path / "t.hfc"
    with C.StreamWriter(path, header) as w:
        for i, p in enumerate(packets):
            if i == 3:  # frame 3 is late: from here the stream carries timestamps, frames 0..2 included
                w.carry_timestamps(Fraction(1, 90000))
            w.write(p)
    with C.StreamReader(path) as r:
        assert r.header.time_base == Fraction(1, 90000)
        assert [p.pts for p in r.packets()] == [0, 3600, 7200, 14400]
        assert len(r.seek_table()) == 4 and list(r.seek_table().pts) == [0, 3600, 7200, 14400]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.hfc"]  # no temp file left behind
    blob = path.read_bytes()
    end = layout(blob).header_size - 4
    assert zlib.crc32(blob[:end]) == struct.unpack_from("<I", blob, end)[0]
