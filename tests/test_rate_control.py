"""Rate control: --bitrate / --bpp reach the file's average within 3 %, --target-psnr reaches its PSNR, quality
changes only at I-frames, and the options are checked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vcodec import api
from vcodec.rate_control import Target, parse_bitrate

from conftest import SAMPLE


@pytest.mark.parametrize("kbps", [500, 1200])
def test_bitrate_lands_within_3_percent_on_the_sample_clip(tmp_path, kbps):
    out = tmp_path / "s.hfc"
    r = api.encode(SAMPLE, out, target=Target("bitrate", kbps * 1000.0))
    got = out.stat().st_size * 8 / (r.frames / float(r.fps))  # the whole file, header and index included
    assert abs(got / (kbps * 1000) - 1) <= 0.03, (got, kbps)
    info = api.probe(out)
    gops = {}
    for f in info["frames"]:  # one quality per GOP, as chosen
        gops.setdefault(f["index"] // info["gop"], set()).add(f["quality"])
    assert all(len(q) == 1 for q in gops.values()) and len(gops) == 2
    assert sorted({q for qs in gops.values() for q in qs}) == sorted(set(r.qualities))


def test_bpp_and_target_psnr(tmp_path):
    r = api.encode(SAMPLE, tmp_path / "b.hfc", frames=24, target=Target("bpp", 0.15))
    assert abs(r.bpp / 0.15 - 1) <= 0.03, r.bpp
    r = api.encode(SAMPLE, tmp_path / "p.hfc", frames=24, gop=8, target=Target("psnr", 36.0), psnr=True)
    assert 36.0 - 0.1 <= r.psnr <= 37.5, r.psnr  # reached, and not by spending bits on much more
    assert len(r.qualities) == 3


def test_parse_bitrate():
    assert parse_bitrate("800k") == 800_000 and parse_bitrate("1.5M") == 1_500_000 and parse_bitrate("64000") == 64000
    for bad in ("fast", "-5k", "0", "3G"):
        with pytest.raises(Exception):
            parse_bitrate(bad)


@pytest.mark.parametrize("args,message", [
    (["-q", "3", "--bitrate", "800k"], "give one of -q"),
    (["--bitrate", "800k", "--gop", "-1"], "give a GOP"),
    (["--bitrate", "lots"], "--bitrate"),
    (["--target-psnr", "-3"], "positive"),
])
def test_rate_control_user_errors(tmp_path, args, message):
    done = subprocess.run([sys.executable, "-m", "vcodec", "encode", str(SAMPLE), str(tmp_path / "o.hfc"), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.hfc").exists()
