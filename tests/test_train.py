"""Training: the loss falls, a checkpoint resumes bit-identically, and export -> load -> encode -> decode works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vcodec.train.checkpoint import SHARD_BYTES, load_sharded, read_state
from vcodec.train.loop import TrainOptions, train_intra

from conftest import REPO, read_video, sample_frames, write_pngs


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pictures")
    frames = sample_frames(4, start=0)
    return write_pngs(root, [f[:, i * 150 : i * 150 + 256] for f in frames for i in range(2)])


def _opts(pictures, out, **kw) -> TrainOptions:
    base = dict(data=[pictures], out=out, n=8, m=16, batch_size=2, crop=64, lr=2e-3, threads=1, log_every=5,
                save_every=1000, experiments=out.parent / "exp", device="cpu")
    base.update(kw)
    return TrainOptions(**base)


def _fixed_loss(checkpoint: Path, pictures: Path) -> float:
    """RD loss of a checkpoint on fixed crops at fixed qualities (training's own loss is noisy: q is random)."""
    from vcodec.networks.intra import IntraConfig, IntraModel
    from vcodec.train.checkpoint import load_checkpoint
    from vcodec.train.data import load_sources
    from vcodec.train.loop import lambdas_of
    from vcodec.train.losses import rd_loss

    model = IntraModel(IntraConfig(**read_state(checkpoint)["config"]))
    load_checkpoint(checkpoint, model)
    x = torch.stack([p[:, :64, :64] for p in load_sources([pictures], 64)]).float() / 255
    torch.manual_seed(0)
    total = 0.0
    for q in (1.0, 4.0, 6.0):
        qs = torch.full((len(x),), q)
        with torch.no_grad():
            total += float(rd_loss(x, model.train()(x, qs), lambdas_of(qs))["loss"])
    return total


def test_loss_falls(pictures, tmp_path):
    rows = []
    train_intra(_opts(pictures, tmp_path / "init", steps=0), say=rows.append)
    train_intra(_opts(pictures, tmp_path / "ck", steps=150), say=rows.append)
    assert sum(r.startswith("step ") for r in rows) == 30
    assert len((tmp_path / "exp" / "ck" / "log.jsonl").read_text().splitlines()) == 30
    before, after = _fixed_loss(tmp_path / "init", pictures), _fixed_loss(tmp_path / "ck", pictures)
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


def test_export_load_encode_decode(pictures, tmp_path):
    from vcodec import api, weights
    from vcodec.train.export import export_checkpoint

    ck = tmp_path / "ck"
    train_intra(_opts(pictures, ck, steps=3), say=lambda s: None)
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
    src = write_pngs(tmp_path / "src", sample_frames(2, 70, 50))
    stream = tmp_path / "t.hfc"
    result = api.encode(src, stream, quality=5, model=str(path))
    assert result.frames == 2
    api.decode(stream, tmp_path / "t.mkv", model=str(path))
    frames, _ = read_video(tmp_path / "t.mkv")
    assert len(frames) == 2 and frames[0].shape == (50, 70, 3)


def test_torchrun_ddp_on_cpu(pictures, tmp_path):
    """Two gloo processes, as `torchrun --nproc_per_node=2 -m vcodec train intra ...` on a cluster."""
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m", "vcodec",
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
