"""Tests of the perturbation metrics (R² of means and variances, top DE genes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from anndata import AnnData
from scipy import sparse

import scneural as sn


def _adata(X, names=None):
    names = names or [f"g{j}" for j in range(X.shape[1])]
    return AnnData(X=np.asarray(X, dtype=np.float32), var=pd.DataFrame(index=names))


def test_r2_mean_known_values():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 30)) + np.arange(30)
    assert sn.metrics.r2_mean(real, real) == pytest.approx(1.0)
    # a linear transform of the means keeps R² = 1 (it is a squared Pearson r)
    assert sn.metrics.r2_mean(real, 2 * real + 1) == pytest.approx(1.0)
    shuffled = real[:, rng.permutation(30)]
    assert sn.metrics.r2_mean(real, shuffled) < 0.3
    x, y = real.mean(0), shuffled.mean(0)
    assert sn.metrics.r2_mean(real, shuffled) == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)


def test_r2_var_and_sparse_inputs():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(80, 20)) * np.linspace(0.1, 3, 20)
    pred = rng.normal(size=(60, 20)) * np.linspace(0.1, 3, 20)
    assert sn.metrics.r2_var(real, pred) > 0.9
    assert sn.metrics.r2_var(real, pred[:, np.random.default_rng(0).permutation(20)]) < 0.5
    clipped = np.clip(real, 0, None)
    assert sn.metrics.r2_var(sparse.csr_matrix(clipped), clipped) == pytest.approx(1.0)
    assert sn.metrics.r2_mean(sparse.csr_matrix(clipped), clipped) == pytest.approx(1.0)


def test_r2_on_gene_subset_and_errors():
    rng = np.random.default_rng(2)
    real = _adata(rng.normal(size=(40, 10)) + np.arange(10))
    pred_X = real.X.copy()
    pred_X[:, 5:] = pred_X[:, 5:][:, ::-1]
    pred = _adata(pred_X)
    top = ["g0", "g1", "g2", "g3", "g4"]
    assert sn.metrics.r2_mean(real, pred, genes=top) == pytest.approx(1.0)
    assert sn.metrics.r2_mean(real, pred) < 1.0
    scores = sn.metrics.perturbation_r2(real, pred, de_genes=top)
    assert set(scores) == {"r2_mean_all", "r2_var_all", "r2_mean_de", "r2_var_de"}
    with pytest.raises(KeyError, match="not in the data"):
        sn.metrics.r2_mean(real, pred, genes=["nope"])
    with pytest.raises(ValueError, match="different genes: 10 of real's are not in predicted"):
        sn.metrics.r2_mean(real, _adata(pred_X, [f"h{j}" for j in range(10)]))
    with pytest.raises(ValueError, match="genes; they must match"):
        sn.metrics.r2_mean(real.X, pred_X[:, :5])


def test_r2_matches_two_anndata_by_gene_name():
    """A prediction in another gene order (e.g. a reused model's genes) scores as the same
    prediction in real's order; duplicated names are refused."""
    rng = np.random.default_rng(3)
    real = _adata(rng.normal(size=(40, 10)) + np.arange(10))
    pred = _adata(rng.normal(size=(30, 10)) + np.arange(10) * 1.1)
    shuffled = pred[:, pred.var_names[::-1]]
    for score in (sn.metrics.r2_mean, sn.metrics.r2_var):
        assert score(real, shuffled) == pytest.approx(score(real, pred), rel=1e-12)
        subset = score(real, pred, genes=["g0", "g9", "g4"])
        assert score(real, shuffled, genes=["g0", "g9", "g4"]) == pytest.approx(subset, rel=1e-12)
    unaligned = _adata(pred.X[:, ::-1])  # same names, columns reversed: a different prediction
    assert sn.metrics.r2_mean(real, unaligned) != sn.metrics.r2_mean(real, pred)
    twice = _adata(pred.X, ["g0"] * 2 + [f"g{j}" for j in range(2, 10)])
    with pytest.raises(ValueError, match="predicted's var_names are not unique"):
        sn.metrics.r2_mean(real, twice)


def test_top_de_genes_finds_the_response():
    adata = sn.datasets.synthetic_perturbation(n_obs=300, n_vars=60, response_genes=10, seed=0)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    before = adata.uns.copy()
    top = sn.metrics.top_de_genes(adata, "condition", "stimulated", "control", n_genes=10)
    assert set(top) == set(adata.var_names[adata.var["response"]])
    assert set(adata.uns) == set(before)
    with pytest.raises(ValueError, match="not a value"):
        sn.metrics.top_de_genes(adata, "condition", "STIM", "control")


def test_sparse_integer_counts_do_not_overflow():
    from scneural.metrics._perturbation import gene_stats

    rng = np.random.default_rng(3)
    counts = rng.integers(0, 400, size=(30, 8)).astype(np.uint16)  # 400² > 65535
    np.testing.assert_allclose(
        gene_stats(sparse.csr_matrix(counts), "var"), counts.astype(float).var(axis=0)
    )
    other = rng.integers(0, 400, size=(30, 8)).astype(np.uint16)
    assert sn.metrics.r2_var(sparse.csr_matrix(counts), other) == pytest.approx(
        sn.metrics.r2_var(counts, other)
    )


def test_gene_subsets_by_name_or_names():
    rng = np.random.default_rng(4)
    real = _adata(rng.normal(size=(20, 6)) + np.arange(6))
    r2 = sn.metrics.r2_mean(real, real.X, genes=["g0", "g1"])  # names from either input
    assert r2 == pytest.approx(1.0)
    with pytest.raises(KeyError, match="not in the data"):
        sn.metrics.r2_mean(real, real, genes="g0x")  # one name, not its letters


def test_top_de_genes_group_arguments():
    adata = sn.datasets.synthetic_perturbation(n_obs=200, n_vars=30, response_genes=5, seed=1)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.obs["dose"] = (adata.obs["condition"] == "stimulated").astype(int).to_numpy()
    by_int = sn.metrics.top_de_genes(adata, "dose", 1, 0, n_genes=5)
    by_name = sn.metrics.top_de_genes(adata, "condition", "stimulated", "control", n_genes=5)
    assert by_int == by_name
    with pytest.raises(ValueError, match="group and reference are both '1'"):
        sn.metrics.top_de_genes(adata, "dose", 1, 1)
    with pytest.raises(KeyError, match="layer='counts' is not in adata.layers"):
        sn.metrics.top_de_genes(adata, "dose", 1, 0, layer="counts")
    with pytest.raises(KeyError, match="groupby='nope'"):
        sn.metrics.top_de_genes(adata, "nope", 1, 0)


def test_gene_stats_in_row_chunks_and_backed(tmp_path):
    """Means and variances are gathered chunk by chunk: the same numbers as numpy, for
    dense, sparse and backed matrices, without a whole float64 copy."""
    from anndata import read_h5ad

    from scneural.metrics._perturbation import gene_stats

    rng = np.random.default_rng(0)
    dense = (rng.poisson(2.0, size=(250, 7)) * rng.random((250, 7))).astype(np.float32)
    dense += 1000  # a large offset: variance around the mean, not E[x^2] - mean^2
    expected = {"mean": dense.mean(axis=0, dtype=np.float64), "var": dense.var(axis=0)}
    counts = sparse.csr_matrix(rng.poisson(0.5, size=(250, 7)).astype(np.float32))
    path = tmp_path / "cells.h5ad"
    AnnData(counts).write_h5ad(path)
    backed = read_h5ad(path, backed="r")
    counts_dense = counts.toarray().astype(np.float64)
    for what in ("mean", "var"):
        np.testing.assert_allclose(gene_stats(dense, what, chunk=16), expected[what], rtol=1e-6)
        reference = counts_dense.mean(axis=0) if what == "mean" else counts_dense.var(axis=0)
        np.testing.assert_allclose(gene_stats(counts, what, chunk=16), reference, rtol=1e-9)
        np.testing.assert_allclose(gene_stats(backed, what, chunk=16), reference, rtol=1e-9)
    real = AnnData(dense[:100])
    assert sn.metrics.r2_mean(real, backed[:100].to_memory()) == pytest.approx(
        sn.metrics.r2_mean(real, AnnData(counts[:100]))
    )


def test_undefined_r2_warns_and_non_finite_input_is_refused():
    """R² is NaN only with a warning saying why; NaN or inf in the data is an error that
    names the side and the genes, not a NaN score."""
    rng = np.random.default_rng(0)
    real = _adata(rng.poisson(2.0, size=(20, 6)))
    constant = _adata(np.ones((20, 6)))
    with pytest.warns(UserWarning, match="per-gene means of predicted are all equal"):
        assert np.isnan(sn.metrics.r2_mean(real, constant))
    with pytest.warns(UserWarning, match="per-gene variances of real are all equal"):
        assert np.isnan(sn.metrics.r2_var(constant, real))
    with pytest.warns(UserWarning, match="only 1 gene"):
        assert np.isnan(sn.metrics.r2_mean(real, real, genes="g0"))
    broken = real.X.copy()
    broken[3, 2], broken[4, 5] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"predicted holds NaN or infinite values in 2 genes.*g2"):
        sn.metrics.r2_mean(real, _adata(broken))
    with pytest.raises(ValueError, match="real holds NaN or infinite values in 2 genes"):
        sn.metrics.r2_var(broken, real.X)
    # a NaN outside the genes scored does not matter
    assert np.isfinite(sn.metrics.r2_mean(real, _adata(broken), genes=["g0", "g1", "g3"]))
