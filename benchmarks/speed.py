"""End-to-end speed: `vcodec encode` and `vcodec decode`, file to file, process start included, at 720p and 1080p.

    python benchmarks/speed.py                          # the repo's sample clip, scaled up; the CPU, and CUDA if any
    python benchmarks/speed.py CLIP --frames 16 --sizes 720p,1080p --devices cpu,cuda --repeats 3
    python benchmarks/speed.py CLIP --sizes 720p --repeats 6 --against 5d1cf65   # this tree against a commit

The source is a real clip scaled to cover each size and centre-cropped, written as H.264 (CRF 12) like a camera's
file, looped if it is short. Each command runs as a user runs it (`python -m vcodec ... -v`), so its time includes
starting Python, importing torch and loading the models; frames/s is frames over that whole wall time, the best of
`--repeats` runs (the mean is recorded too). The stage split (ms per frame) and peak memory come from the
command's own `-v` line. Results go to benchmarks/results/speed.json with the device, date and torch version; a
device that is not here is recorded as "not measured".

`--against REV` measures a git worktree of REV beside this tree, their runs taking turns (REV's encode and decode,
then this tree's, repeat after repeat), so that a shared machine's drift slows both alike; each tree decodes its
own stream.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def make_source(clip: Path, width: int, height: int, frames: int, out: Path) -> None:
    """`frames` frames of `clip`, scaled to cover width x height and centre-cropped, as H.264 CRF 12 in .mp4."""
    with av.open(str(clip)) as src:
        pictures = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), src.decode(video=0))]
    h0, w0 = pictures[0].shape[:2]
    scale = max(width / w0, height / h0)
    sw, sh = max(width, round(w0 * scale)), max(height, round(h0 * scale))
    top, left = (sh - height) // 2, (sw - width) // 2
    with av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=25, options={"crf": "12", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pictures[i % len(pictures)], format="rgb24").reformat(sw, sh)
            rgb = frame.to_ndarray(format="rgb24")[top : top + height, left : left + width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)


def run(args: list[str], tree: Path = REPO) -> tuple[float, str]:
    """(wall seconds, everything it printed) of one command, run from the source tree `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vcodec", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True, cwd=tree)  # `-m` looks in the working directory first
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"vcodec {' '.join(args)} failed:\n{err}")
    return seconds, out + err


STAGES = re.compile(r"stages: (.*) \(ms per frame\); peak memory (\d+) MB")


def parse_stages(text: str) -> tuple[dict[str, float], float | None]:
    m = STAGES.search(text)
    if m is None:
        raise RuntimeError(f"no stage line in:\n{text}")
    stages = {}
    for part in m.group(1).split(", "):
        name, ms = part.rsplit(" ", 1)
        stages[name] = float(ms)
    return stages, float(m.group(2))


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    return f"{model}, {os.cpu_count()} cores"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", nargs="?", type=Path, default=REPO / "tests" / "data" / "bikes-48.mp4")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--sizes", default="720p,1080p")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--quality", default="4")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "speed.json")
    ap.add_argument("--against", metavar="REV", help="also measure this git revision, runs taking turns")
    args = ap.parse_args(argv)
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        trees = [("this tree", REPO)]
        if args.against:
            other = work / "against"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(other), args.against],
                           check=True)
            trees.insert(0, (args.against, other))
        try:
            measure(args, work, trees, rows, torch.cuda.is_available())
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(work / "against")],
                               check=False)
    result = {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
              "clip": args.clip.name, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def commit_of(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "unknown") + (" with uncommitted changes" if dirty else "")


def measure(args, work: Path, trees: list[tuple[str, Path]], rows: list, cuda: bool) -> None:
    """Each size and device: every tree's encode and decode, --repeats times, the trees taking turns."""
    for size in args.sizes.split(","):
        width, height = SIZES[size]
        source = work / f"{size}.mp4"
        make_source(args.clip, width, height, args.frames, source)
        for device in args.devices.split(","):
            if device == "cuda" and not cuda:
                rows.append({"size": size, "device": "cuda", "measured": False, "note": "not measured: no GPU here"})
                print(f"{size} cuda: not measured (no GPU here)")
                continue
            common = ["--device", device, "--precision", args.precision, "-v", "-y"]
            best: dict = {label: {} for label, _ in trees}
            times: dict = {label: {"encode": [], "decode": []} for label, _ in trees}
            for _ in range(args.repeats):
                for k, (label, tree) in enumerate(trees):
                    stream, back = work / f"{size}-{device}-{k}.hfc", work / f"{size}-{device}-{k}.mp4"
                    for name, cmd in (("encode", ["encode", str(source), str(stream), "-q", args.quality, *common]),
                                      ("decode", ["decode", str(stream), str(back), *common])):
                        seconds, text = run(cmd, tree)
                        times[label][name].append(seconds)
                        if name not in best[label] or seconds < best[label][name][0]:
                            best[label][name] = (seconds, *parse_stages(text))
            for k, (label, tree) in enumerate(trees):
                row = {"size": size, "device": device, "device_name": device_name(device), "measured": True,
                       "tree": label, "commit": commit_of(tree), "frames": args.frames,
                       "quality": float(args.quality), "precision": args.precision,
                       "bytes": (work / f"{size}-{device}-{k}.hfc").stat().st_size}
                for name, (seconds, stages, peak) in best[label].items():
                    mean = sum(times[label][name]) / len(times[label][name])
                    row[name] = {"seconds": seconds, "fps": args.frames / seconds, "mean_seconds": mean,
                                 "all_seconds": times[label][name], "stages_ms_per_frame": stages,
                                 "peak_memory_mb": peak}
                    split = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
                    who = f" [{label}, {row['commit']}]" if len(trees) > 1 else ""
                    print(f"{size} {device} {name}{who}: {args.frames / seconds:.2f} frames/s ({seconds:.2f} s "
                          f"for {args.frames} frames, process start included; mean {mean:.2f} s), peak {peak:.0f} "
                          f"MB; ms/frame: {split}", flush=True)
                rows.append(row)


if __name__ == "__main__":
    raise SystemExit(main())
