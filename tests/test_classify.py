"""sn.tl.classify and the Classifier model."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

import scneural as sn
from conftest import HAS_JAX, assert_unchanged, load_real, record_train_kwargs, snapshot

FAST = {"max_epochs": 15, "enable_progress_bar": False}

# every tl test runs once per backend (the `backend` fixture of conftest.py, torch and jax)
MODEL_CLASS = {"torch": "Classifier", "jax": "JaxClassifier"}


def _model_class(backend):
    return getattr(sn.models, MODEL_CLASS[backend])


@pytest.fixture(scope="module")
def trained(backend):
    """A classifier trained once per backend on log-normalised synthetic data, with its AnnData."""
    adata = sn.datasets.synthetic_counts(n_obs=600, n_vars=200, n_groups=3, seed=1)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    model = sn.tl.classify(adata, "group", backend=backend, **FAST)
    return adata, model


def test_writes_keys_shapes_dtypes(trained, backend):
    adata, model = trained
    classes = ["g0", "g1", "g2"]
    label = adata.obs["classify_label"]
    assert isinstance(label.dtype, pd.CategoricalDtype)
    assert list(label.cat.categories) == classes
    conf = adata.obs["classify_confidence"]
    assert conf.dtype == np.float32
    assert ((conf >= 1 / 3 - 1e-6) & (conf <= 1 + 1e-6)).all()
    proba = adata.obsm["classify_proba"]
    assert isinstance(proba, pd.DataFrame)
    assert list(proba.columns) == classes
    assert proba.index.equals(adata.obs_names)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba.max(axis=1), conf, atol=1e-6)
    emb = adata.obsm["X_classify"]
    assert emb.shape == (adata.n_obs, 128) and emb.dtype == np.float32
    uns = adata.uns["classify"]
    assert list(uns["classes"]) == classes
    assert uns["params"]["labels_key"] == "group"
    assert uns["params"]["backend"] == backend == model.backend
    assert len(uns["history"]["train_loss"]) >= 1
    assert len(uns["history"]["validation_loss"]) == len(uns["history"]["train_loss"])
    assert not any(k.startswith("kl_") for k in uns["history"])
    assert 0 < uns["validation"]["n_cells"] < adata.n_obs
    training = uns["params"]["training"]["train"]
    assert training["max_epochs"] == FAST["max_epochs"]
    assert training["train_size"] == 0.95 and training["lr"] == 1e-3  # model defaults
    assert type(model) is _model_class(backend)


def test_beats_majority_baseline(trained):
    adata, _ = trained
    accuracy = sn.metrics.accuracy(adata.obs["group"], adata.obs["classify_label"])
    majority = adata.obs["group"].value_counts(normalize=True).max()
    assert accuracy > 0.9 > majority + 0.3
    assert adata.uns["classify"]["validation"]["accuracy"] > 0.85


def test_embedding_separates_groups(trained):
    adata, _ = trained
    from sklearn.metrics import silhouette_score

    assert silhouette_score(adata.obsm["X_classify"], adata.obs["group"]) > 0.2


def test_counts_layer_is_normalised_inside(counts_adata, backend):
    adata = counts_adata
    model = sn.tl.classify(adata, "group", layer="counts", backend=backend, **FAST)
    assert model.module.log_normalize_input
    assert adata.uns["classify"]["params"]["layer"] == "counts"
    assert sn.metrics.accuracy(adata.obs["group"], adata.obs["classify_label"]) > 0.9


def test_use_rep(lognorm_adata, backend):
    adata = lognorm_adata
    sc.pp.pca(adata, n_comps=20)
    model = sn.tl.classify(adata, "group", use_rep="X_pca", key_added="pc", backend=backend, **FAST)
    assert model.adata.n_vars == 20
    assert adata.uns["pc"]["params"]["use_rep"] == "X_pca"
    assert sn.metrics.accuracy(adata.obs["group"], adata.obs["pc_label"]) > 0.9
    # applying it reads the same representation
    query = adata[:50].copy()
    sn.tl.classify(query, model=model, key_added="pc")
    assert query.obsm["pc_proba"].shape == (50, 3)


def test_use_rep_x_is_plain_x(lognorm_adata, backend):
    """use_rep="X" means adata.X, as in scanpy (it used to be looked up in obsm and
    refused): the same result on the same seed, the same params recorded, and a model
    trained either way is reused either way."""
    fast = {**FAST, "max_epochs": 3, "backend": backend, "random_state": 3}
    plain, as_x = lognorm_adata.copy(), lognorm_adata.copy()
    plain_model = sn.tl.classify(plain, "group", **fast)
    x_model = sn.tl.classify(as_x, "group", use_rep="X", **fast)
    np.testing.assert_array_equal(
        as_x.obsm["classify_proba"].to_numpy(), plain.obsm["classify_proba"].to_numpy()
    )
    np.testing.assert_array_equal(as_x.obsm["X_classify"], plain.obsm["X_classify"])
    assert as_x.obs["classify_label"].equals(plain.obs["classify_label"])
    assert as_x.uns["classify"]["params"]["use_rep"] == "None"  # uns stores None so
    np.testing.assert_equal(as_x.uns["classify"]["params"], plain.uns["classify"]["params"])
    assert x_model.input_source_ == plain_model.input_source_
    reference = lognorm_adata[:40].copy()
    sn.tl.classify(reference, model=plain_model, key_added="q")
    for model, use_rep in [(x_model, {}), (plain_model, {"use_rep": "X"})]:
        query = lognorm_adata[:40].copy()
        sn.tl.classify(query, model=model, key_added="q", **use_rep)
        np.testing.assert_array_equal(
            query.obsm["q_proba"].to_numpy(), reference.obsm["q_proba"].to_numpy()
        )


def test_transfer_aligns_genes(trained, backend):
    ref, model = trained
    query = ref[:80].copy()
    del query.obs["classify_label"]
    # drop 20 genes that mark no group and shuffle the rest
    rng = np.random.default_rng(0)
    keep = rng.permutation(query.var_names.delete(np.arange(100, 120)))
    query = query[:, keep].copy()
    with pytest.warns(UserWarning, match="20 of the model's 200 genes are missing"):
        sn.tl.classify(query, "group", model=model)
    assert query.obsm["classify_proba"].shape == (80, 3)
    assert query.uns["classify"]["params"]["model_reused"]
    assert query.uns["classify"]["params"]["backend"] == backend
    assert query.uns["classify"]["metrics"]["accuracy"] > 0.85
    # aligned query with all genes gives exactly the reference predictions
    same = ref[:80].copy()
    sn.tl.classify(same, model=model, key_added="again")
    np.testing.assert_allclose(
        same.obsm["again_proba"].to_numpy(), ref.obsm["classify_proba"].to_numpy()[:80], atol=1e-5
    )


def test_semi_supervised_unlabeled(lognorm_adata, backend):
    adata = lognorm_adata
    labels = adata.obs["group"].astype(str).to_numpy().copy()
    hidden = np.arange(adata.n_obs) % 3 == 0
    labels[hidden] = "Unknown"
    adata.obs["partial"] = labels
    sn.tl.classify(adata, "partial", unlabeled_category="Unknown", backend=backend, **FAST)
    assert "Unknown" not in adata.obs["classify_label"].cat.categories
    hidden_acc = sn.metrics.accuracy(
        adata.obs["group"][hidden], adata.obs["classify_label"][hidden]
    )
    assert hidden_acc > 0.85


def test_nan_labels_are_predicted_with_warning(lognorm_adata, backend):
    adata = lognorm_adata
    labels = adata.obs["group"].astype(object).copy()
    labels.iloc[:30] = np.nan
    adata.obs["with_nan"] = labels
    with pytest.warns(UserWarning, match="30 cells have a missing"):
        sn.tl.classify(adata, "with_nan", backend=backend, **FAST)
    assert adata.obs["classify_label"].notna().all()


def test_min_confidence_marks_unknown(trained):
    adata, model = trained
    query = adata[:100].copy()
    sn.tl.classify(query, model=model, min_confidence=0.999999)
    label = query.obs["classify_label"]
    assert "Unknown" in label.cat.categories
    low = query.obs["classify_confidence"] < 0.999999
    assert (label[low] == "Unknown").all()
    assert (label[~low] != "Unknown").all()


def test_min_confidence_adds_no_empty_unknown_category(trained):
    """An "Unknown" category without cells broke scanpy's per-group calls on the labels
    (sc.tl.rank_genes_groups, sc.pl.dotplot(groupby=...))."""
    adata, model = trained
    query = adata[:100].copy()
    sn.tl.classify(query, model=model, min_confidence=1e-6)
    assert list(query.obs["classify_label"].cat.categories) == list(model.classes_)


def test_query_without_a_class_has_no_empty_category(trained):
    """A query lacking a type: the label column lists only predicted types (an empty group
    made sc.tl.rank_genes_groups fail, naming it a group of 'one sample'); the
    probabilities and uns keep every class of the model."""
    adata, model = trained
    query = adata[(adata.obs["classify_label"] != "g2").to_numpy()].copy()
    sn.tl.classify(query, model=model, labels_key="group")
    label = query.obs["classify_label"]
    assert list(label.cat.categories) == ["g0", "g1"]
    assert list(query.obsm["classify_proba"].columns) == ["g0", "g1", "g2"]
    assert list(query.uns["classify"]["classes"]) == ["g0", "g1", "g2"]
    sc.tl.rank_genes_groups(query, "classify_label")
    sn.pl.confusion_matrix(query, "group", "classify_label", show=False)


def test_class_weight_balanced(lognorm_adata, backend):
    adata = lognorm_adata
    keep = (adata.obs["group"] != "g2") | (np.arange(adata.n_obs) % 8 == 0)
    adata = adata[keep.to_numpy()].copy()
    model = sn.tl.classify(adata, "group", class_weight="balanced", backend=backend, **FAST)
    weights = np.asarray(model.module.class_weights)
    counts = adata.obs["group"].value_counts()[list(model.classes_)].to_numpy()
    np.testing.assert_allclose(weights, len(adata) / (3 * counts), rtol=1e-5)
    assert adata.uns["classify"]["params"]["class_weight"] == "balanced"


def test_batch_key(backend):
    adata = sn.datasets.synthetic_counts(n_obs=400, n_vars=150, n_batches=2, seed=3)
    model = sn.tl.classify(
        adata, "group", layer="counts", batch_key="batch", backend=backend, **FAST
    )
    assert model.module.n_batch == 2
    query = adata[:50].copy()
    sn.tl.classify(query, model=model)
    query.obs["batch"] = "b9"
    with pytest.raises(ValueError, match="batches the model has not seen"):
        sn.tl.classify(query, model=model, key_added="other")


def test_same_seed_same_result(lognorm_adata, backend):
    a, b = lognorm_adata.copy(), lognorm_adata.copy()
    sn.tl.classify(a, "group", random_state=7, backend=backend, **FAST)
    sn.tl.classify(b, "group", random_state=7, backend=backend, **FAST)
    np.testing.assert_allclose(
        a.obsm["classify_proba"].to_numpy(), b.obsm["classify_proba"].to_numpy(), atol=1e-6
    )
    assert (a.obs["classify_label"] == b.obs["classify_label"]).all()


def test_save_load_round_trip(trained, backend, tmp_path):
    adata, model = trained
    model.save(tmp_path / "clf", save_anndata=True)
    loaded = _model_class(backend).load(tmp_path / "clf")
    assert type(loaded) is type(model) and loaded.is_trained
    assert loaded.input_source_ == model.input_source_
    assert list(loaded.classes_) == list(model.classes_)
    query = adata[:60].copy()
    sn.tl.classify(query, model=loaded, key_added="loaded")
    np.testing.assert_allclose(
        query.obsm["loaded_proba"].to_numpy(),
        adata.obsm["classify_proba"].to_numpy()[:60],
        atol=1e-5,
    )
    # the user's own AnnData can be passed at load time as well
    again = _model_class(backend).load(
        tmp_path / "clf", adata=adata[:, model.adata.var_names].copy()
    )
    assert again.is_trained


def test_h5ad_round_trip_and_replot(trained, tmp_path):
    adata, _ = trained
    path = tmp_path / "result.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(back.obsm["classify_proba"], adata.obsm["classify_proba"])
    assert (back.obs["classify_label"] == adata.obs["classify_label"]).all()
    axes = sn.pl.training_history(back, "classify", show=False)
    assert len(axes) >= 2
    copy = back.copy()
    assert "classify" in copy.uns and "X_classify" in copy.obsm


def test_logger_csv(lognorm_adata, backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sn.tl.classify(
        lognorm_adata,
        "group",
        backend=backend,
        max_epochs=2,
        enable_progress_bar=False,
        logger="csv",
    )
    assert list(tmp_path.glob("lightning_logs/*/metrics.csv"))
    assert len(lognorm_adata.uns["classify"]["history"]["train_loss"]) == 2


def test_logger_writes_under_default_root_dir(lognorm_adata, backend, tmp_path, monkeypatch):
    """Lightning's default_root_dir decides where the logs go (it was ignored: always ./)."""
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    options = {"max_epochs": 2, "enable_progress_bar": False, "default_root_dir": runs}
    sn.tl.classify(lognorm_adata, "group", backend=backend, logger="csv", **options)
    assert (runs / "lightning_logs" / "version_0" / "metrics.csv").exists()
    assert not (tmp_path / "lightning_logs").exists()


def test_logger_false_means_no_logger(lognorm_adata, backend, tmp_path, monkeypatch):
    """False is Lightning's 'no logger' (it was refused); the history is still kept."""
    monkeypatch.chdir(tmp_path)
    options = {"max_epochs": 2, "enable_progress_bar": False}
    sn.tl.classify(lognorm_adata, "group", backend=backend, logger=False, **options)
    assert len(lognorm_adata.uns["classify"]["history"]["train_loss"]) == 2
    assert not (tmp_path / "lightning_logs").exists()


def test_raw_counts_in_x_warns(counts_adata, backend):
    with pytest.warns(UserWarning, match="looks like raw counts"):
        sn.tl.classify(
            counts_adata, "group", backend=backend, max_epochs=1, enable_progress_bar=False
        )


def test_batch_size_sets_the_training_minibatch(lognorm_adata, backend, monkeypatch):
    """``batch_size=`` reaches the model's ``train`` (prediction keeps large minibatches)."""
    seen = record_train_kwargs(monkeypatch, _model_class(backend))
    adata = lognorm_adata
    sn.tl.classify(adata, "group", backend=backend, batch_size=32, **{**FAST, "max_epochs": 2})
    assert seen["batch_size"] == 32
    assert adata.uns["classify"]["params"]["batch_size"] == 32
    seen.clear()
    sn.tl.classify(adata, "group", backend=backend, **{**FAST, "max_epochs": 2})
    assert "batch_size" not in seen  # the model's default
    assert adata.uns["classify"]["params"]["batch_size"] == "None"  # h5ad-safe None


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels_key": "nope"}, KeyError, "labels_key='nope' is not a column"),
        ({"labels_key": None}, ValueError, "labels_key is required"),
        ({"labels_key": "group", "layer": "nope"}, KeyError, "layer='nope' is not in adata.layers"),
        ({"labels_key": "group", "use_rep": "X_nope"}, KeyError, "use_rep='X_nope'"),
        ({"labels_key": "group", "backend": "tf"}, ValueError, "backend='tf'"),
        ({"labels_key": "group", "min_confidence": 2}, ValueError, "min_confidence"),
        ({"labels_key": "group", "min_confidence": "0.5"}, ValueError, "min_confidence must be"),
        ({"labels_key": "group", "min_confidence": True}, ValueError, "min_confidence must be"),
        ({"labels_key": "group", "batch_key": "nope"}, KeyError, "batch_key='nope'"),
        ({"labels_key": "group", "class_weight": "auto"}, ValueError, "class_weight"),
        ({"labels_key": "group", "layer": "counts", "use_rep": "X_pca"}, ValueError, "not both"),
        (
            {"labels_key": "group", "layer": "counts", "use_rep": "X"},
            ValueError,
            r"use_rep='X' reads adata.X, but layer='counts'",
        ),
        ({"labels_key": "group", "batch_size": 0}, ValueError, "batch_size must be an integer"),
        ({"labels_key": "group", "n_hidden": (64, 0)}, ValueError, "every width in n_hidden"),
        ({"labels_key": "group", "n_hidden": "64"}, ValueError, "n_hidden must be a list"),
        ({"labels_key": "group", "dropout_rate": 1.0}, ValueError, "dropout_rate must be in"),
        (
            {"labels_key": "group", "batch_size": 1},
            ValueError,
            "batch_size must be an integer >= 2",
        ),
        ({"labels_key": "group", "key_added": "a/b"}, ValueError, "key_added must be a non-empty"),
        ({"labels_key": "group", "key_added": None}, ValueError, "key_added must be a non-empty"),
        ({"labels_key": "group", "random_state": None}, ValueError, "random_state must be an"),
        ({"labels_key": "group", "random_state": 1.5}, ValueError, "random_state must be an"),
    ],
)
def test_bad_arguments(lognorm_adata, kwargs, error, match, backend):
    adata = lognorm_adata
    adata.obsm["X_pca"] = np.zeros((adata.n_obs, 5), dtype=np.float32)
    before = snapshot(adata)
    with pytest.raises(error, match=match):
        sn.tl.classify(adata, **{"backend": backend, **kwargs}, **FAST)
    assert_unchanged(adata, before)


def test_duplicate_gene_names_fail_before_training(lognorm_adata):
    """A model's genes are found by name on reuse; duplicates would give an unusable model."""
    adata = lognorm_adata
    adata.var_names = [*adata.var_names[:-1], adata.var_names[0]]
    before = snapshot(adata)
    with pytest.raises(ValueError, match="var_names are not unique.*var_names_make_unique"):
        sn.tl.classify(adata, "group", **FAST)
    assert_unchanged(adata, before)
    adata.obsm["X_pca"] = np.random.default_rng(0).normal(size=(adata.n_obs, 5)).astype(np.float32)
    sn.tl.classify(adata, "group", use_rep="X_pca", **{**FAST, "max_epochs": 1})  # no genes used


@pytest.mark.parametrize(
    ("labels_key", "error", "match"),
    [("nope", KeyError, "labels_key='nope' is not a column"), ("empty", ValueError, "no label")],
)
def test_model_reuse_checks_labels_key_first(trained, labels_key, error, match):
    """With model=, labels_key only scores the predictions; a bad one fails before them."""
    _, model = trained
    query = sn.datasets.synthetic_counts(n_obs=60, n_vars=200, n_groups=3, seed=2)
    query.obs["empty"] = pd.Series(np.nan, index=query.obs_names, dtype=object)
    before = snapshot(query)
    with pytest.raises(error, match=match):
        sn.tl.classify(query, labels_key, model=model)
    assert_unchanged(query, before)


def test_zero_epochs_is_an_error(lognorm_adata):
    """max_epochs=0 would write the labels of an untrained network."""
    adata = lognorm_adata
    before = snapshot(adata)
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1"):
        sn.tl.classify(adata, "group", max_epochs=0, enable_progress_bar=False)
    assert_unchanged(adata, before)


def test_all_nan_labels(lognorm_adata, backend):
    adata = lognorm_adata
    adata.obs["empty"] = pd.Series(np.nan, index=adata.obs_names, dtype=object)
    before = snapshot(adata)
    with pytest.raises(ValueError, match="only missing"):
        sn.tl.classify(adata, "empty", backend=backend, **FAST)
    assert_unchanged(adata, before)


def test_class_with_one_cell(lognorm_adata, backend):
    adata = lognorm_adata
    labels = adata.obs["group"].astype(str).to_numpy().copy()
    labels[0] = "lonely"
    adata.obs["lab"] = labels
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"\['lonely'\] have fewer than 2 cells"):
        sn.tl.classify(adata, "lab", backend=backend, **FAST)
    assert_unchanged(adata, before)


def test_single_class(lognorm_adata, backend):
    adata = lognorm_adata
    adata.obs["one"] = "a"
    with pytest.raises(ValueError, match="single class"):
        sn.tl.classify(adata, "one", backend=backend, **FAST)


def test_non_finite_values(lognorm_adata, backend):
    adata = lognorm_adata
    adata.X = adata.X.toarray()
    adata.X[3, 4] = np.nan
    before = snapshot(adata)
    with pytest.raises(ValueError, match="NaN or infinite"):
        sn.tl.classify(adata, "group", backend=backend, **FAST)
    assert_unchanged(adata, before)


@pytest.mark.parametrize(("value", "match"), [(-1.0, "negative"), (0.5, "non-integer")])
def test_counts_layer_must_hold_counts(counts_adata, backend, value, match):
    adata = counts_adata
    layer = adata.layers["counts"].toarray()
    layer[0, 0] = value
    adata.layers["counts"] = layer
    before = snapshot(adata)
    with pytest.raises(ValueError, match=match):
        sn.tl.classify(adata, "group", layer="counts", backend=backend, **FAST)
    assert_unchanged(adata, before)


def test_empty_anndata(backend):
    with pytest.raises(ValueError, match="adata is empty"):
        sn.tl.classify(ad.AnnData(np.zeros((0, 5), dtype=np.float32)), "group", backend=backend)


def test_query_without_shared_genes(trained):
    _, model = trained
    query = ad.AnnData(
        np.ones((5, 4), dtype=np.float32),
        var=pd.DataFrame(index=[f"other{i}" for i in range(4)]),
    )
    with pytest.raises(ValueError, match="shares no genes"):
        sn.tl.classify(query, model=model)
    assert "classify" not in query.uns


def test_model_trained_on_other_representation(trained):
    adata, model = trained
    query = adata[:20].copy()
    query.obsm["X_pca"] = np.zeros((20, 5), dtype=np.float32)
    before = snapshot(query)
    with pytest.raises(ValueError, match="model= was trained on adata.X"):
        sn.tl.classify(query, model=model, use_rep="X_pca", key_added="x")
    assert_unchanged(query, before)


def test_untrained_or_foreign_model(lognorm_adata, backend):
    before = snapshot(lognorm_adata)
    with pytest.raises(TypeError, match="scneural Classifier"):
        sn.tl.classify(lognorm_adata, backend=backend, model="not a model")
    with pytest.raises(TypeError, match="Classifier"):  # a module is not a model
        sn.tl.classify(lognorm_adata, backend=backend, model=_untrained(backend).module)
    with pytest.raises(ValueError, match="not been trained"):
        sn.tl.classify(lognorm_adata, model=_untrained(backend))
    assert_unchanged(lognorm_adata, before)


def _untrained(backend):
    registered = sn.datasets.synthetic_counts(n_obs=60, n_vars=20, n_groups=3, seed=0)
    _model_class(backend).setup_anndata(registered, labels_key="group")
    return _model_class(backend)(registered, n_hidden=(8,))


def test_failed_write_leaves_adata_unchanged(trained, monkeypatch):
    adata, model = trained
    query = adata[:30].copy()
    before = snapshot(query)
    from scneural import _utils

    original = _utils.to_h5ad_safe

    def broken(value):
        raise RuntimeError("disk full")

    monkeypatch.setattr("scneural.tl._classify.to_h5ad_safe", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        sn.tl.classify(query, model=model, key_added="new")
    monkeypatch.setattr("scneural.tl._classify.to_h5ad_safe", original)
    assert_unchanged(query, before)


def test_user_adata_gets_no_scvi_keys(lognorm_adata, backend):
    sn.tl.classify(lognorm_adata, "group", backend=backend, max_epochs=1, enable_progress_bar=False)
    assert not any(k.startswith("_scvi") for k in lognorm_adata.uns)


@pytest.mark.data
def test_pbmc3k_transfer_real_data(backend):
    adata = load_real("pbmc3k_annotated")
    adata = adata[adata.obs["seurat_annotations"].notna()].copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=1000, flavor="seurat")
    adata = adata[:, adata.var["highly_variable"]].copy()
    rng = np.random.default_rng(0)
    test = rng.random(adata.n_obs) < 0.2
    ref, query = adata[~test].copy(), adata[test].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sn.tl.classify(
            ref, "seurat_annotations", backend=backend, max_epochs=30, enable_progress_bar=False
        )
        sn.tl.classify(query, "seurat_annotations", model=model)
    # majority class is ~28%; a working classifier is far above it
    assert query.uns["classify"]["metrics"]["accuracy"] > 0.8
    assert query.uns["classify"]["metrics"]["macro_f1"] > 0.8


def test_reuse_refuses_another_batch_key(trained):
    """With model=, batch_key= can only repeat the model's own (None here); another column
    would be silently ignored."""
    adata, model = trained
    query = adata.copy()
    query.obs["batch"] = "b0"
    before = snapshot(query)
    with pytest.raises(ValueError, match="trained with batch_key=None.*batch_key='batch'"):
        sn.tl.classify(query, model=model, batch_key="batch")
    assert_unchanged(query, before)


def test_integer_labels_with_a_missing_value_are_scored(lognorm_adata):
    """An integer label column is stored as floats once it has a NaN (1 -> 1.0); the
    classes learnt from the complete column must still match it when scoring a query."""
    adata = lognorm_adata
    adata.obs["code"] = adata.obs["group"].cat.codes.to_numpy()  # int64: 0, 1, 2
    model = sn.tl.classify(adata, "code", **{**FAST, "max_epochs": 5})
    assert set(model.classes_) == {"0", "1", "2"}
    query = adata.copy()
    query.obs["code"] = query.obs["code"].astype(float)
    query.obs.iloc[0, query.obs.columns.get_loc("code")] = np.nan
    sn.tl.classify(query, labels_key="code", model=model, key_added="q")
    agreement = (query.obs["q_label"].astype(str) == adata.obs["classify_label"].astype(str)).mean()
    assert agreement == 1.0  # the same model on the same cells
    assert query.uns["q"]["metrics"]["accuracy"] > 0.8  # was 0: "1.0" never equals "1"
    # a float column with NaN trains on integer names too
    with pytest.warns(UserWarning, match="1 cell has a missing"):  # not "1 cells have"
        refit = sn.tl.classify(query, "code", **{**FAST, "max_epochs": 2}, key_added="refit")
    assert set(refit.classes_) == {"0", "1", "2"}


@pytest.mark.parametrize("backend_name", ["torch", pytest.param("jax", marks=pytest.mark.jax)])
def test_too_few_cells_for_a_validation_split(backend_name):
    """Under 20 cells, 5% validation is no cell: say so before training."""
    if backend_name == "jax" and not HAS_JAX:
        pytest.skip("the JAX extra is not installed")
    adata = sn.datasets.synthetic_counts(n_obs=19, n_vars=30, n_groups=2, seed=0)
    before = snapshot(adata)
    with pytest.raises(ValueError, match="leaves no cell for validation.*train_size=1.0"):
        sn.tl.classify(adata, "group", layer="counts", backend=backend_name, **FAST)
    assert_unchanged(adata, before)
    sn.tl.classify(adata, "group", layer="counts", train_size=1.0, backend=backend_name, **FAST)
    assert adata.obs["classify_label"].shape == (19,)


def test_sparse_representation(lognorm_adata):
    adata = lognorm_adata
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(adata.n_obs, 6)).astype(np.float32)
    dense[:, 0] += adata.obs["group"].cat.codes.to_numpy() * 3
    adata.obsm["X_sparse"] = sparse.csr_matrix(dense)
    sn.tl.classify(adata, "group", use_rep="X_sparse", **FAST)
    assert adata.obsm["classify_proba"].shape[0] == adata.n_obs


def test_reuse_does_not_log_scvi_setup_transfer(lognorm_adata, caplog):
    """The tool hands the model a fresh proxy each call; scvi-tools' note about
    transferring the setup would follow every annotation and say nothing actionable."""
    import logging

    adata = lognorm_adata
    model = sn.tl.classify(adata, "group", **{**FAST, "max_epochs": 2})
    query = adata[:50].copy()
    del query.obs["group"]
    scvi_logger = logging.getLogger("scvi")
    scvi_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="scvi"):
            sn.tl.classify(query, model=model)
    finally:
        scvi_logger.removeHandler(caplog.handler)
    assert "attempting to transfer" not in caplog.text
    assert query.obs["classify_label"].notna().all()


def test_reduce_lr_on_plateau_watches_the_classifier_loss(lognorm_adata):
    """scvi-tools' scheduler watches elbo_validation by default, which a classifier does
    not log: the classifier's validation loss is watched instead."""
    adata = lognorm_adata
    sn.tl.classify(
        adata, "group", plan_kwargs={"reduce_lr_on_plateau": True}, **{**FAST, "max_epochs": 3}
    )
    assert "lr-Adam" in adata.uns["classify"]["history"]


def test_predicted_labels_follow_the_labels_column_order(lognorm_adata):
    """scanpy colours categories by position: the same type gets the same colour in the
    true and the predicted column only if both list the types in the same order."""
    adata = lognorm_adata
    adata.obs["group"] = adata.obs["group"].cat.reorder_categories(["g2", "g0", "g1"])
    model = sn.tl.classify(adata, "group", **FAST)
    # the least confident tenth of the cells "Unknown" (a type without cells is no category)
    low = float(np.quantile(adata.obs["classify_confidence"], 0.1))
    sn.tl.classify(adata, model=model, labels_key="group", min_confidence=low)
    categories = list(adata.obs["classify_label"].cat.categories)
    assert categories == ["g2", "g0", "g1", "Unknown"]
    assert list(adata.uns["classify"]["classes"]) == ["g0", "g1", "g2"]  # the model's order


@pytest.mark.parametrize("unlabeled_category", [None, "Unknown"])
def test_classes_sorted_when_some_cells_are_unlabelled(lognorm_adata, unlabeled_category):
    """scvi-tools swaps the unlabeled category with the last class of its sorted mapping:
    with lowercase labels (after "_" and "U") and some cell unlabelled, the classes came out
    as g2, g0, g1 in the labels' categories, the probability columns and uns."""
    adata = lognorm_adata
    labels = adata.obs["group"].astype(str).to_numpy(dtype=object)
    labels[::10] = np.nan if unlabeled_category is None else unlabeled_category
    adata.obs["lab"] = labels
    model = sn.tl.classify(
        adata, "lab", unlabeled_category=unlabeled_category, **{**FAST, "max_epochs": 2}
    )
    classes = ["g0", "g1", "g2"]
    assert list(model.classes_) == classes
    assert list(adata.obs["classify_label"].cat.categories) == classes
    assert list(adata.obsm["classify_proba"].columns) == classes
    assert list(adata.uns["classify"]["classes"]) == classes


def test_missing_batches_are_refused_before_training(lognorm_adata):
    """A missing batch read "nan", "<NA>" or "None" depending on the column's dtype, so a
    query's missing batches never matched its reference's (and scvi-tools refuses them)."""
    adata = lognorm_adata
    batches = np.array(["x", "y"] * (adata.n_obs // 2), dtype=object)
    adata.obs["b"] = pd.array(np.where(np.arange(adata.n_obs) < 3, None, batches), dtype="string")
    before = snapshot(adata)
    with pytest.raises(ValueError, match="batch_key='b' is missing .NaN. for 3 cells"):
        sn.tl.classify(adata, "group", batch_key="b", **FAST)
    assert_unchanged(adata, before)
    adata.obs["b"] = batches
    model = sn.tl.classify(adata, "group", batch_key="b", **{**FAST, "max_epochs": 2})
    query = adata.copy()
    query.obs["b"] = np.where(np.arange(query.n_obs) < 3, np.nan, batches)
    before = snapshot(query)
    with pytest.raises(ValueError, match=r"batch_key='b' is missing .NaN. for 3 cells"):
        sn.tl.classify(query, model=model, key_added="q")
    assert_unchanged(query, before)
    del query.obs["b"]
    before = snapshot(query)
    with pytest.raises(KeyError, match="model= was trained with batch_key='b', which is not a"):
        sn.tl.classify(query, model=model, key_added="q")
    assert_unchanged(query, before)


def test_dataframe_representation_with_nullable_columns(lognorm_adata):
    """A DataFrame in obsm with nullable (Int64, Float64, boolean) columns is numbers; it
    failed in np.isfinite with "ufunc 'isfinite' not supported". A text column is refused
    before training, naming use_rep."""
    adata = lognorm_adata
    rng = np.random.default_rng(0)
    codes = adata.obs["group"].cat.codes.to_numpy()
    frame = pd.DataFrame(
        {
            "code": codes * 3,
            "noise": rng.normal(size=adata.n_obs),
            "flag": rng.random(adata.n_obs) > 0.5,
        },
        index=adata.obs_names,
    )
    adata.obsm["plain"] = frame
    adata.obsm["nullable"] = frame.astype({"code": "Int64", "noise": "Float64", "flag": "boolean"})
    fast = {**FAST, "max_epochs": 2}
    sn.tl.classify(adata, "group", use_rep="plain", key_added="plain", **fast)
    sn.tl.classify(adata, "group", use_rep="nullable", key_added="nullable", **fast)
    np.testing.assert_array_equal(adata.obsm["X_nullable"], adata.obsm["X_plain"])
    adata.obsm["text"] = frame.assign(group=adata.obs["group"].to_numpy())
    before = snapshot(adata)
    with pytest.raises(
        ValueError, match=r"use_rep='text' is a DataFrame with non-numeric.*'group'"
    ):
        sn.tl.classify(adata, "group", use_rep="text", **fast)
    assert_unchanged(adata, before)


def test_diverged_training_writes_no_nan_results(lognorm_adata, backend):
    """A learning rate that makes the loss NaN is reported; no NaN labels are written."""
    before = snapshot(lognorm_adata)
    with pytest.raises(ValueError, match="training diverged.*Lower the learning rate"):
        sn.tl.classify(
            lognorm_adata,
            "group",
            backend=backend,
            max_epochs=2,
            plan_kwargs={"lr": 1e30},
            enable_progress_bar=False,
        )
    assert_unchanged(lognorm_adata, before)


def test_a_matrix_of_one_value_is_refused_before_training(lognorm_adata, backend):
    """An empty layer (all zeros) would train a model that predicts one class for every
    cell; it is refused, naming the layer, and nothing is written."""
    adata = lognorm_adata
    adata.layers["empty"] = sparse.csr_matrix(adata.shape, dtype=np.float32)
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"adata.layers\['empty'\] holds the same value \(0\)"):
        sn.tl.classify(adata, "group", layer="empty", backend=backend, max_epochs=1)
    assert_unchanged(adata, before)


def test_values_beyond_float32_are_refused_before_training(lognorm_adata):
    """float64 values that are finite but overflow float32 (the models' precision) are an
    error before training, not a 'training diverged' after it."""
    adata = lognorm_adata
    adata.obsm["huge"] = np.random.default_rng(0).normal(size=(adata.n_obs, 3)) * 1e300
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"obsm\['huge'\] holds values beyond the float32"):
        sn.tl.classify(adata, "group", use_rep="huge", **FAST)
    assert_unchanged(adata, before)
