"""Variable frame rate sources and display metadata: a source whose frames are unevenly spaced keeps each frame's time
through encode, seeking and decode (audio in sync), a constant-rate one is written as before timestamps existed, and
rotation and sample aspect ratio reach the decoded file. Damaged timestamp and display fields are damage."""

from __future__ import annotations

import hashlib
import json
import math
import re
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
from vcodec.errors import EXIT_DAMAGED, DamagedStream, InputError
from vcodec.timing import SourceClock

from conftest import REPO, SAMPLE, TONE_RATE, mux_tone, read_video, sample_frames
from fuzz.mutations import LENGTHS_AT, layout, pts_at, resign

VFR_PTS = [0, 1, 2, 4, 5, 8, 9, 10]  # in tenths of a second: frames 3, 6 and 7 of a 10 fps clip were dropped
GAP_PTS = [0, 1, 2, 3, 10, 11, 12, 13]  # a capture that froze for 0.7 s: evenly written, frame 4 would be 0.3 s early
RATE = TONE_RATE


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
        if sound is not None:
            sound.layout = "stereo"
        for p, rgb in zip(pts, sample_frames(len(pts), 64, 48)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            for packet in video.encode(frame):
                c.mux(packet)
        if sound is not None:
            mux_tone(c, sound, round((pts[-1] + 1) * time_base * RATE))
        for packet in video.encode():
            c.mux(packet)
    return path


def video_times(path: Path) -> tuple[list[Fraction], Fraction]:
    """The decoded file's frame times (seconds) and its video time base."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [f.pts * stream.time_base for f in c.decode(stream)], Fraction(stream.time_base)


def same_times(got: list[Fraction], tick: Fraction, want: list[Fraction]) -> bool:
    """Times equal within one tick of the output's time base, counted from the first frame (Matroska starts its
    video after the audio's priming). Where the first frame is against the audio, audio_offset() says."""
    return len(got) == len(want) and all(abs((g - got[0]) - w) <= tick for g, w in zip(got, want))


def audio_offset(path: Path, stream: Path, start: Fraction = Fraction(0)) -> float:
    """How far (seconds) the output's audio is from where it belongs beside its video: its first audio packet is one
    of the .hfc stream's, copied, and it must play as long after the output's first frame as that packet starts
    after `start` (the time of the first frame written) on the stream's clock. 0 when in sync; an offset between
    audio and video, which same_times() and the audio's length cannot see, shows here."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        first_frame = next(c.decode(v)).pts * Fraction(v.time_base)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"  # copied, not re-encoded
        first = next(p for p in c.demux(a) if p.size)
        data, at = bytes(first), first.pts * Fraction(a.time_base)
    with C.StreamReader(stream) as r:
        (tb,) = {s.time_base for s in r.audio_streams()}
        (source,) = [p.pts * tb for p in r.audio_packets() if p.data == data]
    return float((at - first_frame) - (source - start))


def audio_seconds(path: Path) -> float:
    """The decoded length of a file's first audio stream (where it starts against the video: audio_offset())."""
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


@pytest.fixture(scope="module")
def gap_stream(tmp_path_factory) -> Path:
    clip = make_clip(tmp_path_factory.mktemp("gap") / "gap.mp4", GAP_PTS, audio=True)
    out = clip.with_name("gap.hfc")
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


# The framing of an audio-free constant-rate encode as vcodec wrote it before streams could carry timestamps (commit
# fcc8e4b, the parent of the one that added them: `vcodec encode tests/data/bikes-48.mp4 old.hfc --frames 3 -q 2
# --fixed-gop --device cpu`; an I- and two P-frames), with each payload left out (packet headers with their
# substream lengths and CRCs zeroed, index entries reduced to their frame types). The whole file was byte-identical
# too on the machine that made it (2026-12-02), but payloads are g_a's float output rounded, and another CPU's
# fp32 convolutions may round one latent differently: a test must not depend on that.
BEFORE_TIMESTAMPS_FRAMING_SHA256 = "6aef74757941a6869a053fc808ddfb81a13f03e84c3c7880b397ab30cefd336f"


def framing(data: bytes) -> bytes:
    """A stream's bytes that do not depend on what its payloads hold: the file header, each packet header with its
    substream lengths, pts and CRCs zeroed and without its payload, the index's count and frame types, the trailer's
    mark."""
    lay = layout(data)
    parts = [data[: lay.header_size]]
    for off, head, _ in lay.packets:
        parts.append(data[off : off + LENGTHS_AT] + bytes(head - LENGTHS_AT))
    i = lay.index_offset
    entry = C.STRUCTS["index_entry"].size
    count = struct.unpack_from("<I", data, i + 4)[0]
    parts.append(data[i : i + 8])
    parts += [data[i + 8 + entry * k + entry - 1 : i + 8 + entry * (k + 1)] for k in range(count)]
    return b"".join(parts + [data[-4:]])


def test_a_constant_rate_source_is_written_as_before(tmp_path):
    """The container bytes the encoder wrote before timestamps existed (frame types fixed: the I/P choice is the
    encoder's, not the format's); payloads aside, which depend on the CPU's float rounding."""
    out = tmp_path / "cfr.hfc"
    result = api.encode(SAMPLE, out, quality=2, frames=3, device="cpu", precision="fp32", fixed_gop=True)
    assert not result.timed and result.display is None and result.audio == []
    data = out.read_bytes()
    assert flags_of(out) == 0
    assert hashlib.sha256(framing(data)).hexdigest() == BEFORE_TIMESTAMPS_FRAMING_SHA256
    # A source rounded to milliseconds (33, 67, 100 ms at 30 fps) is evenly spaced too: no flag, no pts.
    clip = make_clip(tmp_path / "cfr.mkv", [round(i * 1000 / 30) for i in range(4)], Fraction(1, 1000), rate=30)
    assert not api.encode(clip, tmp_path / "ms.hfc", quality=0, device="cpu").timed
    assert flags_of(tmp_path / "ms.hfc") == 0
    with vcodec.open(tmp_path / "ms.hfc", device="cpu") as s:
        assert s.times == [Fraction(i, 30) for i in range(4)] and not s.timed


def test_old_streams_have_no_timestamps_and_decode_as_before(tiny_stream, tmp_path):
    """A v1 stream and a v2 one without the new flags: no times of their own, and a decode writes each frame once at
    i / fps, the pictures the reader gives (for the v1 stream, within one level of what the vcodec of its day
    decoded: the pixel path is float)."""
    from PIL import Image

    v1 = REPO / "tests" / "data" / "v1-100x70-q2.hfc"
    reference = [np.asarray(Image.open(p).convert("RGB"))
                 for p in sorted((REPO / "tests" / "data" / "v1-100x70-q2-decoded").iterdir())]
    for k, path in enumerate((tiny_stream, v1)):
        with vcodec.open(path, device="cpu") as s:
            assert not s.timed and s.display is None
            assert s.times == [Fraction(i) / s.fps for i in range(len(s))]
            assert s.frame_at(Fraction(1) / s.fps) == 1
            frames, fps = list(s), s.fps
        out = tmp_path / f"old{k}.mkv"
        assert api.decode(path, out, device="cpu").frames == len(frames)
        times, tick = video_times(out)
        assert same_times(times, tick, [Fraction(i) / fps for i in range(len(frames))])
        written = read_video(out)[0]
        assert len(written) == len(frames) and all(np.array_equal(a, b) for a, b in zip(written, frames))
        if path == v1:
            assert len(frames) == len(reference) == 3
            assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(frames, reference))


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
    assert abs(audio_offset(out, vfr_stream)) <= 0.001  # where the first frame is, against the audio (Matroska: ms)
    # the audio's length, within one AAC frame (Matroska keeps the encoder's priming frame, which MP4 hides)
    assert abs(audio_seconds(out) - audio_seconds(vfr_clip)) <= 1024 / RATE + 1e-6


def test_start_frames_and_ss_use_the_frames_own_times(vfr_stream, vfr_clip, tmp_path):
    out = tmp_path / "part.mp4"
    assert run("decode", vfr_stream, out, "--start", "3", "--frames", "3") == 0
    times, tick = video_times(out)
    assert same_times(times, tick, [Fraction(0), Fraction(1, 10), Fraction(4, 10)])  # frames 3, 4, 5: 0.4, 0.5, 0.8
    assert abs(audio_offset(out, vfr_stream, Fraction(4, 10))) <= 1 / RATE  # the audio from 0.4 s beside frame 3
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


def test_avi_repeats_and_drops_frames_to_stay_in_sync_with_its_audio(gap_stream, tmp_path, capsys):
    """AVI holds a constant rate, its audio real times: as ffmpeg -fps_mode cfr, output frame k (k / fps .. (k + 1) /
    fps) is the frame on screen at the middle of it, so each frame is within half a frame of its time and of the
    audio. Written one after another, frame 4 of this clip (1.0 s, after a 0.7 s freeze) would be shown at 0.7 s."""
    out = tmp_path / "gap.avi"
    capsys.readouterr()
    assert run("decode", gap_stream, out) == 0
    assert capsys.readouterr().err.count("repeated or dropped") == 1
    with vcodec.open(gap_stream, device="cpu") as s:
        frames, times, fps, end = list(s), s.times, s.fps, s.time_of(len(s))
    assert all(not np.array_equal(a, b) for i, a in enumerate(frames) for b in frames[i + 1 :])  # told apart below
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        decoded = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(stream)]
        assert Fraction(stream.time_base) == 1 / fps
    assert [pts for pts, _ in decoded] == list(range(len(decoded)))  # output frame k at k / fps: none left out
    written = [rgb for _, rgb in decoded]
    shown = [next(i for i, f in enumerate(frames) if np.array_equal(f, w)) for w in written]
    assert shown == [max(i for i, t in enumerate(times) if t < (k + Fraction(1, 2)) / fps) for k in range(len(written))]
    assert len(written) == round(end * fps)  # the file lasts as long as the stream
    for i in set(shown):  # each frame written from within half an output frame of its time: in sync with the audio
        assert abs(shown.index(i) / fps - times[i]) <= 1 / (2 * fps), (i, shown)
    assert set(range(len(frames))) - set(shown) == {1, 4, 6}  # each replaced within its output frame by the next
    # The audio plays beside them: its first packet where it belongs (AVI has no edit list: AAC's 23 ms of priming
    # play before the first sample), and as long as the stream.
    assert 0 <= audio_offset(out, gap_stream) <= 1 / fps
    assert abs(audio_seconds(out) - float(end)) <= 2 * 1024 / RATE


def test_an_avi_that_would_need_more_frames_than_a_stream_holds_is_refused(tiny_stream, tmp_path, capsys):
    """A frame shown 5 days after the one before: 10^7 repeats at 25 fps. The decode stops with one line (exit 4,
    'cannot write'), leaving nothing, instead of writing them; an .mkv holds the gap as a time."""
    with C.StreamReader(tiny_stream) as r:
        header, packets = r.header, list(r.packets())
    header.frame_count, header.time_base = 0, Fraction(1, 90000)
    late = tmp_path / "late.hfc"
    with C.StreamWriter(late, header) as w:
        for packet, pts in zip(packets, (0, 450_000 * 90000)):
            packet.pts = pts
            w.write(packet)
    capsys.readouterr()
    assert run("decode", late, tmp_path / "late.avi") == 4
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(lines) == 1 and "would need more than 10,000,000 frames" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.hfc"]
    assert run("decode", late, tmp_path / "late.mkv") == 0


def test_a_partial_decode_that_meets_damage_writes_its_intact_frames_and_their_audio(vfr_stream, tmp_path, capsys):
    """--start 3 --frames 5 reaches frame 6, whose packet header is damaged (a flipped pts byte: the index cannot be
    checked, and frame 6's time, where the span's audio would end, is unknown): frames 3..5 are written at their times
    with the audio from frame 3 to an average frame after frame 5, and the error names frame 6."""
    data = bytearray(vfr_stream.read_bytes())
    data[pts_at(data, layout(bytes(data)).packets[6][0])] ^= 0x40
    bad = tmp_path / "bad.hfc"
    bad.write_bytes(bytes(data))
    out = tmp_path / "part.mp4"
    with pytest.raises(DamagedStream, match="frame 6: damaged packet header") as info:
        api.decode(bad, out, device="cpu", start=3, frames=5)
    assert info.value.frame == 6 and "wrote the 3 intact frames" in str(info.value)
    times, tick = video_times(out)
    assert same_times(times, tick, [Fraction(0), Fraction(1, 10), Fraction(4, 10)])  # frames 3, 4, 5: 0.4, 0.5, 0.8
    assert abs(audio_offset(out, bad, Fraction(4, 10))) <= 1 / RATE
    assert abs(audio_seconds(out) - float(Fraction(4, 10) + Fraction(11, 80))) <= 1024 / RATE + 1e-6  # to 0.9375 s
    capsys.readouterr()
    assert run("decode", bad, tmp_path / "cli.mkv", "--start", "3", "--frames", "5") == EXIT_DAMAGED
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(lines) == 1 and "frame 6" in lines[0] and (tmp_path / "cli.mkv").exists()


def test_encode_and_info_count_a_timed_span_over_its_real_duration(vfr_clip, tmp_path, capsys):
    """Frames 3..5 of the VFR clip are shown from 0.4 to 0.9375 s (frame 5 at 0.8 s, and an average frame): the
    encode's summary and `vcodec info` give the same kbit/s over those 0.5375 s, not over 3 frames / fps."""
    out = tmp_path / "span.hfc"
    capsys.readouterr()
    assert run("encode", vfr_clip, out, "-q", "0", "--start", "3", "--frames", "3") == 0
    summary = " ".join(capsys.readouterr().out.split())
    assert run("info", out) == 0
    shown = " ".join(capsys.readouterr().out.split())
    (rate,) = re.findall(r"([0-9.]+) kbit/s", summary)
    assert f"{rate} kbit/s" in shown and "(0.54 s)" in shown
    info = api.probe(out)
    assert info["duration_s"] == pytest.approx(0.5375)
    assert float(rate) == pytest.approx(info["bitrate_kbps"], abs=0.05)
    result = api.encode(vfr_clip, tmp_path / "api.hfc", quality=0, start=3, frames=3, device="cpu")
    assert result.duration == Fraction(43, 80)
    assert result.kbps == pytest.approx(api.probe(tmp_path / "api.hfc")["bitrate_kbps"])


def test_rate_control_spends_a_bitrate_over_the_frames_real_time():
    """A bitrate is bits per second of the stream: for frames with their own times, a GOP's share is the target over
    the time it is shown (rate_control.QualityPlanner's `seconds`), not over its frames / the average fps."""
    from vcodec.rate_control import QualityPlanner, Target

    class Encoder:  # what the planner asks of an encoder, for the bitrate path: no P-frame model
        inter = None

    def budget(seconds) -> float:
        planner = QualityPlanner(Encoder(), Target("bitrate", 100_000.0), 64, 48, Fraction(80, 11), 200, seconds)
        goals = []
        planner._gop_bits = lambda raws, q: 1000.0 * 2**q
        planner._solve = lambda f, goal, rising=True: goals.append(goal) or 3.0
        planner.plan([None] * 3, [None] * 3, last=True)
        return math.exp(goals[0])  # the GOP's payload budget, bits

    frames_only = budget(None)  # evenly spaced: 3 frames at 80/11 fps are 0.4125 s, as before
    assert budget(lambda count, last: None) == frames_only
    timed = budget(lambda count, last: Fraction(43, 80) if (count, last) == (3, True) else None)
    assert timed - frames_only == pytest.approx(100_000 * (0.5375 - 0.4125) - 3 * 8 * 8)  # minus the pts they carry


def test_a_bitrate_for_a_timed_span_is_met_over_its_real_duration(vfr_clip, tmp_path):
    """End to end: the file's rate as `vcodec info` measures it (over 0.5375 s) is near the target; counted over 3
    frames / fps it would land 23 % under."""
    from vcodec.rate_control import Target

    out = tmp_path / "rate.hfc"
    api.encode(vfr_clip, out, start=3, frames=3, audio=False, device="cpu", target=Target("bitrate", 9000.0))
    got = api.probe(out)["bitrate_kbps"]
    assert abs(got / 9 - 1) <= 0.1, got


def test_probe_counts_a_damaged_timed_streams_duration_from_its_index(vfr_stream, tmp_path):
    """The frames after the damage still count: their times are in the seek table when the index is intact, else
    (the index cannot be checked) the frame count / fps stands for the duration."""
    data = bytearray(vfr_stream.read_bytes())
    off, head, payload = layout(bytes(data)).packets[6]
    data[off + head + payload // 2] ^= 0x21  # a payload byte: the packet header and the index are intact
    (tmp_path / "payload.hfc").write_bytes(bytes(data))
    info = api.probe(tmp_path / "payload.hfc")
    assert info["damage"]["frame"] == 6 and len(info["frames"]) == 6 and info["index_bytes"] is None
    assert info["duration_s"] == pytest.approx(float(SECONDS[-1] + Fraction(11, 80)))  # frame 7 at 1.0 s
    data = bytearray(vfr_stream.read_bytes())
    data[pts_at(data, off)] ^= 0x40  # frame 6's packet header: the index cannot be checked against it
    (tmp_path / "header.hfc").write_bytes(bytes(data))
    info = api.probe(tmp_path / "header.hfc")
    assert info["damage"]["frame"] == 6 and info["duration_s"] == pytest.approx(8 * 11 / 80)


def test_negative_positions_count_from_the_end_as_indexing_does(vfr_stream, tiny_stream):
    with vcodec.open(vfr_stream, device="cpu") as s:
        assert s.time_of(-1) == SECONDS[-1] and s.pts(-1) == s.pts(len(s) - 1) and s.time_of(-len(s)) == 0
        assert s.time_of(len(s)) == SECONDS[-1] + 1 / s.fps
        with pytest.raises(IndexError):
            s.time_of(-len(s) - 1)
    with vcodec.open(tiny_stream, device="cpu") as s:
        assert s.time_of(-1) == 1 / s.fps and s.pts(-2) == 0
        with pytest.raises(IndexError):
            s.pts(2)


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
    assert data["time_base"] == "1/10240"
    assert data["display"] is None
    assert run("info", display_stream) == 0
    text = capsys.readouterr().out
    assert "rotation 90° counter-clockwise, sample aspect ratio 4:3" in text and "variable" not in text
    assert run("info", display_stream, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["display"] == {"rotation": 90, "mirror": False, "sample_aspect_ratio": "4:3"}
    assert data["time_base"] is None and not data["variable_frame_rate"]  # frame i is shown at i / fps: no pts


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
        struct.pack_into("<q", data, pts_at(data, lay.packets[frame][0]), value)
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
    data[pts_at(data, layout(bytes(data)).packets[4][0])] ^= 0x40
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


def test_a_time_no_output_holds_is_damage_at_its_frame(vfr_stream, tmp_path, capsys):
    """pts x time base beyond 2^31 s (68 years; an int64 of any output's ticks holds it) is damage of that packet:
    the frames before it are written, as for any damage. An encoder refuses such a source frame."""
    bad = _resigned(vfr_stream, tmp_path, _set_pts(7, 2**31 * 10240 + 10240))  # 1/10240 s ticks: 2^31 s and 1 s
    capsys.readouterr()
    assert run("decode", bad, tmp_path / "out.mkv", "-an") == EXIT_DAMAGED
    err = capsys.readouterr().err
    assert "frame 7" in err and "later than any output holds" in err
    times, tick = video_times(tmp_path / "out.mkv")
    assert same_times(times, tick, SECONDS[:7])
    clock = SourceClock(Fraction(10), Fraction(1, 1000), Fraction(0), 0, None, lambda note: None)
    clock.see(0)
    with pytest.raises(InputError, match="later than a stream's timestamps reach"):
        clock.see(2**31 * 1000 + 1)


def test_frames_that_share_an_output_tick_are_said_to(tiny_stream, tmp_path, capsys):
    """Two frames 1/3 ms apart (in 1/90000 s) fall on one of Matroska's millisecond ticks: the decode says so once;
    an MP4 (which keeps the stream's time base) holds them apart and says nothing."""
    with C.StreamReader(tiny_stream) as r:
        header, packets = r.header, list(r.packets())
    header.frame_count, header.time_base = 0, Fraction(1, 90000)
    close = tmp_path / "close.hfc"
    with C.StreamWriter(close, header) as w:
        for packet, pts in zip(packets, (0, 30)):
            packet.pts = pts
            w.write(packet)
    capsys.readouterr()
    assert run("decode", close, tmp_path / "close.mkv") == 0
    err = capsys.readouterr().err
    assert err.count("share a time in the output") == 1 and "frames 0 and 1 of the output" in " ".join(err.split())
    assert run("decode", close, tmp_path / "close.mp4") == 0
    assert "share a time" not in capsys.readouterr().err
    times, _ = video_times(tmp_path / "close.mp4")
    assert times == [Fraction(0), Fraction(30, 90000)]


def test_an_audio_time_base_out_of_range_is_audio_damage(vfr_stream, tmp_path, capsys):
    """An audio time base term beyond 2^31 - 1 (no AVRational holds it) is a damaged audio description: every frame
    is written, without that audio, exit code 2 and one line; no temp file is left."""
    def change(data: bytearray, lay) -> None:
        at, fmt = lay.audio_field(bytes(data), "tb_den")
        struct.pack_into(fmt, data, at, 2**32 - 1)

    bad = _resigned(vfr_stream, tmp_path, change)
    with C.StreamReader(bad) as r:
        with pytest.raises(C.DamagedAudio, match="out of range"):
            r.audio_streams()
    out = tmp_path / "out" / "back.mkv"
    out.parent.mkdir()
    capsys.readouterr()
    assert run("decode", bad, out) == EXIT_DAMAGED
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(lines) == 1 and "audio stream 0" in lines[0] and "internal error" not in lines[0], lines
    assert sorted(p.name for p in out.parent.iterdir()) == ["back.mkv"]
    assert len(video_times(out)[0]) == len(VFR_PTS)


def test_an_output_that_fails_while_it_is_set_up_leaves_no_temp_file(vfr_stream, tmp_path, monkeypatch):
    """Whatever a muxer or the audio setup raises once VideoSink made its temp file, the file goes with it."""
    from vcodec import audio as A
    from vcodec.media import VideoSink

    def refuses(*args, **kwargs):
        raise OverflowError("value too large to convert to int")

    monkeypatch.setattr(A, "AudioWriter", refuses)
    with C.StreamReader(vfr_stream) as r:
        streams = r.audio_streams()
    with pytest.raises(OverflowError):
        VideoSink(tmp_path / "out.mkv", 64, 48, Fraction(10), C.Colour(), audio=streams)
    assert list(tmp_path.iterdir()) == []


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
