"""Long-run fuzzing of the stream reader and decoder with the mutations of tests/fuzz/mutations.py.

    python benchmarks/fuzz_streams.py --cases 5000 --seed 1
    python benchmarks/fuzz_streams.py --cases 1000000 --seconds 180    # as many as fit in 3 minutes
    python benchmarks/fuzz_streams.py --stream all-flags               # only the stream with every header flag

Encodes two small real streams from the sample clip (tests/fuzz/streams.py): a constant-rate one without the optional
header fields, decoded to PNG frames, and one with every flag (its packets carry timestamps, its header display
metadata, an audio section follows), decoded to .mkv, which writes all three. Then it decodes that many hostile
variants (each one differs from its clean stream; with both streams, every other case is of each) and prints how each
kind of mutation ended, per stream, the number of cases and the number of crashes.
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

from fuzz.harness import Crash, decode_bytes  # noqa: E402
from fuzz.mutations import allowed_outcomes, mutate  # noqa: E402
from fuzz.streams import all_flags_stream, constant_rate_stream  # noqa: E402

# stream name -> (how to make it, the output its cases decode to: "" a folder of PNG frames)
STREAMS = {"constant-rate": (constant_rate_stream, ""), "all-flags": (all_flags_stream, ".mkv")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=None, help="Stop after this long, even before --cases.")
    parser.add_argument("--stream", choices=[*STREAMS, "both"], default="both",
                        help="Which clean stream to mutate (default: both, alternately).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vcodec-fuzz-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    names = list(STREAMS) if args.stream == "both" else [args.stream]
    clean = {name: STREAMS[name][0](work / name).read_bytes() for name in names}
    rng = random.Random(args.seed)
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    crashes = []
    start = time.perf_counter()
    cases = 0
    while cases < args.cases and (args.seconds is None or time.perf_counter() - start < args.seconds):
        name = names[cases % len(names)]
        data, kind = mutate(clean[name], rng)
        row = f"{name}: {kind}"
        try:
            table[row][decode_bytes(data, work / f"case-{name}", allowed_outcomes(kind), suffix=STREAMS[name][1])] += 1
        except Crash as e:
            crashes.append((cases, row, str(e)))
            table[row]["CRASH"] += 1
        cases += 1
    seconds = time.perf_counter() - start
    sizes = ", ".join(f"{name} {len(data)} bytes" for name, data in clean.items())
    print(f"{cases} cases in {seconds:.0f} s, streams: {sizes}, seed {args.seed}")
    print(f"{'mutation':<36} {'ok':>6} {'damaged':>8} {'refused':>8} {'CRASH':>6}")
    for kind in sorted(table):
        c = table[kind]
        print(f"{kind:<36} {c['ok']:>6} {c['damaged']:>8} {c['refused']:>8} {c['CRASH']:>6}")
    total = collections.Counter()
    for c in table.values():
        total.update(c)
    print(f"{'total':<36} {total['ok']:>6} {total['damaged']:>8} {total['refused']:>8} {total['CRASH']:>6}")
    print(f"cases: {cases}, crashes: {len(crashes)}")
    for case, kind, message in crashes[:20]:
        print(f"  case {case} ({kind}): {message}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
