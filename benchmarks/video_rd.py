"""P-frames on the development clips: vcodec I+P against vcodec all-intra (the same qualities) and against x264,
x265 and SVT-AV1, with speed, and the ablation of the STEM variants.

    python benchmarks/video_rd.py                                   # 16 frames, GOP 16, the three dev clips
    python benchmarks/video_rd.py --frames 32 --json benchmarks/results/video_rd_32.json
    python benchmarks/video_rd.py --variant no-spm=models-ablation/stem-no-spm.safetensors ... --baselines none

Everything is `vcodec bench` (vcodec/bench.py: real .hfc files, real baseline bitstreams, per-frame metrics): the
I+P stream is the tested codec; all-intra and each --variant are extra vcodec curves, measured at the same
qualities and GOP. BD-rates use PSNR-RGB (Akima). Prints Markdown tables and writes the bench's JSON plus a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vcodec import bdrate  # noqa: E402
from vcodec.bench import BenchOptions, parse_baselines, run  # noqa: E402
from vcodec.rd_results import AVERAGE, TEST_CODEC  # noqa: E402

DEV_CLIPS = ("bikes.mp4", "realshort.mp4", "single_face.mp4")


def _bd(results, codec: str, anchor: str, sequence: str) -> bdrate.BDRate:
    a, t = results.curve(anchor, sequence), results.curve(codec, sequence)
    return bdrate.bd_rate([p.bpp for p in a], [p.psnr_rgb for p in a], [p.bpp for p in t], [p.psnr_rgb for p in t],
                          results.method, results.min_overlap)


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:+.1f} %"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path, help="clips (default: the dev clips in ../shared/data/clips)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--gop", type=int, help="default: --frames")
    ap.add_argument("--qualities", default="0,2,4,6")
    ap.add_argument("--baselines", default="x264,x265,svtav1")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=MODEL",
                    help="a STEM variant's P-frame model for the ablation table (repeatable)")
    ap.add_argument("--inter-model", help="the P-frame model under test (default: the shipped one)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "video_rd.json")
    args = ap.parse_args(argv)
    inputs = args.inputs or [REPO.parent / "shared" / "data" / "clips" / c for c in DEV_CLIPS]
    variants = dict(v.split("=", 1) for v in args.variant)
    options = BenchOptions(
        qualities=[float(q) for q in args.qualities.split(",")], baselines=parse_baselines(args.baselines),
        frames=args.frames, gop=args.gop or args.frames, device=args.device, inter_model=args.inter_model,
        vcodec_anchors=["intra", *variants.values()], json=args.json.with_suffix(".bench.json"),
    )
    t0 = time.time()
    results = run(inputs, options)
    seconds = time.time() - t0
    labels = {"I+P (full)": TEST_CODEC, "all-intra": "vcodec-intra"}
    for name, model in variants.items():
        labels[name] = next(c for c in results.descriptions if c.startswith("vcodec-") and c != "vcodec-intra"
                            and c.endswith(Path(model).stem))
    sequences = list(results.finished)

    print(f"\n## vcodec I+P against all-intra and the classical codecs ({args.frames} frames, GOP {options.gop}, "
          f"{time.strftime('%Y-%m-%d')}, {seconds / 60:.0f} min)\n")
    print("| clip | BD-rate vs vcodec all-intra | " + " | ".join(f"vs {b}" for b in results.baselines
                                                                   if not b.startswith("vcodec-")) + " |")
    print("| --- | --- | " + " | ".join("---" for b in results.baselines if not b.startswith("vcodec-")) + " |")
    summary = {"frames": args.frames, "gop": options.gop, "qualities": options.qualities, "sequences": sequences,
               "date": time.strftime("%Y-%m-%d"), "bd_rate_psnr_rgb": {}, "speed": {}, "ablation": {}}
    for seq in sequences + [AVERAGE]:
        row = {}
        for anchor in results.baselines:
            if seq == AVERAGE:
                row[anchor] = _mean([_bd(results, TEST_CODEC, anchor, s).percent for s in sequences])
            else:
                row[anchor] = _bd(results, TEST_CODEC, anchor, seq).percent
        summary["bd_rate_psnr_rgb"][seq] = row
        others = [b for b in results.baselines if not b.startswith("vcodec-")]
        print(f"| {seq} | {_pct(row['vcodec-intra'])} | " + " | ".join(_pct(row[b]) for b in others) + " |")

    print("\n| codec | encode frames/s | decode frames/s | (mean over clips and qualities) |\n| --- | --- | --- | --- |")
    for label, codec in labels.items():
        pts = [p for s in sequences for p in results.curve(codec, s)]
        enc, dec = _mean([p.encode_fps for p in pts]), _mean([p.decode_fps for p in pts])
        summary["speed"][label] = {"encode_fps": enc, "decode_fps": dec}
        print(f"| vcodec {label} | {enc:.2f} | {dec:.2f} | |")

    q_mid = 4.0 if 4.0 in options.qualities else options.qualities[len(options.qualities) // 2]
    print(f"\n### Ablation (mean over clips; bpp and PSNR-RGB at q = {q_mid:g})\n")
    print("| variant | bpp | PSNR-RGB (dB) | BD-rate vs all-intra |\n| --- | --- | --- | --- |")
    for label, codec in labels.items():
        pts = [p for s in sequences for p in results.curve(codec, s) if p.order == q_mid]
        bpp, psnr = _mean([p.bpp for p in pts]), _mean([p.psnr_rgb for p in pts])
        bd = None if codec == "vcodec-intra" else _mean([_bd(results, codec, "vcodec-intra", s).percent for s in sequences])
        summary["ablation"][label] = {"bpp": bpp, "psnr_rgb": psnr, "bd_rate_vs_intra": bd}
        print(f"| {label} | {bpp:.4f} | {psnr:.2f} | {_pct(bd) if codec != 'vcodec-intra' else '(anchor)'} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
