"""Encoder presets: BD-rate of each preset against medium (PSNR-RGB, real .hfc files) and its encode speed.

    python benchmarks/presets.py                         # ../shared/data/val, qualities 1,3,5,7
    python benchmarks/presets.py IMAGES_OR_CLIPS... --qualities 2,4,6 --limit 4 --frames 2

Each input (an image, or the first --frames frames of a clip) is encoded with every preset at every quality by
`vcodec.api.encode` and decoded by its own --psnr checker; bpp is the whole file. BD-rates use the mean curve over
inputs (Akima).
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

from vcodec import api, bdrate  # noqa: E402
from vcodec.refine import PRESETS  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path)
    ap.add_argument("--qualities", default="1,3,5,7")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--limit", type=int, help="use only the first N inputs")
    ap.add_argument("--frames", type=int, default=1, help="frames of each clip (images have one)")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "presets.json")
    args = ap.parse_args(argv)
    inputs = args.inputs or sorted((REPO.parent / "shared" / "data" / "val").glob("*.png"))
    inputs = inputs[: args.limit] if args.limit else inputs
    qualities = [float(q) for q in args.qualities.split(",")]
    presets = args.presets.split(",")
    curves = {p: {q: {"bpp": [], "psnr": [], "seconds": 0.0, "frames": 0} for q in qualities} for p in presets}
    with tempfile.TemporaryDirectory() as work:
        for path in inputs:
            for preset in presets:
                for q in qualities:
                    r = api.encode(path, Path(work) / "s.hfc", quality=q, frames=args.frames, preset=preset, psnr=True,
                                   device="cpu", overwrite=True, fps=25)
                    c = curves[preset][q]
                    c["bpp"].append(r.bpp)
                    c["psnr"].append(r.psnr)
                    c["seconds"] += r.timings["network"] + r.timings["entropy"]  # the encoder's own work
                    c["frames"] += r.frames
                print(f"{path.name} {preset}: " + "  ".join(
                    f"q{q:g} {curves[preset][q]['bpp'][-1]:.4f} bpp {curves[preset][q]['psnr'][-1]:.2f} dB"
                    for q in qualities), flush=True)
    mean = {p: ([sum(curves[p][q]["bpp"]) / len(inputs) for q in qualities],
                [sum(curves[p][q]["psnr"]) / len(inputs) for q in qualities]) for p in presets}
    rows = {}
    print(f"\n| preset | BD-rate vs medium (PSNR-RGB) | encode s/frame | ({len(inputs)} inputs, {time.strftime('%Y-%m-%d')}) |")
    print("| --- | --- | --- | --- |")
    for p in presets:
        bd = bdrate.bd_rate(*mean["medium"], *mean[p]) if p != "medium" else None
        seconds = sum(curves[p][q]["seconds"] for q in qualities) / max(1, sum(curves[p][q]["frames"] for q in qualities))
        rows[p] = {"bpp": mean[p][0], "psnr_rgb": mean[p][1], "bd_rate_vs_medium": bd.percent if bd else None,
                   "encode_seconds_per_frame": seconds}
        print(f"| {p} | {bd.text() if bd else '(anchor)'} | {seconds:.2f} | |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "inputs": [str(p) for p in inputs],
                                     "qualities": qualities, "presets": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
