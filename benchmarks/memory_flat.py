"""Peak memory of encode and decode for a short and a long clip: streaming means they should match.

    python benchmarks/memory_flat.py --short 100 --long 1000 --size 256x144

Writes a synthetic moving clip of each length as .y4m, runs `vcodec encode` and `vcodec decode` on it in fresh
processes and prints each process's peak resident memory (ru_maxrss), then long/short as a ratio and as a difference
in MB (torch alone is some 380 MB, so a ratio near 1 can hide a real leak: the difference shows it). Exits non-zero
if long/short exceeds 1.10 or, with --max-growth-mb, the difference exceeds that. Temporary files are removed.
tests/test_memory.py runs the same measurement on a tiny clip.
"""

from __future__ import annotations

import argparse
import shutil
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


def peak_rss_of(command: list[str]) -> float:
    """Peak RSS (MB) of one fresh process that must succeed, measured by a throwaway parent so runs do not mix."""
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "sys.stderr.write(done.stderr.decode(errors='replace')[-2000:])\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True, cwd=ROOT)
    code, kb = done.stdout.split()
    if code != "0":
        raise RuntimeError(f"{' '.join(command)} failed with exit code {code}: {done.stderr.strip()}")
    return int(kb) / 1024


def peak_rss_mb(args: list[str]) -> float:
    """Peak RSS (MB) of one fresh `vcodec` process."""
    return peak_rss_of([sys.executable, "-m", "vcodec", *args])


def measure(counts: tuple[int, ...], width: int, height: int, device: str = "cpu") -> dict[int, tuple[float, float]]:
    """{frames: (encode peak RSS MB, decode peak RSS MB)}: a real encode and decode of a clip of each length."""
    work = Path(tempfile.mkdtemp(prefix="vcodec-mem-"))
    try:
        rows = {}
        for frames in counts:
            clip = work / f"clip{frames}.y4m"
            synthetic_clip(clip, frames, width, height)
            stream = work / f"clip{frames}.hfc"
            enc = peak_rss_mb(["encode", str(clip), str(stream), "--device", device, "-y"])
            clip.unlink()
            dec = peak_rss_mb(["decode", str(stream), str(work / f"back{frames}.mkv"), "--device", device, "-y"])
            (work / f"back{frames}.mkv").unlink()
            rows[frames] = (enc, dec)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--size", default="256x144")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-growth-mb", type=float, default=None, help="Also fail if long - short exceeds this.")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    rows = measure((args.short, args.long), width, height, args.device)
    for frames, (enc, dec) in rows.items():
        print(f"{frames:>6} frames {width}x{height}: encode peak RSS {enc:7.1f} MB, decode peak RSS {dec:7.1f} MB")
    (e1, d1), (e2, d2) = rows[args.short], rows[args.long]
    print(f"long/short: encode {e2 / e1:.3f}, decode {d2 / d1:.3f}")
    print(f"long - short: encode {e2 - e1:+.1f} MB, decode {d2 - d1:+.1f} MB")
    ok = max(e2 / e1, d2 / d1) <= 1.10
    if args.max_growth_mb is not None:
        ok = ok and max(e2 - e1, d2 - d1) <= args.max_growth_mb
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
