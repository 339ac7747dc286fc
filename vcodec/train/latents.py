"""Latent caches for training the P-frame model: sequences run once through the frozen intra g_a, kept in fp16.

With g_a and g_s frozen a P-frame's reconstruction is fixed, so training STEM needs only latents: each frame of
each training sequence goes through g_a once (at gain 1: the per-quality gains are per-channel scalings, applied
per sample while training), and every step then works at 1/16 of the resolution.

Sources, each cached as one safetensors file named after the source and the intra model's hash (so a cache is
never used with the wrong g_a, and a second run reuses it):

- video files: every frame (at most `clip_frames`), the whole picture;
- Vimeo-90k trees: every training septuplet (7 frames);
- photo folders: synthetic camera motion (train/motion.py), `motion_per_photo` sequences of `motion_frames`.

Pictures are padded to a multiple of 16 (replicate) before g_a, as the codec pads them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch.nn import functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from vcodec.errors import InputError
from vcodec.networks.intra import IntraModel
from vcodec.train.data import IMAGE_SUFFIXES, VIDEO_SUFFIXES, find_files, is_vimeo_root, load_image, vimeo_septuplets
from vcodec.train.motion import motion_sequences

LATENT_STRIDE = 16
CACHE_VERSION = 1


@torch.no_grad()
def analyse(model: IntraModel, frames: Iterable[torch.Tensor], device: torch.device, batch: int = 4) -> torch.Tensor:
    """uint8 (3, H, W) pictures of one size -> g_a latents at gain 1, fp16 (F, M, ceil(H/16), ceil(W/16))."""
    out, chunk = [], []

    def flush():
        x = torch.stack(chunk).to(device).float().div_(255)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % LATENT_STRIDE, 0, -h % LATENT_STRIDE), mode="replicate")
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(model.g_a(x).to("cpu", torch.float16).contiguous())
        chunk.clear()

    for f in frames:
        chunk.append(f)
        if len(chunk) == batch:
            flush()
    if chunk:
        flush()
    if not out:
        raise InputError("no frames to analyse")
    return torch.cat(out)


def _video_frames(path: Path, limit: int) -> Iterable[torch.Tensor]:
    from vcodec.media import open_source  # PyAV: only when a video is among the sources

    with open_source(path) as src:
        for rgb in src.frames(0, limit):
            yield torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)


def _cache_name(kind: str, source: Path, settings: dict, model_hash: str) -> str:
    key = json.dumps({"v": CACHE_VERSION, "kind": kind, "source": str(source.resolve()), **settings, "g_a": model_hash},
                     sort_keys=True)
    return f"{kind}-{source.stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.safetensors"


def _save(path: Path, sequences: list[torch.Tensor], meta: dict) -> None:
    tensors = {f"seq{i:05d}": s for i, s in enumerate(sequences)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"vcodec.latents": json.dumps(meta)})
    tmp.replace(path)


def _load(path: Path) -> list[torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return [f.get_tensor(k) for k in sorted(f.keys())]


def build_caches(
    sources: list[Path],
    model: IntraModel,
    model_hash: str,
    cache: Path,
    device: torch.device,
    clip_frames: int = 600,
    motion_per_photo: int = 4,
    motion_frames: int = 7,
    motion_size: int = 384,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> list[torch.Tensor]:
    """Latent sequences (F, M, h, w) of every source, from the cache where it holds them, built otherwise."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    model = model.to(device).eval()
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    sequences: list[torch.Tensor] = []
    for root in map(Path, sources):
        if not root.exists():
            raise InputError(f"training data not found: {root}")
        if root.is_file() and root.suffix.lower() in VIDEO_SUFFIXES:
            jobs = [("clip", root)]
        elif is_vimeo_root(root):
            jobs = [("vimeo", root)]
        elif root.is_dir() and find_files(root, VIDEO_SUFFIXES) and not find_files(root, IMAGE_SUFFIXES):
            jobs = [("clip", p) for p in find_files(root, VIDEO_SUFFIXES)]
        else:
            jobs = [("motion", root)]
        for kind, path in jobs:
            settings = ({"frames": clip_frames} if kind == "clip" else
                        {"per_photo": motion_per_photo, "frames": motion_frames, "size": motion_size, "seed": seed}
                        if kind == "motion" else {})
            target = cache / _cache_name(kind, path, settings, model_hash)
            if target.is_file():
                got = _load(target)
                say(f"latents: {path} ({len(got)} sequence{'s' if len(got) != 1 else ''}, cached)")
            else:
                got = _build(kind, path, model, device, settings, seed, say)
                _save(target, got, {"kind": kind, "source": str(path), **settings, "g_a": model_hash})
            sequences += got
    if not sequences:
        raise InputError(f"no training sequences under {', '.join(map(str, sources))}")
    return sequences


def _build(kind: str, path: Path, model, device, settings: dict, seed: int, say) -> list[torch.Tensor]:
    if kind == "clip":
        lat = analyse(model, _video_frames(path, settings["frames"]), device)
        say(f"latents: {path}: {lat.shape[0]} frames -> {tuple(lat.shape[1:])}")
        return [lat]
    if kind == "vimeo":
        out = []
        for frames in vimeo_septuplets(path):
            out.append(analyse(model, (load_image(p, 4096) for p in frames), device, batch=7))
        say(f"latents: {path}: {len(out)} septuplets")
        return out
    g = torch.Generator().manual_seed(seed)
    out = []
    photos = find_files(path, IMAGE_SUFFIXES)
    for i, p in enumerate(photos):
        for seq in motion_sequences(load_image(p, 1024), settings["per_photo"], settings["frames"], settings["size"], g):
            out.append(analyse(model, seq, device))
        if (i + 1) % 40 == 0:
            say(f"latents: synthetic motion, {i + 1} of {len(photos)} photos")
    say(f"latents: {path}: {len(out)} synthetic motion sequences of {settings['frames']} frames")
    return out


class SequenceSampler:
    """Random crops of `frames` latents at a random frame stride (1..max_stride), in either time direction."""

    def __init__(self, sequences: list[torch.Tensor], crop: int, frames: int, max_stride: int = 3, seed: int = 0):
        self.crop, self.frames, self.max_stride = crop, frames, max_stride
        self.sequences = [s for s in sequences if s.shape[0] >= frames and min(s.shape[2:]) >= crop]
        if not self.sequences:
            raise InputError(f"no training sequence has {frames} frames of at least {crop}x{crop} latents")
        self.generator = torch.Generator().manual_seed(seed)
        # Every latent position of every usable start frame equally likely.
        w = [float((s.shape[0] - frames + 1) * s.shape[2] * s.shape[3]) for s in self.sequences]
        self.weights = torch.tensor(w) / sum(w)

    def __len__(self) -> int:
        return len(self.sequences)

    def frames_held(self) -> int:
        return sum(s.shape[0] for s in self.sequences)

    def _int(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self.generator))

    def sample(self, batch: int) -> torch.Tensor:
        """(batch, frames, M, crop, crop) float32."""
        picks = torch.multinomial(self.weights, batch, replacement=True, generator=self.generator).tolist()
        out = []
        for i in picks:
            s = self.sequences[i]
            stride = 1 + self._int(min(self.max_stride, (s.shape[0] - 1) // max(1, self.frames - 1)))
            span = (self.frames - 1) * stride + 1
            t0 = self._int(s.shape[0] - span + 1)
            top, left = self._int(s.shape[2] - self.crop + 1), self._int(s.shape[3] - self.crop + 1)
            clip = s[t0 : t0 + span : stride, :, top : top + self.crop, left : left + self.crop]
            if self._int(2):
                clip = clip.flip(0)  # time reversed: motion as plausible as forward
            out.append(clip)
        return torch.stack(out).float()
