"""Training data: image folders, Vimeo-90k septuplets and video files, decoded once into memory, cropped on device.

Sources are decoded to uint8 tensors once; every step then draws random crops (and flips) from memory on the
training device, so a GPU never waits on JPEG decoding. Pillow reads images; PyAV (through vcodec.media) is
imported only when a video file is among the sources, so this module works on a machine with just torch, numpy
and Pillow.

What is loaded from each kind of source:

- image folders (recursive) and single images: every picture; lossy ones (JPEG, WebP) are halved when their
  short side is >= 1024 px (the halving hides their coding artefacts), then everything is bounded to `max_side`;
- Vimeo-90k trees (a folder with `sequences/` or `sep_trainlist.txt`, also when met inside a folder): only the
  septuplets of `sep_trainlist.txt` when it is there (otherwise all of them except those in `sep_testlist.txt`),
  `vimeo_frames` frames of each (default 1, the middle frame im4: the seven frames of a septuplet are a quarter
  of a second apart and nearly the same picture, so under a memory budget one frame from each of more
  septuplets gives more distinct content than several from fewer; 2 takes the first and the last, the most
  different pair), and, when the whole list would not fit in the memory budget, an evenly spaced subset of the
  septuplets (deterministic: the same files on every run and every rank). Frames may be im1..im7.png (as
  published) or f001..f007.png (as the STEM reproduction renamed them);
- videos: one frame every `video_every` frames, at most `video_limit` per file, converted to RGB with the
  stream's own matrix and range (vcodec.media.to_rgb; PyAV's to_image assumes BT.601), and treated as lossy.

All pictures together must fit in `max_bytes` (uint8, as held in memory): Vimeo trees are sampled down to what the
other sources leave, anything else over the budget is an InputError that says what to change.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vcodec.errors import InputError
from vcodec.paths import natural_key

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".y4m", ".m4v"}
LOSSY_SUFFIXES = {".jpg", ".jpeg", ".webp"}
LOSSY_HALVE_FROM = 1024  # short side from which lossy pictures (and video frames) are halved
VIMEO_TRAIN_LIST = "sep_trainlist.txt"
VIMEO_TEST_LIST = "sep_testlist.txt"
DEFAULT_MAX_GIB = 4.0  # ~12,000 Vimeo frames, or 50 times ../shared/data/photos-1024
_FRAME_NAME = re.compile(r"^(im\d+|f\d+)\.png$", re.IGNORECASE)


def find_files(root: Path, suffixes: set[str]) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted((p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file()), key=natural_key)


def is_vimeo_root(root: Path) -> bool:
    root = Path(root)
    return root.is_dir() and (
        (root / "sequences").is_dir() or (root / VIMEO_TRAIN_LIST).is_file() or (root / VIMEO_TEST_LIST).is_file()
    )


def _walk(root: Path, suffixes: set[str]) -> tuple[list[Path], list[Path]]:
    """Files under `root` with these suffixes, and the Vimeo-90k trees inside it (not walked into)."""
    root = Path(root)
    if root.is_file():
        return [root], []
    if is_vimeo_root(root):
        return [], [root]
    files, trees = [], []
    for folder, dirs, names in os.walk(root, followlinks=True):
        here = Path(folder)
        walk_into = []
        for d in sorted(dirs):
            if is_vimeo_root(here / d):
                trees.append(here / d)
            else:
                walk_into.append(d)
        dirs[:] = walk_into
        files.extend(here / n for n in names if Path(n).suffix.lower() in suffixes)
    return sorted((p for p in files if p.is_file()), key=natural_key), sorted(trees, key=natural_key)


def _frames_of(folder: Path) -> list[Path]:
    frames = [p for p in folder.iterdir() if _FRAME_NAME.match(p.name)] if folder.is_dir() else []
    ims = sorted((p for p in frames if p.name.lower().startswith("im")), key=natural_key)
    return ims or sorted(frames, key=natural_key)


def _list_entries(path: Path) -> list[str]:
    return [line.strip().strip("/") for line in path.read_text().splitlines() if line.strip()]


def vimeo_septuplets(root: Path, list_file: str = VIMEO_TRAIN_LIST) -> list[list[Path]]:
    """Frame paths of each training septuplet of a Vimeo-90k tree: sequences/XXXXX/YYYY/im1..im7.png (or f001..).

    With `list_file` present, exactly the septuplets it names (missing folders are skipped; none found is an
    error); without it, every septuplet under sequences/ except those named in sep_testlist.txt."""
    root = Path(root)
    seq_root = root / "sequences" if (root / "sequences").is_dir() else root
    listing = root / list_file
    if listing.is_file():
        entries = _list_entries(listing)
        folders = [seq_root / e for e in entries]
        out = [f for f in map(_frames_of, folders) if f]
        if entries and not out:
            raise InputError(f"{listing} names {len(entries)} septuplets but none of them is under {seq_root}")
        return out
    held_out = set()
    if (root / VIMEO_TEST_LIST).is_file():
        held_out = {seq_root / e for e in _list_entries(root / VIMEO_TEST_LIST)}
    folders = sorted({p.parent for p in seq_root.rglob("*.png") if _FRAME_NAME.match(p.name)}, key=natural_key)
    return [f for f in map(_frames_of, folders) if f and f[0].parent not in held_out]


def pick_frames(count: int, k: int) -> list[int]:
    """Which of a septuplet's `count` frames to use: the middle one for k = 1, else k evenly spaced from both ends."""
    if k >= count:
        return list(range(count))
    if k == 1:
        return [count // 2]
    return sorted({round(i * (count - 1) / (k - 1)) for i in range(k)})


def evenly_spaced(total: int, keep: int) -> list[int]:
    """`keep` indices spread evenly over range(total): a deterministic sample that covers the whole list."""
    if keep >= total:
        return list(range(total))
    return [i * total // keep for i in range(keep)]


# --------------------------------------------------------------------------------------------------- decoding
def _halves(size: tuple[int, int], lossy: bool) -> bool:
    return lossy and min(size) >= LOSSY_HALVE_FROM


def _bounded(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` scaled so that its long side is at most `max_side`."""
    w, h = size
    if max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _prepare(img, lossy: bool, max_side: int) -> torch.Tensor:
    """PIL image -> uint8 (3, H, W): lossy pictures halved when large, then the long side bounded."""
    from PIL import Image

    if _halves(img.size, lossy):
        img = img.reduce(2)
    size = _bounded(img.size, max_side)
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def load_image(path: Path, max_side: int) -> torch.Tensor:
    """uint8 (3, H, W). Lossy sources are also halved when large: it hides their coding artefacts."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read training picture {path}: {e}") from None
    return _prepare(img, path.suffix.lower() in LOSSY_SUFFIXES, max_side)


def _picture_size(path: Path, lossy: bool, max_side: int) -> tuple[int, int]:
    """(W, H) a picture will have once loaded, from its header alone."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read training picture {path}: {e}") from None
    if _halves((w, h), lossy):
        w, h = -(-w // 2), -(-h // 2)  # as Image.reduce(2): rounded up
    return _bounded((w, h), max_side)


def load_video_frames(path: Path, every: int, max_side: int, limit: int) -> list[torch.Tensor]:
    """Every `every`-th frame (from the first), at most `limit`, RGB by the stream's own matrix, as lossy pictures."""
    from PIL import Image

    # vcodec.media imports PyAV at import time: only reached when a video is among the sources.
    import av

    from vcodec.media import open_source, to_rgb

    with open_source(path) as src:  # InputError for what PyAV cannot open; the colour of the first frame
        colour = src.info.colour
    frames: list[torch.Tensor] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i % every:
                    continue
                img = Image.fromarray(to_rgb(frame, colour))
                frames.append(_prepare(img, True, max_side))
                if len(frames) >= limit:
                    break
    except av.error.FFmpegError as e:
        raise InputError(f"{path}: cannot decode video ({e})") from None
    return frames


# ---------------------------------------------------------------------------------------------------- sources
def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def load_sources(
    roots: list[Path],
    crop: int,
    max_side: int = 1024,
    video_every: int = 25,
    video_limit: int = 200,
    vimeo_frames: int = 1,
    max_bytes: int | None = int(DEFAULT_MAX_GIB * 2**30),
    say: Callable[[str], None] | None = None,
) -> list[torch.Tensor]:
    """The training pictures under `roots` (folders, Vimeo trees, videos, single files) as uint8 (3, H, W) tensors.

    Pictures smaller than `crop` are left out. Raises InputError for a missing root, unreadable data, data over
    `max_bytes` (None: no budget) that cannot be sampled down, or no usable picture at all."""
    say = say or (lambda s: None)
    if vimeo_frames < 1:
        raise InputError(f"Vimeo-90k frames per septuplet must be >= 1, not {vimeo_frames}")
    if video_every < 1 or video_limit < 1:
        raise InputError("video sampling: every and limit must be >= 1")
    budget = float("inf") if max_bytes is None else float(max_bytes)
    files: list[Path] = []
    trees: list[Path] = []
    for root in map(Path, roots):
        if not root.exists():
            raise InputError(f"training data not found: {root}")
        found, inside = _walk(root, IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        files += found
        trees += inside

    pictures: list[torch.Tensor] = []
    used = 0
    small = 0

    def keep(pic: torch.Tensor, origin: Path) -> None:
        nonlocal used, small
        if min(pic.shape[1:]) < crop:
            small += 1
            return
        used += pic.numel()
        if used > budget:
            raise InputError(
                f"training pictures exceed the memory budget of {_gib(budget)} (at {origin}); raise it "
                "(--data-gib), or pass fewer or smaller sources"
            )
        pictures.append(pic)

    # Plain pictures and videos first: they are taken whole, Vimeo trees are then sampled into what is left.
    for path in files:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            for pic in load_video_frames(path, video_every, max_side, video_limit):
                keep(pic, path)
        else:
            keep(load_image(path, max_side), path)

    septuplets = [s for tree in trees for s in vimeo_septuplets(tree)]
    if trees and not septuplets:
        raise InputError(f"no Vimeo-90k septuplet found under {', '.join(map(str, trees))}")
    if septuplets:
        w, h = _picture_size(septuplets[0][0], False, max_side)
        per_septuplet = 3 * w * h * len(pick_frames(len(septuplets[0]), vimeo_frames))
        if min(w, h) < crop:
            say(f"Vimeo-90k: frames of {w}x{h} are smaller than the {crop}x{crop} crops; not used")
            small += len(septuplets)
            septuplets = []
    if septuplets:
        room = budget - used
        fit = len(septuplets) if room == float("inf") else int(room // per_septuplet)
        if fit < 1:
            raise InputError(
                f"no room left for Vimeo-90k frames in the memory budget of {_gib(budget)} "
                f"(the other sources take {_gib(used)})"
            )
        chosen = [septuplets[i] for i in evenly_spaced(len(septuplets), fit)]
        say(
            f"Vimeo-90k: {len(chosen)} of {len(septuplets)} training septuplets, "
            f"{len(pick_frames(len(chosen[0]), vimeo_frames))} frame(s) each"
            + (f" (memory budget {_gib(budget)})" if len(chosen) < len(septuplets) else "")
        )
        for frames in chosen:
            for i in pick_frames(len(frames), vimeo_frames):
                keep(load_image(frames[i], max_side), frames[i])

    if not pictures:
        raise InputError(
            f"no training picture of at least {crop}x{crop} under {', '.join(map(str, roots))}"
            + (f" ({small} smaller ones left out)" if small else "")
        )
    return pictures


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
