"""Coverage-guided fuzzing of the decoder with atheris (pip install atheris), for long runs outside CI.

    python tests/fuzz/atheris_decode.py -atheris_runs=100000            # raw bytes, seeded with a real stream
    python tests/fuzz/atheris_decode.py --structured -max_total_time=600  # atheris drives the re-signing mutator
    python tests/fuzz/atheris_decode.py --structured --all-flags          # a stream with timestamps, display, audio

Raw bytes mostly meet the CRCs; --structured feeds atheris' input to tests/fuzz/mutations.py as the choice of
mutation, so the fuzzer explores the checks behind the CRCs. --all-flags seeds it with a stream that sets every header
flag (timestamps, display metadata, an audio section; fuzz/streams.py) and decodes to .mkv, which writes all
three, instead of a constant-rate stream without them decoded to PNG frames. A crash (see fuzz/harness.py) aborts
with its input.
"""

from __future__ import annotations

import atexit
import random
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

with atheris.instrument_imports():
    from vcodec import container, entropy  # noqa: F401  (instrumented for coverage)
    from fuzz.harness import decode_bytes
    from fuzz.mutations import allowed_outcomes, mutate

from fuzz.streams import all_flags_stream, constant_rate_stream  # noqa: E402

STRUCTURED = "--structured" in sys.argv
ALL_FLAGS = "--all-flags" in sys.argv
SUFFIX = ".mkv" if ALL_FLAGS else ""  # .mkv holds the times, the rotation and the audio; "" is a folder of PNGs
WORK = Path(tempfile.mkdtemp(prefix="vcodec-atheris-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)

CLEAN = (all_flags_stream(WORK) if ALL_FLAGS else constant_rate_stream(WORK)).read_bytes()


def one_input(data: bytes) -> None:
    allowed = None
    if STRUCTURED:
        provider = atheris.FuzzedDataProvider(data)
        data, kind = mutate(CLEAN, random.Random(provider.ConsumeInt(8)))
        allowed = allowed_outcomes(kind)
    decode_bytes(data, WORK / "case", allowed, suffix=SUFFIX)


def main() -> None:
    argv = [a for a in sys.argv if a not in ("--structured", "--all-flags")]
    corpus = WORK / "corpus"
    corpus.mkdir()
    (corpus / "clean.hfc").write_bytes(CLEAN)
    if not any(not a.startswith("-") for a in argv[1:]):
        argv.append(str(corpus))
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
