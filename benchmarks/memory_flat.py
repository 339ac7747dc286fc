"""Peak memory of encode and decode for a short and a long clip: streaming means they should match.

    python benchmarks/memory_flat.py --short 100 --long 1000 --size 256x144

Writes a synthetic moving clip of each length as .y4m, runs `vcodec encode` and `vcodec decode` on it in fresh
processes and prints each process's peak resident memory (ru_maxrss). Exits non-zero if long/short exceeds 1.10.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def synthetic_clip(path: Path, frames: int, width: int, height: int) -> None:
    """Moving gradients plus texture: every frame differs, so nothing is trivially cheap to code."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 40, (height, width, 3), dtype=np.int16)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w", format="yuv4mpegpipe") as c:
        s = c.add_stream("rawvideo", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            base = np.stack([(xx + 3 * i) % 256, (yy + 2 * i) % 256, (xx + yy + i) % 256], axis=2)
            rgb = np.clip(base * 0.8 + np.roll(texture, i, axis=1), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of one fresh `vcodec` process (measured by a throwaway parent, so runs do not mix)."""
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "vcodec", *args],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"vcodec {' '.join(args)} failed with exit code {out[0]}")
    return int(out[1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--size", default="256x144")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="vcodec-mem-"))
    rows = {}
    for frames in (args.short, args.long):
        clip = work / f"clip{frames}.y4m"
        synthetic_clip(clip, frames, width, height)
        stream = work / f"clip{frames}.hfc"
        enc = peak_rss_mb(["encode", str(clip), str(stream), "--device", args.device, "-y"])
        dec = peak_rss_mb(["decode", str(stream), str(work / f"back{frames}.mkv"), "--device", args.device, "-y"])
        rows[frames] = (enc, dec)
        print(f"{frames:>6} frames {width}x{height}: encode peak RSS {enc:7.1f} MB, decode peak RSS {dec:7.1f} MB")
    (e1, d1), (e2, d2) = rows[args.short], rows[args.long]
    print(f"long/short: encode {e2 / e1:.3f}, decode {d2 / d1:.3f}")
    return 0 if max(e2 / e1, d2 / d1) <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
