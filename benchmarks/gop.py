"""The GOP length: bits and PSNR-RGB of real `vcodec encode` streams for several GOPs, on longer clips.

    python benchmarks/gop.py                                  # bikes.mp4 and single_face.mp4, 64 frames, q 2 and 5
    python benchmarks/gop.py CLIP... --frames 96 --gops 1,8,16,32,64,-1 --qualities 2,5

A STEM P-frame's reconstruction is g_s of its own latent, so it does not drift: a longer GOP only saves I-frames.
This prints, per clip and quality, the stream's bpp relative to GOP 1 (all-intra) and its mean PSNR-RGB (decoded by
the encoder's own checker), to pick the default where the saving has flattened out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vcodec import api  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--gops", default="1,4,8,16,32,64")
    ap.add_argument("--qualities", default="2,5")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "gop.json")
    args = ap.parse_args(argv)
    clips = REPO.parent / "shared" / "data" / "clips"
    inputs = args.inputs or [clips / "bikes.mp4", clips / "single_face.mp4"]
    gops = [int(g) for g in args.gops.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for clip in inputs:
            for q in (float(v) for v in args.qualities.split(",")):
                base = None
                for gop in gops:
                    out = Path(work) / "s.hfc"
                    r = api.encode(clip, out, quality=q, frames=args.frames, gop=gop, psnr=True, device="cpu",
                                   overwrite=True)
                    base = base or r.bpp
                    rows.append({"clip": clip.name, "quality": q, "gop": gop, "frames": r.frames, "bpp": r.bpp,
                                 "relative_to_all_intra": r.bpp / base, "psnr_rgb": r.psnr})
                    print(f"{clip.name} q={q:g} GOP {gop:>3}: {r.bpp:.4f} bpp ({r.bpp / base:.3f} of all-intra), "
                          f"{r.psnr:.2f} dB", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
