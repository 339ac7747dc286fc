"""Display metadata through PyAV: a source's rotation, mirroring and sample aspect ratio read, and an output's set.

The pixels are never turned: like `ffmpeg -c copy`, vcodec passes the display matrix and the sample aspect ratio on,
and players apply them. FFmpeg hands a decoded frame the stream's display matrix (the MP4/MOV track matrix,
Matroska's projection, an H.264 orientation SEI) as side data: nine 32-bit numbers, 16.16 fixed point but for the last
column. A matrix that is a rotation, possibly after a left-right mirror, is what phones and editors write; vcodec
keeps those (in whole degrees) and says so when a source holds any other transform, which it leaves out.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from typing import Callable

from vcodec.container import MAX_ASPECT_TERM, Display

_ONE = 1 << 16  # 1.0 in the matrix's 16.16 fixed point
_MATCH = 16  # how far (in 1/65536) a matrix may be from the rotation it is read as: rounding, never another angle


def _matrix(frame) -> tuple[int, ...] | None:
    for data in frame.side_data:
        if data.type.name == "DISPLAYMATRIX":
            raw = bytes(data)
            return struct.unpack("<9i", raw[:36]) if len(raw) >= 36 else None
    return None


def orientation(matrix: tuple[int, ...]) -> tuple[int, bool] | None:
    """(degrees counter-clockwise 0..359, mirrored) of a display matrix in FFmpeg's layout (as
    av_display_rotation_set and av_display_matrix_flip make it), or None when it is no such rotation."""
    a, b, _, c, d, _, _, _, _ = matrix
    mirror = a * d - b * c < 0
    if mirror:  # a horizontal flip negates the first column
        a, c = -a, -c
    if a == b == c == d == 0:
        return None
    degrees = round(math.degrees(math.atan2(-b, a))) % 360
    cos, sin = math.cos(math.radians(degrees)) * _ONE, math.sin(math.radians(degrees)) * _ONE
    if max(abs(a - cos), abs(b + sin), abs(c - sin), abs(d - cos)) > _MATCH or matrix[2] or matrix[5]:
        return None
    return degrees, mirror


def display_of(stream, frame, notes: Callable[[str], None]) -> Display | None:
    """The display metadata of a video stream (its first decoded frame carries the matrix), or None when it is the
    default: no rotation, square or unknown samples."""
    rotation, mirror = 0, False
    matrix = _matrix(frame)
    if matrix is not None:
        found = orientation(matrix)
        if found is None:
            notes("the source's display matrix is not a rotation (it scales, shears or projects); it is not kept")
        else:
            rotation, mirror = found
    aspect = stream.sample_aspect_ratio
    if not aspect or aspect <= 0:
        aspect = Fraction(1)
    elif max(aspect.numerator, aspect.denominator) > MAX_ASPECT_TERM:
        notes(f"the source's sample aspect ratio {aspect.numerator}:{aspect.denominator} has terms over "
              f"{MAX_ASPECT_TERM}; it is not kept")
        aspect = Fraction(1)
    display = Display(rotation, mirror, Fraction(aspect))
    return None if display.is_default else display


def describe(display: Display) -> str:
    """"rotation 90° counter-clockwise, mirrored, sample aspect ratio 4:3", naming only what is not the default."""
    parts = []
    if display.rotation:
        parts.append(f"rotation {display.rotation}° counter-clockwise")
    if display.mirror:
        parts.append("mirrored")
    if display.aspect != 1:
        parts.append(f"sample aspect ratio {display.aspect.numerator}:{display.aspect.denominator}")
    return ", ".join(parts)
