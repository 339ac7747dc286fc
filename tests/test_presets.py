"""Encoder presets: the slowest one searches latents, and what it writes is smaller at the same quality and read by
the unchanged decoder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from vcodec import api

from conftest import read_video, sample_frames, write_pngs


def test_veryslow_is_smaller_at_the_same_quality_and_decodes_everywhere(tmp_path):
    frames = write_pngs(tmp_path / "clip", sample_frames(2, 320, 192, start=10))
    results = {}
    for preset in ("medium", "veryslow"):
        out = tmp_path / f"{preset}.hfc"
        # An I- and a P-frame: the search pays on P-frames (vcodec/refine.py).
        results[preset] = api.encode(frames, out, quality=4, fps=25, gop=2, preset=preset, psnr=True, fixed_gop=True)
        api.decode(out, tmp_path / preset)  # the one decoder there is: nothing about the preset is in the stream
        decoded, _ = read_video(tmp_path / preset)
        source, _ = read_video(frames)
        psnr = np.mean([api.psnr_rgb(a, b) for a, b in zip(decoded, source)])
        assert abs(psnr - results[preset].psnr) < 1e-9  # what --psnr saw is what decodes
    medium, slow = results["medium"], results["veryslow"]
    assert slow.bytes < medium.bytes, (slow.bytes, medium.bytes)
    assert slow.psnr >= medium.psnr - 0.05, (slow.psnr, medium.psnr)


def test_unknown_preset_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vcodec", "encode", str(tmp_path / "x.png"), str(tmp_path / "o.hfc"),
                           "--preset", "placebo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "--preset" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _search_case(bundle, frame_coder, quality: float):
    """A 96x64 crop of the sample clip as the encoder sees it, g_a's latent at `quality`, and a LatentSearch of
    20 steps."""
    from vcodec.refine import LatentSearch, Preset

    rgb = sample_frames(1, 96, 64, start=20)[0]
    x = frame_coder.picture(rgb)
    y = frame_coder.analysis(x, quality)
    return rgb, x, y, LatentSearch(bundle.model, Preset(20, 0.03, 0.05, check_every=2))


def test_the_search_never_costs_bits_or_quality_and_saves_bits_at_high_q(bundle, frame_coder):
    """Judged as a user would: the real code lengths and the decoded picture, against g_a's own symbols."""
    for quality in (1.0, 6.0):
        rgb, x, y, search = _search_case(bundle, frame_coder, quality)
        medium = frame_coder.symbols_of(y)
        found = search.refine(y, x, frame_coder.quality(quality), frame_coder.price)
        psnr = [api.psnr_rgb(frame_coder.reconstruct(s.decoded_latent(), quality, 96, 64), rgb) for s in (medium, found)]
        bits = [frame_coder.cost(s) for s in (medium, found)]
        assert bits[1] <= bits[0] and psnr[1] >= psnr[0] - 0.05, (quality, bits, psnr)
        if quality == 6.0:  # cheaper symbols of the same quality (-8 % here; at q 1 this crop needs more steps)
            assert bits[1] < 0.96 * bits[0], bits


def test_searched_symbols_round_trip_through_a_packet(bundle, frame_coder):
    """The search sends a hyper-latent of its own (not h_a's): the packet carries it and parses back to it."""
    quality = 6.0
    rgb, x, y, search = _search_case(bundle, frame_coder, quality)
    found = search.refine(y, x, frame_coder.quality(quality), frame_coder.price)
    assert not np.array_equal(found.z, frame_coder.symbols_of(y).z)
    back = frame_coder.parse_intra(frame_coder.packet_of(found, quality, 0))
    assert np.array_equal(back.z, found.z) and np.array_equal(back.residual, found.residual)
    assert np.array_equal(back.scale_index, found.scale_index)


def test_a_stage_inside_another_counts_once(monkeypatch):
    """The latent search prices its points with the entropy model: those seconds go to the entropy model's row,
    not to both, so that -v's rows add up to the time spent (a clock that moves only when told to)."""
    from vcodec import stages

    now = [0.0]
    monkeypatch.setattr(stages.time, "perf_counter", lambda: now[0])
    t = stages.Timings()
    with t.stage("latent search"):
        now[0] += 5
        with t.stage("entropy model"):
            now[0] += 2
        now[0] += 1
        with t.stage("entropy model"):
            now[0] += 3
    with t.stage("rANS"):
        now[0] += 4
    assert t.stages == {"latent search": 6, "entropy model": 5, "rANS": 4}
