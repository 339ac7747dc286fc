"""Synthetic camera motion over still photos: an unlimited source of known, varied motion for the P-frame prior.

Each sequence is a window moving over one photo: a pan of 0-16 px per frame in any direction (a sub-pixel step
as often as not), with, on some sequences, a slow zoom, a small rotation, a brightness drift and fresh sensor
noise on every frame (noise is what no prior can predict, so it should see some). Frames are resampled bicubically
from the photo and rounded to 8 bits, as a camera's frames are. The clips have little motion of most kinds; this
gives the temporal prior far more than they hold (the issue's "pans, zooms, small rotations, sub-pixel steps,
brightness changes").
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _chance(g: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=g)) < p


def camera_path(g: torch.Generator, frames: int, size: int, photo_hw: tuple[int, int]):
    """Per-frame (centre x, centre y, scale, angle, brightness) of a window of `size` px that stays in the photo,
    or None when the photo is too small for any motion."""
    ph, pw = photo_hw
    for attempt in range(6):
        damp = 0.5**attempt  # a path that leaves the photo is tried again, slower
        speed = _uniform(g, 0.0, 1.0) if _chance(g, 0.25) else _uniform(g, 0.5, 16.0)
        speed *= damp
        heading = _uniform(g, 0.0, 2 * math.pi)
        vx, vy = speed * math.cos(heading), speed * math.sin(heading)
        zoom = math.exp(_uniform(g, -0.03, 0.03) * damp) if _chance(g, 0.35) else 1.0
        spin = math.radians(_uniform(g, -1.0, 1.0) * damp) if _chance(g, 0.25) else 0.0
        light = math.exp(_uniform(g, -0.02, 0.02)) if _chance(g, 0.3) else 1.0
        steps = []
        for t in range(frames):
            steps.append((vx * t, vy * t, zoom**t, spin * t, light**t))
        # The window's half-diagonal at its largest scale bounds how far its corners reach from the centre.
        reach = max(s for _, _, s, _, _ in steps) * size / 2 * (math.sqrt(2) if spin else 1.0)
        xs = [dx for dx, *_ in steps]
        ys = [dy for _, dy, *_ in steps]
        lo_x, hi_x = reach - min(xs), pw - reach - max(xs)
        lo_y, hi_y = reach - min(ys), ph - reach - max(ys)
        if lo_x <= hi_x and lo_y <= hi_y:
            cx, cy = _uniform(g, lo_x, hi_x), _uniform(g, lo_y, hi_y)
            return [(cx + dx, cy + dy, s, a, b) for dx, dy, s, a, b in steps]
    return None


def render(photo: torch.Tensor, path, size: int, noise: float, g: torch.Generator) -> torch.Tensor:
    """uint8 (3, H, W) photo and a camera path -> uint8 (frames, 3, size, size)."""
    src = photo.float()[None] / 255.0
    ph, pw = photo.shape[1:]
    u = (torch.arange(size, dtype=torch.float32) + 0.5) - size / 2  # window coordinates, centred
    gy, gx = torch.meshgrid(u, u, indexing="ij")
    frames = []
    for cx, cy, scale, angle, light in path:
        ca, sa = math.cos(angle), math.sin(angle)
        x = cx + scale * (ca * gx - sa * gy)
        y = cy + scale * (sa * gx + ca * gy)
        grid = torch.stack([x / pw * 2 - 1, y / ph * 2 - 1], -1)[None]  # align_corners=False convention
        frame = F.grid_sample(src, grid, mode="bicubic", padding_mode="border", align_corners=False)[0] * light
        if noise:
            frame = frame + torch.randn(frame.shape, generator=g) * noise
        frames.append(torch.round(frame.clamp(0, 1) * 255).to(torch.uint8))
    return torch.stack(frames)


def motion_sequences(photo: torch.Tensor, count: int, frames: int, size: int, g: torch.Generator):
    """Up to `count` synthetic sequences over one photo (fewer when it is too small)."""
    if min(photo.shape[1:]) < size + 8:
        return []
    out = []
    for _ in range(count):
        path = camera_path(g, frames, size, tuple(photo.shape[1:]))
        if path is None:
            continue
        noise = _uniform(g, 0.0, 2.5) / 255.0 if _chance(g, 0.5) else 0.0
        out.append(render(photo, path, size, noise, g))
    return out
