"""The encoder's I/P decision with and without the estimate that skips a clearly dearer I-frame's exact price
(vcodec/codec.py, INTRA_ESTIMATE_MARGIN): the same packets, and the time it saves.

    python benchmarks/frame_type_filter.py                          # the development clips, 32 frames, q 1 4 7
    python benchmarks/frame_type_filter.py CLIP... --frames 32 --qualities 1,4,7

Each clip is encoded twice per quality with the shipped models and the default GOP (adaptive frame types), once
pricing every P-frame's I-frame alternative exactly (the integer path's symbols and the tables' code lengths) and
once with the filter; the two runs take turns frame by frame, on the same encoder state, so a shared machine
slows both alike. For every frame it records both decisions, whether the packets are byte for byte the same, the
estimate against the exact price of the I-frame (where both ran), and the milliseconds of each decision.
Results: benchmarks/results/frame_type_filter.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vcodec import codec, weights  # noqa: E402
from vcodec.codec import VideoEncoder, choose_inter_model  # noqa: E402

CLIPS = REPO.parent / "shared" / "data" / "clips"
DEFAULT_CLIPS = ["bigbuckbunny.mp4", "bikes.mp4", "realshort.mp4", "single_face.mp4", "trailer_bbb.mp4",
                 "face_noface.mov"]


def frames_of(path: Path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(count), c.decode(video=0))]


def decide(encoder: VideoEncoder, y: torch.Tensor, quality: float, filtered: bool, history: dict):
    """One I/P decision with or without the filter, each mode with its own memory of the frame before."""
    encoder.estimate_intra = filtered
    encoder._intra_was_clearly_dearer = history[filtered]
    exact, priced = encoder.intra.symbols_of, []
    encoder.intra.symbols_of = lambda *a, **k: (priced.append(1), exact(*a, **k))[1]
    t0 = time.perf_counter()
    try:
        intra, symbols = encoder._cheaper_type(y, quality)
    finally:
        seconds = time.perf_counter() - t0
        encoder.intra.symbols_of = exact
    history[filtered] = encoder._intra_was_clearly_dearer
    return intra, symbols, seconds * 1e3, bool(priced)


def run_clip(path: Path, frames: int, quality: float, bundle, stem, gop: int) -> dict:
    device = torch.device("cpu")
    encoder = VideoEncoder(bundle, device, gop, stem)
    rows, history = [], {False: True, True: True}
    q = codec.C.representable_quality(quality)
    for index, rgb in enumerate(frames_of(path, frames)):
        y = encoder.intra.analysis(rgb, q)
        if index % gop == 0 or encoder.y_hat is None:
            symbols = encoder.intra.symbols_of(y)
            row = {"frame": index, "gop_intra": True}
        else:
            order = (True, False) if index % 2 else (False, True)  # neither always runs second
            got = {f: decide(encoder, y, q, f, history) for f in order}
            packets = {f: (encoder.intra if got[f][0] else encoder.inter).packet_of(got[f][1], q, index) for f in got}
            same = packets[True].substreams == packets[False].substreams and got[True][0] == got[False][0]
            exact_i = encoder.intra.cost(encoder.intra.symbols_of(y))
            row = {"frame": index, "gop_intra": False, "intra_exact": got[False][0], "intra_filtered": got[True][0],
                   "same_packet": bool(same), "ms_exact": got[False][2], "ms_filtered": got[True][2],
                   "filtered_priced_i": got[True][3],
                   "p_bits": encoder.inter.cost(got[False][1]) if not got[False][0] else None,
                   "i_bits": exact_i, "i_estimate": encoder.intra.estimated_bits(y)}
            symbols = got[False][1]  # the same packets either way: the exact decision's latent goes on
        encoder.y_hat = symbols.decoded_latent()
        rows.append(row)
    return {"clip": path.name, "quality": quality, "frames": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", type=Path)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--qualities", default="1,4,7")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "frame_type_filter.json")
    args = ap.parse_args(argv)
    clips = args.clips or [CLIPS / name for name in DEFAULT_CLIPS]
    bundle = weights.load()
    stem, gop = choose_inter_model(bundle, None, codec.DEFAULT_GOP, torch.device("cpu"))
    results, all_same, exact_ms, filtered_ms, ratios, spared = [], True, [], [], [], 0
    for clip in clips:
        for q in (float(v) for v in args.qualities.split(",")):
            r = run_clip(clip, args.frames, q, bundle, stem, gop)
            results.append(r)
            p = [f for f in r["frames"] if not f["gop_intra"]]
            same = all(f["same_packet"] for f in p)
            all_same &= same
            exact_ms += [f["ms_exact"] for f in p]
            filtered_ms += [f["ms_filtered"] for f in p]
            ratios += [f["i_estimate"] / f["i_bits"] for f in p]
            skipped = sum(not f["filtered_priced_i"] for f in p)
            spared += skipped
            print(f"{clip.name} q{q:g}: {len(p)} P-decisions, {sum(f['intra_exact'] for f in p)} chose I; same "
                  f"packets: {same}; exact I price skipped for {skipped}; decision {np.mean([f['ms_exact'] for f in p]):.1f} "
                  f"-> {np.mean([f['ms_filtered'] for f in p]):.1f} ms", flush=True)
    summary = {"same_packets_everywhere": bool(all_same), "decisions": len(exact_ms), "exact_i_prices_spared": spared,
               "ms_exact_mean": float(np.mean(exact_ms)), "ms_filtered_mean": float(np.mean(filtered_ms)),
               "estimate_over_exact_min": float(min(ratios)), "estimate_over_exact_max": float(max(ratios))}
    print(f"all same packets: {all_same}; {len(exact_ms)} decisions ({spared} without the I-frame's exact price), "
          f"mean {summary['ms_exact_mean']:.1f} -> "
          f"{summary['ms_filtered_mean']:.1f} ms; I estimate / exact price {min(ratios):.4f} .. {max(ratios):.4f}")
    out = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "margin": codec.INTRA_ESTIMATE_MARGIN,
           "summary": summary, "runs": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0 if all_same else 1


if __name__ == "__main__":
    raise SystemExit(main())
