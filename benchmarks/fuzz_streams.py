"""Long-run fuzzing of the stream reader and decoder with the mutations of tests/fuzz/mutations.py.

    python benchmarks/fuzz_streams.py --cases 5000 --seed 1
    python benchmarks/fuzz_streams.py --cases 1000000 --seconds 180    # as many as fit in 3 minutes

Encodes a small real stream from the sample clip, then decodes that many hostile variants of it (each one differs
from the clean stream) and prints how each kind of mutation ended, the number of cases and the number of crashes.
Exits non-zero if any case crashed: a traceback-worthy exception, a hang past 20 s, files left behind, a wrong number
of frames written, or an outcome the mutation rules out (a re-signed index that still decodes "ok", say). Its
temporary folder is removed at the end.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import sample_frames, write_pngs  # noqa: E402
from fuzz.harness import Crash, decode_bytes  # noqa: E402
from fuzz.mutations import allowed_outcomes, mutate  # noqa: E402

from vcodec import api  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=None, help="Stop after this long, even before --cases.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vcodec-fuzz-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    frames = write_pngs(work / "frames", sample_frames(2, 64, 48, start=10))
    stream = work / "clean.hfc"
    api.encode(frames, stream, quality=1, fps=25)
    clean = stream.read_bytes()
    rng = random.Random(args.seed)
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    crashes = []
    start = time.perf_counter()
    cases = 0
    while cases < args.cases and (args.seconds is None or time.perf_counter() - start < args.seconds):
        data, kind = mutate(clean, rng)
        try:
            table[kind][decode_bytes(data, work / "case", allowed_outcomes(kind))] += 1
        except Crash as e:
            crashes.append((cases, kind, str(e)))
            table[kind]["CRASH"] += 1
        cases += 1
    seconds = time.perf_counter() - start
    print(f"{cases} cases in {seconds:.0f} s, stream of {len(clean)} bytes, seed {args.seed}")
    print(f"{'mutation':<20} {'ok':>6} {'damaged':>8} {'refused':>8} {'CRASH':>6}")
    for kind in sorted(table):
        c = table[kind]
        print(f"{kind:<20} {c['ok']:>6} {c['damaged']:>8} {c['refused']:>8} {c['CRASH']:>6}")
    total = collections.Counter()
    for c in table.values():
        total.update(c)
    print(f"{'total':<20} {total['ok']:>6} {total['damaged']:>8} {total['refused']:>8} {total['CRASH']:>6}")
    print(f"cases: {cases}, crashes: {len(crashes)}")
    for case, kind, message in crashes[:20]:
        print(f"  case {case} ({kind}): {message}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
