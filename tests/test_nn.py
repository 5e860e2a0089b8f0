"""scneural.nn blocks."""

from __future__ import annotations

import pytest
import torch

from scneural.nn import MLP, MLPBlock, log_normalize


def test_mlp_block_layers():
    block = MLPBlock(4, 3, dropout_rate=0.1)
    kinds = [type(m).__name__ for m in block]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"]
    assert [type(m).__name__ for m in MLPBlock(4, 3, use_batch_norm=False)] == ["Linear", "ReLU"]


def test_mlp_covariates_change_output():
    torch.manual_seed(0)
    mlp = MLP(5, [8, 4], n_cat=2).eval()
    x = torch.randn(6, 5)
    a = mlp(x, torch.zeros(6, 1))
    b = mlp(x, torch.ones(6, 1))
    assert a.shape == (6, 4)
    assert not torch.allclose(a, b)
    assert mlp.blocks[1][0].in_features == 8 + 2


def test_mlp_needs_layers():
    with pytest.raises(ValueError, match="at least one"):
        MLP(3, [])


def test_log_normalize_matches_scanpy():
    x = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    out = log_normalize(x)
    torch.testing.assert_close(out[0], torch.log1p(torch.tensor([2500.0, 7500.0])))
    assert torch.all(out[1] == 0)
