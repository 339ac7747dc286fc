"""What the `vcodec` process spends outside coding (vcodec/process.py): Python's shutdown with torch loaded, and
the cycle collector's time during a command, with and without torch imported under a paused and frozen collector.

    python benchmarks/process_overhead.py [STREAM.hfc] [--repeats 5]

1. Shutdown: `python -c "import torch; <print the time>"` ending as Python ends a program, and ending with
   os._exit as cli.program does; the seconds from the printed time to the process's end, best of --repeats.
2. Collector: `vcodec decode STREAM out.mp4` run in a process that records every collection with gc.callbacks,
   once as cli.main() runs it (torch imported by the command, collector as Python leaves it) and once with
   process.import_torch_for first; total milliseconds of collection, best of --repeats. The stream defaults to
   the sample clip's first 16 frames, encoded here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

SHUTDOWN = "import time, sys, os; import torch; print(time.time(), flush=True)\nif {quick}: os._exit(0)"
COLLECTOR = """
import gc, sys, time
spent = [0.0]
def watch(phase, info):
    if phase == "start":
        watch.t = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - watch.t
gc.callbacks.append(watch)
from vcodec.process import import_torch_for
if {preload}:
    import_torch_for({argv!r})
from vcodec.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("GC_MS", spent[0] * 1e3, flush=True)
"""


def shutdown_seconds(quick: bool) -> float:
    proc = subprocess.run([sys.executable, "-c", SHUTDOWN.format(quick=quick)], capture_output=True, text=True,
                          env=ENV, check=True)
    end = time.time()
    return end - float(proc.stdout.split()[0])


def collector_ms(argv: list[str], preload: bool) -> float:
    proc = subprocess.run([sys.executable, "-c", COLLECTOR.format(preload=preload, argv=argv)], capture_output=True,
                          text=True, env=ENV, cwd=REPO, check=True)
    return float(proc.stdout.split("GC_MS")[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stream", nargs="?", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    for quick in (False, True):
        best = min(shutdown_seconds(quick) for _ in range(args.repeats))
        print(f"shutdown after import torch, {'os._exit' if quick else 'as Python ends'}: {best:.3f} s")
    with tempfile.TemporaryDirectory() as work:
        stream = args.stream
        if stream is None:
            stream = Path(work) / "sample.hfc"
            subprocess.run([sys.executable, "-m", "vcodec", "encode", str(REPO / "tests" / "data" / "bikes-48.mp4"),
                            str(stream), "--frames", "16", "-q", "4", "-y"], env=ENV, cwd=REPO, check=True,
                           capture_output=True)
        command = ["decode", str(stream), str(Path(work) / "out.mp4"), "-y"]
        for preload in (False, True):
            best = min(collector_ms(command, preload) for _ in range(args.repeats))
            print(f"cycle collector during `vcodec decode`, torch {'preloaded, frozen' if preload else 'as imported'}: "
                  f"{best:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
