"""A model trained with ``layer=`` saves with its data and loads back (the README's recipe).

The tools train on a light proxy of the user's AnnData; for a layer source it used to carry
an empty sparse ``X``, which scvi-tools takes for a minified AnnData and refuses to load.
"""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc

import scneural as sn
from conftest import assert_unchanged, snapshot

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


# a model trained through scneural.models (the README's model API) has no input_source_:
# the tools read the layer from its setup_anndata registry


def test_classifier_trained_directly_on_a_layer_is_reused_on_that_layer(counts):
    reference = counts.copy()
    sn.models.Classifier.setup_anndata(reference, labels_key="group", layer="counts")
    model = sn.models.Classifier(reference, n_hidden=(16,), log_normalize_input=True)
    model.train(**TRAIN)
    assert not hasattr(model, "input_source_")
    query = counts.copy()
    query.X = query.X * 0  # would give one constant prediction if X were read
    sn.tl.classify(query, model=model)
    assert query.uns["classify"]["params"]["layer"] == "counts"
    expected = model.predict(reference)
    assert (query.obs["classify_label"].astype(str).to_numpy() == np.asarray(expected)).all()
    sn.tl.classify(query, model=model, layer="counts", key_added="named")  # same source: fine
    query.obsm["X_pca"] = np.zeros((query.n_obs, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"trained on adata.layers\['counts'\].*asks for"):
        sn.tl.classify(query, model=model, use_rep="X_pca", key_added="rep")


def test_deep_cluster_trained_directly_on_a_layer_is_reused_on_that_layer(counts):
    reference = counts.copy()
    sn.models.DeepCluster.setup_anndata(reference, layer="counts")
    model = sn.models.DeepCluster(reference, n_clusters=3, n_hidden=(16,), n_latent=4)
    model.train(max_epochs=1, pretrain_epochs=1, accelerator="cpu", enable_progress_bar=False)
    query = counts.copy()  # X log-normalised: refused as counts if it were read
    sn.tl.deep_cluster(query, model=model)
    assert query.uns["deep_cluster"]["params"]["layer"] == "counts"
    np.testing.assert_allclose(
        query.obsm["X_deep_cluster"], model.get_latent_representation(reference), atol=1e-5
    )
    # another source than the model's is refused, naming the argument the tool takes
    query.layers["other"] = query.layers["counts"].copy()
    before = snapshot(query)
    with pytest.raises(ValueError, match=r"pass the same layer= as in training \(or leave it"):
        sn.tl.deep_cluster(query, model=model, layer="other", key_added="other")
    assert_unchanged(query, before)
