"""When a source's frames are shown, and whether a stream of them has to carry per-frame timestamps.

A stream without timestamps shows frame i at i / frame rate. That is exact for a constant-rate source: one whose frame
i has its pts (in the source's time base, counted from its frame 0) within half a tick of i / rate, the slack that
rounding each time to a tick leaves. Any other source (a variable frame rate: phone and screen recordings, dropped or
repeated frames) gets its frames' own pts, counted from the first frame coded (docs/FORMAT.md). A stream of evenly
spaced frames must be written exactly as before timestamps existed, and whether the frames are is known only once the
last one is seen: so the first frame out of place makes the encoder carry timestamps from frame 0 on
(container.StreamWriter.carry_timestamps), and a constant-rate source never pays for them.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Callable

from vcodec.container import MAX_SECONDS, MAX_TIMESTAMP, time_in_range
from vcodec.errors import InputError

HALF_TICK = Fraction(1, 2)


class SourceClock:
    """The clock of an encode of frames start .. start + count - 1 of a source. `see()` is told every frame decoded,
    skipped ones too, in order; it keeps the coded frames' pts until `take()` hands them over, one per coded frame.

    With `time_base` None (the source has no timestamps, or --fps retimed it) every frame is where the rate says.
    The clock's 0 (`origin`, seconds on the source's clock) is the moment the first coded frame is shown: start / rate
    after the source's first frame while the frames up to it are evenly spaced (as encoders always counted it), else
    that frame's own pts. `end` (seconds on the new clock) is where a span of `count` frames ends: count / rate for
    evenly spaced frames, else the time of the first frame left out (None: the source ended first); `end_known`
    says when it is final."""

    def __init__(self, rate: Fraction, time_base: Fraction | None, first_time: Fraction, start: int,
                 count: int | None, notes: Callable[[str], None]):
        self.rate = Fraction(rate)
        self.first_time = first_time  # seconds: when the source's frame 0 is shown
        self.start, self.count = start, count
        self.notes = notes
        self.seen = 0
        self.first: int | None = None  # pts of the source's frame 0
        self.last: int | None = None  # pts of the frame seen last (after repair)
        self.repaired = False
        self.prefix_even = True  # frames 0 .. start are where the rate puts them
        self.even = True  # and so are the coded frames seen so far
        self.origin: Fraction | None = None
        self.zero: int | None = None  # pts of the first coded frame: a timed stream counts from it
        self.skipped_to: Fraction | None = None  # seconds on the source's clock: the last frame before the span
        self.horizon: Fraction | None = None  # seconds on the new clock: the last coded frame seen
        self.end: Fraction | None = None
        self.end_known = count is None
        self._origin_ticks = Fraction(0)
        self._pending: deque[int] = deque()
        self.time_base = self.step = None
        if time_base:
            self.time_base = Fraction(time_base)
            self.step = 1 / (self.rate * self.time_base)  # ticks from one frame to the next
        else:
            self._untimed()

    def _untimed(self) -> None:
        self.time_base = self.step = None
        self.origin = self.first_time + Fraction(self.start) / self.rate
        if self.count is not None:
            self.end, self.end_known = Fraction(self.count) / self.rate, True

    @property
    def timed(self) -> bool:
        """Whether the coded frames need their own timestamps: they are not all where the rate puts them."""
        return not self.even

    def see(self, pts: int | None) -> None:
        i = self.seen
        self.seen += 1
        if self.time_base is not None and i == 0 and pts is None:
            self._untimed()  # no timestamps after all: the frames are shown at i / rate
        if self.time_base is None:
            return
        if i == 0:
            self.first = pts
        elif pts is None or pts <= self.last:
            if not self.repaired:
                self.notes(f"frame {i} has {'no timestamp' if pts is None else 'a timestamp that does not increase'}; "
                           "it is shown a frame after the one before it (and so is any later frame like it)")
                self.repaired = True
            pts = self.last + max(1, round(self.step))
        self.last = pts
        ticks = pts - self.first
        if ticks > MAX_TIMESTAMP or not time_in_range(ticks, self.time_base):
            raise InputError(f"frame {i} is shown {float(ticks * self.time_base):.0f} s after the first: later than a "
                             f"stream's timestamps reach ({MAX_SECONDS} s)")
        if i <= self.start:
            self.prefix_even = self.prefix_even and abs(ticks - i * self.step) <= HALF_TICK
        if i < self.start:
            self.skipped_to = self.first_time + ticks * self.time_base
            return
        if i == self.start:
            self._origin_ticks = self.start * self.step if self.prefix_even else Fraction(ticks)
            self.origin = self.first_time + self._origin_ticks * self.time_base
            self.zero = ticks
        if self.count is not None and i == self.start + self.count:  # the first frame left out: the span ends
            self.end = Fraction(self.count) / self.rate if self.even else (ticks - self.zero) * self.time_base
            self.end_known = True
            return
        if abs(ticks - self._origin_ticks - (i - self.start) * self.step) > HALF_TICK:
            self.even = False
        self.horizon = (ticks - self.zero) * self.time_base
        self._pending.append(ticks - self.zero)

    def take(self) -> int | None:
        """The pts of the next coded frame (in `time_base`, 0 for the first), or None without timestamps."""
        if self.time_base is None:
            return None
        return self._pending.popleft()

    def coming_seconds(self, count: int, last: bool) -> Fraction:
        """How long the next `count` coded frames not yet taken are shown: from the first to the frame after them
        (already seen: a reader looks one frame ahead), or with `last` (none follows) to an average frame after the
        last of them, as a stream's duration counts its last frame."""
        p = self._pending
        if not last and len(p) > count:
            return (p[count] - p[0]) * self.time_base
        return (p[count - 1] - p[0]) * self.time_base + 1 / self.rate

    def finish(self) -> None:
        """After the last frame the source gave: the span's end is final (a span the source ended within keeps the
        audio to the end when its frames are not evenly spaced: no frame says where it would have ended)."""
        if not self.end_known:
            self.end = Fraction(self.count) / self.rate if self.even else None
            self.end_known = True

    def before_end(self, seconds: Fraction) -> bool | None:
        """Whether `seconds` (on the new clock) is before the span's end: True, False, or None while that is not
        known yet (a later frame decides)."""
        if self.end_known:
            return self.end is None or seconds < self.end
        if self.horizon is not None and seconds < self.horizon:
            return True  # before a coded frame is shown
        return None
