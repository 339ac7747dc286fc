"""Shared fixtures: the shipped model, the bundled sample clip, small streams made from it, tiny training runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "bikes-48.mp4"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def sample_frames(count: int, width: int | None = None, height: int | None = None, start: int = 0) -> list[np.ndarray]:
    """RGB frames of the sample clip, cropped (not scaled) to width x height from the top-left corner."""
    from vcodec.media import open_source

    with open_source(SAMPLE) as src:
        frames = list(src.frames(start, count))
    return [np.ascontiguousarray(f[: height or f.shape[0], : width or f.shape[1]]) for f in frames]


TONE_RATE = 44100  # Hz: the sample rate of the test clips' audio


def mux_tone(container, stream, samples: int) -> None:
    """A 440 Hz stereo sine of `samples` samples, from the stream's time 0, coded by `stream` (an audio stream of the
    output `container`, e.g. AAC at TONE_RATE) and muxed; the encoder is flushed at the end."""
    import av

    rate, t = stream.codec_context.sample_rate, 0
    while t < samples:
        n = min(1024, samples - t)
        tone = (0.5 * np.sin(2 * np.pi * 440 * (np.arange(n) + t) / rate)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, t
        t += n
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_pngs(folder: Path, frames: list[np.ndarray], prefix: str = "f", digits: int = 3) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, 1):
        Image.fromarray(f).save(folder / f"{prefix}{i:0{digits}d}.png")
    return folder


def read_video(path: Path) -> tuple[list[np.ndarray], object]:
    """All frames of a decoded output (video file, .y4m or PNG folder) as RGB arrays, and its frame rate."""
    from vcodec.media import open_source

    with open_source(path) as src:
        return list(src.frames()), src.info.fps


def h_s_on_one_and_two_threads(bundle, z: np.ndarray):
    """The integer h_s's (mu, scale index) for z, after checking that 1 and 2 torch threads give the same bits."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        mu1, idx1 = bundle.h_s(z)
        torch.set_num_threads(2)
        mu2, idx2 = bundle.h_s(z)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(mu1, mu2) and np.array_equal(idx1, idx2)
    return mu1, idx1


@pytest.fixture(scope="session")
def bundle():
    from vcodec import weights

    return weights.load(weights.DEFAULT_MODEL, "cpu")


@pytest.fixture(scope="session")
def frame_coder(bundle):
    from vcodec.intra_coder import IntraCoder

    return IntraCoder(bundle, torch.device("cpu"))


@pytest.fixture(scope="session")
def tiny_stream(tmp_path_factory) -> Path:
    """A real 2-frame 64x48 stream (an I-frame, then a P-frame): small enough to damage at every byte."""
    from vcodec import api

    root = tmp_path_factory.mktemp("tiny")
    frames = write_pngs(root / "frames", sample_frames(2, 64, 48, start=10))
    out = root / "tiny.hfc"
    api.encode(frames, out, quality=1, fps=25, fixed_gop=True)  # an I- and a P-frame, whatever they cost
    return out


@pytest.fixture(scope="session")
def tiny_timed_stream(tiny_stream, tmp_path_factory) -> Path:
    """tiny_stream's two frames as a variable frame rate source would give them (pts 0 and 3600 in 1/90000 s, at an
    average 25 fps) with display metadata (rotation 90, sample aspect ratio 4:3): every header flag but audio's."""
    from fractions import Fraction

    from vcodec import container as C

    with C.StreamReader(tiny_stream) as r:
        header, packets = r.header, list(r.packets())
    header.frame_count = 0
    header.time_base, header.display = Fraction(1, 90000), C.Display(90, False, Fraction(4, 3))
    out = tmp_path_factory.mktemp("tiny-timed") / "tiny-timed.hfc"
    with C.StreamWriter(out, header) as w:
        for packet, pts in zip(packets, (0, 3600)):
            packet.pts = pts
            w.write(packet)
    return out


@pytest.fixture(scope="session")
def tiny_all_flags_stream(tmp_path_factory) -> Path:
    """An I- and a P-frame encoded from a clip with a variable frame rate, a rotation, a sample aspect ratio and AAC
    audio: every header flag set (fuzz/streams.py; the fuzzers mutate the same stream)."""
    from fuzz.streams import all_flags_stream

    return all_flags_stream(tmp_path_factory.mktemp("all-flags"))


@pytest.fixture(scope="session")
def pictures(tmp_path_factory) -> Path:
    """Eight 256x272 training pictures cut from the sample clip."""
    root = tmp_path_factory.mktemp("pictures")
    frames = sample_frames(4, start=0)
    return write_pngs(root, [f[:, i * 150 : i * 150 + 256] for f in frames for i in range(2)])


def train_options(pictures: Path, out: Path, **kw):
    """Options of a tiny training run (N=8, M=16, 64x64 crops) that takes seconds on one CPU thread."""
    from vcodec.train.loop import TrainOptions

    base = dict(data=[pictures], out=out, n=8, m=16, batch_size=2, crop=64, lr=2e-3, threads=1, log_every=5,
                save_every=1000, experiments=out.parent / "exp", device="cpu")
    return TrainOptions(**{**base, **kw})


def fixed_loss(checkpoint: Path, pictures: Path, metric: str = "mse") -> float:
    """RD loss of a checkpoint on fixed crops at fixed qualities (training's own loss is noisy: q is random)."""
    from vcodec.networks.intra import IntraConfig, IntraModel
    from vcodec.train.checkpoint import load_checkpoint, read_state
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
            total += float(rd_loss(x, model.train()(x, qs), lambdas_of(qs, model.config.lambdas), metric)["loss"])
    return total
