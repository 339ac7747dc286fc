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
