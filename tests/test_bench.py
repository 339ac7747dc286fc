"""`vcodec bench`: metrics on hand-computed cases, BD-rates, the baselines' set-up, inputs, the JSON file, and a
small real bench of the sample clip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vcodec import bdrate, metrics
from vcodec.baselines import BASELINES, check_available, code, x264_info_bytes
from vcodec.bench import BenchInterrupted, BenchOptions, Reporter, find_sequences, run as run_bench
from vcodec.cli import main
from vcodec.errors import EXIT_USAGE, InputError
from vcodec.rd_results import validate

from conftest import sample_frames, write_pngs


def as_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def run_cli(*args) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))


# ------------------------------------------------------------------------------------------------------ metrics
def test_psnr_of_a_known_error():
    a = np.full((6, 10, 3), 100, np.uint8)
    b = a.copy()
    b[::2] += 5  # half the rows +5, the other half -5: every pixel is 5 off, MSE = 25 (in 8-bit units)
    b[1::2] -= 5
    err = float(metrics.mse(as_tensor(a), as_tensor(b))[0])
    assert err == pytest.approx(25 / 255**2)
    assert metrics.psnr_from_mse(err) == pytest.approx(10 * math.log10(255**2 / 25))  # 34.15 dB
    assert metrics.psnr_from_mse(0.0) == math.inf


@pytest.mark.parametrize("width, height", [(8, 6), (7, 5)])
def test_psnr_yuv_of_an_error_in_blue_only(width, height):
    # +20 on B only: Y moves by 0.0722*20, Cb by (20 - 0.0722*20) / 1.8556 = 10, Cr by -0.0722*20 / 1.5748.
    # The error is the same everywhere, so 2x2 chroma averaging (and odd-size edge handling) keeps it.
    a = np.full((height, width, 3), 120, np.uint8)
    b = a.copy()
    b[..., 2] += 20
    got = metrics.psnr_yuv420(as_tensor(a), as_tensor(b))
    y = 20 * math.log10(255 / (0.0722 * 20))
    u = 20 * math.log10(255 / 10)
    v = 20 * math.log10(255 / (0.0722 * 20 / 1.5748))
    assert got["y"] == pytest.approx(y, abs=1e-3)
    assert got["u"] == pytest.approx(u, abs=1e-3)
    assert got["v"] == pytest.approx(v, abs=1e-3)
    assert got["yuv"] == pytest.approx((6 * y + u + v) / 8, abs=1e-3)


def test_chroma_420_repeats_the_last_column_and_row_of_odd_sizes():
    plane = torch.arange(15, dtype=torch.float32).reshape(1, 1, 3, 5)  # rows 0..4, 5..9, 10..14
    sub = metrics.subsample_420(plane)
    assert tuple(sub.shape) == (1, 1, 2, 3)
    assert sub[0, 0, 0].tolist() == [3.0, 5.0, 6.5]  # (0+1+5+6)/4, (2+3+7+8)/4, (4+4+9+9)/4
    assert sub[0, 0, 1].tolist() == [10.5, 12.5, 14.0]  # the last row is averaged with itself


def test_psnr_yuv_of_identical_pictures_scores_the_given_cap():
    frame = as_tensor(sample_frames(1, 32, 24)[0])
    assert metrics.psnr_yuv420(frame, frame)["yuv"] == math.inf
    assert metrics.psnr_yuv420(frame, frame, exact=100.0)["yuv"] == 100.0


def test_ms_ssim_is_one_for_identical_pictures_and_lower_for_noisy_ones():
    frame = as_tensor(sample_frames(1, 96, 64, start=5)[0])
    assert float(metrics.ms_ssim(frame, frame)[0]) == pytest.approx(1.0, abs=1e-5)
    noisy = (frame + 0.05 * torch.randn(frame.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    score = float(metrics.ms_ssim(frame, noisy)[0])
    assert 0.5 < score < 0.99


# ------------------------------------------------------------------------------------------------------ BD-rate
RATES = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNRS = [29.0, 32.0, 34.6, 36.8, 38.5]


@pytest.mark.parametrize("method", bdrate.METHODS)
def test_bd_rate_of_a_curve_against_itself_is_zero(method):
    result = bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS, method)
    assert result.percent == pytest.approx(0.0, abs=1e-9)
    assert result.reason == ""


@pytest.mark.parametrize("method", bdrate.METHODS)
def test_bd_rate_of_half_the_bits_is_minus_fifty_percent(method):
    assert bdrate.bd_rate(RATES, PSNRS, [r / 2 for r in RATES], PSNRS, method).percent == pytest.approx(-50.0, abs=1e-6)
    assert bdrate.bd_rate(RATES, PSNRS, [r * 2 for r in RATES], PSNRS, method).percent == pytest.approx(100.0, abs=1e-6)


def test_bd_rate_points_need_not_match_and_order_does_not_matter():
    test_rates = [0.15, 1.2, 0.5, 0.3]
    test_psnrs = [30.5, 38.0, 35.3, 33.5]  # roughly the anchor's own curve
    forward = bdrate.bd_rate(RATES, PSNRS, test_rates, test_psnrs)
    shuffled = bdrate.bd_rate(RATES[::-1], PSNRS[::-1], test_rates, test_psnrs)
    assert forward.percent == pytest.approx(shuffled.percent)
    assert -25 < forward.percent < 25


def test_bd_rate_is_na_without_enough_overlap():
    below = bdrate.bd_rate(RATES, PSNRS, [0.5, 1.0, 2.0], [20.0, 24.0, 27.0])
    assert below.percent is None and "no overlap" in below.reason
    assert below.test_range == (20.0, 27.0)
    sliver = bdrate.bd_rate(RATES, PSNRS, [0.5, 1.0, 2.0], [22.0, 26.0, 30.0])  # shares 29..30 of a 8 dB curve
    assert sliver.percent is None and "overlap 12 % < 50 %" in sliver.reason
    assert bdrate.bd_rate(RATES, PSNRS, [0.5, 1.0, 2.0], [22.0, 26.0, 30.0], min_overlap=0.1).percent is not None
    one_point = bdrate.bd_rate(RATES, PSNRS, [0.5], [33.0])
    assert one_point.percent is None and "1 usable point" in one_point.reason


def test_bd_rate_leaves_out_points_where_quality_falls_as_rate_rises():
    rates, psnrs = RATES + [2.0], PSNRS + [38.0]  # more bits, lower PSNR than the 1.6 bpp point
    result = bdrate.bd_rate(rates, psnrs, RATES, PSNRS)
    assert result.dropped == 1
    assert result.percent == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("name", ["x264", "x265", "svtav1"])
def test_baseline_keeps_the_gop_and_more_bits_buy_quality(name):
    frames = sample_frames(4, 96, 64, start=30)
    decoded = {}
    coded = {}
    for crf in (BASELINES[name].crf_max - 8, 20):
        pictures = []
        coded[crf] = code(BASELINES[name], frames, crf, gop=2, on_frame=lambda i, rgb: pictures.append(rgb))
        decoded[crf] = pictures
    low, high = BASELINES[name].crf_max - 8, 20
    for crf in (low, high):
        assert coded[crf].frames == coded[crf].packets == 4  # nothing held back
        assert coded[crf].pts == [0, 1, 2, 3]  # coded in display order: no B-frames
        assert coded[crf].keyframes == [0, 2]  # keyint = GOP, no scene-cut key frames
        assert [f.shape for f in decoded[crf]] == [(64, 96, 3)] * 4
    assert coded[high].bits > coded[low].bits
    quality = {crf: np.mean([psnr_rgb(a, b) for a, b in zip(decoded[crf], frames)]) for crf in (low, high)}
    assert quality[high] > quality[low] > 20


def test_odd_sizes_are_padded_for_420_and_cropped_back():
    frames = sample_frames(2, 95, 63, start=30)
    pictures = []
    code(BASELINES["x264"], frames, 18, gop=2, on_frame=lambda i, rgb: pictures.append(rgb))
    assert [p.shape for p in pictures] == [(63, 95, 3)] * 2
    assert min(psnr_rgb(a, b) for a, b in zip(pictures, frames)) > 35


def test_x264_version_sei_is_found_and_not_counted():
    import av
    from fractions import Fraction

    frames = sample_frames(2, 64, 48)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = 64, 48, "yuv420p", Fraction(1, 25)
    packets = []
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    first = bytes(packets[0])
    info = x264_info_bytes(first)
    at = first.find(b"x264 - core")
    assert at > 0 and 200 < info < len(first)  # the version and options string: hundreds of bytes
    sei = first.find(b"\x00\x00\x01\x06")
    assert sei < at < sei + info  # the SEI NAL unit that holds the string is the one measured
    assert x264_info_bytes(bytes(packets[1])) == 0
    coded = code(BASELINES["x264"], frames, 30, gop=2)
    assert 200 * 8 < coded.uncounted_bits < 2000 * 8
    assert code(BASELINES["x265"], frames, 30, gop=2).uncounted_bits == 0  # told not to write its own (info=0)


def test_baseline_choices_are_checked():
    with pytest.raises(InputError, match="unknown baseline"):
        check_available("vp9", "yuv420p")
    with pytest.raises(InputError, match="yuv444p"):
        check_available("svtav1", "yuv444p")  # SVT-AV1 encodes 4:2:0 only
    assert check_available("x264", "yuv444p").encoder == "libx264"


def test_yuv444p_keeps_more_colour_than_420():
    frames = sample_frames(2, 64, 48, start=12)
    scores = {}
    for fmt in ("yuv420p", "yuv444p"):
        pictures = []
        code(BASELINES["x264"], frames, 10, gop=2, pix_fmt=fmt, on_frame=lambda i, rgb: pictures.append(rgb))
        scores[fmt] = np.mean([psnr_rgb(a, b) for a, b in zip(pictures, frames)])
    assert scores["yuv444p"] > scores["yuv420p"]


# ------------------------------------------------------------------------------------------------------- inputs
def test_inputs_video_frame_folder_and_dataset_root(tmp_path):
    from conftest import SAMPLE

    frames = sample_frames(2, 32, 24)
    single = write_pngs(tmp_path / "Beauty", frames)
    root = tmp_path / "UVG"
    write_pngs(root / "Jockey", frames)
    write_pngs(root / "Bosphorus", frames)
    (root / "notes").mkdir()  # no PNGs: not a sequence
    found = find_sequences([SAMPLE, single, root])
    assert [(s.name, s.path) for s in found] == [
        ("bikes-48", SAMPLE), ("Beauty", single), ("Bosphorus", root / "Bosphorus"), ("Jockey", root / "Jockey"),
    ]
    assert [s.name for s in find_sequences([single, single])] == ["Beauty", "Beauty (2)"]
    with pytest.raises(InputError, match="neither PNG frames"):
        find_sequences([root / "notes"])
    with pytest.raises(InputError, match="not found"):
        find_sequences([tmp_path / "missing.mp4"])


@pytest.mark.parametrize("args, message", [
    (["--qualities", "0,9"], "outside 0..7"),
    (["--baselines", "vp8"], "unknown baseline"),
    (["--crfs", "x265=20,30", "--baselines", "x264"], "not among the baselines"),
    (["--crfs", "x264=60", "--baselines", "x264"], "CRFs 0..51"),
    (["--frames", "0"], "at least 1"),
    (["--plot", "rd.xyz"], "cannot write '.xyz'"),
])
def test_bench_usage_errors_are_one_line(tmp_path, capsys, args, message):
    clip = write_pngs(tmp_path / "clip", sample_frames(1, 32, 24))
    args = [a.replace("rd.xyz", str(tmp_path / "rd.xyz")) for a in args]
    assert run_cli("bench", clip, *args) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bench_refuses_to_overwrite_without_y(tmp_path, capsys):
    clip = write_pngs(tmp_path / "clip", sample_frames(1, 32, 24))
    existing = tmp_path / "out.json"
    existing.write_text("[]")
    assert run_cli("bench", clip, "--json", existing) == EXIT_USAGE
    assert "exists" in capsys.readouterr().err
    assert existing.read_text() == "[]"


# ---------------------------------------------------------------------------------------------------- the bench
def test_two_quality_bench_of_a_four_frame_clip(tmp_path, capsys):
    from PIL import Image

    from vcodec import api

    source = sample_frames(4, 128, 96, start=10)
    clip = write_pngs(tmp_path / "clip", source)
    out, plot = tmp_path / "rd.json", tmp_path / "rd.png"
    assert run_cli("bench", clip, "--qualities", "0,6", "--frames", "4", "--gop", "2", "--baselines", "x264",
                   "--device", "cpu", "--json", out, "--plot", plot) == 0
    data = json.loads(out.read_text())
    assert validate(data) == []
    assert [(e["name"], e["sequence"]) for e in data] == [
        ("vcodec", "clip"), ("x264", "clip"), ("vcodec", "average"), ("x264", "average"),
    ]
    ours, x264 = data[0]["results"], data[1]["results"]
    assert data[0]["settings"] == ["q=0", "q=6"]
    assert ours["bpp"][0] < ours["bpp"][1] and ours["psnr-rgb"][0] < ours["psnr-rgb"][1]
    for stage in ("encoding", "decoding"):  # the network/entropy split is a part of the measured time
        for net, ent, total in zip(ours[f"{stage}_network_time"], ours[f"{stage}_entropy_time"], ours[f"{stage}_time"]):
            assert 0 < net and 0 < ent and net + ent <= total * 1.0001

    # bpp is the real .hfc file's, and the quality is that of a real decode of it
    stream, back = tmp_path / "q0.hfc", tmp_path / "back"
    api.encode(clip, stream, quality=0, gop=2, device="cpu")
    assert ours["bpp"][0] == pytest.approx(stream.stat().st_size * 8 / (128 * 96 * 4))
    api.decode(stream, back, device="cpu")
    decoded = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(back.iterdir())]
    assert ours["psnr-rgb"][0] == pytest.approx(np.mean([psnr_rgb(d, s) for d, s in zip(decoded, source)]), abs=1e-3)

    # the automatic sweep covers vcodec's range (or reaches the CRF limits) with at least 5 points
    settings = [int(s.split("=")[1]) for s in data[1]["settings"]]
    assert len(settings) >= 5 and settings == sorted(settings, reverse=True)
    assert max(x264["bpp"]) >= max(ours["bpp"]) or min(settings) == 10
    assert min(x264["psnr-rgb"]) <= min(ours["psnr-rgb"]) or max(settings) == 51
    assert all(a < b for a, b in zip(x264["bpp"], x264["bpp"][1:]))

    bd = data[0]["bd_rate"]["anchors"]["x264"]
    assert set(bd) >= {"psnr-rgb", "psnr-yuv"}
    assert bd["psnr-rgb"] is not None or "overlap" in bd["psnr-rgb note"]
    assert data[2]["results"]["bpp"] == ours["bpp"]  # one sequence: the average is that sequence
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "BD-rate of vcodec" in printed and "crf=" in printed and "q=6" in printed


class StopAfterFirstPoint(Reporter):
    def point(self, point) -> None:
        raise KeyboardInterrupt  # as if Ctrl-C came right after the first point was written


def test_an_interrupted_bench_keeps_the_points_it_finished(tmp_path):
    clip = write_pngs(tmp_path / "clip", sample_frames(2, 64, 48))
    out = tmp_path / "partial.json"
    options = BenchOptions(qualities=[1.0, 5.0], baselines=["x264"], frames=2, gop=2, device="cpu", json=out)
    with pytest.raises(BenchInterrupted) as stopped:
        run_bench([clip], options, StopAfterFirstPoint())
    assert len(stopped.value.results.points) == 1
    data = json.loads(out.read_text())
    assert validate(data, complete=False) == []
    assert len(data) == 1 and data[0]["name"] == "vcodec" and data[0]["settings"] == ["q=1"]
    assert not list(tmp_path.glob(".partial.json.*"))  # no temp file left beside it


def test_the_format_check_finds_what_is_wrong():
    good = {"name": "x264", "description": "d", "sequence": "average",
            "results": {k: [0.1, 0.2] for k in ("bpp", "psnr-rgb", "psnr-yuv", "ms-ssim-rgb", "encoding_time", "decoding_time")}}
    assert validate([good]) == []
    short = json.loads(json.dumps(good))
    short["results"]["psnr-yuv"] = [30.0]
    missing = json.loads(json.dumps(good))
    del missing["results"]["ms-ssim-rgb"]
    per_sequence = dict(good, sequence="bikes")
    assert any("differ in length" in p for p in validate([short]))
    assert any("ms-ssim-rgb" in p for p in validate([missing]))
    assert any("no 'average' entry" in p for p in validate([per_sequence]))
    assert validate([per_sequence], complete=False) == []
    assert validate({"results": []}) == ["the top level is not a list"]


def test_bd_psnr_of_a_shifted_curve():
    from vcodec import bdrate

    rates, psnrs = [0.1, 0.2, 0.4, 0.8], [28.0, 31.0, 34.0, 37.0]
    assert bdrate.bd_psnr(rates, psnrs, rates, psnrs).db == pytest.approx(0.0, abs=1e-9)
    assert bdrate.bd_psnr(rates, psnrs, rates, [p - 2 for p in psnrs]).db == pytest.approx(-2.0, abs=1e-6)
    assert bdrate.bd_psnr(rates, psnrs, [r * 10 for r in rates], psnrs).db is None
