"""Long-run fuzzing of the stream reader and decoder with the mutations of tests/fuzz/mutations.py.

    python benchmarks/fuzz_streams.py --cases 5000 --seed 1

Encodes a small real stream from the sample clip, then decodes that many hostile variants of it and prints how each
kind of mutation ended. Exits non-zero if any case crashed (a traceback-worthy exception, a hang past 20 s, files
left behind, or a wrong number of frames written).
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import sample_frames, write_pngs  # noqa: E402
from fuzz.harness import Crash, decode_bytes  # noqa: E402
from fuzz.mutations import mutate  # noqa: E402

from vcodec import api  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vcodec-fuzz-"))
    frames = write_pngs(work / "frames", sample_frames(2, 64, 48, start=10))
    stream = work / "clean.hfc"
    api.encode(frames, stream, quality=1, fps=25)
    clean = stream.read_bytes()
    rng = random.Random(args.seed)
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    crashes = []
    start = time.perf_counter()
    for case in range(args.cases):
        data, kind = mutate(clean, rng)
        try:
            table[kind][decode_bytes(data, work / "case")] += 1
        except Crash as e:
            crashes.append((case, kind, str(e)))
            table[kind]["CRASH"] += 1
    seconds = time.perf_counter() - start
    print(f"{args.cases} cases in {seconds:.0f} s, stream of {len(clean)} bytes, seed {args.seed}")
    print(f"{'mutation':<20} {'ok':>6} {'damaged':>8} {'refused':>8} {'CRASH':>6}")
    for kind in sorted(table):
        c = table[kind]
        print(f"{kind:<20} {c['ok']:>6} {c['damaged']:>8} {c['refused']:>8} {c['CRASH']:>6}")
    print(f"crashes: {len(crashes)}")
    for case, kind, message in crashes[:20]:
        print(f"  case {case} ({kind}): {message}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
