"""Audio pass-through: a clip's AAC audio is kept in the .hfc as its coded packets and muxed back beside every frame
(.mp4 and .mkv copy it, .webm re-encodes it and says so), `-an` drops it, `info` lists it, seeking keeps it in sync,
and damage in the audio costs no frame, nor damage in the video any audio."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcodec import api
from vcodec import container as C
from vcodec.cli import main
from vcodec.errors import EXIT_DAMAGED, DamagedStream

from conftest import TONE_RATE, mux_tone, read_video, sample_frames
from fuzz.harness import decode_bytes
from fuzz.mutations import allowed_outcomes, layout, mutate

FRAMES, FPS, RATE = 25, 25, TONE_RATE
AAC_FRAME = 1024  # samples: "within one audio frame" (mkv keeps the encoder's priming frame, which mp4 hides)
SLACK = 1e-6  # seconds of rounding


def run(*args) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


def clip_with_audio(path: Path, seconds: float = 1.0) -> Path:
    """64x48 frames of the sample clip at 25 fps beside a 440 Hz stereo sine in AAC, both `seconds` long."""
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = c.add_stream("aac", rate=RATE)
        audio.layout = "stereo"
        for i, rgb in enumerate(sample_frames(round(seconds * FPS), 64, 48)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for p in video.encode(frame):
                c.mux(p)
        mux_tone(c, audio, round(seconds * RATE))
        for p in video.encode():
            c.mux(p)
    return path


def audio_of(path: Path) -> tuple[str | None, float]:
    """The codec of a file's first audio stream and its decoded length in seconds (None, 0 without audio)."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None, 0.0
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
        return stream.codec_context.name, samples / stream.codec_context.sample_rate


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return clip_with_audio(tmp_path_factory.mktemp("audio") / "clip.mp4")


@pytest.fixture(scope="module")
def stream(clip) -> Path:
    out = clip.with_name("clip.hfc")
    assert run("encode", clip, out, "-q", "1", "--gop", "8") == 0
    return out


@pytest.fixture(scope="module")
def source_audio(clip) -> float:
    codec, seconds = audio_of(clip)
    assert codec == "aac" and abs(seconds - 1.0) < 0.05
    return seconds


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_round_trips_beside_every_frame(stream, source_audio, tmp_path, suffix):
    out = tmp_path / f"back{suffix}"
    assert run("decode", stream, out) == 0
    codec, seconds = audio_of(out)
    assert codec == "aac"  # copied, not re-encoded
    assert abs(seconds - source_audio) <= AAC_FRAME / RATE + SLACK, (seconds, source_audio)
    assert len(read_video(out)[0]) == FRAMES
    with av.open(str(out)) as c:  # the packets are the source's, byte for byte
        copied = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
    with av.open(str(stream.with_name("clip.mp4"))) as c:
        original = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
    assert copied == original


def test_webm_reencodes_and_says_so(stream, source_audio, tmp_path, capsys):
    out = tmp_path / "back.webm"
    assert run("decode", stream, out) == 0
    assert "re-encoded as libopus" in capsys.readouterr().err
    codec, seconds = audio_of(out)
    assert codec == "opus" and abs(seconds - source_audio) <= 2 * AAC_FRAME / RATE + SLACK, seconds


def test_no_audio_flag_on_encode_and_decode(stream, clip, tmp_path):
    assert run("decode", stream, tmp_path / "silent.mp4", "-an") == 0
    assert audio_of(tmp_path / "silent.mp4") == (None, 0.0)
    assert len(read_video(tmp_path / "silent.mp4")[0]) == FRAMES
    assert run("encode", clip, tmp_path / "silent.hfc", "-q", "1", "--gop", "8", "-an") == 0
    with C.StreamReader(tmp_path / "silent.hfc") as r:
        assert not r.header.has_audio and r.audio_streams() == []
    # without audio the stream is what it always was: the video packets are the same bytes as with audio
    with C.StreamReader(tmp_path / "silent.hfc") as a, C.StreamReader(stream) as b:
        assert [p.substreams for p in a.packets()] == [p.substreams for p in b.packets()]


def test_info_lists_the_audio_and_accounts_for_its_bytes(stream, capsys):
    capsys.readouterr()
    assert run("info", stream, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    (row,) = data["audio"]
    assert (row["codec"], row["sample_rate"], row["channels"]) == ("aac", RATE, 2)
    assert abs(row["duration_s"] - 1.0) < 0.05 and row["packets"] > 40
    assert data["header_bytes"] + sum(f["bytes"] for f in data["frames"]) + data["audio_bytes"] + \
        data["index_bytes"] == data["file_bytes"] == stream.stat().st_size
    assert run("info", stream) == 0
    assert "aac 44100 Hz, 2 channels" in capsys.readouterr().out


def test_png_frames_say_the_audio_is_left_out(stream, tmp_path, capsys):
    assert run("decode", stream, tmp_path / "frames") == 0
    assert "audio is not written" in capsys.readouterr().err
    assert len(read_video(tmp_path / "frames")[0]) == FRAMES


def test_seeking_keeps_audio_in_sync(stream, clip, tmp_path):
    """Frames 10..14 (0.4 s .. 0.6 s): decoded from the full stream, or encoded alone, their audio is 0.2 s long."""
    assert run("decode", stream, tmp_path / "part.mp4", "--start", "10", "--frames", "5") == 0
    assert len(read_video(tmp_path / "part.mp4")[0]) == 5
    assert abs(audio_of(tmp_path / "part.mp4")[1] - 0.2) <= 2 * AAC_FRAME / RATE
    assert run("encode", clip, tmp_path / "part.hfc", "-q", "1", "--start", "10", "--frames", "5") == 0
    with C.StreamReader(tmp_path / "part.hfc") as r:
        (audio,) = r.audio_streams()
        packets = list(r.audio_packets())
    first, last = packets[0], packets[-1]
    assert first.pts * audio.time_base <= 0 < (first.pts + first.duration) * audio.time_base  # starts with frame 10
    assert abs((last.pts + last.duration) * audio.time_base - Fraction(1, 5)) <= Fraction(AAC_FRAME, RATE)
    with C.StreamReader(stream) as r:  # the same packets the whole stream holds there
        whole = {p.data for p in r.audio_packets()}
    assert {p.data for p in packets} <= whole


def _damaged_audio(stream: Path, tmp_path: Path) -> Path:
    data = bytearray(stream.read_bytes())
    lay = layout(bytes(data))
    off, length = lay.audio_packets[len(lay.audio_packets) // 2]
    data[off + C.AUDIO_PACKET_HEADER + length // 2] ^= 0x21
    bad = tmp_path / "bad-audio.hfc"
    bad.write_bytes(bytes(data))
    return bad


def test_damaged_audio_costs_no_frame(stream, source_audio, tmp_path, capsys):
    bad = _damaged_audio(stream, tmp_path)
    capsys.readouterr()
    assert run("decode", bad, tmp_path / "out.mp4") == EXIT_DAMAGED
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "audio packet" in lines[0] and f"all {FRAMES} frames" in lines[0], lines
    assert len(read_video(tmp_path / "out.mp4")[0]) == FRAMES
    assert 0.3 < audio_of(tmp_path / "out.mp4")[1] < source_audio - 0.3  # the audio before the damage
    assert run("info", bad) == EXIT_DAMAGED


def test_damaged_video_costs_no_audio(stream, source_audio, tmp_path):
    data = bytearray(stream.read_bytes())
    off, head, payload = layout(bytes(data)).packets[12]
    data[off + head + payload // 2] ^= 0x21
    bad = tmp_path / "bad-video.hfc"
    bad.write_bytes(bytes(data))
    with pytest.raises(DamagedStream, match="frame 12"):
        api.decode(bad, tmp_path / "out.mkv", device="cpu")
    assert len(read_video(tmp_path / "out.mkv")[0]) == 12
    assert abs(audio_of(tmp_path / "out.mkv")[1] - source_audio) <= AAC_FRAME / RATE + SLACK


def test_container_keeps_audio_exactly(tmp_path):
    streams = [C.AudioStream("aac", RATE, 2, Fraction(1, RATE), b"\x01" * 40),
               C.AudioStream("opus", 48000, 1, Fraction(1, 48000), b"\x02" * 7)]
    header = C.Header(model="m", weights_hash=bytes(32), width=97, height=75, padded_width=112, padded_height=80,
                      fps=Fraction(25), entropy_form=C.ENTROPY_INTEGER)
    rng = random.Random(3)
    sound = [C.AudioPacket(k % 2, 960 * k - 1024, 960 * k - 1024, 960, k % 3 == 0, rng.randbytes(rng.randint(1, 90)))
             for k in range(9)]
    path = tmp_path / "a.hfc"
    with C.StreamWriter(path, header, streams) as w:
        for i in range(3):
            w.write(C.Packet(i, C.FRAME_I, 1.0, (192, 5, 7), (128, 2, 2), [rng.randbytes(30)]))
            for p in sound[3 * i : 3 * i + 3]:
                w.write_audio(p)
    with C.StreamReader(path) as r:
        assert r.header.has_audio and len(list(r.packets())) == 3 and len(r.seek_table()) == 3
        assert [(s.codec, s.packets) for s in r.audio_streams()] == [("aac", 5), ("opus", 4)]
        assert list(r.audio_packets()) == sound
    assert not list(tmp_path.glob(".*"))  # neither the temp file nor the audio spool is left


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_streams_with_audio_never_crash(stream, tmp_path, seed):
    """The fuzz harness on a stream with audio, decoded into .mkv (which takes the audio): the audio mutations
    among the others, each ending in a full decode, the damaged-stream behaviour or a refusal."""
    data, kind = mutate(stream.read_bytes(), random.Random(seed))
    decode_bytes(data, tmp_path / "case", allowed_outcomes(kind), suffix=".mkv")


def test_audio_mutations_are_drawn_and_audio_damage_is_caught(stream, tmp_path):
    clean = stream.read_bytes()
    kinds = set()
    for seed in range(400):
        data, kind = mutate(clean, random.Random(seed))
        assert data != clean
        kinds.add(".".join(kind.split(".")[:2]))
    assert {"audio.section", "audio.params", "audio.payload", "audio.splice", "audio.pts"} <= kinds, kinds
    assert decode_bytes(clean, tmp_path / "clean", {"ok"}, suffix=".mkv") == "ok"
    bad = _damaged_audio(stream, tmp_path).read_bytes()
    assert decode_bytes(bad, tmp_path / "bad", {"damaged"}, suffix=".mkv") == "damaged"
