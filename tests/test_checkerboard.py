"""A pass's positions (networks/checkerboard.py): the strided gather and scatter of a checkerboard half give what
boolean indexing gives, in the same raster order, and STEM's parameters are the same either way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcodec.networks.checkerboard import Positions, anchor_mask

SHAPES = [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (5, 7), (9, 14), (4, 6), (45, 80), (45, 79)]


@pytest.mark.parametrize("h, w", SHAPES)
@pytest.mark.parametrize("dtype", [torch.int32, torch.float64, torch.float32, torch.uint8, torch.int64])
def test_take_and_put_match_boolean_indexing(h, w, dtype):
    g = torch.Generator().manual_seed(h * 100 + w)
    grid = torch.randint(0, 250, (3, h, w), generator=g).to(dtype)
    anchors = anchor_mask(h, w)
    for where, mask in ((Positions.checkerboard(h, w, 0), anchors), (Positions.checkerboard(h, w, 1), ~anchors),
                        (Positions.every(h, w), torch.ones(h, w, dtype=torch.bool))):
        assert torch.equal(where.mask, mask) and where.count == int(mask.sum())
        want = grid.reshape(3, -1)[:, mask.reshape(-1)]
        got = where.take(grid)
        assert got.shape == want.shape and got.dtype == dtype and got.is_contiguous() and torch.equal(got, want)
        values = torch.randint(0, 250, want.shape, generator=g).to(dtype)
        a, b = grid.clone(), grid.clone()
        a.view(3, -1)[:, mask.reshape(-1)] = values
        where.put(b, values)
        assert torch.equal(a, b)
    assert Positions.checkerboard(h, w, 0)._parity == (0 if w % 2 == 0 else None)  # odd widths: boolean indexing


def test_stem_parameters_are_the_same_from_positions_and_masks():
    from vcodec import weights
    from vcodec.networks.integer import to_fixed

    stem = weights.load_stem(weights.DEFAULT_STEM_MODEL, "cpu")
    cfg, integer = stem.config, stem.integer
    rng = np.random.default_rng(3)
    for h, w in ((9, 14), (5, 7)):
        y_prev = to_fixed(torch.from_numpy(rng.normal(0, 60, (cfg.m, h, w))).float())
        anchors = anchor_mask(h, w)
        decoded = to_fixed(torch.where(anchors, torch.from_numpy(rng.normal(0, 60, (cfg.m, h, w))).float(), 0.0))
        z = rng.integers(-30, 31, (cfg.n, -(-h // 4), -(-w // 4)))
        prep = integer.prepare(z, y_prev, 3.0)
        for parity, mask, given in ((0, anchors, None), (1, ~anchors, decoded)):
            mu_a, idx_a = integer.parameters(prep, mask, given)
            mu_b, idx_b = integer.parameters(prep, Positions.checkerboard(h, w, parity), given)
            assert torch.equal(mu_a, mu_b) and np.array_equal(idx_a, idx_b)
