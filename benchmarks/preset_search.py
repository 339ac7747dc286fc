"""The encoder presets' latent search on training photos, priced by the coder: how the presets were tuned.

    python benchmarks/preset_search.py                       # 4 photos of ../shared/data/photos-1024, q 1,4,7
    python benchmarks/preset_search.py --presets slow --photos 8 --qualities 2,5

Each photo (768x512 centre crop; chosen at random with a fixed seed, never from val/) is searched at each quality by
`vcodec.refine.LatentSearch` as the encoder runs it: the change in coded bits (the tables' code lengths) and in the
decoded picture's PSNR-RGB against g_a's own symbols (`medium`), and the "equivalent" change in bits at g_a's PSNR,
along the local slope of g_a's own curve at that photo (at q - 0.25 and q + 0.25). Whole files: benchmarks/presets.py.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vcodec import weights  # noqa: E402
from vcodec.api import psnr_rgb  # noqa: E402
from vcodec.intra_coder import IntraCoder  # noqa: E402
from vcodec.media import open_source  # noqa: E402
from vcodec.refine import PRESETS, LatentSearch  # noqa: E402


def training_photos(count: int, seed: int) -> list[tuple[str, np.ndarray]]:
    paths = sorted((REPO.parent / "shared" / "data" / "photos-1024").glob("*.jpg"))
    random.Random(seed).shuffle(paths)
    out = []
    for path in paths[:count]:
        with open_source(path) as src:
            rgb = next(iter(src.frames()))
        h, w = rgb.shape[:2]
        ch, cw = min(h, 512), min(w, 768)
        out.append((path.name, np.ascontiguousarray(rgb[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw])))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=",".join(p for p in PRESETS if PRESETS[p].iterations))
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--qualities", default="1,4,7")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    bundle = weights.load()
    coder = IntraCoder(bundle, torch.device("cpu"))
    photos = training_photos(args.photos, args.seed)
    qualities = [float(q) for q in args.qualities.split(",")]
    print(f"{len(photos)} training photos, {time.strftime('%Y-%m-%d')}, {torch.get_num_threads()} threads")
    for name in args.presets.split(","):
        rows, t0 = [], time.perf_counter()
        for _, rgb in photos:
            x, (h, w) = coder.picture(rgb), rgb.shape[:2]
            for quality in qualities:

                def coded(qv: float, refine: bool = False):
                    """(bits, PSNR-RGB of the decoded picture) of the photo at quality qv, as medium or searched."""
                    y = coder.analysis(x, qv)
                    s = (LatentSearch(bundle.model, PRESETS[name]).refine(y, x, coder.quality(qv), coder.price)
                         if refine else coder.symbols_of(y))
                    return coder.cost(s), psnr_rgb(coder.reconstruct(s.decoded_latent(), qv, w, h), rgb)

                rate0, psnr0 = coded(quality)
                (r_lo, p_lo), (r_hi, p_hi) = coded(quality - 0.25), coded(quality + 0.25)
                slope = math.log(r_hi / r_lo) / (p_hi - p_lo)  # d ln(bits) / d PSNR of g_a's own curve here
                rate, psnr = coded(quality, refine=True)
                rows.append((quality, rate / rate0 - 1, psnr - psnr0, rate / rate0 * math.exp(-slope * (psnr - psnr0)) - 1))
        seconds = (time.perf_counter() - t0) / len(rows)
        per_q = "  ".join(f"q{q:g} bits {100 * np.mean([r[1] for r in rows if r[0] == q]):+.1f} % "
                          f"{np.mean([r[2] for r in rows if r[0] == q]):+.3f} dB "
                          f"(equivalent {100 * np.mean([r[3] for r in rows if r[0] == q]):+.1f} %)" for q in qualities)
        print(f"{name}: {per_q}  | mean bits {100 * np.mean([r[1] for r in rows]):+.1f} %, "
              f"{np.mean([r[2] for r in rows]):+.3f} dB, equivalent {100 * np.mean([r[3] for r in rows]):+.1f} %  "
              f"({seconds:.1f} s per case)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
