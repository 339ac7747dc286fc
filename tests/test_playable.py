"""Decoding to .mp4/.mov gives what browsers and players play (H.264 High 4:2:0, colour tagged, moov first, odd
sizes padded to even); --lossless gives the exact RGB output; .mkv, .y4m and PNG stay exact."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vcodec.cli import main
from vcodec.errors import EXIT_USAGE

from conftest import read_video, sample_frames, write_pngs

SIZE = (96, 64)
FRAMES = 4


def run(*args) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if err == 0 else 10 * np.log10(255**2 / err)


def tagged_clip(path: Path, matrix: int, full_range: bool, primaries: int, transfer: int) -> Path:
    """A small H.264 clip of the sample's pictures, converted to YUV with `matrix` and tagged with these colours."""
    from av.video.reformatter import ColorRange, Colorspace

    sws = {1: Colorspace.ITU709, 6: Colorspace.ITU601}[matrix]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = *SIZE, "yuv420p"
        s.options = {"qp": "0"}
        ctx = s.codec_context
        ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = matrix, 2 if full_range else 1, primaries, transfer
        for i, rgb in enumerate(sample_frames(FRAMES, *SIZE, start=20)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=sws, src_color_range=ColorRange.JPEG,
                dst_color_range=ColorRange.JPEG if full_range else ColorRange.MPEG)
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


# matrix, full range, primaries, transfer (H.273): BT.709 as cameras tag it, and full-range BT.601 as phones do
TAGS = {"bt709": (1, False, 1, 1), "bt601-full": (6, True, 6, 6)}


@pytest.fixture(scope="module", params=list(TAGS))
def tagged_stream(request, tmp_path_factory) -> tuple[Path, tuple]:
    root = tmp_path_factory.mktemp(f"playable-{request.param}")
    clip = tagged_clip(root / "clip.mp4", *TAGS[request.param])
    stream = root / "clip.hfc"
    assert run("encode", clip, stream, "-q", "3", "--gop", "2") == 0
    return stream, TAGS[request.param]


def opened(path: Path) -> tuple[av.VideoFrame, list[np.ndarray], str]:
    """The first decoded frame (its format and tags), every frame as RGB, and the stream's profile."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        profile = stream.codec_context.profile
        frames = list(c.decode(stream))
    return frames[0], [f.to_ndarray(format="rgb24") for f in frames], profile


def test_default_mp4_and_mov_are_playable_h264(tagged_stream, tmp_path):
    stream, (matrix, full_range, primaries, transfer) = tagged_stream
    exact = tmp_path / "exact"
    assert run("decode", stream, exact) == 0
    reference = read_video(exact)[0]
    for suffix in (".mp4", ".mov"):
        out = tmp_path / f"play{suffix}"
        assert run("decode", stream, out) == 0
        first, frames, profile = opened(out)
        expected = "yuvj420p" if full_range else "yuv420p"  # FFmpeg's name for 4:2:0 whose range flag says full
        assert (first.format.name, profile, first.width, first.height) == (expected, "High", *SIZE)
        assert (int(first.colorspace), int(first.color_range), int(first.color_primaries), int(first.color_trc)) == (
            matrix, 2 if full_range else 1, primaries, transfer)
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
        data = out.read_bytes()
        assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playback starts before the download ends
        assert len(frames) == FRAMES
        # Close to the exact decode (what the tags promise is what a player shows), yet not the exact bytes.
        scores = [psnr(a, b) for a, b in zip(read_video(out)[0], reference)]
        assert 38 < min(scores) and max(scores) < 60, scores
        assert out.stat().st_size < exact.joinpath("f00001.png").stat().st_size * FRAMES


def test_lossless_mp4_and_the_exact_containers_return_the_decoded_pixels(tagged_stream, tmp_path):
    stream, _ = tagged_stream
    assert run("decode", stream, tmp_path / "exact") == 0
    reference = read_video(tmp_path / "exact")[0]
    for name, extra in (("lossless.mp4", ["--lossless"]), ("lossless.mov", ["--lossless"]), ("plain.mkv", []),
                        ("lossless.mkv", ["--lossless"])):
        assert run("decode", stream, tmp_path / name, *extra) == 0
        frames = read_video(tmp_path / name)[0]
        assert len(frames) == FRAMES and all(np.array_equal(a, b) for a, b in zip(frames, reference)), name


@pytest.fixture(scope="module")
def odd_stream(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("playable-odd")
    src = write_pngs(root / "src", sample_frames(2, 97, 75, start=5))
    assert run("encode", src, root / "odd.hfc", "-q", "3") == 0
    return root / "odd.hfc"


def test_odd_sizes_are_padded_to_even_not_refused(odd_stream, tmp_path):
    assert run("decode", odd_stream, tmp_path / "exact") == 0
    reference = read_video(tmp_path / "exact")[0]
    assert run("decode", odd_stream, tmp_path / "odd.mp4") == 0
    first, frames, _ = opened(tmp_path / "odd.mp4")
    assert (first.format.name, first.width, first.height) == ("yuv420p", 98, 76)  # one repeated column and row
    for got, ref in zip(frames, reference):
        assert psnr(got[:75, :97], ref) > 36
        # the padding repeats the last column and row: it looks like them, not like black or noise
        assert np.abs(got[:75, 97].astype(int) - ref[:, 96]).mean() < 4
        assert np.abs(got[75, :97].astype(int) - ref[74, :]).mean() < 4


def test_crf_sets_the_playable_defaults_quality(tagged_stream, tmp_path):
    stream, _ = tagged_stream
    assert run("decode", stream, tmp_path / "default.mp4") == 0
    assert run("decode", stream, tmp_path / "small.mp4", "--crf", "40") == 0
    first, _, _ = opened(tmp_path / "small.mp4")
    assert first.format.name in ("yuv420p", "yuvj420p")  # 4:2:0 (yuvj: its range flag says full)
    assert (tmp_path / "small.mp4").stat().st_size < (tmp_path / "default.mp4").stat().st_size


def test_codec_works_as_before(odd_stream, tmp_path):
    assert run("decode", odd_stream, tmp_path / "odd444.mp4", "--codec", "libx264", "--crf", "18") == 0
    first, _, _ = opened(tmp_path / "odd444.mp4")
    assert (first.format.name, first.width, first.height) == ("yuv444p", 97, 75)  # --codec keeps 4:4:4 for odd sizes


@pytest.mark.parametrize("extra", [["--lossless", "--crf", "18"], ["--lossless", "--codec", "libx265"]])
def test_lossless_with_a_codec_choice_is_one_clear_error(odd_stream, tmp_path, capsys, monkeypatch, extra):
    monkeypatch.chdir(tmp_path)
    assert run("decode", odd_stream, "out.mp4", *extra) == EXIT_USAGE
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--lossless" in lines[0], lines
    assert os.listdir(tmp_path) == []
