"""Held-out rate-distortion against training compute: every exported snapshot of a run, measured for real.

    python benchmarks/rd_vs_compute.py checkpoints/snapshots ../shared/data/val --qualities 0,2,4,6,7

For each `*.safetensors` model in the folder (snapshots exported with `vcodec train export`), encodes and decodes
the images at the given qualities (real .hfc files, as benchmarks/intra_rd.py does) and prints the training step,
the device-minutes spent so far (recorded by the trainer in the model's metadata), bpp and PSNR-RGB at q=4, and
BD-rates and BD-PSNR (PSNR-RGB) against WebP and x265 all-intra 4:4:4 (BD-rate is n/a while the curves share
too little of their quality range; BD-PSNR compares them at equal rates). This is the model card's RD-versus-compute
table.

Snapshots are 8 MB each and stay on the machine that trained them. `--previous results.json` carries the rows of an
earlier run of this script (their measured curves) into the new table and scores them against the anchors measured
now, so a table can grow across sessions and anchor fixes reach every row:

    python benchmarks/rd_vs_compute.py checkpoints/snapshots ../shared/data/val \
        --previous benchmarks/results/rd_vs_compute.json --json benchmarks/results/rd_vs_compute.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from intra_rd import WEBP_QUALITIES, X265_CRFS, curve, load_images, pillow_point, vcodec_point, x265_point  # noqa: E402

from vcodec import weights  # noqa: E402
from vcodec.bdrate import bd_psnr, bd_rate  # noqa: E402


def _step(bundle) -> int:
    return int(json.loads(bundle.metadata.get("vcodec.info", "{}")).get("step", 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshots", type=Path, help="Folder of exported snapshots (may be empty with --previous).")
    parser.add_argument("images", type=Path)
    parser.add_argument("--previous", type=Path, help="Earlier output of this script: its rows are re-scored and kept.")
    parser.add_argument("--qualities", default="0,2,4,6,7")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    images = load_images(args.images)
    work = Path(tempfile.mkdtemp(prefix="vcodec-rd-compute-"))
    anchors = {
        "WebP": curve([pillow_point(images, "WEBP", q) for q in WEBP_QUALITIES]),
        "x265 intra 4:4:4": curve([x265_point(images, c) for c in X265_CRFS]),
    }
    qualities = [float(q) for q in args.qualities.split(",")]
    models = sorted(args.snapshots.glob("*.safetensors"), key=lambda p: _step(weights.load(p)))
    measured = []
    for path in models:
        bundle = weights.load(path)
        info = json.loads(bundle.metadata.get("vcodec.info", "{}"))
        seconds = info.get("device_seconds", {})
        points = [vcodec_point(images, q, str(path), args.device, work) for q in qualities]
        at4 = next((p for q, p in zip(qualities, points) if q == 4.0), None)
        measured.append({"model": path.name, "step": info.get("step"),
                         "device_minutes": {k: v / 60 for k, v in seconds.items()}, "q4": at4, "curve": curve(points)})
    seen = {(row["model"], row["step"]) for row in measured}
    earlier = json.loads(args.previous.read_text())["rows"] if args.previous else []
    rows = []
    for row in sorted([r for r in earlier if (r["model"], r["step"]) not in seen] + measured, key=lambda r: r["step"]):
        ours = row["curve"]
        for name, anchor in anchors.items():
            row[f"bd_{name}"] = bd_rate(anchor["bpp"], anchor["psnr-rgb"], ours["bpp"], ours["psnr-rgb"]).text()
            row[f"bdpsnr_{name}"] = bd_psnr(anchor["bpp"], anchor["psnr-rgb"], ours["bpp"], ours["psnr-rgb"]).text()
        rows.append(row)
        at4 = row["q4"]
        minutes = ", ".join(f"{v:.0f} {k}-min" for k, v in row["device_minutes"].items())
        q4 = f"{at4['bpp']:.3f} bpp {at4['psnr-rgb']:.2f} dB" if at4 else "-"
        print(f"step {row['step']:>6} ({minutes}): q4 {q4}; vs WebP: BD-rate {row['bd_WebP']}, BD-PSNR "
              f"{row['bdpsnr_WebP']}; vs x265 intra 4:4:4: BD-rate {row['bd_x265 intra 4:4:4']}, BD-PSNR "
              f"{row['bdpsnr_x265 intra 4:4:4']}", flush=True)
    print(f"{len(images)} images from {args.images}, qualities {args.qualities}, device {args.device}, "
          f"{time.strftime('%Y-%m-%d')}; {len(measured)} snapshots measured now, {len(rows) - len(measured)} rows "
          f"carried from {args.previous}")
    if args.json:
        args.json.write_text(json.dumps({"anchors": anchors, "rows": rows}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
