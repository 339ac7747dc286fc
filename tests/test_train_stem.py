"""`vcodec train stem`: latent caches, synthetic motion, a tiny run whose P-frame rate falls, bit-identical resume,
export to a model that codes a real stream, and the user errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import SAMPLE


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory):
    """A fixed camera: one picture of the sample clip, six frames, fresh sensor noise on each (lossless FFV1)."""
    from fractions import Fraction

    from vcodec.container import Colour
    from vcodec.media import open_sink

    from conftest import sample_frames

    path = tmp_path_factory.mktemp("still") / "still.mkv"
    frame = sample_frames(1, 256, 192, start=30)[0].astype(float)
    rng = np.random.default_rng(0)
    sink = open_sink(path, 256, 192, Fraction(25), Colour(matrix=0, full_range=True))
    for _ in range(6):
        sink.write(np.clip(np.round(frame + rng.normal(0, 1.0, frame.shape)), 0, 255).astype(np.uint8))
    sink.close()
    return path


def _options(tmp_path, pictures, **kw):
    from vcodec.train.stem_loop import StemOptions

    base = dict(data=[SAMPLE, pictures], val=[SAMPLE], out=tmp_path / "ck", cache=tmp_path / "cache", c=8, hidden=16,
                batch_size=4, crop=8, frames=3, lr=5e-4, threads=1, log_every=10, save_every=1000, val_every=0,
                val_frames=4, experiments=tmp_path / "exp", device="cpu", motion_per_photo=1, motion_frames=4,
                motion_size=128, clip_frames=16)
    base.update(kw)
    return StemOptions(**base)


def test_synthetic_motion_moves_inside_the_photo():
    from vcodec.train.motion import camera_path, motion_sequences

    g = torch.Generator().manual_seed(3)
    photo = (torch.rand(3, 300, 400, generator=g) * 255).to(torch.uint8)
    seqs = motion_sequences(photo, 6, 5, 128, g)
    assert len(seqs) == 6 and all(s.shape == (5, 3, 128, 128) and s.dtype == torch.uint8 for s in seqs)
    for _ in range(20):
        path = camera_path(g, 7, 128, (300, 400))
        for cx, cy, scale, angle, _ in path:
            reach = scale * 64 * (math.sqrt(2) if angle else 1)
            assert reach - 1e-6 <= cx <= 400 - reach + 1e-6 and reach - 1e-6 <= cy <= 300 - reach + 1e-6
    assert motion_sequences(photo[:, :100], 2, 5, 128, g) == []  # too small for the window: nothing


def test_latents_are_cached_per_source_and_intra_model(tmp_path, pictures, bundle):
    from vcodec.train.latents import build_caches

    seqs = build_caches([SAMPLE], bundle.model, bundle.hash_hex, tmp_path, torch.device("cpu"), clip_frames=5,
                        say=lambda s: None)
    assert len(seqs) == 1 and seqs[0].shape == (5, 128, 17, 40) and seqs[0].dtype == torch.float16
    files = list(tmp_path.glob("*.safetensors"))
    said = []
    again = build_caches([SAMPLE], bundle.model, bundle.hash_hex, tmp_path, torch.device("cpu"), clip_frames=5,
                         say=said.append)
    assert torch.equal(again[0], seqs[0]) and "cached" in said[0] and list(tmp_path.glob("*.safetensors")) == files
    other = build_caches([SAMPLE], bundle.model, "0" * 64, tmp_path, torch.device("cpu"), clip_frames=5,
                         say=lambda s: None)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 and torch.equal(other[0], seqs[0])
    # The latents are g_a's at gain 1: what the codec's analysis gives before the gains.
    from vcodec.media import open_source

    with open_source(SAMPLE) as src:
        rgb = next(iter(src.frames(0, 1)))
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255  # 640x272: a multiple of 16 already
    with torch.no_grad():
        want = bundle.model.g_a(x)[0]
    assert (seqs[0][0].float() - want).abs().max() < 0.02 * want.abs().max()


def test_tiny_run_lowers_the_p_frame_rate_and_resumes_bit_identically(tmp_path, pictures, still_clip):
    from vcodec.train.checkpoint import load_sharded, read_state
    from vcodec.train.latents import build_caches
    from vcodec.train.stem_loop import SequenceRate, _load_intra, evaluate, train_stem
    from vcodec.networks.stem import StemConfig, StemModel
    from vcodec.train.checkpoint import load_checkpoint

    opts = _options(tmp_path, pictures, steps=120, data=[still_clip])
    train_stem(opts, say=lambda s: None)
    state = read_state(opts.out)
    assert state["kind"] == "stem" and state["step"] == 120 and state["intra"]["name"] == "intra-n64m128"

    bundle, intra = _load_intra("intra-n64m128", torch.device("cpu"))
    val = build_caches([still_clip], bundle.model, bundle.hash_hex, opts.cache, torch.device("cpu"), clip_frames=6,
                       say=lambda s: None)
    start = StemModel(StemConfig(**state["config"]))
    start.start_from(intra)
    trained = StemModel(StemConfig(**state["config"]))
    load_checkpoint(opts.out, trained)
    before = evaluate(SequenceRate(start, intra), val, (2.0, 5.0), torch.device("cpu"))
    after = evaluate(SequenceRate(trained, intra), val, (2.0, 5.0), torch.device("cpu"))
    # Step 0 codes P-frames exactly as the intra model codes them; 120 tiny steps learn that a still scene repeats.
    assert before[2.0]["p_over_i"] == pytest.approx(1.0, abs=0.03)
    assert all(after[q]["p_over_i"] < 0.9 * before[q]["p_over_i"] for q in (2.0, 5.0)), (before, after)

    # 10 + 10 steps from a checkpoint = 20 steps in one go (a constant learning rate: the schedule depends on the
    # total, which differs between the two first chunks).
    steady = dict(data=[still_clip], decay_from=1.0)
    train_stem(_options(tmp_path, pictures, steps=20, out=tmp_path / "straight", **steady), say=lambda s: None)
    train_stem(_options(tmp_path, pictures, steps=10, out=tmp_path / "split", **steady), say=lambda s: None)
    train_stem(_options(tmp_path, pictures, steps=20, out=tmp_path / "split", resume=tmp_path / "split", **steady),
               say=lambda s: None)
    for part in ("model", "optimizer"):
        a, b = load_sharded(tmp_path / "straight", part), load_sharded(tmp_path / "split", part)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), part


def test_export_gives_a_p_frame_model_that_codes_a_stream(tmp_path, pictures):
    from vcodec import api
    from vcodec.train.export import export_checkpoint
    from vcodec.train.stem_loop import train_stem

    opts = _options(tmp_path, pictures, steps=5)
    train_stem(opts, say=lambda s: None)
    path, digest = export_checkpoint(opts.out, "stem-tiny", tmp_path / "models")
    assert path.stat().st_size < 6_000_000
    out = tmp_path / "s.hfc"
    result = api.encode(SAMPLE, out, quality=3, frames=3, inter_model=path, psnr=True, fixed_gop=True)
    assert result.p_frames == 2 and result.psnr > 30
    info = api.probe(out)
    assert info["inter_model"] == "stem-tiny" and info["inter_weights_sha256"] == digest.hex()
    # The decoder looks the P-frame model up by name among the models folders (never as a path).
    env_dir = tmp_path / "models"
    done = subprocess.run([sys.executable, "-m", "vcodec", "decode", str(out), str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "VCODEC_MODELS": str(env_dir)})
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "vcodec", "decode", str(out), str(tmp_path / "e")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 3 and "stem-tiny" in done.stderr  # not installed: a model problem, one line


@pytest.mark.parametrize("args,message", [
    (["--variant", "bogus"], "unknown STEM variant"),
    (["--crop", "10"], "multiple of 4"),
    (["--frames", "1"], "at least 2"),
])
def test_train_stem_user_errors(tmp_path, args, message):
    done = subprocess.run([sys.executable, "-m", "vcodec", "train", "stem", "--data", str(SAMPLE), "--out",
                           str(tmp_path / "ck"), "--cache", str(tmp_path / "c"), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
