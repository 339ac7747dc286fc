"""What the pixel path's `mixed` precision costs (vcodec/networks/pixel_path.py), against fp32, at every quality.

    python benchmarks/pixel_precision.py                     # the 12 val photos and 4 frames of 720p clips
    python benchmarks/pixel_precision.py IMAGE_OR_CLIP... --qualities 0,4,7

Against the fp32 plan, per quality: `auto` (the default: g_a mixed; g_s fp32, or split bf16 products on a CPU
with AMX), `mixed` (both), and g_s alone in mixed; the PSNR-RGB difference (mean and worst picture) and g_a's
effect on the estimated bits (the model's own, within ~1 % of real sizes). Then the time of g_a and g_s on a 720p
picture in each form.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from vcodec import weights  # noqa: E402
from vcodec.api import psnr_rgb  # noqa: E402
from vcodec.intra_coder import IntraCoder, to_pixels  # noqa: E402
from vcodec.media import open_source  # noqa: E402
from vcodec.networks.pixel_path import PixelPath, native_bf16  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def pictures(inputs: list[Path], positions: list[int]) -> list[tuple[str, np.ndarray]]:
    """(name, frame) at the given frame positions of each input (an image has only position 0)."""
    out = []
    for path in inputs:
        with open_source(path) as src:
            for i, rgb in enumerate(src.frames(0, max(positions) + 1)):
                if i in positions:
                    out.append((f"{path.name}:{i}", rgb))
    return out


def best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path)
    ap.add_argument("--qualities", default="0,1,2,3,4,5,6,7")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "pixel_precision.json")
    args = ap.parse_args(argv)
    device = torch.device("cpu")
    if not native_bf16(device):
        print("this CPU has no native bf16: `auto` is fp32 here, nothing to compare")
        return 0
    photos = args.inputs or sorted((SHARED / "val").glob("*.png"))
    pics = pictures(photos, [0])
    if not args.inputs:  # 720p video as it comes, dark title frames included (frames 0 and 300 of the trailer)
        pics += pictures([SHARED / "clips" / "bigbuckbunny.mp4"], [0, 40, 80, 120])
        pics += pictures([SHARED / "clips" / "trailer_bbb.mp4"], [0, 300, 600, 900, 1200])
    bundle = weights.load(weights.DEFAULT_MODEL, "cpu")
    coder = IntraCoder(bundle, device, precision="fp32")
    model = coder.model
    # mixed: both transforms in bf16; auto: g_a as mixed's, g_s float32 or, with AMX, split bf16 products
    paths = {p: PixelPath(model, device, p) for p in ("fp32", "mixed", "auto")}
    rows = []
    with torch.no_grad():
        for q in (float(v) for v in args.qualities.split(",")):
            qq = coder.quality(q)
            cols = {"auto": [], "mixed": [], "g_s only": [], "bits_auto": [], "bits_mixed": []}
            for _, rgb in pics:
                h, w = rgb.shape[:2]
                x = coder.picture(rgb)
                est, latents = {}, {}
                for name in ("fp32", "mixed"):  # auto's g_a is mixed's
                    coder.pixels = paths[name]
                    bits, y_hat = model.coded_estimate(coder.analysis(x, q))
                    est[name], latents[name] = float(bits.sum()), y_hat * model.inverse_gain(qq)

                def score(analysis: str, synthesis: str) -> float:
                    return psnr_rgb(to_pixels(paths[synthesis].g_s(latents[analysis])[0, :, :h, :w]), rgb)

                base = score("fp32", "fp32")
                cols["auto"].append(score("mixed", "auto") - base)  # the default plan
                cols["mixed"].append(score("mixed", "mixed") - base)
                cols["g_s only"].append(score("fp32", "mixed") - base)
                cols["bits_auto"].append(100 * (est["mixed"] / est["fp32"] - 1))
            row = {"quality": q}
            for name in ("auto", "mixed", "g_s only"):
                values = np.array(cols[name])
                row[name] = {"db_mean": float(values.mean()), "db_worst": float(values.min()),
                             "worst_picture": pics[int(values.argmin())][0]}
            row["bits_pct_mean"] = float(np.mean(cols["bits_auto"]))  # g_a's: the same in auto and mixed
            rows.append(row)
            print(f"q {q:g}: bits {row['bits_pct_mean']:+.3f} %; " + "; ".join(
                f"{n} {row[n]['db_mean']:+.4f} dB (worst {row[n]['db_worst']:+.4f}, {row[n]['worst_picture']})"
                for n in ("auto", "mixed", "g_s only")), flush=True)
        x = torch.rand(1, 3, 720, 1280)
        y = torch.randn(1, model.config.m, 45, 80)
        speed = {}
        for name, path in paths.items():
            speed[name] = {"g_a_ms": 1000 * best_of(lambda: path.g_a(x)), "g_s_ms": 1000 * best_of(lambda: path.g_s(y))}
        speed["nchw_fp32"] = {"g_a_ms": 1000 * best_of(lambda: model.g_a(x)), "g_s_ms": 1000 * best_of(lambda: model.g_s(y))}
        for name, s in speed.items():
            print(f"720p {name}: g_a {s['g_a_ms']:.1f} ms, g_s {s['g_s_ms']:.1f} ms ({torch.get_num_threads()} threads)")
    result = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "pictures": [n for n, _ in pics],
              "qualities": rows, "speed_720p": speed}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
