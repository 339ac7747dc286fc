"""The lambda table is a model's own training choice: it can be set, it survives checkpoints and export, and a
fine-tune to a wider rate range starts from gains interpolated from the learned ones."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vcodec import quality as Q
from vcodec.errors import InputError
from vcodec.networks.intra import IntraConfig, IntraModel
from vcodec.train.checkpoint import load_sharded, read_state
from vcodec.train.loop import lambdas_of, train_intra

from conftest import train_options as _opts


def test_lambda_table_is_log_spaced_between_its_ends():
    table = Q.lambda_table(0.0002, 0.3)
    assert len(table) == Q.LEVELS and table[0] == 0.0002 and table[-1] == 0.3
    ratios = [b / a for a, b in zip(table, table[1:])]
    assert max(ratios) / min(ratios) < 1.0001
    assert math.isclose(table[4], 0.013, rel_tol=0.01)  # this range keeps q = 4 at the classic operating point
    for bad in ((0.3, 0.0002), (0.0, 0.1), (-1.0, 0.1), (0.1, float("inf"))):
        with pytest.raises(ValueError):
            Q.lambda_table(*bad)


def test_config_keeps_its_table_and_reads_old_files():
    assert IntraConfig(n=8, m=16).lambdas == Q.LAMBDAS_BEFORE_TABLES  # files written before the table was stored
    assert Q.LAMBDAS == Q.lambda_table(0.0002, 0.3)  # what new runs use
    wide = IntraConfig(n=8, m=16, lambdas=Q.lambda_table(0.0002, 0.3))
    again = IntraConfig(**json.loads(json.dumps(wide.to_dict())))
    assert again == wide and isinstance(again.lambdas, tuple)
    for bad in ([0.1] * 8, Q.LAMBDAS[:7], list(reversed(Q.LAMBDAS)), [-1.0] + list(Q.LAMBDAS[1:])):
        with pytest.raises(ValueError):
            IntraConfig(n=8, m=16, lambdas=bad)


def test_retarget_interpolates_the_learned_gains_in_log_lambda():
    torch.manual_seed(0)
    old = Q.LAMBDAS_BEFORE_TABLES
    model = IntraModel(IntraConfig(n=8, m=16, lambdas=old))
    with torch.no_grad():
        model.log_gain.normal_()
        model.log_inv_gain.normal_()
    gains, inverse = model.log_gain.detach().clone(), model.log_inv_gain.detach().clone()
    model.retarget(old)
    assert torch.equal(model.log_gain, gains) and torch.equal(model.log_inv_gain, inverse)

    # Level 0 halfway (in log lambda) between old levels 2 and 3; level 7 one old step beyond the top.
    mid = math.sqrt(old[2] * old[3])
    beyond = old[7] * old[7] / old[6]
    table = (mid, old[3], old[4], old[5], old[6], old[7], math.sqrt(old[7] * beyond), beyond)
    model.retarget(table)
    assert model.config.lambdas == table
    torch.testing.assert_close(model.log_gain[0], (gains[2] + gains[3]) / 2)
    torch.testing.assert_close(model.log_gain[1], gains[3])
    torch.testing.assert_close(model.log_gain[7], 2 * gains[7] - gains[6])  # the end segment, extended
    torch.testing.assert_close(model.log_inv_gain[7], 2 * inverse[7] - inverse[6])
    with pytest.raises(ValueError):
        model.retarget(table[:7])


def test_lambdas_of_uses_the_models_table():
    table = Q.lambda_table(0.0002, 0.3)
    q = torch.tensor([0.0, 4.0, 6.5, 7.0])
    got = lambdas_of(q, table)
    want = torch.tensor([Q.lambda_of(float(v), table) for v in q])
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, lambdas_of(q, Q.LAMBDAS_BEFORE_TABLES))


def test_fine_tune_to_a_wider_range_moves_the_gains_and_records_the_table(pictures, tmp_path):
    base, wide = tmp_path / "base", tmp_path / "wide"
    train_intra(_opts(pictures, base, steps=2), say=lambda s: None)
    assert read_state(base)["config"]["lambdas"] == list(Q.LAMBDAS)  # a new run takes the default table
    said: list[str] = []
    train_intra(_opts(pictures, wide, steps=4, resume=base, lambda_range=(0.00005, 0.5)), say=said.append)
    assert any("gains interpolated" in s for s in said)
    assert read_state(wide)["config"]["lambdas"] == list(Q.lambda_table(0.00005, 0.5))
    before, after = load_sharded(base, "model")["log_gain"], load_sharded(wide, "model")["log_gain"]
    assert after[0].mean() < before[0].mean() - 0.4  # lambda at q = 0 a quarter: gain about half (log -0.69)
    # Resuming the wide run keeps its table without being told it again.
    said.clear()
    train_intra(_opts(pictures, wide, steps=5, resume=wide), say=said.append)
    assert not any("gains interpolated" in s for s in said)
    assert read_state(wide)["config"]["lambdas"] == list(Q.lambda_table(0.00005, 0.5))


def test_bad_lambda_range_is_a_user_error_before_any_data_loads(tmp_path):
    with pytest.raises(InputError, match="--lambda-range"):
        train_intra(_opts(tmp_path / "nothing-here", tmp_path / "out", lambda_range=(0.3, 0.0002)))
