"""Memory of the decoder over many hostile streams, measured in a fresh process (tests/test_fuzz.py runs it).

    python tests/fuzz/memory_probe.py STREAM CASES [--seed N]

Decodes STREAM and a warm-up of mutated variants, then CASES more, and prints one JSON line: the resident memory
(current and peak, MB) after the warm-up and after the cases. In a process of its own no earlier work sets the peak,
so growth shows. It then holds a known 32 MB and measures again, to show the meter can see that much.
"""

from __future__ import annotations

import argparse
import json
import mmap
import random
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from fuzz.harness import decode_bytes  # noqa: E402
from fuzz.mutations import mutate  # noqa: E402

WARM_UP = 30


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20, peak
    except (OSError, ValueError):
        return peak, peak  # no /proc: the peak is the best there is


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", type=Path)
    parser.add_argument("cases", type=int)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    clean = args.stream.read_bytes()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="vcodec-fuzzmem-"))
    try:
        decode_bytes(clean, work / "case")
        for _ in range(WARM_UP):  # every error path once, so first-use allocations count as baseline
            decode_bytes(mutate(clean, rng)[0], work / "case")
        before = rss_mb()
        for _ in range(args.cases):
            decode_bytes(mutate(clean, rng)[0], work / "case")
        after = rss_mb()
        # Fresh pages from the system, each touched: malloc may serve a bytearray from memory the decoder freed
        # (vcodec keeps large blocks in the heap, vcodec/allocator.py), which the meter rightly does not count again.
        held = mmap.mmap(-1, 32 * 2**20)
        held.write(b"\1" * len(held))
        control = rss_mb()
        held.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"before": before, "after": after, "control": control, "cases": args.cases}))


if __name__ == "__main__":
    main()
