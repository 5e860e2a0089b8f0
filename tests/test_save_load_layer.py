"""A model trained with ``layer=`` saves with its data and loads back (the README's recipe).

The tools train on a light proxy of the user's AnnData; for a layer source it used to carry
an empty sparse ``X``, which scvi-tools takes for a minified AnnData and refuses to load.
"""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc

import scneural as sn

TRAIN = {"max_epochs": 2, "accelerator": "cpu", "enable_progress_bar": False}


@pytest.fixture(scope="module")
def counts():
    adata = sn.datasets.synthetic_counts(n_obs=200, n_vars=40, n_groups=3, seed=0)
    adata.layers["counts"] = adata.X.copy()
    lognorm = adata.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    adata.X = lognorm.X  # X log-normalised, raw counts only in the layer
    return adata


def _round_trip(model, tmp_path):
    model.save(tmp_path / "model", save_anndata=True)
    loaded = type(model).load(tmp_path / "model", accelerator="cpu")
    assert loaded.is_trained and loaded.adata.X is None
    assert loaded.input_source_ == model.input_source_ == {"layer": "counts", "use_rep": None}
    return loaded


def test_classify_with_layer_saves_and_loads(counts, tmp_path):
    adata = counts.copy()
    model = sn.tl.classify(adata, "group", layer="counts", n_hidden=(16,), **TRAIN)
    loaded = _round_trip(model, tmp_path)
    again = counts.copy()
    sn.tl.classify(again, model=loaded)
    np.testing.assert_allclose(
        again.obsm["classify_proba"].to_numpy(), adata.obsm["classify_proba"].to_numpy(), atol=1e-5
    )


def test_deep_cluster_with_layer_saves_and_loads(counts, tmp_path):
    adata = counts.copy()
    model = sn.tl.deep_cluster(
        adata, 3, layer="counts", n_hidden=(16,), n_latent=4, pretrain_epochs=2, **TRAIN
    )
    loaded = _round_trip(model, tmp_path)
    again = counts.copy()
    sn.tl.deep_cluster(again, model=loaded)
    np.testing.assert_array_equal(again.obs["deep_cluster"], adata.obs["deep_cluster"])


def test_perturb_with_layer_saves_and_loads(tmp_path):
    adata = sn.datasets.synthetic_perturbation(n_obs=300, n_vars=40, seed=0)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.layers["counts"] = adata.X.copy()  # a log-normalised layer under another name
    held_out = (adata.obs["cell_type"] == "t0") & (adata.obs["condition"] == "stimulated")
    train = adata[~held_out.to_numpy()].copy()
    args = {
        "condition_key": "condition",
        "control": "control",
        "perturbed": "stimulated",
        "cell_type_key": "cell_type",
        "predict": "t0",
    }
    pred, model = sn.tl.perturb(
        train, layer="counts", n_hidden=16, n_latent=4, return_model=True, **args, **TRAIN
    )
    loaded = _round_trip(model, tmp_path)
    again = sn.tl.perturb(train.copy(), model=loaded, **args)
    np.testing.assert_allclose(again.X, pred.X, rtol=1e-5, atol=1e-5)
