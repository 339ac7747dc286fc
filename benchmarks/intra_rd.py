"""Rate-distortion of the shipped intra model on a folder of images, against JPEG, WebP and x265 all-intra 4:4:4.

    python benchmarks/intra_rd.py ../shared/data/val --json benchmarks/results/intra_rd.json

Every rate is a real file: the whole .hfc stream for vcodec (header and index included), the JPEG/WebP file from
Pillow, the x265 elementary stream's packet sizes without its informational SEI (BPG-like: one intra frame, YCbCr 4:4:4, BT.601 full range).
PSNR-RGB is measured on the decoded 8-bit RGB pixels and, like bpp, averaged over images (as CompressAI does).
BD-rates and BD-PSNR (PSNR-RGB) of vcodec against each anchor come from vcodec/bdrate.py (the bjontegaard
package, Akima).

`--against earlier.json` (repeatable) adds the vcodec curve of an earlier run of this script as one more anchor,
so two models compare on the same images over the quality range they share:

    python benchmarks/intra_rd.py ../shared/data/val --model new.safetensors --against benchmarks/results/intra_rd.json
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vcodec import api, weights  # noqa: E402
from vcodec.api import psnr_rgb  # noqa: E402
from vcodec.bdrate import DEFAULT_METHOD, bd_psnr, bd_rate  # noqa: E402

JPEG_QUALITIES = (5, 10, 20, 30, 45, 60, 75, 85, 92, 97)
WEBP_QUALITIES = (2, 10, 25, 40, 55, 70, 82, 90, 96)
X265_CRFS = (44, 40, 36, 32, 28, 24, 20, 16, 12)


def load_images(folder: Path) -> list[tuple[str, np.ndarray]]:
    if not folder.is_dir():
        raise SystemExit(f"no folder {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm", ".bmp"))
    if not paths:
        raise SystemExit(f"no images in {folder}")
    return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def vcodec_point(images, quality: float, model: str, device: str, work: Path) -> dict:
    bpp, psnr, enc, dec = [], [], 0.0, 0.0
    for name, rgb in images:
        src = work / "src.png"
        Image.fromarray(rgb).save(src)
        stream, out = work / "img.hfc", work / "dec"
        t0 = time.perf_counter()
        api.encode(src, stream, quality=quality, model=model, device=device, overwrite=True)
        t1 = time.perf_counter()
        api.decode(stream, out, device=device, model=model, overwrite=True)
        t2 = time.perf_counter()
        enc, dec = enc + t1 - t0, dec + t2 - t1
        back = np.asarray(Image.open(next(out.iterdir())).convert("RGB"))
        bpp.append(stream.stat().st_size * 8 / (rgb.shape[0] * rgb.shape[1]))
        psnr.append(psnr_rgb(back, rgb))
    return {"bpp": float(np.mean(bpp)), "psnr-rgb": float(np.mean(psnr)), "encoding_time": enc / len(images),
            "decoding_time": dec / len(images)}


def pillow_point(images, fmt: str, quality: int) -> dict:
    bpp, psnr = [], []
    for _, rgb in images:
        buf = io.BytesIO()
        options = {"quality": quality}
        if fmt == "WEBP":
            options["method"] = 6
        Image.fromarray(rgb).save(buf, format=fmt, **options)
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        bpp.append(len(buf.getvalue()) * 8 / (rgb.shape[0] * rgb.shape[1]))
        psnr.append(psnr_rgb(back, rgb))
    return {"bpp": float(np.mean(bpp)), "psnr-rgb": float(np.mean(psnr))}


def x265_intra(rgb: np.ndarray, crf: int) -> tuple[int, np.ndarray]:
    """One intra frame, 4:4:4 full-range BT.601 (BPG's default colour), preset medium. Returns (bytes, RGB back)."""
    h, w = rgb.shape[:2]
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv444p", dst_colorspace="itu601", dst_color_range="JPEG")
    enc = av.CodecContext.create("libx265", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv444p"
    enc.time_base = Fraction(1, 25)
    enc.color_range = 2
    # info=0: no SEI with x265's version and options as text (2.3 KB, half the bits of a small picture), which is
    # not picture data; BPG does not write it either.
    enc.options = {"crf": str(crf), "preset": "medium", "x265-params": "keyint=1:info=0:log-level=error"}
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    size = sum(p.size for p in packets)
    dec = av.CodecContext.create("hevc", "r")
    frames = []
    for p in packets:
        frames += dec.decode(p)
    frames += dec.decode(None)
    back = frames[0].reformat(format="rgb24", src_colorspace="itu601", src_color_range="JPEG").to_ndarray()
    return size, back


def x265_point(images, crf: int) -> dict:
    bpp, psnr = [], []
    for _, rgb in images:
        size, back = x265_intra(rgb, crf)
        bpp.append(size * 8 / (rgb.shape[0] * rgb.shape[1]))
        psnr.append(psnr_rgb(back, rgb))
    return {"bpp": float(np.mean(bpp)), "psnr-rgb": float(np.mean(psnr))}


def curve(points: list[dict]) -> dict:
    points = sorted(points, key=lambda p: p["bpp"])
    return {k: [p[k] for p in points] for k in points[0]}


def _earlier_vcodec(path: Path) -> tuple[str, dict]:
    """(label, curve) of the vcodec entry of an earlier output of this script."""
    try:
        entry = next(e for e in json.loads(path.read_text()) if e.get("name") == "vcodec")
        return entry["description"], {k: list(v) for k, v in entry["results"].items()}
    except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(f"--against {path}: not an output of intra_rd.py ({type(e).__name__})") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--qualities", default="0,1,2,3,4,5,6,7")
    parser.add_argument("--model", default=weights.DEFAULT_MODEL)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--max-bpp", type=float, default=2.0, help="Drop anchor points above this rate.")
    parser.add_argument("--against", type=Path, action="append", default=[],
                        help="An earlier --json output of this script: its vcodec curve becomes an anchor too.")
    args = parser.parse_args()
    images = load_images(args.images)
    earlier = [_earlier_vcodec(path) for path in args.against]  # read first: a bad file fails before the long run
    bundle = weights.load(args.model)
    work = Path(tempfile.mkdtemp(prefix="vcodec-intra-rd-"))
    t0 = time.perf_counter()
    try:
        ours = curve([vcodec_point(images, float(q), args.model, args.device, work) for q in args.qualities.split(",")])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    anchors = {
        "JPEG (Pillow)": curve([pillow_point(images, "JPEG", q) for q in JPEG_QUALITIES]),
        "WebP (Pillow, method 6)": curve([pillow_point(images, "WEBP", q) for q in WEBP_QUALITIES]),
        "x265 intra 4:4:4 (BPG-like)": curve([x265_point(images, c) for c in X265_CRFS]),
    }
    for name, c in anchors.items():
        keep = [i for i, b in enumerate(c["bpp"]) if b <= args.max_bpp]
        anchors[name] = {k: [v[i] for i in keep] for k, v in c.items()}
    anchors.update(earlier)
    seconds = time.perf_counter() - t0
    info = json.loads(bundle.metadata.get("vcodec.info", "{}"))
    label = f"vcodec {bundle.name} (step {info.get('step', '?')}, sha256 {bundle.hash_hex[:12]})"
    print(f"{len(images)} images from {args.images}, device {args.device}, {time.strftime('%Y-%m-%d')}, {seconds:.0f} s")
    print(f"\n{label}")
    print(f"{'q':>4} {'bpp':>8} {'PSNR-RGB':>9} {'enc s/img':>10} {'dec s/img':>10}")
    for q, b, p, e, d in zip(args.qualities.split(","), ours["bpp"], ours["psnr-rgb"], ours["encoding_time"], ours["decoding_time"]):
        print(f"{q:>4} {b:8.4f} {p:9.2f} {e:10.2f} {d:10.2f}")
    results = [{"name": "vcodec", "description": label, "results": ours}]
    print(f"\n{'anchor':<30} {'bpp range':>16} {'BD-rate (PSNR-RGB, ' + DEFAULT_METHOD + ')':>26} {'BD-PSNR':>10}")
    for name, c in anchors.items():
        bd = bd_rate(c["bpp"], c["psnr-rgb"], ours["bpp"], ours["psnr-rgb"])
        text = bd.text() if bd.percent is not None else f"n/a ({bd.reason})"
        gain = bd_psnr(c["bpp"], c["psnr-rgb"], ours["bpp"], ours["psnr-rgb"]).text()
        print(f"{name:<30} {min(c['bpp']):7.3f}..{max(c['bpp']):6.3f} {text:>26} {gain:>10}")
        results.append({"name": name, "description": f"{name}; vcodec against it: BD-rate {text}, BD-PSNR {gain}",
                        "results": c})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
