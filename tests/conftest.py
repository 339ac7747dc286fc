"""Shared fixtures: the shipped model, the bundled sample clip, and small streams made from it."""

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


@pytest.fixture(scope="session")
def bundle():
    from vcodec import weights

    return weights.load(weights.DEFAULT_MODEL, "cpu")


@pytest.fixture(scope="session")
def frame_coder(bundle):
    from vcodec.codec import FrameCoder

    return FrameCoder(bundle, torch.device("cpu"))


@pytest.fixture(scope="session")
def tiny_stream(tmp_path_factory) -> Path:
    """A real 2-frame 64x48 stream: small enough to damage at every byte."""
    from vcodec import api

    root = tmp_path_factory.mktemp("tiny")
    frames = write_pngs(root / "frames", sample_frames(2, 64, 48, start=10))
    out = root / "tiny.hfc"
    api.encode(frames, out, quality=1, fps=25)
    return out
