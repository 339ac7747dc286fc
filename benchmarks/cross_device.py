"""A stream made on one device decodes on any other to the same symbols, and to pictures within the pixel path's
tolerance: encode on each configuration, decode every stream on every configuration, compare.

    python benchmarks/cross_device.py                    # 8 frames of each development clip (../shared/data/clips)
    python benchmarks/cross_device.py CLIP... --frames 8

Configurations: this CPU at its best ISA with 2 threads and the default precision; the same CPU with ATen and
oneDNN held to their plainest kernels (ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41), 1 thread, fp32;
and, when torch sees one, a CUDA GPU (bf16 pixel path, cudnn.benchmark). Each runs in a process of its own, as
the environment variables must be set before torch loads. For every stream and every decoding configuration:
the entropy-decoded symbols of each frame (z, residuals, scale indices) must equal those of the encoding
configuration's own decode, bit for bit; the pictures must agree within 40 dB PSNR of each other (the pixel
paths differ by float rounding, ~55-60 dB, bf16 included). Without a GPU it says so.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = {
    "cpu-best": {"device": "cpu", "threads": 2, "precision": "auto", "env": {}},
    "cpu-plain": {"device": "cpu", "threads": 1, "precision": "fp32",
                  "env": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}},
    "cuda": {"device": "cuda", "threads": 2, "precision": "auto", "env": {}},
}
PICTURE_TOLERANCE_DB = 40.0


def worker(argv: list[str]) -> int:
    """`--worker encode CLIP STREAM FRAMES CONFIG` or `--worker decode STREAM OUT.npz CONFIG` (in its own process)."""
    import numpy as np
    import torch

    from vcodec import api
    from vcodec import container as C
    from vcodec.reader import DecodedStream

    cfg = CONFIGS[argv[-1]]
    torch.set_num_threads(cfg["threads"])
    if cfg["device"] == "cuda":
        torch.backends.cudnn.benchmark = True
    if argv[0] == "encode":
        clip, stream, frames = argv[1], argv[2], int(argv[3])
        api.encode(clip, stream, quality=4, frames=frames, device=cfg["device"], precision=cfg["precision"],
                   overwrite=True, audio=False)
        return 0
    stream, out = argv[1], argv[2]
    with DecodedStream(stream, cfg["device"], precision=cfg["precision"]) as s:
        parser = s.decoder
        digests, pictures = [], []
        with C.StreamReader(stream) as reader:
            for packet in reader.packets():
                symbols = parser.parse(packet)
                h = hashlib.sha256()
                for a in (symbols.z, symbols.residual, symbols.scale_index, symbols.mu.numpy()):
                    h.update(np.ascontiguousarray(a).tobytes())
                digests.append(h.hexdigest())
                pictures.append(parser.picture(parser.y_hat, packet.quality, s.width, s.height))
    np.savez(out, digests=np.array(digests), pictures=np.stack(pictures))
    return 0


def run_worker(args: list[str], config: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), **CONFIGS[config]["env"]}
    done = subprocess.run([sys.executable, __file__, "--worker", *args, config], env=env, capture_output=True,
                          text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{config} {args[0]} failed:\n{done.stderr}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return worker(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "cross_device.json")
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    from vcodec.api import psnr_rgb

    clips = args.inputs or sorted((REPO.parent / "shared" / "data" / "clips").glob("*"))
    configs = [c for c in CONFIGS if c != "cuda" or torch.cuda.is_available()]
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for clip in clips:
            for made in configs:
                stream = work / f"{clip.stem}-{made}.hfc"
                run_worker(["encode", str(clip), str(stream), str(args.frames)], made)
                decoded = {}
                for where in configs:
                    out = work / f"{clip.stem}-{made}-{where}.npz"
                    run_worker(["decode", str(stream), str(out)], where)
                    decoded[where] = np.load(out)
                own = decoded[made]
                for where, got in decoded.items():
                    same = bool(np.array_equal(got["digests"], own["digests"]))
                    worst = min(psnr_rgb(a, b) for a, b in zip(got["pictures"], own["pictures"]))
                    ok = bool(same and worst >= PICTURE_TOLERANCE_DB)
                    failures += not ok
                    rows.append({"clip": clip.name, "encoded_on": made, "decoded_on": where, "frames": len(got["digests"]),
                                 "symbols_identical": same, "worst_picture_psnr_db": worst, "ok": ok})
                    print(f"{clip.name}: made on {made}, decoded on {where}: symbols "
                          f"{'identical' if same else 'DIFFER'}, pictures within {worst:.1f} dB"
                          f"{'' if ok else '  <-- FAIL'}", flush=True)
    if "cuda" not in configs:
        print("no GPU was tried: torch sees no CUDA device here (the CPU configurations were compared)")
    result = {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "configurations": {c: {k: v for k, v in CONFIGS[c].items()} for c in configs},
              "gpu_tried": "cuda" in configs, "rows": rows, "failures": failures}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
