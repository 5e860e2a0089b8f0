"""The model classes used directly, as scvi-tools models are (the README's model API):
queries without the training columns, untrained models, summaries, setup views."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import scneural as sn
from conftest import HAS_JAX

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}


def _lognorm(seed: int = 0, n_obs: int = 200):
    adata = sn.datasets.synthetic_counts(n_obs=n_obs, n_vars=50, n_groups=3, seed=seed)
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


CLASSIFIERS = ["Classifier", pytest.param("JaxClassifier", marks=pytest.mark.jax)]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_predicts_cells_without_a_labels_column(name):
    """Annotating new cells: the query has no labels column; its obs is left alone."""
    if name.startswith("Jax") and not HAS_JAX:
        pytest.skip("the JAX extra is not installed")
    cls = getattr(sn.models, name)
    reference = _lognorm()
    cls.setup_anndata(reference, labels_key="group")
    model = cls(reference, n_hidden=(16,))
    model.train(max_epochs=3, **TRAIN)
    query = _lognorm(seed=1, n_obs=40)
    del query.obs["group"]
    before = query.obs.copy()
    labels = model.predict(query)
    assert labels.shape == (40,) and set(labels) <= set(model.classes_)
    assert model.get_latent_representation(query).shape[0] == 40
    pd.testing.assert_frame_equal(query.obs, before)  # no column written
    # the same cells with their labels give the same predictions
    labelled = _lognorm(seed=1, n_obs=40)
    np.testing.assert_array_equal(model.predict(labelled), labels)


def test_soft_predictions_are_indexed_by_cell():
    reference = _lognorm()
    sn.models.Classifier.setup_anndata(reference, labels_key="group")
    model = sn.models.Classifier(reference, n_hidden=(16,))
    model.train(max_epochs=2, **TRAIN)
    proba = model.predict(soft=True)
    assert proba.index.equals(reference.obs_names)
    reference.obsm["proba"] = proba  # what the index is for
    subset = model.predict(indices=[3, 1], soft=True)
    assert list(subset.index) == [reference.obs_names[3], reference.obs_names[1]]
    np.testing.assert_allclose(subset.to_numpy(), proba.iloc[[3, 1]].to_numpy(), atol=1e-6)


def test_deep_cluster_reads_new_cells_without_its_index_column():
    adata = _lognorm()
    sn.models.DeepCluster.setup_anndata(adata, layer="counts")
    model = sn.models.DeepCluster(adata, n_clusters=None, n_hidden=(16,), n_latent=4)
    with pytest.raises(RuntimeError, match="has not been trained"):
        model.get_latent_representation()
    model.pretrain(2, **TRAIN)
    assert model.get_latent_representation().shape == (adata.n_obs, 4)  # pretrained is enough
    model.train(max_epochs=1, pretrain_epochs=1, n_init=2, **TRAIN)
    k = model.module.n_clusters
    assert f"clusters {k} (estimated)" in model._model_summary_string
    new = _lognorm(seed=2, n_obs=30)
    before = new.obs.copy()
    clusters = model.predict(new)
    assert clusters.shape == (30,) and clusters.max() < k
    pd.testing.assert_frame_equal(new.obs, before)  # no _indices column written


def test_deep_cluster_refuses_held_out_cells_before_training():
    adata = _lognorm()
    sn.models.DeepCluster.setup_anndata(adata, layer="counts")
    model = sn.models.DeepCluster(adata, n_clusters=3, n_hidden=(16,), n_latent=4)
    for option in (
        {"train_size": 0.9},
        {"early_stopping": True},
        {"check_val_every_n_epoch": 1},  # Lightning failed on a missing validation loader
        {"val_check_interval": 0.5},
    ):
        with pytest.raises(ValueError, match="both phases train on every cell"):
            model.train(max_epochs=1, pretrain_epochs=1, **option, **TRAIN)
        assert not model.is_pretrained_


@pytest.mark.parametrize("name", ["Classifier", "ScGen"])
def test_untrained_models_refuse_to_predict(name):
    adata = _lognorm()
    adata.obs["condition"] = np.where(np.arange(adata.n_obs) % 2, "ctrl", "stim")
    cls = getattr(sn.models, name)
    if name == "ScGen":
        cls.setup_anndata(adata, condition_key="condition", cell_type_key="group")
        model = cls(adata, n_hidden=16, n_latent=4)
    else:
        cls.setup_anndata(adata, labels_key="group")
        model = cls(adata, n_hidden=(16,))
    with pytest.raises(RuntimeError, match=f"this {name} has not been trained"):
        model.get_latent_representation()


def test_view_anndata_setup_prints():
    adata = _lognorm()
    sn.models.Classifier.setup_anndata(adata, labels_key="group")
    model = sn.models.Classifier(adata, n_hidden=(16,))
    model.view_anndata_setup()  # scvi-tools needs rich.pretty imported


def test_image_model_summary_counts_its_features():
    rng = np.random.default_rng(0)
    proxy = sc.AnnData(rng.normal(size=(20, 5)).astype(np.float32))
    proxy.obsm["patches"] = rng.integers(0, 255, size=(20, 16 * 16 * 3), dtype=np.uint8)
    sn.models.ImageExpressionModel.setup_anndata(proxy, patches_key="patches")
    model = sn.models.ImageExpressionModel(proxy, n_channels=(4,), n_latent=8)
    assert model.module.n_features == 16
    assert "-> 16 features" in model._model_summary_string


def _untrained(name: str):
    """A small model of each class, set up on synthetic cells."""
    cls = getattr(sn.models, name)
    if name.endswith("ImageExpressionModel"):
        rng = np.random.default_rng(0)
        proxy = sc.AnnData(rng.normal(size=(20, 5)).astype(np.float32))
        proxy.obsm["patches"] = rng.integers(0, 255, size=(20, 16 * 16 * 3), dtype=np.uint8)
        cls.setup_anndata(proxy, patches_key="patches")
        return cls(proxy, n_channels=(4,), n_latent=8)
    adata = _lognorm()
    if name.endswith("ScGen"):
        adata.obs["condition"] = np.where(np.arange(adata.n_obs) % 2, "ctrl", "stim")
        cls.setup_anndata(adata, condition_key="condition", cell_type_key="group")
        return cls(adata, n_hidden=16, n_latent=4)
    if name.endswith("DeepCluster"):
        cls.setup_anndata(adata, layer="counts")
        return cls(adata, n_clusters=3, n_hidden=(16,), n_latent=4)
    cls.setup_anndata(adata, labels_key="group")
    return cls(adata, n_hidden=(16,))


def _jax(name: str):
    return pytest.param(name, marks=pytest.mark.jax)


@pytest.mark.parametrize(
    "name",
    [
        "Classifier",
        "ScGen",
        "DeepCluster",
        "ImageExpressionModel",
        _jax("JaxClassifier"),
        _jax("JaxScGen"),
        _jax("JaxDeepCluster"),
    ],
)
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"lr": -1.0}, "{phase}lr must be a number > 0"),
        ({"plan_kwargs": {"lr": 0}}, r"{phase}plan_kwargs\['lr'\] must be a number > 0"),
        (
            {"plan_kwargs": {"weight_decay": -1e-4}},
            r"{phase}plan_kwargs\['weight_decay'\] must be a number >= 0",
        ),
        (
            {"plan_kwargs": {"eps": float("nan")}},
            r"{phase}plan_kwargs\['eps'\] must be a number > 0",
        ),
        ({"plan_kwargs": [("lr", 1e-3)]}, "{phase}plan_kwargs must be a dict"),
        # a misspelt plan argument was ignored without a word (the modules' losses take
        # **kwargs), and recorded in uns as if it had an effect
        (
            {"plan_kwargs": {"lr_patiense": 3}},
            r"{phase}plan_kwargs holds 'lr_patiense' \(did you mean 'lr_patience'\?\)",
        ),
    ],
)
def test_bad_optimizer_settings_are_refused_before_training(name, setting, message):
    """optax would ascend the loss with a negative learning rate without a word. The
    message names the value as it was passed (plan_kwargs['lr'] or lr)."""
    if name.startswith("Jax") and not HAS_JAX:
        pytest.skip("the JAX extra is not installed")
    error = TypeError if "dict" in message or "holds" in message else ValueError
    # DeepCluster's two phases take their own: both are checked before pretraining, and
    # their optimizers take no weight_decay or eps (refused as unused)
    phases = ("pretrain_", "cluster_") if name.endswith("DeepCluster") else ("",)
    if name.endswith("DeepCluster") and any(k in str(setting) for k in ("weight_decay", "eps")):
        message = r"{phase}plan_kwargs\['(weight_decay|eps)'\]: not used"
    for phase in phases:
        model = _untrained(name)
        with pytest.raises(error, match=message.format(phase=phase)):
            model.train(max_epochs=1, **{phase + k: v for k, v in setting.items()}, **TRAIN)
        assert not model.is_trained_
        assert not getattr(model, "is_pretrained_", False)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_loads_for_cells_to_annotate(name, tmp_path):
    """scvi-tools' load(dir, adata=query): the query has no labels, or labels the model
    never saw; the caller's obs is not written and predictions equal the saved model's."""
    if name.startswith("Jax") and not HAS_JAX:
        pytest.skip("the JAX extra is not installed")
    cls = getattr(sn.models, name)
    reference = _lognorm()
    cls.setup_anndata(reference, labels_key="group")
    # balanced class weights are computed from labels, which a query lacks
    model = cls(reference, n_hidden=(16,), class_weight="balanced")
    model.train(max_epochs=2, **TRAIN)
    model.save(tmp_path / "clf")
    unlabelled = _lognorm(seed=1, n_obs=40)
    del unlabelled.obs["group"]
    unseen = _lognorm(seed=1, n_obs=40)
    unseen.obs["group"] = "a type the reference lacks"
    for query in (unlabelled, unseen):
        before = query.obs.copy()
        loaded = cls.load(tmp_path / "clf", adata=query)
        pd.testing.assert_frame_equal(query.obs, before)
        np.testing.assert_array_equal(loaded.predict(), model.predict(query))


def test_scgen_loads_with_a_new_cell_type(tmp_path):
    adata = _lognorm()
    adata.obs["condition"] = np.where(np.arange(adata.n_obs) % 2, "ctrl", "stim")
    sn.models.ScGen.setup_anndata(adata, condition_key="condition", cell_type_key="group")
    model = sn.models.ScGen(adata, n_hidden=16, n_latent=4)
    model.train(max_epochs=2, **TRAIN)
    model.save(tmp_path / "scgen")
    other = adata.copy()
    other.obs["group"] = "a new type"
    loaded = sn.models.ScGen.load(tmp_path / "scgen", adata=other)
    np.testing.assert_allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-5
    )


def test_load_refuses_genes_that_are_not_the_models(tmp_path):
    """scvi-tools only warns, and the model would read every gene as another."""
    reference = _lognorm()
    sn.models.Classifier.setup_anndata(reference, labels_key="group")
    model = sn.models.Classifier(reference, n_hidden=(16,))
    model.train(max_epochs=2, **TRAIN)
    model.save(tmp_path / "clf")
    query = _lognorm(seed=1, n_obs=40)
    reordered = query[:, query.var_names[::-1]].copy()
    with pytest.raises(ValueError, match="has them in another order"):
        sn.models.Classifier.load(tmp_path / "clf", adata=reordered)
    renamed = query.copy()
    renamed.var_names = [f"other{i}" for i in range(renamed.n_vars)]
    with pytest.raises(ValueError, match="lacks 50 of them"):
        sn.models.Classifier.load(tmp_path / "clf", adata=renamed)
    # the fix the message names
    genes = sn.models.Classifier.saved_var_names(tmp_path / "clf")
    loaded = sn.models.Classifier.load(tmp_path / "clf", adata=reordered[:, genes].copy())
    np.testing.assert_array_equal(loaded.predict(), model.predict(query))
    with pytest.raises(FileNotFoundError, match="no saved model"):
        sn.models.Classifier.saved_var_names(tmp_path / "nothing")


def test_load_without_a_saved_anndata_asks_for_adata(tmp_path):
    """A model saved without its AnnData cannot be rebuilt from its registry: scvi-tools
    said only "adata or registry must be provided"; the error names adata= and the fix."""
    reference = _lognorm()
    sn.models.Classifier.setup_anndata(reference, labels_key="group")
    model = sn.models.Classifier(reference, n_hidden=(16,))
    model.train(max_epochs=1, **TRAIN)
    model.save(tmp_path / "clf", prefix="run1_")
    with pytest.raises(ValueError, match=r"saved without its AnnData.*load needs adata="):
        sn.models.Classifier.load(tmp_path / "clf", prefix="run1_")
    genes = sn.models.Classifier.saved_var_names(tmp_path / "clf", prefix="run1_")
    loaded = sn.models.Classifier.load(
        tmp_path / "clf", adata=reference[:, genes].copy(), prefix="run1_"
    )
    np.testing.assert_array_equal(loaded.predict(reference), model.predict(reference))


def test_load_refuses_an_anndata_left_by_an_earlier_save(tmp_path):
    """save(overwrite=True) without save_anndata=True keeps the folder's earlier
    adata.h5ad; scvi-tools loaded it with a warning and the model read its genes in the
    earlier model's order."""
    reference = _lognorm()
    for genes, save_anndata in ((reference.var_names, True), (reference.var_names[::-1], False)):
        cells = reference[:, genes].copy()
        sn.models.Classifier.setup_anndata(cells, labels_key="group")
        model = sn.models.Classifier(cells, n_hidden=(16,))
        model.train(max_epochs=1, **TRAIN)
        model.save(tmp_path / "clf", overwrite=True, save_anndata=save_anndata)
    with pytest.raises(ValueError, match=r"adata.h5ad\) is not this model's.*pass adata="):
        sn.models.Classifier.load(tmp_path / "clf")
    model.save(tmp_path / "clf", overwrite=True, save_anndata=True)  # the fix the error names
    loaded = sn.models.Classifier.load(tmp_path / "clf")
    np.testing.assert_array_equal(loaded.predict(cells), model.predict(cells))


@pytest.mark.jax
@pytest.mark.skipif(not HAS_JAX, reason="the JAX extra is not installed")
def test_jax_training_again_uses_the_new_learning_rate():
    """scvi-tools' JAX plan kept the first optimizer: a second train() (or one after
    load) ignored lr and weight_decay. A torch model builds a new optimizer each time."""
    import jax

    reference = _lognorm()
    sn.models.JaxClassifier.setup_anndata(reference, labels_key="group")
    model = sn.models.JaxClassifier(reference, n_hidden=(16,))
    model.train(max_epochs=2, **TRAIN)

    def params():
        return [np.asarray(p) for p in jax.tree_util.tree_leaves(model.module.params)]

    before = params()
    model.train(max_epochs=1, lr=1e-9, **TRAIN)
    moved = max(np.abs(a - b).max() for a, b in zip(before, params()))
    assert moved < 1e-6
    model.train(max_epochs=1, lr=1e-2, **TRAIN)
    assert max(np.abs(a - b).max() for a, b in zip(before, params())) > 1e-4


SCGENS = ["ScGen", pytest.param("JaxScGen", marks=pytest.mark.jax)]


@pytest.mark.parametrize("name", SCGENS)
def test_diverged_training_warns_a_model_used_directly(name):
    """The tools refuse NaN results; a model trained directly says at the end of train
    that its loss became NaN (curve and epoch), instead of torch's "Expected parameter
    loc" from inside Lightning, and says nothing for a training that went well."""
    if name.startswith("Jax") and not HAS_JAX:
        pytest.skip("the JAX extra is not installed")
    cls = getattr(sn.models, name)
    adata = _lognorm()
    adata.obs["condition"] = np.where(np.arange(adata.n_obs) % 2, "ctrl", "stim")
    cls.setup_anndata(adata, condition_key="condition", cell_type_key="group")
    model = cls(adata, n_hidden=16, n_latent=4)
    with pytest.warns(RuntimeWarning, match=r"train: training diverged \(.*loss became nan"):
        model.train(max_epochs=2, plan_kwargs={"lr": 1e30}, **TRAIN)
    assert not np.isfinite(model.get_latent_representation()).all()
    healthy = cls(adata, n_hidden=16, n_latent=4)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*training diverged", category=RuntimeWarning)
        healthy.train(max_epochs=2, **TRAIN)
    assert np.isfinite(healthy.get_latent_representation()).all()


def test_load_names_the_missing_file_and_the_prefixes_found(tmp_path):
    """scvi-tools answers a wrong folder or prefix with advice about pre-0.15 saves."""
    reference = _lognorm()
    sn.models.Classifier.setup_anndata(reference, labels_key="group")
    model = sn.models.Classifier(reference, n_hidden=(8,))
    model.train(max_epochs=1, **TRAIN)
    model.save(tmp_path / "clf", prefix="ref_", save_anndata=True)
    with pytest.raises(FileNotFoundError, match="holds a model saved with prefix='ref_'"):
        sn.models.Classifier.load(tmp_path / "clf")
    with pytest.raises(FileNotFoundError, match="no saved model at .*wrong_model.pt"):
        sn.models.Classifier.load(tmp_path / "clf", adata=reference, prefix="wrong_")
    with pytest.raises(FileNotFoundError, match="nope does not exist"):
        sn.models.ScGen.load(tmp_path / "nope")
    loaded = sn.models.Classifier.load(tmp_path / "clf", prefix="ref_")
    np.testing.assert_array_equal(loaded.predict(reference), model.predict(reference))


@pytest.mark.jax
def test_load_with_the_other_backends_class_names_the_class_to_use(tmp_path):
    if not HAS_JAX:
        pytest.skip("the JAX extra is not installed")
    adata = _lognorm()
    jax_model = sn.tl.classify(adata, "group", backend="jax", n_hidden=(8,), max_epochs=1, **TRAIN)
    jax_model.save(tmp_path / "j", save_anndata=True)
    with pytest.raises(ValueError, match=r"holds a JaxClassifier \(the JAX backend's model\), not"):
        sn.models.Classifier.load(tmp_path / "j")
    torch_model = sn.tl.classify(adata, "group", n_hidden=(8,), max_epochs=1, **TRAIN)
    torch_model.save(tmp_path / "t", save_anndata=True)
    with pytest.raises(ValueError, match=r"torch backend's model.*sn.models.Classifier.load"):
        sn.models.JaxClassifier.load(tmp_path / "t")
    with pytest.raises(ValueError, match="holds a Classifier, not a ScGen"):
        sn.models.ScGen.load(tmp_path / "t", adata=adata)


@pytest.mark.parametrize(
    "name",
    [
        "Classifier",
        "ScGen",
        "ImageExpressionModel",
        _jax("JaxClassifier"),
        _jax("JaxScGen"),
    ],
)
@pytest.mark.parametrize("max_epochs", [0, -1])
def test_train_refuses_fewer_than_one_epoch(name, max_epochs):
    """No step would run, yet scvi-tools marks the model trained: random weights would then
    annotate cells through the tools' model= (which only checks is_trained_)."""
    if name.startswith("Jax") and not HAS_JAX:
        pytest.skip("the JAX extra is not installed")
    model = _untrained(name)
    with pytest.raises(ValueError, match=f"max_epochs must be an integer >= 1, got {max_epochs}"):
        model.train(max_epochs=max_epochs, **TRAIN)
    assert not model.is_trained_
    assert model.training_record() == {}


@pytest.mark.parametrize("name", ["DeepCluster", _jax("JaxDeepCluster")])
def test_deep_cluster_refuses_zero_pretraining_epochs(name):
    """0 used to mean 'the default' (up to 300 epochs), the opposite of what was asked."""
    if name.startswith("Jax") and not HAS_JAX:
        pytest.skip("the JAX extra is not installed")
    model = _untrained(name)
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1, got 0"):
        model.pretrain(max_epochs=0, **TRAIN)
    with pytest.raises(ValueError, match="pretrain_epochs must be an integer >= 1, got 0"):
        model.train(max_epochs=1, pretrain_epochs=0, **TRAIN)
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 0, got -1"):
        model.train(max_epochs=-1, pretrain_epochs=1, **TRAIN)
    assert not model.is_pretrained_ and not model.is_trained_
    # DEC epochs 0 (pretraining and k-means only) is still a valid request
    model.train(max_epochs=0, pretrain_epochs=1, **TRAIN)
    assert model.is_trained_
    assert len(model.pretrain_history_["train_loss"]) == 1
