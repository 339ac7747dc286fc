"""Decode untrusted bytes the way `vcodec decode` does and classify what happened.

Allowed outcomes: a full decode, a DamagedStream (with the intact frames before the damage written as a complete
output, or nothing when no frame is intact), or a clean refusal (wrong weights). Anything else is a crash.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from vcodec import api
from vcodec import container as C
from vcodec.errors import DamagedStream, ModelError

# CPU seconds of this process (all its threads) one hostile stream may cost: the work it makes the decoder do, not
# the wall clock, which a busy machine stretches (a 2-core runner with other jobs measured 20.5 s for a normal case).
MAX_CPU_SECONDS = 40.0


class Crash(AssertionError):
    pass


def decode_bytes(data: bytes, workdir: Path, allowed: set[str] | None = None, suffix: str = "") -> str:
    """Returns 'ok', 'damaged' or 'refused'; raises Crash for anything else, or for an outcome not in `allowed`.

    'ok' means every frame the header counts was decoded and written; 'damaged', that exactly the intact frames
    before the damage were written (nothing when there were none). The output is a folder of PNG frames, or with
    `suffix` (".mkv") a video file, which takes a stream's audio too: damaged audio must cost no frame."""
    workdir.mkdir(parents=True, exist_ok=True)
    stream = workdir / "in.hfc"
    out = workdir / f"out{suffix}"
    stream.write_bytes(data)
    if suffix:
        out.unlink(missing_ok=True)
    else:
        shutil.rmtree(out, ignore_errors=True)
    start = time.process_time()
    try:
        result = api.decode(stream, out, device="cpu", overwrite=True)
        outcome = "ok"
        written = result.frames
    except DamagedStream as e:
        outcome = "damaged"
        written = e.frame or 0
    except ModelError:
        outcome = "refused"
        written = 0
    except Exception as e:  # noqa: BLE001 - this is the point: anything else is a crash
        raise Crash(f"{type(e).__name__}: {e}") from e
    elapsed = time.process_time() - start
    if elapsed > MAX_CPU_SECONDS:
        raise Crash(f"decode took {elapsed:.1f} CPU seconds")
    leftovers = [n for n in os.listdir(workdir) if n not in ("in.hfc", out.name)]
    if leftovers:
        raise Crash(f"temp files left behind: {leftovers}")
    frames = _frames_in(out) if out.exists() else 0
    if outcome == "ok":
        with C.StreamReader(stream) as reader:
            counted = reader.header.frame_count
        if not frames == written == counted:
            raise Crash(f"ok: {frames} frames written, {written} decoded, but the header counts {counted}")
    if frames != written:
        raise Crash(f"{outcome}: {frames} frames written, {written} intact")
    if allowed is not None and outcome not in allowed:
        raise Crash(f"outcome '{outcome}', expected one of {sorted(allowed)}")
    return outcome


def _frames_in(out: Path) -> int:
    if out.is_dir():
        return len(os.listdir(out))
    import av

    with av.open(str(out)) as c:
        return sum(1 for _ in c.decode(video=0))
