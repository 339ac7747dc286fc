"""File size, bpp, PSNR-RGB and speed of the bundled sample clip at every quality (the numbers in the README).

    python benchmarks/sample_clip.py [--clip tests/data/bikes-48.mp4] [--qualities 0,1,...,7] [--device cpu]

Each point is a real `vcodec encode` into a .hfc file (the default GOP, I- and P-frames) and a real `vcodec decode`
of it (to a lossless .mkv); PSNR-RGB is the mean over frames of the decoded pixels against the source's RGB frames;
frames/s are wall-clock over the whole command, reading and writing included. The last columns are the same clip
coded all-intra (`--gop 1`), so the table shows what the P-frames save at each quality.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vcodec import api, weights  # noqa: E402
from vcodec.media import open_source  # noqa: E402


def frames_of(path: Path) -> list[np.ndarray]:
    with open_source(path) as src:
        return list(src.frames())


def mean_psnr(decoded: Path, source: list[np.ndarray]) -> float:
    return float(np.mean([api.psnr_rgb(a, b) for a, b in zip(frames_of(decoded), source)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=ROOT / "tests" / "data" / "bikes-48.mp4")
    parser.add_argument("--qualities", default="0,1,2,3,4,5,6,7")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vcodec-sample-"))
    source = frames_of(args.clip)
    bundle = weights.load(weights.DEFAULT_MODEL)
    print(f"{args.clip.name}: {len(source)} frames {source[0].shape[1]}x{source[0].shape[0]}, model {bundle.name} "
          f"(sha256 {bundle.hash_hex[:12]}), device {args.device} ({torch.get_num_threads()} threads), "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'q':>4} {'bytes':>9} {'bpp':>8} {'kbit/s':>9} {'PSNR-RGB':>9} {'enc fps':>8} {'dec fps':>8} "
          f"{'P-frames':>8} {'intra bytes':>11} {'intra PSNR':>10}")
    for q in args.qualities.split(","):
        stream, back = work / f"q{q}.hfc", work / f"q{q}.mkv"
        t0 = time.perf_counter()
        enc = api.encode(args.clip, stream, quality=float(q), device=args.device, overwrite=True)
        t1 = time.perf_counter()
        api.decode(stream, back, device=args.device, overwrite=True)
        t2 = time.perf_counter()
        psnr = mean_psnr(back, source)
        kbps = enc.bytes * 8 / 1000 / (enc.frames / float(enc.fps))
        intra_stream, intra_back = work / f"q{q}-intra.hfc", work / f"q{q}-intra.mkv"
        intra = api.encode(args.clip, intra_stream, quality=float(q), gop=1, device=args.device, overwrite=True)
        api.decode(intra_stream, intra_back, device=args.device, overwrite=True)
        print(f"{q:>4} {enc.bytes:>9} {enc.bpp:8.4f} {kbps:9.1f} {psnr:9.2f} {enc.frames / (t1 - t0):8.2f} "
              f"{enc.frames / (t2 - t1):8.2f} {enc.p_frames:>8} {intra.bytes:>11} {mean_psnr(intra_back, source):10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
