"""Shared helpers: result writing, h5ad-safe uns, seeding, batching, validation."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from scneural import _validation as v
from scneural._utils import (
    counted,
    history_to_dict,
    iter_row_batches,
    read_into_memory,
    set_seed,
    to_h5ad_safe,
    write_results,
)


@pytest.fixture
def small():
    adata = ad.AnnData(np.arange(12, dtype=np.float32).reshape(4, 3))
    adata.obs["old"] = ["a", "b", "c", "d"]
    adata.uns["keep"] = {"x": 1}
    return adata


def test_write_results_writes_everything(small):
    write_results(
        small,
        obs={"lab": pd.Categorical(["x", "y", "x", "y"])},
        obsm={"X_e": np.ones((4, 2)), "p": pd.DataFrame({"a": [0.1] * 4})},
        uns={"tool": {"params": {"k": 1}}},
        layers={"den": np.zeros((4, 3))},
    )
    assert list(small.obs["lab"].cat.categories) == ["x", "y"]
    assert small.obsm["p"].index.equals(small.obs_names)
    assert small.uns["tool"]["params"]["k"] == 1
    assert small.layers["den"].shape == (4, 3)


def test_write_results_rejects_wrong_length_before_writing(small):
    with pytest.raises(ValueError, match="has 3 rows but adata has 4 cells"):
        write_results(small, obs={"a": np.ones(4)}, obsm={"b": np.ones((3, 2))})
    assert "a" not in small.obs


def test_write_results_rolls_back_on_failure(small):
    original_old = small.obs["old"].copy()
    # a 4-character string passes the length check but anndata refuses it as an obsm entry,
    # after the obs columns were already written: they must be restored
    with pytest.raises((ValueError, TypeError, AttributeError)):
        write_results(small, obs={"old": ["z"] * 4, "new": np.ones(4)}, obsm={"bad": "abcd"})
    pd.testing.assert_series_equal(small.obs["old"], original_old)
    assert "new" not in small.obs
    assert "bad" not in small.obsm


def test_to_h5ad_safe_round_trip(tmp_path, small):
    value = {
        "none": None,
        "ints": (1, 2, 3),
        "names": ["a", "b"],
        "nested": {"f": np.float32(1.5), 3: "x"},
        "mixed": [1, "a"],
        "empty": [],
    }
    safe = to_h5ad_safe(value)
    small.uns["r"] = safe
    small.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["r"]
    assert back["none"] == "None"
    np.testing.assert_array_equal(back["ints"], [1, 2, 3])
    assert list(back["names"]) == ["a", "b"]
    assert back["nested"]["f"] == 1.5 and back["nested"]["3"] == "x"


def test_counted_agrees_with_the_number():
    assert counted(1, "cell has", "cells have") == "1 cell has"
    assert counted(0, "cell has", "cells have") == "0 cells have"
    assert counted(3, "gene") == "3 genes"
    assert counted(1, "gene") == "1 gene"


def test_history_to_dict():
    hist = {"train_loss": pd.DataFrame({"train_loss": [3.0, 2.0]})}
    out = history_to_dict(hist)
    np.testing.assert_array_equal(out["train_loss"], [3.0, 2.0])
    assert history_to_dict(None) == {}


def test_set_seed_repeats():
    set_seed(3)
    # the legacy global numpy RNG is what users' code and scanpy draw from
    a = (np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    set_seed(3)
    assert (np.random.rand(), torch.rand(1).item()) == a  # noqa: NPY002


def test_iter_row_batches_sparse():
    X = sparse.random(25, 4, density=0.3, format="csr", random_state=0)
    blocks = list(iter_row_batches(X, 10))
    assert [b.shape[0] for b in blocks] == [10, 10, 5]
    np.testing.assert_allclose(np.vstack(blocks), X.toarray())


def test_validation_helpers():
    counts = sparse.csr_matrix(np.array([[0, 2], [3, 0]], dtype=np.float32))
    assert v.is_count_matrix(counts)
    assert not v.is_count_matrix(counts * 0.5)
    v.check_counts(counts, "X", "tool")
    with pytest.raises(ValueError, match="non-integer"):
        v.check_counts(counts * 0.5, "X", "tool")
    with pytest.raises(ValueError, match="negative"):
        v.check_counts(-counts, "X", "tool")
    with pytest.raises(ValueError, match="NaN or infinite"):
        v.check_finite(np.array([[np.inf]]), "X")
    assert v.looks_like_counts(counts * 30)
    assert not v.looks_like_counts(counts)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        v.check_positive_int(1, "n", minimum=2)
    with pytest.raises(ValueError, match="n must be an integer"):
        v.check_positive_int(True, "n")
    assert v.check_positive_float(np.float32(2.5), "x") == 2.5
    assert v.check_positive_float(3, "x") == 3.0
    for bad in (0, -1.0, np.inf, np.nan, True, "1"):
        with pytest.raises(ValueError, match="x must be a number > 0"):
            v.check_positive_float(bad, "x")
    with pytest.raises(TypeError, match="AnnData"):
        v.check_adata(np.zeros(3))
    dup = ad.AnnData(np.zeros((2, 2), dtype=np.float32))
    dup.var_names = ["a", "a"]
    with pytest.raises(ValueError, match="var_names_make_unique"):
        v.check_unique_var_names(dup)


def test_validation_backed_matrix(tmp_path):
    adata = ad.AnnData(sparse.csr_matrix(np.array([[1, 2], [3, 4]], dtype=np.float32)))
    adata.write_h5ad(tmp_path / "b.h5ad")
    backed = ad.read_h5ad(tmp_path / "b.h5ad", backed="r")
    assert v.is_count_matrix(backed.X)


@pytest.mark.parametrize("as_sparse", [True, False])
def test_read_into_memory_reads_backed_matrices(tmp_path, as_sparse):
    values = np.array([[1, 0, 2], [0, 3, 0]], dtype=np.float32)
    adata = ad.AnnData(sparse.csr_matrix(values) if as_sparse else values)
    adata.write_h5ad(tmp_path / "m.h5ad")
    backed = ad.read_h5ad(tmp_path / "m.h5ad", backed="r")
    read = read_into_memory(backed.X)
    assert sparse.issparse(read) == as_sparse
    np.testing.assert_array_equal(read.toarray() if as_sparse else read, values)
    assert read_into_memory(values) is values  # in memory already: no copy


def test_set_seed_keeps_xla_flags_stable(monkeypatch):
    """Seeding again does not grow XLA_FLAGS (part of JAX's compilation cache key)."""
    import os

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_thunk_runtime=true")
    set_seed(0)
    flags = os.environ["XLA_FLAGS"].split()
    assert flags == ["--xla_cpu_use_thunk_runtime=true", "--xla_gpu_deterministic_ops=true"]
    for seed in (1, 2, 0):
        set_seed(seed)
    assert os.environ["XLA_FLAGS"].split() == flags
    monkeypatch.delenv("XLA_FLAGS")
    set_seed(0)
    set_seed(1)
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=true"


@pytest.mark.parametrize(
    "matrix",
    [
        np.zeros((4, 3)),
        np.full((4, 3), 2.5),
        sparse.csr_matrix((4, 3)),  # no stored value: all zeros
        sparse.csr_matrix(np.zeros((4, 3))) + sparse.csr_matrix(([0.0], ([1], [2])), (4, 3)),
        sparse.csr_matrix(np.ones((4, 3))),  # every entry stored, all ones
    ],
)
def test_check_not_constant_refuses_one_value_everywhere(matrix):
    with pytest.raises(ValueError, match="layers\\['x'\\] holds the same value"):
        v.check_not_constant(matrix, "layers['x']")


@pytest.mark.parametrize(
    "matrix",
    [
        np.eye(3),
        sparse.csr_matrix(([1.0], ([1], [2])), (4, 3)),  # one stored 1 among implicit zeros
        sparse.csr_matrix(np.array([[1.0, 2.0]])),
        pd.DataFrame({"a": [0.0, 0.0], "b": [0.0, -1.0]}),
    ],
)
def test_check_not_constant_accepts_varying_values(matrix):
    v.check_not_constant(matrix, "X")


def test_check_not_constant_reads_backed_blocks(tmp_path):
    """A backed sparse X is read block by block; the zeros a block leaves out count."""
    stored = sparse.csr_matrix((25_000, 3))
    stored[24_999, 0] = 1.0  # the only non-zero, in the last block
    ad.AnnData(stored).write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    v.check_not_constant(backed.X, "X")
    ad.AnnData(sparse.csr_matrix((25_000, 3))).write_h5ad(tmp_path / "zero.h5ad")
    with pytest.raises(ValueError, match="X holds the same value \\(0\\)"):
        v.check_not_constant(ad.read_h5ad(tmp_path / "zero.h5ad", backed="r").X, "X")


class _BasePlan:
    def __init__(self, module, *, lr=1e-3, optimizer="Adam", **loss_kwargs):
        pass


class _Plan(_BasePlan):
    def __init__(self, module, *, tol=1e-3, **kwargs):
        super().__init__(module, **kwargs)


def test_check_plan_kwargs_knows_the_whole_class_hierarchy():
    """The names of every __init__ along the plan's classes are known ('module' is the
    caller's); a misspelt one is refused with the closest, and a name the caller sets
    itself gets the caller's advice, each naming the argument as passed."""
    v.check_plan_kwargs(None, _Plan)
    v.check_plan_kwargs({"lr": 0.1, "tol": 0.5}, _Plan, argument="x_plan_kwargs")
    with pytest.raises(TypeError, match=r"x_plan_kwargs holds 'tool' \(did you mean 'tol'\?\)"):
        v.check_plan_kwargs({"tool": 0.5}, _Plan, argument="x_plan_kwargs")
    with pytest.raises(TypeError, match="holds 'module'"):
        v.check_plan_kwargs({"module": None}, _Plan)
    with pytest.raises(ValueError, match=r"plan_kwargs\['optimizer'\]: built here"):
        v.check_plan_kwargs(
            {"optimizer": "AdamW"}, _Plan, set_elsewhere={"optimizer": "built here"}
        )
    with pytest.raises(TypeError, match="x_plan_kwargs must be a dict"):
        v.check_plan_kwargs([("lr", 1.0)], _Plan, argument="x_plan_kwargs")


def test_check_plan_settings_names_the_value_as_passed():
    assert v.check_plan_settings({"lr": 0.5}, lr=1.0) == {"lr": 0.5}
    with pytest.raises(ValueError, match=r"^cluster_lr must be a number > 0"):
        v.check_plan_settings(None, prefix="cluster_", lr=-1.0)
    with pytest.raises(ValueError, match=r"^cluster_plan_kwargs\['lr'\] must be a number > 0"):
        v.check_plan_settings({"lr": 0}, prefix="cluster_", lr=1.0)
