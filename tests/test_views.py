"""Tools on AnnData views (``adata[mask]``), as users pass them: same results as on a copy
of the same cells, the parent untouched; a view of a backed object is refused up front."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

import scneural as sn
from conftest import assert_unchanged, snapshot

FAST = {"accelerator": "cpu", "enable_progress_bar": False, "random_state": 0}


def _half(adata):
    """A view of about half the cells by a boolean mask, as users subset (a slice such as
    ``adata[::2]`` takes another path in anndata), with dense X and layers (ArrayView)."""
    view = adata[np.random.default_rng(0).random(adata.n_obs) < 0.5]
    assert view.is_view and isinstance(view.X, np.ndarray)
    return view


@pytest.fixture
def counts():
    adata = sn.datasets.synthetic_counts(n_obs=240, n_vars=60, n_groups=3, seed=0)
    adata.X = np.asarray(adata.X.toarray() if sparse.issparse(adata.X) else adata.X)
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def _run_on_view_and_copy(parent, tool, obsm_key):
    before = snapshot(parent)
    view = _half(parent)
    twin = view.copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tool(view)
    # one warning that the view becomes an object of its own, not one per key written
    implicit = [w for w in caught if issubclass(w.category, ad.ImplicitModificationWarning)]
    assert len(implicit) == 1 and "adata is a view" in str(implicit[0].message)
    tool(twin)
    assert not view.is_view
    np.testing.assert_allclose(view.obsm[obsm_key], twin.obsm[obsm_key], rtol=1e-5, atol=1e-5)
    assert_unchanged(parent, before)


@pytest.mark.parametrize("layer", [None, "counts"])
def test_classify_on_a_view(counts, layer):
    def tool(adata):
        sn.tl.classify(adata, "group", layer=layer, n_hidden=(16,), max_epochs=2, **FAST)

    _run_on_view_and_copy(counts, tool, "X_classify")


def test_deep_cluster_on_a_view(counts):
    def tool(adata):
        sn.tl.deep_cluster(
            adata, 3, layer="counts", n_hidden=(16,), n_latent=4, n_top_genes=None,
            pretrain_epochs=2, max_epochs=1, **FAST,
        )  # fmt: skip

    _run_on_view_and_copy(counts, tool, "X_deep_cluster")


def test_perturb_on_a_view(counts):
    rng = np.random.default_rng(1)
    counts.obs["stim"] = pd.Categorical(rng.choice(["CTRL", "STIM"], counts.n_obs))

    def tool(adata):
        sn.tl.perturb(
            adata, condition_key="stim", control="CTRL", perturbed="STIM",
            cell_type_key="group", predict="g0", n_hidden=16, n_latent=4, max_epochs=2, **FAST,
        )  # fmt: skip

    with pytest.warns(UserWarning, match="not a held-out prediction"):
        _run_on_view_and_copy(counts, tool, "X_perturb")


def test_a_view_of_backed_data_is_refused_before_training(counts, tmp_path, monkeypatch):
    path = tmp_path / "cells.h5ad"
    counts.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    view = backed[::2]
    trained = []
    monkeypatch.setattr(sn.models.Classifier, "train", lambda *a, **k: trained.append(1))
    with pytest.raises(ValueError, match="view of a backed AnnData.*to_memory"):
        sn.tl.classify(view, "group", **FAST)
    assert not trained and "classify" not in backed.uns
