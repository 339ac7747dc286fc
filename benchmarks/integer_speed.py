"""Speed of the integer entropy path, float64 against int8 digits (networks/integer.py, networks/integer_gemm.py).

    python benchmarks/integer_speed.py                       # 720p and 64x64, torch's thread count, best of 9
    python benchmarks/integer_speed.py --threads 1,2 --repeat 11 --sizes 1280x720,640x360,64x64
    python benchmarks/integer_speed.py --without-int8           # what a CPU without AVX-512 VNNI gets

For each picture size it codes the bundled sample clip's frames 10 and 11 (resized) with the shipped models to get
real inputs: the intra z of frame 10, and for frame 11 as a P-frame STEM's z_t, the previous decoded latent and
the decoded anchors of the checkerboard's second pass. It then times, on each path, the best of --repeat runs of:
the intra h_s (z -> mu, scale index), IntegerStem.prepare, and parameters() for each checkerboard pass (the two
paths take turns run by run, first one then the other, so other work on the machine slows both alike); and checks that both paths give the
same integers. The inputs matter: the int8 path takes as many digits as the values need.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vcodec import weights  # noqa: E402
from vcodec.networks import integer as I  # noqa: E402
from vcodec.networks import integer_gemm  # noqa: E402
from vcodec.networks.stem import anchor_mask  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def frames(width: int, height: int) -> list[np.ndarray]:
    import av
    from PIL import Image

    with av.open(str(ROOT / "tests" / "data" / "bikes-48.mp4")) as c:
        got = [f.to_ndarray(format="rgb24") for i, f in zip(range(12), c.decode(video=0))][10:12]
    return [np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in got]


@torch.no_grad()
def inputs(bundle, stem, width: int, height: int, quality: float) -> dict:
    """Real inputs of the entropy path for one I-frame and the P-frame after it."""
    import warnings

    from vcodec.intra_coder import IntraCoder

    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    f0, f1 = frames(width, height)
    intra = IntraCoder(bundle, torch.device("cpu"))
    s0 = intra.symbols_of(intra.analysis(f0, quality))
    y_prev = s0.decoded_latent()
    y1 = intra.analysis(f1, quality)
    z_t = torch.round(stem.model.hyper_analysis(y1, y_prev[None]))[0].to(torch.int64).numpy()
    fixed = I.to_fixed(y_prev)
    h, w = fixed.shape[-2:]
    where = anchor_mask(h, w)
    prep = stem.integer.prepare(z_t, fixed, quality)
    mu, _ = stem.integer.parameters(prep, where)
    y = y1[0].float().reshape(y1.shape[1], -1)[:, where.reshape(-1)]
    mu_f = (mu * 2.0**-I.ACT_FRAC_BITS).float()
    decoded = torch.zeros(y1.shape[1:])
    decoded.view(decoded.shape[0], -1)[:, where.reshape(-1)] = torch.round(y - mu_f) + mu_f
    return dict(z=s0.z, z_t=z_t, y_prev=fixed, anchors=I.to_fixed(decoded), where=where, q=quality)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def same(a, b) -> bool:
    if isinstance(a, (tuple, list)):
        return all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if hasattr(a, "hyper"):  # a Prepared: its values (each path keeps them in its own work dtype)
        return same([a.hyper.double(), a.temporal.double()], [b.hyper.double(), b.temporal.double()])
    return a.dtype == b.dtype and torch.equal(a, b)


def measure(bundle, stem, x: dict, repeat: int) -> dict:
    """Best-of-`repeat` milliseconds of each step on each path. The two paths take turns, run by run, so a machine
    shared with other work slows both alike."""
    integer, where = stem.integer, x["where"]
    steps, results = {}, {}
    for fast in (False, True):
        I.FAST_PATH = fast
        prep = integer.prepare(x["z_t"], x["y_prev"], x["q"])
        steps[fast] = {
            "intra h_s": lambda: bundle.h_s(x["z"]),
            "STEM prepare": lambda: integer.prepare(x["z_t"], x["y_prev"], x["q"]),
            "parameters, pass 1": lambda prep=prep: integer.parameters(prep, where),
            "parameters, pass 2": lambda prep=prep: integer.parameters(prep, ~where, x["anchors"]),
        }
        results[fast] = [f() for f in steps[fast].values()]  # also the warm-up
    best = {fast: dict.fromkeys(steps[fast], float("inf")) for fast in steps}
    for run in range(repeat):
        for name in steps[False]:
            for fast in ((False, True) if run % 2 else (True, False)):  # neither always runs second (warm caches)
                I.FAST_PATH = fast
                best[fast][name] = min(best[fast][name], timed(steps[fast][name]))
    I.FAST_PATH = True
    out = {"float64": best[False], "int8": best[True]}
    for times in out.values():
        times["P-frame STEM total"] = sum(times[k] for k in ("STEM prepare", "parameters, pass 1", "parameters, pass 2"))
    out["same integers"] = all(same(a, b) for a, b in zip(results[False], results[True]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1280x720,64x64", help="picture sizes WxH, comma-separated")
    ap.add_argument("--threads", default="", help="torch thread counts to run with, comma-separated")
    ap.add_argument("--repeat", type=int, default=9, help="runs per measurement; the best one counts")
    ap.add_argument("--quality", type=float, default=4.0)
    ap.add_argument("--without-int8", action="store_true",
                    help="as on a CPU without AVX-512 VNNI: the fast path's float64 parts only")
    args = ap.parse_args()
    if args.without_int8:
        integer_gemm.available = lambda: False

    bundle = weights.load(weights.DEFAULT_MODEL, "cpu")
    stem = weights.load_stem(weights.DEFAULT_STEM_MODEL, "cpu")
    threads = [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]
    print(f"# {datetime.datetime.now().isoformat(timespec='seconds')}  {cpu_name()}  torch {torch.__version__}  "
          f"int8 path available: {integer_gemm.available()}  best of {args.repeat}")
    ok = True
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        torch.set_num_threads(max(threads))
        x = inputs(bundle, stem, width, height, args.quality)
        print(f"\n{width}x{height}: z {tuple(x['z'].shape)}, latent {tuple(x['y_prev'].shape)}, "
              f"z_t peak {int(np.abs(x['z_t']).max())}, y_prev peak {int(x['y_prev'].abs().max())}")
        for n in threads:
            torch.set_num_threads(n)
            m = measure(bundle, stem, x, args.repeat)
            ok &= m["same integers"]
            fast = "fast ms" if args.without_int8 else "int8 ms"
            print(f"  {n} thread{'s' if n > 1 else ''}  {'':20s} float64 ms   {fast}   speed-up   same integers: "
                  f"{m['same integers']}")
            for k in m["float64"]:
                f64, i8 = m["float64"][k], m["int8"][k]
                print(f"    {k:28s} {f64:10.2f} {i8:9.2f} {f64 / i8:9.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
