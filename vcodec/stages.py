"""Seconds spent in each stage of encoding and decoding: the split `-v` prints and benchmarks/speed.py records.

Encoding: read (demuxing, decoding the source, colour conversion to the device's float picture), g_a, h_a (the
hyper-analysis: z), frame type (the adaptive I/P decision), latent search (slow presets), entropy model (the
integer-exact h_s / STEM), rANS, container. Decoding: container, rANS, entropy model, g_s (and the conversion to
8-bit pixels), write (colour conversion and the output file's own encoder).

On a GPU each stage ends with a synchronisation, so that its time is its own and not the next one's.
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

# The bench's split: rANS is "entropy"; the rest of the codec's own work is "network" (the integer entropy model
# is a network too); reading, writing and the container are neither.
ENTROPY_STAGES = ("rANS",)
NETWORK_STAGES = ("g_a", "h_a", "frame type", "latent search", "entropy model", "g_s", "rate control")


class Timings:
    def __init__(self, sync: Callable[[], None] | None = None):
        self.stages: dict[str, float] = {}
        self.frames = 0
        self._sync = sync
        self._nested: list[float] = []  # per open stage, the seconds of the stages inside it so far

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; a stage inside another (the latent search pricing its points with the entropy model)
        counts in its own row only, so the rows add up to the time spent."""
        t0 = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            if self._sync is not None:
                self._sync()
            elapsed = time.perf_counter() - t0
            self.add(name, elapsed - self._nested.pop())
            if self._nested:
                self._nested[-1] += elapsed

    def timed(self, items: Iterable, stage: str) -> Iterator:
        """Items of an iterator, the time to produce each one counted in `stage`."""
        it = iter(items)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.add(stage, time.perf_counter() - t0)
                return
            self.add(stage, time.perf_counter() - t0)
            yield item

    @property
    def network(self) -> float:
        return sum(self.stages.get(s, 0.0) for s in NETWORK_STAGES)

    @property
    def entropy(self) -> float:
        return sum(self.stages.get(s, 0.0) for s in ENTROPY_STAGES)

    def as_dict(self) -> dict:
        return {"network": self.network, "entropy": self.entropy, "frames": self.frames, "stages": dict(self.stages)}


def describe(stages: dict[str, float], frames: int) -> str:
    """One line: each stage's milliseconds per frame, in the order they ran."""
    n = max(1, frames)
    return ", ".join(f"{name} {seconds * 1000 / n:.1f}" for name, seconds in stages.items()) + " (ms per frame)"


def peak_memory_mb() -> int:
    """The process's peak resident memory, and a GPU's peak allocation when torch has used one."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    mb = peak / 2**20 if sys.platform == "darwin" else peak / 2**10
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        mb += torch.cuda.max_memory_allocated() / 2**20
    return round(mb)
