"""Training: the loss falls, a checkpoint resumes bit-identically, and export -> load -> encode -> decode works."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vcodec.train.checkpoint import SHARD_BYTES, load_sharded, read_state
from vcodec.train.loop import train_intra

from conftest import REPO, fixed_loss, h_s_on_one_and_two_threads, read_video, sample_frames, train_options as _opts, write_pngs


@pytest.fixture(scope="module")
def trained(pictures, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """An untrained checkpoint and one trained 150 steps (about 6 s), with what the trainer said."""
    root = tmp_path_factory.mktemp("trained")
    rows: list[str] = []
    train_intra(_opts(pictures, root / "init", steps=0), say=rows.append)
    train_intra(_opts(pictures, root / "ck", steps=150), say=rows.append)
    return root / "init", root / "ck", rows


def test_loss_falls(pictures, trained):
    init, ck, rows = trained
    assert sum(r.startswith("step ") for r in rows) == 30
    assert len((ck.parent / "exp" / "ck" / "log.jsonl").read_text().splitlines()) == 30
    before, after = fixed_loss(init, pictures), fixed_loss(ck, pictures)
    assert after < 0.6 * before, (before, after)


def test_resume_is_bit_identical(pictures, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_intra(_opts(pictures, straight, steps=8), say=lambda s: None)
    train_intra(_opts(pictures, split, steps=4), say=lambda s: None)
    assert read_state(split)["step"] == 4
    train_intra(_opts(pictures, split, steps=8, resume=split), say=lambda s: None)
    assert read_state(split)["step"] == 8
    a, b = load_sharded(straight, "model"), load_sharded(split, "model")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa, ob = load_sharded(straight, "optimizer"), load_sharded(split, "optimizer")
    assert oa.keys() == ob.keys() and all(torch.equal(oa[k], ob[k]) for k in oa)
    assert all(p.stat().st_size < SHARD_BYTES + 1024 for p in split.glob("*.safetensors"))


def test_minutes_bound_a_chunk_and_half_checkpoints_hand_back(pictures, tmp_path):
    out = tmp_path / "half"
    result = train_intra(_opts(pictures, out, minutes=0.02, half=True), say=lambda s: None)
    state = read_state(out)
    assert state["half"] and state["step"] == result["step"] >= 1
    assert not list(out.glob("optimizer-*"))
    weights = load_sharded(out, "model")
    assert all(v.dtype == torch.bfloat16 for v in weights.values() if v.is_floating_point())
    # A hand-back checkpoint continues (weights only: fresh Adam moments).
    train_intra(_opts(pictures, tmp_path / "cont", resume=out, steps=state["step"] + 2), say=lambda s: None)
    assert read_state(tmp_path / "cont")["step"] == state["step"] + 2


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_export_load_encode_decode(trained, tmp_path):
    from vcodec import api, weights
    from vcodec.intra_coder import IntraCoder
    from vcodec.train.export import export_checkpoint
    from vcodec.train.validate import pad_to

    _, ck, _ = trained
    path, digest = export_checkpoint(ck, "tiny", tmp_path / "models")
    bundle = weights.load(path)
    assert bundle.sha256 == digest and bundle.config.n == 8
    # The command line replaces a model file only with -y.
    from vcodec.cli import main
    from vcodec.errors import EXIT_USAGE

    def cli(*args) -> int:
        with pytest.raises(SystemExit) as done:
            main(["train", "export", str(ck), "tiny", "--models", str(tmp_path / "models"), *args])
        return done.value.code

    assert cli() == EXIT_USAGE and weights.file_hash(path) == digest
    assert cli("-y") == 0 and weights.load(path).config.n == 8
    # Textured 70x50 crops (not a multiple of 64: padding is exercised), from frames the model never trained on.
    rgbs = [np.ascontiguousarray(f[100:150, 200:270]) for f in sample_frames(2, start=30)]
    src = write_pngs(tmp_path / "src", rgbs)
    stream = tmp_path / "t.hfc"
    result = api.encode(src, stream, quality=5, model=str(path))
    assert result.frames == 2
    api.decode(stream, tmp_path / "t.mkv", model=str(path))
    frames, _ = read_video(tmp_path / "t.mkv")
    assert len(frames) == 2 and frames[0].shape == (50, 70, 3)

    bundle = weights.load(path)
    coder = IntraCoder(bundle, torch.device("cpu"))
    for rgb, decoded in zip(rgbs, frames):
        # The decoder parses exactly what the encoder coded, and writes what the frame coder reconstructs.
        sent = coder.symbols(rgb, 5)
        got = coder.parse_intra(coder.encode_intra(rgb, 5, 0))
        for name in ("z", "residual", "scale_index"):
            assert np.array_equal(getattr(got, name), getattr(sent, name)), name
        assert torch.equal(got.mu, sent.mu)
        assert np.array_equal(decoded, coder.decode_intra(coder.encode_intra(rgb, 5, 0), 70, 50))
        # The stream carries the network's own reconstruction (only integer mu and 8-bit pixels differ) ...
        x = pad_to(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
        with torch.no_grad():
            x_hat = bundle.model.eval()(x, torch.tensor([5.0]))["x_hat"][0, :, :50, :70]
        network = (x_hat.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
        assert abs(_psnr(decoded, rgb) - _psnr(network, rgb)) < 0.3
        # ... and 150 steps of a tiny model already beat a decoder that writes mid-grey by a wide margin (about
        # 24 dB against 13 here; not yet the mean colour of the crop, which this early model may not beat).
        assert _psnr(decoded, rgb) > _psnr(np.full_like(rgb, 128), rgb) + 6


def test_standard_size_model_exports_with_an_exact_entropy_path(pictures, tmp_path):
    """N=128 / M=192 (h_s fan-in 9 * 288 = 2592): `train intra` accepts it, export gives an integer h_s that
    tracks the float one and parses the same whatever the thread count."""
    from vcodec import tables as T
    from vcodec import weights
    from vcodec.networks.intra import IntraConfig, IntraModel
    from vcodec.train.checkpoint import load_checkpoint
    from vcodec.train.export import export_checkpoint

    ck = tmp_path / "big"
    train_intra(_opts(pictures, ck, steps=0, n=128, m=192), say=lambda s: None)
    path, digest = export_checkpoint(ck, "big", tmp_path / "models")
    bundle = weights.load(path)
    assert bundle.sha256 == digest and (bundle.config.n, bundle.config.m) == (128, 192)
    model = IntraModel(IntraConfig(n=128, m=192))
    load_checkpoint(ck, model)
    model.eval()
    # An untrained h_a gives z = 0 everywhere: random hyper-latents exercise h_s instead (mu up to about 0.4 and
    # scale indices spread over 15..22 at +-12; larger activations at +-300).
    g = torch.Generator().manual_seed(0)
    zs = [torch.randint(-lim, lim + 1, (128, 3, 4), generator=g).numpy() for lim in (12, 300)]
    for z in zs:
        mu1, idx1 = h_s_on_one_and_two_threads(bundle, z)
        with torch.no_grad():
            mu, log_sigma = model.entropy_parameters(torch.from_numpy(z).float()[None])
        diff = (mu1 - mu[0]).abs()
        assert diff.max() < 0.1 and diff.mean() < 1e-3, (float(diff.max()), float(diff.mean()))
        idx_float = np.searchsorted(T.log_scale_thresholds(T.scale_table()), log_sigma[0].double().numpy(), side="right")
        assert np.mean(idx_float == idx1) > 0.99
        assert np.max(np.abs(idx_float.astype(int) - idx1.astype(int))) <= 1


def test_unexportable_model_is_refused_before_loading_data(pictures, tmp_path, monkeypatch):
    import vcodec.train.loop as loop
    from vcodec.errors import InputError

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the configuration was checked")

    monkeypatch.setattr(loop, "load_sources", no_data)
    with pytest.raises(InputError, match="could not be exported"):
        train_intra(_opts(pictures, tmp_path / "huge", steps=1, n=8, m=1300), say=lambda s: None)
    assert not (tmp_path / "huge").exists()


def test_torchrun_ddp_on_cpu(pictures, tmp_path):
    """Two gloo processes, as `torchrun --nproc_per_node=2 -m vcodec train intra ...` on a cluster."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # a free port: parallel runs must not clash
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={port}", "-m", "vcodec",
            "train", "intra", "--data", str(pictures), "--transform-channels", "8", "--latent-channels", "16",
            "--crop", "64", "--batch-size", "2", "--steps", "4", "--device", "cpu", "--threads", "1",
            "--out", str(tmp_path / "ck"), "--experiments", str(tmp_path / "exp")]
    env = dict(__import__("os").environ, PYTHONPATH=str(REPO))
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stderr and done.stdout.count("checkpoint") == 1
    assert read_state(tmp_path / "ck")["step"] == 4


def test_train_package_imports_without_av_or_constriction():
    code = (
        "import sys; sys.modules['av'] = None; sys.modules['constriction'] = None\n"
        "import vcodec.train.loop, vcodec.train.export, vcodec.train.data\n"
        "from vcodec.cli import main\n"
        "try:\n    main(['train', 'intra', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr
