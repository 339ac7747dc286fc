"""Training data: image folders, Vimeo-90k septuplets and video files, decoded once into memory, cropped on device.

Sources are decoded to uint8 tensors once; every step then draws random crops (and flips) from memory on the
training device, so a GPU never waits on JPEG decoding. Pillow reads images; PyAV is imported only when a video
file is among the sources, so this module works on a machine with just torch, numpy and Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vcodec.paths import natural_key

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".y4m", ".m4v"}
LOSSY_SUFFIXES = {".jpg", ".jpeg", ".webp"}


def find_files(root: Path, suffixes: set[str]) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted((p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file()), key=natural_key)


def vimeo_septuplets(root: Path, list_file: str = "sep_trainlist.txt") -> list[list[Path]]:
    """Frame paths of each septuplet in a Vimeo-90k tree: sequences/XXXXX/YYYY/im1..im7.png (or f001..f007.png)."""
    root = Path(root)
    seq_root = root / "sequences" if (root / "sequences").is_dir() else root
    listing = root / list_file
    if listing.is_file():
        folders = [seq_root / line.strip() for line in listing.read_text().splitlines() if line.strip()]
    else:
        folders = sorted({p.parent for p in seq_root.rglob("*.png")}, key=natural_key)
    out = []
    for folder in folders:
        frames = sorted(folder.glob("im*.png"), key=natural_key) or sorted(folder.glob("f*.png"), key=natural_key)
        if frames:
            out.append(frames)
    return out


def _resize_long_side(img, max_side: int):
    from PIL import Image

    w, h = img.size
    if max(w, h) <= max_side:
        return img
    s = max_side / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)


def load_image(path: Path, max_side: int) -> torch.Tensor:
    """uint8 (3, H, W). Lossy sources are also halved when large: it hides their coding artefacts."""
    from PIL import Image

    with Image.open(path) as im:
        img = im.convert("RGB")
    if path.suffix.lower() in LOSSY_SUFFIXES and min(img.size) >= 1024:
        img = img.reduce(2)
    img = _resize_long_side(img, max_side)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def load_video_frames(path: Path, every: int, max_side: int, limit: int) -> list[torch.Tensor]:
    import av  # only when videos are used

    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every:
                continue
            img = _resize_long_side(frame.to_image(), max_side)
            frames.append(torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).contiguous())
            if len(frames) >= limit:
                break
    return frames


def load_sources(
    roots: list[Path], crop: int, max_side: int = 1024, video_every: int = 25, video_limit: int = 200
) -> list[torch.Tensor]:
    """Every usable picture under `roots` (folders, Vimeo trees, videos, single files) as uint8 tensors."""
    pictures: list[torch.Tensor] = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"training data not found: {root}")
        for path in find_files(root, IMAGE_SUFFIXES | VIDEO_SUFFIXES):
            if path.suffix.lower() in VIDEO_SUFFIXES:
                pictures.extend(load_video_frames(path, video_every, max_side, video_limit))
            else:
                pictures.append(load_image(path, max_side))
    usable = [p for p in pictures if min(p.shape[1:]) >= crop]
    if not usable:
        raise ValueError(f"no training picture of at least {crop}x{crop} under {', '.join(map(str, roots))}")
    return usable


class CropSampler:
    """Random crops with random mirroring from pictures held on `device`; reproducible from its own generator."""

    def __init__(self, pictures: list[torch.Tensor], crop: int, device: torch.device, seed: int = 0):
        self.pictures = [p.to(device) for p in pictures]
        self.crop = crop
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        # Draw pictures in proportion to their area so every pixel is equally likely.
        areas = torch.tensor([float(p.shape[1] * p.shape[2]) for p in pictures])
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return len(self.pictures)

    def pixels(self) -> int:
        return int(sum(p.shape[1] * p.shape[2] for p in self.pictures))

    def sample(self, batch: int) -> torch.Tensor:
        g, c = self.generator, self.crop
        picks = torch.multinomial(self.weights, batch, replacement=True, generator=g).tolist()
        out = []
        for i in picks:
            pic = self.pictures[i]
            top = int(torch.randint(0, pic.shape[1] - c + 1, (1,), generator=g))
            left = int(torch.randint(0, pic.shape[2] - c + 1, (1,), generator=g))
            patch = pic[:, top : top + c, left : left + c]
            # Mirror images only left-right: upside-down photos are not what a codec meets.
            if int(torch.randint(0, 2, (1,), generator=g)):
                patch = patch.flip(2)
            out.append(patch)
        return torch.stack(out).float().div_(255.0)
