"""The latent positions one pass of a P-frame codes: a checkerboard half, or every position.

Each pass gathers several (C, h, w) tensors at its positions, in raster order, and scatters its results back. On
a checkerboard half of an even width those positions are two strided grids (even rows from one column parity,
odd rows from the other), and two strided copies gather or scatter a tensor 2-3x faster than boolean indexing,
which finds the positions again on every call (about 3 ms per 720p P-frame). Any other mask takes that general
way. Both give the same values in the same order.
"""

from __future__ import annotations

import torch


def anchor_mask(h: int, w: int, device=None) -> torch.Tensor:
    """The checkerboard's first half: positions (i, j) with i + j even (bool, (h, w))."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    return (i + j) % 2 == 0


class Positions:
    """A set of positions of an (h, w) grid (`mask`, bool), with gather (`take`) and scatter (`put`) in raster
    order. `parity`: the mask is the checkerboard half (i + j) % 2 == parity (strided copies where w is even)."""

    def __init__(self, mask: torch.Tensor, parity: int | None = None):
        self.mask = mask
        self.h, self.w = mask.shape
        self.count = int(mask.sum())
        self._flat = mask.reshape(-1)
        self._parity = parity if parity is not None and self.w % 2 == 0 else None
        self._all = self.count == mask.numel()

    @classmethod
    def checkerboard(cls, h: int, w: int, parity: int) -> "Positions":
        anchors = anchor_mask(h, w)
        return cls(anchors if parity == 0 else ~anchors, parity)

    @classmethod
    def every(cls, h: int, w: int) -> "Positions":
        return cls(torch.ones(h, w, dtype=torch.bool))

    @classmethod
    def of(cls, where: "Positions | torch.Tensor") -> "Positions":
        return where if isinstance(where, Positions) else cls(where)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """t (C, h, w) -> (C, count): its values at these positions, contiguous."""
        c = t.shape[0]
        if self._all:
            return t.reshape(c, -1)
        p = self._parity
        if p is None:
            return t.reshape(c, -1)[:, self._flat]
        out = t.new_empty((c, self.h, self.w // 2))
        out[:, 0::2] = t[:, 0::2, p::2]
        out[:, 1::2] = t[:, 1::2, 1 - p::2]
        return out.view(c, -1)

    def put(self, grid: torch.Tensor, values: torch.Tensor) -> None:
        """grid (C, h, w) at these positions = values (C, count), in raster order."""
        c = grid.shape[0]
        p = self._parity
        if self._all:
            grid.view(c, -1).copy_(values)
            return
        if p is None:
            grid.view(c, -1)[:, self._flat] = values
            return
        v = values.reshape(c, self.h, self.w // 2)
        grid[:, 0::2, p::2] = v[:, 0::2]
        grid[:, 1::2, 1 - p::2] = v[:, 1::2]
