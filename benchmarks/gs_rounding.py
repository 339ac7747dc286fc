"""Which bf16 rounding in g_s costs PSNR, and what a bf16 product that rounds only its output would cost and save.

    python benchmarks/gs_rounding.py                         # the 12 val photos and 7 frames of two 720p clips
    python benchmarks/gs_rounding.py IMAGE_OR_CLIP... --qualities 2,4,7

g_s (networks/pixel_path.py) never runs in plain bf16 by default: that costs up to 4 dB on near-black frames. Each
variant here rounds one thing to bf16 in g_s's inner layers (the three transposed convolutions and their IGDNs;
the pixel layer stays float32) and keeps the rest float32: the convolutions' inputs, their weights, their outputs,
the IGDN norms' sums; `bf16` is all of them (the `mixed` plan's g_s). PSNR-RGB against float32 g_s of the same
latent (g_a and the entropy path float32), mean and worst picture, per quality.

`--speed [--threads 1,2]`: the 64 -> 64 transposed convolution of a 720p frame (180x320 -> 360x640, g_s's largest)
in float32, in bf16, and as `auto`'s split bf16 products on AMX (pixel_path._SplitConv: x = hi + lo and W = W_hi +
W_lo, so [hi, lo, hi] . [W_hi, W_hi, W_lo] as one bf16 convolution over three times the channels, which rounds only
its output), that convolution alone and with the splitting and the float32 output it needs; then float32 against the
split form at the layer sizes of small pictures up to 1080p (what pixel_path.SPLIT_MIN_MACS is set from).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from pixel_precision import best_of, pictures  # noqa: E402  (this folder: the script's own)
from vcodec import weights  # noqa: E402
from vcodec.api import psnr_rgb  # noqa: E402
from vcodec.intra_coder import IntraCoder, to_pixels  # noqa: E402
from vcodec.networks import pixel_path  # noqa: E402
from vcodec.networks.pixel_path import (  # noqa: E402
    CHANNELS_LAST, PixelPath, _Conv, _Gdn, _SplitConv, _SubpixelConv, native_bf16,
)

SHARED = REPO.parent / "shared" / "data"
BF16 = torch.bfloat16
VARIANTS = ("inputs", "weights", "outputs", "gdn", "bf16")


def rounded(t: torch.Tensor) -> torch.Tensor:
    return t.to(BF16).float()


def synthesis(g_s, y: torch.Tensor, variant: str | None) -> torch.Tensor:
    """g_s (the float32 plan's steps) of y with one rounding to bf16 applied in its inner layers."""
    x = y.float().contiguous(memory_format=CHANNELS_LAST)
    for step in g_s.steps:
        if isinstance(step, _SubpixelConv):  # the pixel layer: float32 in every variant
            x = step(x)
        elif isinstance(step, _Conv):
            w, b, args = step.weight, step.bias, (step.stride, step.padding, step.output_padding)
            if variant == "bf16":  # as a bf16 convolution runs: inputs, weights and bias rounded, output rounded
                x = F.conv_transpose2d(x.to(BF16), w.to(BF16), b.to(BF16), *args).float()
                continue
            x_in = rounded(x) if variant == "inputs" else x
            w_in = rounded(w) if variant == "weights" else w
            x = F.conv_transpose2d(x_in, w_in, b, *args)
            if variant == "outputs":
                x = rounded(x)
        elif isinstance(step, _Gdn):
            if variant in ("gdn", "bf16"):
                norm = F.conv2d(x.to(BF16).abs_(), step.gamma.to(BF16)).float().add_(step.beta)
            else:
                norm = F.conv2d(x.abs(), step.gamma.float(), step.beta_flat)
            x = norm.mul_(x) if step.inverse else x / norm
    return x


# (input channels, input height, width) of g_s's inner transposed convolutions: small pictures up to 720p's (the
# last three) and 1080p's largest; for the split's size threshold, pixel_path.SPLIT_MIN_MACS
LAYER_SIZES = [(64, 12, 20), (128, 12, 20), (64, 23, 40), (128, 23, 40), (128, 45, 80), (64, 90, 160),
               (64, 180, 320), (64, 272, 480)]


def speed() -> dict:
    """720p's largest layer in float32, in bf16, and as pixel_path._SplitConv (its bf16 convolution alone, and
    whole); then float32 against _SplitConv at every size in LAYER_SIZES (its size threshold off)."""
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(64, 64, 5, 2, 2, 1)
    with torch.no_grad():
        layer.weight.normal_(0, 0.05)
    x = torch.randn(1, 64, 180, 320).contiguous(memory_format=CHANNELS_LAST)
    w, b, args = layer.weight.detach().contiguous(memory_format=CHANNELS_LAST), layer.bias.detach(), (2, 2, 1)
    pixel_path.SPLIT_MIN_MACS = 0
    split = _SplitConv(layer)
    parts = torch.randn(1, 192, 180, 320).to(BF16).contiguous(memory_format=CHANNELS_LAST)
    ref = F.conv_transpose2d(x.double(), w.double(), b.double(), *args)
    error = float((split(x).double() - ref).abs().max() / ref.abs().max())
    x_bf, w_bf, b_bf = x.to(BF16), w.to(BF16), b.to(BF16)
    result = {
        "fp32_ms": 1000 * best_of(lambda: F.conv_transpose2d(x, w, b, *args)),
        "bf16_ms": 1000 * best_of(lambda: F.conv_transpose2d(x_bf, w_bf, b_bf, *args)),
        "split_conv_only_ms": 1000 * best_of(lambda: F.conv_transpose2d(parts, *split.split_weights()[:2], *args)),
        "split_with_preparation_ms": 1000 * best_of(lambda: split(x)),
        "split_max_relative_error": error,
        "sizes": [],
    }
    for cin, h, w_ in LAYER_SIZES:
        layer = torch.nn.ConvTranspose2d(cin, 64, 5, 2, 2, 1)
        x = torch.randn(1, cin, h, w_).contiguous(memory_format=CHANNELS_LAST)
        float32, split = _Conv(layer, torch.float32), _SplitConv(layer)
        row = {"input": [cin, h, w_], "mmacs": cin * 64 * 25 * h * w_ / 1e6,
               "fp32_ms": 1000 * best_of(lambda: float32(x)), "split_ms": 1000 * best_of(lambda: split(x))}
        result["sizes"].append(row)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path)
    ap.add_argument("--qualities", default="0,2,4,7")
    ap.add_argument("--speed", action="store_true", help="also time the 720p layer (needs native bf16)")
    ap.add_argument("--threads", default=str(torch.get_num_threads()), help="torch threads for --speed, e.g. 1,2")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "gs_rounding.json")
    args = ap.parse_args(argv)
    device = torch.device("cpu")
    photos = args.inputs or sorted((SHARED / "val").glob("*.png"))
    pics = pictures(photos, [0])
    if not args.inputs:  # 720p video as it comes, the trailer's near-black title frame among them
        pics += pictures([SHARED / "clips" / "bigbuckbunny.mp4"], [0, 80])
        pics += pictures([SHARED / "clips" / "trailer_bbb.mp4"], [0, 300, 600, 900, 1200])
    coder = IntraCoder(weights.load(weights.DEFAULT_MODEL, "cpu"), device, precision="fp32")
    model, g_s = coder.model, PixelPath(coder.model, device, "fp32").g_s
    rows = []
    with torch.no_grad():
        for q in (float(v) for v in args.qualities.split(",")):
            cols = {v: [] for v in VARIANTS}
            for _, rgb in pics:
                h, w = rgb.shape[:2]
                _, y_hat = model.coded_estimate(coder.analysis(coder.picture(rgb), q))
                y = y_hat * model.inverse_gain(coder.quality(q))
                base = psnr_rgb(to_pixels(synthesis(g_s, y, None)[0, :, :h, :w]), rgb)
                for v in VARIANTS:
                    cols[v].append(psnr_rgb(to_pixels(synthesis(g_s, y, v)[0, :, :h, :w]), rgb) - base)
            row = {"quality": q}
            for v in VARIANTS:
                values = np.array(cols[v])
                row[v] = {"db_mean": float(values.mean()), "db_worst": float(values.min()),
                          "worst_picture": pics[int(values.argmin())][0]}
            rows.append(row)
            print(f"q {q:g}: " + "; ".join(f"{v} {row[v]['db_mean']:+.4f} (worst {row[v]['db_worst']:+.4f})"
                                           for v in VARIANTS), flush=True)
    result = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "pictures": [n for n, _ in pics],
              "qualities": rows}
    if args.speed:
        if not native_bf16(device):
            print("no native bf16 here: --speed skipped")
        else:
            result["speed_720p_layer"] = {}
            for threads in (int(t) for t in args.threads.split(",")):
                torch.set_num_threads(threads)
                pixel_path.SPLIT_MAX_THREADS = threads  # timed as it would run, whatever the default allows
                result["speed_720p_layer"][str(threads)] = s = speed()
                print(f"720p 64->64 transposed convolution ({threads} threads): float32 {s['fp32_ms']:.1f} "
                      f"ms, bf16 {s['bf16_ms']:.1f} ms, output-rounding bf16 {s['split_conv_only_ms']:.1f} ms "
                      f"alone, {s['split_with_preparation_ms']:.1f} ms with its splitting and float32 output "
                      f"(max error {s['split_max_relative_error']:.1e} of the largest output)")
                for row in s["sizes"]:
                    cin, h, w = row["input"]
                    print(f"  {cin} x {h}x{w} in ({row['mmacs']:.0f} M multiply-adds): "
                          f"float32 {row['fp32_ms']:.2f} ms, split {row['split_ms']:.2f} ms "
                          f"({row['split_ms'] / row['fp32_ms']:.2f}x)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
