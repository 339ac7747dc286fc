"""Coverage-guided fuzzing of the decoder with atheris (pip install atheris), for long runs outside CI.

    python tests/fuzz/atheris_decode.py -atheris_runs=100000            # raw bytes, seeded with a real stream
    python tests/fuzz/atheris_decode.py --structured -max_total_time=600  # atheris drives the re-signing mutator

Raw bytes mostly meet the CRCs; --structured feeds atheris' input to tests/fuzz/mutations.py as the choice of
mutation, so the fuzzer explores the checks behind the CRCs. A crash (see fuzz/harness.py) aborts with its input.
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

from conftest import sample_frames, write_pngs  # noqa: E402
from vcodec import api  # noqa: E402

STRUCTURED = "--structured" in sys.argv
WORK = Path(tempfile.mkdtemp(prefix="vcodec-atheris-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)


def clean_stream() -> bytes:
    frames = write_pngs(WORK / "frames", sample_frames(2, 64, 48, start=10))
    api.encode(frames, WORK / "clean.hfc", quality=1, fps=25)
    return (WORK / "clean.hfc").read_bytes()


CLEAN = clean_stream()


def one_input(data: bytes) -> None:
    allowed = None
    if STRUCTURED:
        provider = atheris.FuzzedDataProvider(data)
        data, kind = mutate(CLEAN, random.Random(provider.ConsumeInt(8)))
        allowed = allowed_outcomes(kind)
    decode_bytes(data, WORK / "case", allowed)


def main() -> None:
    argv = [a for a in sys.argv if a != "--structured"]
    corpus = WORK / "corpus"
    corpus.mkdir()
    (corpus / "clean.hfc").write_bytes(CLEAN)
    if not any(not a.startswith("-") for a in argv[1:]):
        argv.append(str(corpus))
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
