"""sn.tl.deep_cluster and the DeepCluster model (scDeepCluster on scvi-tools)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from scipy import sparse

import scneural as sn
from conftest import assert_unchanged, load_real, snapshot
from scneural.models.deep_cluster import (
    check_start_labels,
    kmeans_init,
    normalization_stats,
    start_label_centres,
    target_distribution,
)

FAST = {"pretrain_epochs": 30, "max_epochs": 10, "batch_size": 64}
TRAINER = {"enable_progress_bar": False, "accelerator": "cpu"}


def _data(seed: int = 0, n_obs: int = 256, **kwargs):
    kwargs.setdefault("fold_change", 6.0)
    return sn.datasets.synthetic_counts(
        n_obs=n_obs, n_vars=100, n_groups=3, markers_per_group=12, seed=seed, **kwargs
    )


def _run(adata, n_clusters=3, **kwargs):
    return sn.tl.deep_cluster(adata, n_clusters, **{**FAST, **TRAINER, **kwargs})


# every tl test runs once per backend (the `backend` fixture of conftest.py, torch and jax)
MODEL_CLASS = {"torch": "DeepCluster", "jax": "JaxDeepCluster"}


def _model_class(backend):
    return getattr(sn.models, MODEL_CLASS[backend])


def _weights(model) -> list[np.ndarray]:
    """Copies of all the trained variables of a model of either backend."""
    if model.backend == "torch":
        return [t.detach().cpu().numpy().copy() for t in model.module.state_dict().values()]
    import jax

    variables = {"params": model.module.params, "state": model.module.state}
    return [np.array(leaf) for leaf in jax.tree_util.tree_leaves(variables)]


def _centres(model) -> np.ndarray:
    """The cluster centres (k x n_latent) of a model of either backend."""
    if model.backend == "torch":
        return model.module.cluster_centres.detach().cpu().numpy()
    return np.asarray(model.module.params["cluster_centres"])


def _n_inputs_of_first_layers(model) -> tuple[int, int]:
    """Input widths of the first encoder and decoder layers (genes or latent, + batches)."""
    if model.backend == "torch":
        module = model.module
        return (
            module.encoder.linears[0].weight.shape[1],
            module.decoder.linears[0].weight.shape[1],
        )
    params = model.module.params
    return (
        params["encoder"]["linear_0"]["kernel"].shape[0],
        params["decoder"]["linear_0"]["kernel"].shape[0],
    )


@pytest.fixture(scope="module")
def trained(backend):
    adata = _data()
    model = _run(adata, labels_key="group", backend=backend)
    return adata, model


def test_writes_keys_shapes_dtypes(trained, backend):
    adata, model = trained
    assert type(model) is _model_class(backend)
    labels = adata.obs["deep_cluster"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert list(labels.cat.categories) == ["0", "1", "2"]
    assert adata.obsm["X_deep_cluster"].shape == (adata.n_obs, 32)
    assert adata.obsm["X_deep_cluster"].dtype == np.float32
    soft = adata.obsm["deep_cluster_soft"]
    assert soft.shape == (adata.n_obs, 3) and soft.dtype == np.float32
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(soft.argmax(axis=1).astype(str), labels.astype(str).to_numpy())
    uns = adata.uns["deep_cluster"]
    assert uns["n_clusters"] == 3 and uns["n_clusters_estimated"] is False
    assert uns["params"]["random_state"] == 0
    assert uns["params"]["backend"] == backend == model.backend
    history = uns["history"]
    assert set(history) == {"pretrain", "cluster"}
    assert len(history["pretrain"]["train_loss"]) == FAST["pretrain_epochs"]
    assert 1 <= len(history["cluster"]["train_loss"]) <= FAST["max_epochs"]
    assert {"kl_loss_train", "zinb_loss_train", "label_change"} <= set(history["cluster"])
    assert not any(name.startswith("kl_") for name in history["pretrain"])  # no KL term there
    assert len(uns["label_change"]) >= 1 and np.all(uns["label_change"] <= 1)
    assert uns["n_cells_dropped"] == 0 and len(uns["genes"]) == adata.n_vars
    assert uns["params"]["init"] == "euclidean"
    training = uns["params"]["training"]
    assert training["pretrain"]["max_epochs"] == FAST["pretrain_epochs"]
    assert training["pretrain"]["lr"] == 1e-3  # a default the tool does not pass
    assert training["train"]["n_init"] == 20 and training["train"]["tol"] == 1e-3
    assert training["train"]["max_epochs"] == FAST["max_epochs"]
    # the pretraining loss goes down
    assert history["pretrain"]["train_loss"][-1] < history["pretrain"]["train_loss"][0]


def test_recovers_known_groups(trained):
    adata, _ = trained
    scores = adata.uns["deep_cluster"]["metrics"]
    assert scores["ari"] > 0.8, scores
    rng = np.random.default_rng(12345)  # not the generator of the synthetic groups
    random_ari = sn.metrics.adjusted_rand_index(adata.obs["group"], rng.integers(0, 3, adata.n_obs))
    assert scores["ari"] > random_ari + 0.6


def test_deterministic_with_seed(trained, backend):
    adata, _ = trained
    again = _data()
    _run(again, labels_key="group", backend=backend)
    np.testing.assert_array_equal(again.obs["deep_cluster"], adata.obs["deep_cluster"])
    np.testing.assert_allclose(again.obsm["X_deep_cluster"], adata.obsm["X_deep_cluster"])
    # and the seed matters
    other = _data()
    _run(other, random_state=1, backend=backend)
    assert not np.allclose(other.obsm["X_deep_cluster"], adata.obsm["X_deep_cluster"])


def test_model_reuse_assigns_new_cells(trained, backend):
    adata, model = trained
    new = _data(seed=1, n_obs=200)
    new.var_names = adata.var_names
    new = new[:, ::-1].copy()  # genes in another order are aligned by name
    before_weights = _weights(model)
    returned = sn.tl.deep_cluster(new, model=model, labels_key="group")
    assert returned is model
    after_weights = _weights(model)
    assert len(after_weights) == len(before_weights) > 0
    for before, after in zip(before_weights, after_weights):
        np.testing.assert_array_equal(before, after)
    uns = new.uns["deep_cluster"]
    assert uns["params"]["model_reused"] is True and uns["n_clusters"] == 3
    assert uns["params"]["backend"] == backend
    # same markers in both data sets, so the learned clusters transfer
    assert uns["metrics"]["ari"] > 0.8
    # the training cells get their own labels back
    same = adata.copy()
    sn.tl.deep_cluster(same, model=model, key_added="again")
    np.testing.assert_array_equal(same.obs["again"], adata.obs["deep_cluster"])


def test_save_load_round_trip(trained, backend, tmp_path):
    adata, model = trained
    model.save(tmp_path / "dc", overwrite=True)
    loaded = _model_class(backend).load(tmp_path / "dc", adata=model.adata)
    assert type(loaded) is type(model) and loaded.is_trained
    assert loaded.module.n_clusters == 3
    assert loaded.training_record() == model.training_record() != {}
    np.testing.assert_allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-6
    )
    np.testing.assert_allclose(loaded.get_soft_assignment(), model.get_soft_assignment(), atol=1e-6)
    copy = adata.copy()
    sn.tl.deep_cluster(copy, model=loaded, key_added="loaded")
    np.testing.assert_array_equal(copy.obs["loaded"], adata.obs["deep_cluster"])
    assert set(copy.uns["loaded"]["history"]) == {"pretrain", "cluster"}


def test_estimates_k_when_not_given(backend):
    adata = _data(seed=2)
    model = sn.tl.deep_cluster(adata, None, backend=backend, **FAST, **TRAINER)
    uns = adata.uns["deep_cluster"]
    assert uns["n_clusters_estimated"] is True
    assert uns["params"]["n_clusters"] == "None"
    assert 2 <= uns["n_clusters"] <= 8
    assert model.module.n_clusters == uns["n_clusters"]
    # the clustering layer is built for the estimated k
    assert _centres(model).shape == (uns["n_clusters"], 32)
    assert adata.obsm["deep_cluster_soft"].shape == (adata.n_obs, uns["n_clusters"])
    assert adata.obs["deep_cluster"].nunique() <= uns["n_clusters"]
    assert sn.metrics.adjusted_rand_index(adata.obs["group"], adata.obs["deep_cluster"]) > 0.4


def test_batch_key_and_layer(backend):
    adata = _data(seed=3, n_batches=2, batch_effect=2.0)
    adata.X = sparse.csr_matrix(adata.shape, dtype=np.float32)  # counts only in the layer
    model = _run(adata, layer="counts", batch_key="batch", labels_key="group", backend=backend)
    assert model.module.n_batch == 2
    # encoder and decoder both see the one-hot batch
    assert _n_inputs_of_first_layers(model) == (adata.n_vars + 2, 32 + 2)
    assert adata.uns["deep_cluster"]["params"]["batch_key"] == "batch"
    assert adata.uns["deep_cluster"]["metrics"]["ari"] > 0.7
    # clusters do not follow batches
    assert sn.metrics.adjusted_rand_index(adata.obs["batch"], adata.obs["deep_cluster"]) < 0.2
    other = adata[adata.obs["batch"] == "b1"].copy()
    other.obs["batch"] = "b9"
    before = snapshot(other)
    with pytest.raises(ValueError, match="batches the model has not seen"):
        sn.tl.deep_cluster(other, model=model)
    assert_unchanged(other, before)


def test_zero_count_cells_dropped_and_gene_selection(backend):
    adata = _data(seed=4)
    X = adata.X.tolil()
    X[:5] = 0
    adata.X = X.tocsr()
    # the warning says the latent rows are NaN too, and what to do before sc.pp.neighbors
    with pytest.warns(UserWarning, match="5 cells have zero counts.*NaN rows.*notna"):
        _run(adata, n_top_genes=50, max_epochs=3, backend=backend)
    assert adata.obs["deep_cluster"].isna().sum() == 5
    assert np.isnan(adata.obsm["X_deep_cluster"][:5]).all()
    assert adata.obs["deep_cluster"][5:].notna().all()
    uns = adata.uns["deep_cluster"]
    assert uns["n_cells_dropped"] == 5
    genes = uns["genes"]
    assert len(genes) == 50
    markers = adata.var_names[adata.var["marker_of"] != ""]
    assert len(set(genes) & set(markers)) >= 30  # the markers are the variable genes


@pytest.mark.parametrize("fmt", [sparse.csc_matrix, sparse.csr_array, sparse.csc_array])
def test_other_sparse_formats_give_the_csr_result(fmt):
    # rows of a CSC matrix load as column-major minibatches: the input noise must not
    # depend on that memory layout; scipy's sparse arrays must pass scvi-tools' count check
    adata = _data(seed=7, n_obs=128)
    other = adata.copy()
    other.X = fmt(adata.X)
    kwargs = {"pretrain_epochs": 2, "max_epochs": 2, "n_top_genes": None}
    _run(adata, **kwargs)
    _run(other, **kwargs)
    np.testing.assert_array_equal(other.obsm["X_deep_cluster"], adata.obsm["X_deep_cluster"])
    assert other.obs["deep_cluster"].equals(adata.obs["deep_cluster"])
    assert type(other.X) is fmt  # the user's matrix is left as it was


def test_preprocessing_matches_scanpy_protocol():
    adata = _data(seed=6)
    mean, std, median = normalization_stats(adata.X)
    ref = adata.copy()
    library = np.asarray(ref.X.sum(axis=1)).ravel()
    assert median == pytest.approx(np.median(library))
    sc.pp.normalize_total(ref, target_sum=np.median(library))
    sc.pp.log1p(ref)
    dense = ref.X.toarray()
    np.testing.assert_allclose(mean, dense.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(std, dense.std(axis=0, ddof=1), rtol=1e-4, atol=1e-5)
    # dense and sparse input give the same statistics
    dense_stats = normalization_stats(adata.X.toarray())
    np.testing.assert_allclose(dense_stats[0], mean, rtol=1e-5)


def _directions_with_spread_lengths(seed: int = 0):
    """Three groups that differ in the direction of their codes, with lengths varying 30x."""
    rng = np.random.default_rng(seed)
    directions = np.eye(3, 8) * 4 + 1.0
    groups = rng.integers(0, 3, 600)
    lengths = np.exp(rng.uniform(np.log(0.2), np.log(6.0), 600))[:, None]
    codes = directions[groups] * lengths + rng.normal(scale=0.05, size=(600, 8))
    return codes, groups


def test_kmeans_init_geometry():
    codes, groups = _directions_with_spread_lengths()
    ari = sn.metrics.adjusted_rand_index
    euclidean_centres, euclidean = kmeans_init(codes, 3, geometry="euclidean")
    centres, cosine = kmeans_init(codes, 3, geometry="cosine")
    assert centres.shape == euclidean_centres.shape == (3, 8)
    assert centres.dtype == euclidean_centres.dtype == np.float32
    # cosine k-means finds groups that differ by direction, Euclidean k-means does not
    assert ari(groups, cosine) > 0.95 and ari(groups, euclidean) < 0.6
    # centres are each cluster's mean raw code (the space of the Student-t kernel)
    for c in range(3):
        np.testing.assert_allclose(centres[c], codes[cosine == c].mean(axis=0), rtol=1e-5)
    with pytest.raises(ValueError, match="init must be one of"):
        kmeans_init(codes, 3, geometry="spherical")


def test_init_geometry_reaches_the_model():
    adata = _data(n_obs=120)
    sn.models.DeepCluster.setup_anndata(adata)
    model = sn.models.DeepCluster(adata, n_clusters=3)
    # a bad init is caught before the pretraining, not after it
    with pytest.raises(ValueError, match="init must be one of"):
        model.train(init="spherical", pretrain_epochs=2, **TRAINER)
    assert not model.is_pretrained_
    model.pretrain(2, batch_size=64, **TRAINER)
    labels = model.init_clusters(3, init="cosine", random_state=0)
    latent = model.get_latent_representation()
    for c in range(3):
        np.testing.assert_allclose(_centres(model)[c], latent[labels == c].mean(axis=0), rtol=1e-4)
    assert labels.shape == (model.adata.n_obs,) and _centres(model).shape == (3, 32)
    with pytest.raises(ValueError, match="init must be one of"):
        model.init_clusters(3, init="spherical")


def test_start_label_centres_and_checks():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(50, 4))
    latent[:25] += 5.0
    codes = np.repeat([0, 1], 25)
    codes[[0, 30]] = -1  # two cells without a start cluster
    checked, k = check_start_labels(codes, 50)
    centres, nearest = start_label_centres(latent, checked, k)
    assert k == 2 and centres.shape == (2, 4) and centres.dtype == np.float32
    np.testing.assert_allclose(centres[0], latent[1:25].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(centres[1], latent[np.r_[25:30, 31:50]].mean(axis=0), rtol=1e-5)
    # every cell, those without a start cluster too, starts at its nearest centre
    np.testing.assert_array_equal(nearest, np.repeat([0, 1], 25))
    bad = [
        (codes[:10], {}, "shape \\(10,\\), but there are 50 cells"),
        (codes.astype(float), {}, "integer cluster codes"),
        (np.full(50, -2), {}, "codes 0..k-1"),
        (np.zeros(50, int), {}, "holds 1 start cluster"),
        (np.where(codes == 1, 2, codes), {}, "no cell in cluster\\(s\\) \\[1\\]"),
        (codes, {"n_clusters": 3}, "n_clusters=3, but start_labels holds 2"),
    ]
    for start, kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            check_start_labels(start, 50, **kwargs)


def test_start_labels_reach_the_model():
    adata = _data(n_obs=120)
    sn.models.DeepCluster.setup_anndata(adata)
    model = sn.models.DeepCluster(adata, n_clusters=3)
    codes = pd.Categorical(adata.obs["group"]).codes.astype(np.int64)
    # bad start clusters are caught before the pretraining, not after it
    with pytest.raises(ValueError, match="no cell in cluster"):
        model.train(start_labels=np.full(120, 3), pretrain_epochs=2, **TRAINER)
    with pytest.raises(ValueError, match="init='cosine' is the geometry of k-means"):
        model.train(start_labels=codes, init="cosine", pretrain_epochs=2, **TRAINER)
    assert not model.is_pretrained_
    model.pretrain(2, batch_size=64, **TRAINER)
    labels = model.init_clusters(start_labels=np.where(codes == 2, -1, codes))
    latent = model.get_latent_representation()
    assert model.module.n_clusters == 2 and _centres(model).shape == (2, 32)
    for c in range(2):
        np.testing.assert_allclose(_centres(model)[c], latent[codes == c].mean(axis=0), rtol=1e-4)
    assert labels.shape == (120,) and set(np.unique(labels)) <= {0, 1}
    assert model.init_params_["non_kwargs"]["n_clusters"] == 2


def test_init_key_starts_at_the_given_clusters(backend, tmp_path):
    """A noisy annotation as start clusters: cluster "i" starts at its i-th category (in
    the column's own order), k comes from the column, and the result agrees with the true
    groups better than the annotation it started from."""
    ari = sn.metrics.adjusted_rand_index
    adata = _data(n_obs=200)
    rng = np.random.default_rng(0)
    names = {"g0": "T cell", "g1": "B cell", "g2": "NK"}
    noisy = adata.obs["group"].astype(str).map(names).to_numpy(dtype=object)
    wrong = rng.choice(adata.n_obs, 40, replace=False)  # 20% wrongly annotated ...
    noisy[wrong] = rng.choice(list(names.values()), 40)
    noisy[:20] = None  # ... and 10% not annotated
    order = ["NK", "T cell", "B cell"]  # not alphabetical: the column's order counts
    adata.obs["annotation"] = pd.Categorical(noisy, categories=order)
    _run(adata, n_clusters=None, init_key="annotation", n_top_genes=60, backend=backend)
    uns = adata.uns["deep_cluster"]
    assert uns["params"]["init_key"] == "annotation" and uns["n_clusters"] == 3
    assert uns["n_clusters_estimated"] is False
    assert list(uns["init_categories"]) == order
    # the per-cell codes are summarised in the training record, not a truncated repr
    start = uns["params"]["training"]["train"]["start_labels"]
    assert start == f"ndarray of shape ({adata.n_obs},), dtype int8"  # pandas codes
    clusters = adata.obs["deep_cluster"].astype(str)
    annotated = adata.obs["annotation"].notna().to_numpy()
    true_names = adata.obs["group"].astype(str).map(names)
    expected = true_names.map({c: str(i) for i, c in enumerate(order)})
    assert (clusters == expected).mean() > 0.95  # cluster "i" is category i
    group = adata.obs["group"].astype(str)
    start_ari = ari(group[annotated], adata.obs["annotation"][annotated].astype(str))
    assert ari(group, clusters) > max(0.9, start_ari + 0.2)
    adata.write_h5ad(tmp_path / "started.h5ad")  # the start record survives a round trip
    back = sc.read_h5ad(tmp_path / "started.h5ad").uns["deep_cluster"]
    assert list(back["init_categories"]) == order and back["params"]["init_key"] == "annotation"


def test_tl_cosine_init_recorded_and_clusters():
    adata = _data()
    model = _run(adata, labels_key="group", init="cosine", n_top_genes=60, gamma=0.5)
    params = adata.uns["deep_cluster"]["params"]
    assert params["init"] == "cosine"
    assert adata.uns["deep_cluster"]["metrics"]["ari"] > 0.8
    # reused, the model's settings are recorded, not this call's defaults it did not use
    new = _data(seed=1, n_obs=100)
    sn.tl.deep_cluster(new, model=model)
    reused = new.uns["deep_cluster"]["params"]
    assert reused["model_reused"] is True
    for name in ("init", "gamma", "tol", "pretrain_epochs", "max_epochs", "n_top_genes"):
        assert reused[name] == params[name], name


def test_target_distribution_sharpens():
    q = torch.tensor([[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]])
    p = target_distribution(q)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(3))
    assert p[0, 0] > q[0, 0] and p[2, 1] > q[2, 1]


def _duplicate_a_gene_name(adata):
    """The last gene renamed as the first: the model's genes could not be found by name."""
    adata.var_names = [*adata.var_names[:-1], adata.var_names[0]]


@pytest.mark.parametrize(
    ("mutate", "kwargs", "error", "match"),
    [
        (lambda a: setattr(a, "X", a.X * 0.5), {}, ValueError, "non-integer"),
        (lambda a: setattr(a, "X", -a.X), {}, ValueError, "negative"),
        (lambda a: setattr(a, "X", a.X * 0), {}, ValueError, "every cell .* zero counts"),
        (lambda a: None, {"n_clusters": 1}, ValueError, "n_clusters must be an integer >= 2"),
        (lambda a: None, {"n_clusters": 500}, ValueError, "only 256 cells"),
        (lambda a: None, {"batch_key": "nope"}, KeyError, "batch_key='nope'"),
        (
            lambda a: a.obs.__setitem__("b", pd.array([None] + ["x"] * (a.n_obs - 1), "string")),
            {"batch_key": "b"},
            ValueError,
            "batch_key='b' is missing .NaN. for 1 cell;",
        ),
        (lambda a: None, {"layer": "nope"}, KeyError, "layer='nope'"),
        (lambda a: None, {"labels_key": "nope"}, KeyError, "labels_key='nope'"),
        (
            lambda a: a.obs.__setitem__("truth", np.nan),
            {"labels_key": "truth"},
            ValueError,
            "labels_key='truth' holds no label",
        ),
        (lambda a: None, {"backend": "tensorflow"}, ValueError, "backend"),
        (lambda a: None, {"tol": 2.0}, ValueError, "tol"),
        (lambda a: None, {"init": "spherical"}, ValueError, "init must be one of"),
        (lambda a: None, {"batch_size": 0}, ValueError, "batch_size must be an integer"),
        (lambda a: None, {"n_latent": 0}, ValueError, "n_latent must be an integer >= 1"),
        (lambda a: None, {"n_hidden": (16, 0)}, ValueError, "every width in n_hidden"),
        (lambda a: None, {"n_hidden": ()}, ValueError, "n_hidden must be a list"),
        (lambda a: None, {"gamma": -1}, ValueError, "gamma must be a number >= 0"),
        (lambda a: None, {"noise_sd": -0.5}, ValueError, "noise_sd must be a number >= 0"),
        (lambda a: None, {"update_interval": 0}, ValueError, "update_interval must be"),
        (lambda a: None, {"pretrain_epochs": 0}, ValueError, "pretrain_epochs must be"),
        (lambda a: None, {"max_epochs": -1}, ValueError, "max_epochs must be an integer >= 0"),
        (lambda a: None, {"model": "x"}, TypeError, "DeepCluster"),
        (lambda a: None, {"key_added": ""}, ValueError, "key_added must be a non-empty"),
        (lambda a: None, {"random_state": -1}, ValueError, "random_state must be an integer"),
        (
            lambda a: None,
            {"n_clusters": None, "resolution": "high"},
            ValueError,
            "resolution must be a number > 0",
        ),
        (_duplicate_a_gene_name, {"n_top_genes": None}, ValueError, "var_names are not unique"),
        (lambda a: None, {"init_key": "nope"}, KeyError, "init_key='nope' is not a column"),
        (
            lambda a: a.obs.__setitem__("one", "a"),
            {"init_key": "one"},
            ValueError,
            "init_key='one' holds 1 category",
        ),
        (
            lambda a: None,
            {"init_key": "group", "n_clusters": 2},
            ValueError,
            "n_clusters=2, but init_key='group' holds 3 categories",
        ),
        (
            lambda a: None,
            {"init_key": "group", "init": "cosine"},
            ValueError,
            "init='cosine' is the geometry of k-means",
        ),
        (
            lambda a: a.obs.__setitem__("depth", np.asarray(a.X.sum(axis=1)).ravel() * 1.0),
            {"init_key": "depth"},
            ValueError,
            "init_key='depth' holds floating-point numbers",
        ),
        (lambda a: None, {"start_labels": np.zeros(256, int)}, TypeError, "pass init_key="),
    ],
)
def test_bad_input_leaves_adata_unchanged(mutate, kwargs, error, match, backend):
    adata = _data()
    mutate(adata)
    before = snapshot(adata)
    kwargs = {"n_clusters": 3, "backend": backend, **FAST, **kwargs}
    with pytest.raises(error, match=match):
        sn.tl.deep_cluster(adata, **kwargs, **TRAINER)
    assert_unchanged(adata, before)


def test_zero_dec_epochs_keeps_the_kmeans_start():
    adata = _data()
    _run(adata, max_epochs=0, labels_key="group")
    uns = adata.uns["deep_cluster"]
    assert len(uns["label_change"]) == 0 and uns["converged"] is False
    assert uns["metrics"]["ari"] > 0.8  # the k-means start on the pretrained latent space
    assert adata.obs["deep_cluster"].notna().all()


def test_empty_clusters_are_no_categories(backend):
    """DEC may empty clusters (here 8 asked on 3 groups): as with sc.tl.leiden, only
    clusters with cells are categories, so scanpy's per-group calls work on the column;
    uns and the soft assignment keep all k clusters, and a warning says so."""
    adata = _data(n_obs=200)
    with pytest.warns(
        UserWarning, match="of the model's 8 clusters ha(s|ve) no cell after"
    ) as caught:
        sn.tl.deep_cluster(
            adata,
            8,
            n_latent=4,
            n_hidden=(16,),
            pretrain_epochs=5,
            max_epochs=30,
            n_top_genes=None,
            batch_size=64,
            backend=backend,
            **TRAINER,
        )
    used = np.unique(adata.obsm["deep_cluster_soft"].argmax(axis=1))
    assert 1 < len(used) < 8
    message = next(str(w.message) for w in caught if "no cell after" in str(w.message))
    assert message.startswith(f"{8 - len(used)} of the model's 8 clusters")
    assert "uns['deep_cluster']['n_clusters'] is still 8" in message
    labels = adata.obs["deep_cluster"]
    assert list(labels.cat.categories) == [str(i) for i in used]  # numbered, in order
    sizes = labels.value_counts()
    assert (sizes > 0).all()
    assert adata.uns["deep_cluster"]["n_clusters"] == 8
    assert adata.obsm["deep_cluster_soft"].shape == (adata.n_obs, 8)
    sc.pp.log1p(adata)
    # (a cluster of one cell is refused by scanpy whatever its categories)
    sc.tl.rank_genes_groups(adata, "deep_cluster", groups=list(sizes.index[sizes > 1]))


def test_model_reuse_on_cells_of_some_clusters(trained):
    """New cells of two of the three clusters: the third is no category of obs (an empty
    group made sc.tl.rank_genes_groups fail, naming it a group of 'one sample')."""
    adata, model = trained
    query = adata[adata.obs["deep_cluster"].isin(["0", "1"]).to_numpy()].copy()
    with pytest.warns(
        UserWarning, match="1 of the model's 3 clusters has no cell among.*only the 2 clusters"
    ):
        sn.tl.deep_cluster(query, model=model)
    assert list(query.obs["deep_cluster"].cat.categories) == ["0", "1"]
    assert query.obsm["deep_cluster_soft"].shape == (query.n_obs, 3)
    assert query.uns["deep_cluster"]["n_clusters"] == 3
    sc.pp.log1p(query)
    sc.tl.rank_genes_groups(query, "deep_cluster")
    sn.pl.cluster_contingency(query, "deep_cluster", "group", show=False)


def test_logger_names_each_phase(backend, tmp_path, monkeypatch):
    """One run logs two phases: they go to lightning_logs/pretrain and .../cluster (they
    were version_0 and version_1, with no hint which was which), under default_root_dir."""
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    options = {"pretrain_epochs": 2, "max_epochs": 2, "backend": backend}
    _run(_data(n_obs=60), logger="csv", default_root_dir=runs, **options)
    logs = runs / "lightning_logs"
    assert sorted(path.name for path in logs.iterdir()) == ["cluster", "pretrain"]
    assert (logs / "pretrain" / "version_0" / "metrics.csv").exists()
    assert (logs / "cluster" / "version_0" / "metrics.csv").exists()
    assert not (tmp_path / "lightning_logs").exists()
    # False is Lightning's "no logger" (it was refused); the history is still kept
    adata = _data(n_obs=60)
    _run(adata, logger=False, **options)
    assert len(adata.uns["deep_cluster"]["history"]["pretrain"]["train_loss"]) == 2
    assert not (tmp_path / "lightning_logs").exists()


def test_untrained_model_or_module_as_model(trained, backend):
    _, model = trained
    adata = _data(n_obs=60)
    before = snapshot(adata)
    with pytest.raises(TypeError, match="DeepCluster"):
        sn.tl.deep_cluster(adata, backend=backend, model=model.module)
    registered = adata.copy()
    _model_class(backend).setup_anndata(registered)
    with pytest.raises(ValueError, match="not been trained"):
        sn.tl.deep_cluster(adata, model=_model_class(backend)(registered, n_clusters=3))
    with pytest.raises(ValueError, match="init_clusters"):
        _model_class(backend)(registered, n_clusters=None).train_clusters(1)
    assert_unchanged(adata, before)


def test_model_with_different_genes(trained):
    _, model = trained
    other = _data(seed=7)
    other.var_names = [f"other{i}" for i in range(other.n_vars)]
    before = snapshot(other)
    with pytest.raises(ValueError, match="missing from adata"):
        sn.tl.deep_cluster(other, model=model)
    assert_unchanged(other, before)


def test_plots(trained):
    adata, _ = trained
    ax = sn.pl.cluster_contingency(adata, "deep_cluster", "group", show=False)
    assert ax.get_title().startswith("ARI")
    axes = sn.pl.training_history(adata, "deep_cluster", metrics=["loss"], show=False)
    titles = [a.get_title() for a in axes]
    assert any(t.startswith("pretrain") for t in titles)
    assert any(t.startswith("cluster") for t in titles)
    with pytest.raises(KeyError, match="labels_key='nope'"):
        sn.pl.cluster_contingency(adata, "deep_cluster", "nope", show=False)


def test_h5ad_round_trip(trained, tmp_path):
    adata, _ = trained
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = sc.read_h5ad(tmp_path / "a.h5ad")
    assert set(back.uns["deep_cluster"]["history"]) == {"pretrain", "cluster"}
    sn.pl.training_history(back, "deep_cluster", phase="cluster", show=False)


@pytest.mark.data
@pytest.mark.slow
def test_pbmc_beats_pca_kmeans(backend):
    adata = load_real("pbmc_10x_scdeepcluster_top2000")
    sn.tl.deep_cluster(adata, 8, labels_key="Y", backend=backend, **TRAINER)
    assert adata.uns["deep_cluster"]["metrics"]["ari"] > 0.7


def test_reuse_refuses_another_number_of_clusters(trained):
    _, model = trained
    query = _data(seed=2, n_obs=60)
    before = snapshot(query)
    with pytest.raises(ValueError, match="n_clusters=5, but the model= learned 3 clusters"):
        sn.tl.deep_cluster(query, n_clusters=5, model=model)
    assert_unchanged(query, before)
    sn.tl.deep_cluster(query, n_clusters=3, model=model)
    assert query.uns["deep_cluster"]["params"]["n_clusters"] == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_key": "batch"}, "trained with batch_key=None.*batch_key='batch'"),
        ({"init_key": "group"}, "applies a trained model as it is: init_key='group'"),
    ],
)
def test_reuse_refuses_another_batch_key_or_a_start(trained, kwargs, match):
    _, model = trained
    query = _data(seed=3, n_obs=60)
    before = snapshot(query)
    with pytest.raises(ValueError, match=match):
        sn.tl.deep_cluster(query, model=model, **kwargs)
    assert_unchanged(query, before)


@pytest.mark.parametrize(
    ("plan_kwargs", "error", "match"),
    [
        (
            {"cluster_plan_kwargs": {"gamma": 2.0}},
            ValueError,
            r"cluster_plan_kwargs\['gamma'\]: pass gamma= itself",
        ),
        (
            {"cluster_plan_kwargs": {"tol": 0.1}},
            ValueError,
            r"cluster_plan_kwargs\['tol'\]: pass tol=",
        ),
        (
            {"pretrain_plan_kwargs": {"optimizer": "AdamW"}},
            ValueError,
            r"pretrain_plan_kwargs\['optimizer'\]: the phase builds its own optimizer.*pretrain_lr=",
        ),
        (
            {"cluster_plan_kwargs": {"weight_decay": 1e-4}},
            ValueError,
            r"cluster_plan_kwargs\['weight_decay'\]: not used.*cluster_lr=",
        ),
        (
            {"cluster_plan_kwargs": {"reduce_lr_on_plateau": True}},
            ValueError,
            "no validation loss",
        ),
        (
            {"cluster_plan_kwargs": {"n_epoch_kl_warmup": 3}},
            TypeError,
            r"cluster_plan_kwargs holds 'n_epoch_kl_warmup' \(did you mean 'n_epochs_kl_warmup'",
        ),
    ],
)
def test_plan_kwargs_are_checked_before_pretraining(backend, plan_kwargs, error, match):
    """A plan argument that a phase sets itself (gamma, tol, the optimizer), that it cannot
    honour (weight_decay with its optimizer, a schedule without validation cells) or that
    its plan does not take used to fail once the DEC plan was built, after the whole
    pretraining, or was silently ignored; each is refused before any training, named as
    passed, and the tool leaves adata as it was."""
    adata = _data(n_obs=80)
    before = snapshot(adata)
    with pytest.raises(error, match=match):
        _run(adata, backend=backend, **plan_kwargs)
    assert_unchanged(adata, before)
    cls = _model_class(backend)
    cls.setup_anndata(adata)
    model = cls(adata, n_clusters=3)
    with pytest.raises(error, match=match):
        model.train(2, pretrain_epochs=2, **plan_kwargs, **TRAINER)
    assert not model.is_pretrained_


def test_plan_kwargs_a_phase_takes_are_honoured(backend):
    """A learning rate in a phase's plan arguments wins over the phase's default, and
    reaches the optimizer: a DEC phase at lr 1e-12 leaves the weights as they were."""
    adata = _data(n_obs=80)
    cls = _model_class(backend)
    cls.setup_anndata(adata)
    model = cls(adata, n_clusters=3)
    model.pretrain(3, batch_size=64, **TRAINER)
    model.init_clusters(3)
    before = _weights(model)
    model.train_clusters(2, batch_size=64, plan_kwargs={"lr": 1e-12}, **TRAINER)
    moved = max(np.abs(a - b).max() for a, b in zip(before, _weights(model), strict=True))
    assert moved < 1e-6
    model.train_clusters(2, batch_size=64, plan_kwargs={"lr": 1.0}, **TRAINER)
    assert max(np.abs(a - b).max() for a, b in zip(before, _weights(model), strict=True)) > 1e-4


def test_diverged_pretraining_is_reported_before_kmeans(backend):
    """A NaN latent space (the loss diverged) gets a clear error, not k-means' "Input X
    contains NaN", and nothing is written. Its advice names the argument that sets the
    pretraining's learning rate: the tool refuses plan_kwargs, the advice of the others."""
    adata = _data(n_obs=80)
    before = snapshot(adata)
    with pytest.raises(
        ValueError, match=r"training diverged \(pretrain train_loss became nan"
    ) as e:
        _run(adata, backend=backend, pretrain_epochs=3, pretrain_lr=1e12)
    assert "pretrain_lr=" in str(e.value)
    assert "plan_kwargs" not in str(e.value)
    assert_unchanged(adata, before)


def test_diverged_pretraining_of_a_model_used_directly_names_lr(backend):
    """Step by step, the model's pretrain warns with its own lr=, and init_clusters refuses
    the NaN latent space naming the argument of each call that pretrains."""
    adata = _data(n_obs=80)
    cls = _model_class(backend)
    cls.setup_anndata(adata)
    model = cls(adata, n_clusters=3)
    with pytest.warns(RuntimeWarning, match=r"pretrain: training diverged.*lr=\.\.\. of pretrain"):
        model.pretrain(3, lr=1e12, batch_size=64, **TRAINER)
    with pytest.raises(ValueError, match=r"pretrain_lr=\.\.\. of train.*lr=\.\.\. of pretrain"):
        model.init_clusters(3)


def test_diverged_dec_phase_names_cluster_lr(backend):
    """A DEC phase whose loss becomes NaN is refused before anything is written, and both
    the model's warning and the tool's error say to lower cluster_lr (pretraining went
    well, so pretrain_lr is not the one to change)."""
    adata = _data(n_obs=80)
    before = snapshot(adata)
    with (
        pytest.warns(RuntimeWarning, match=r"train: training diverged.*\(cluster_lr=\.\.\.\)"),
        pytest.raises(
            ValueError, match=r"diverged \(cluster train_loss became nan.*\(cluster_lr=\.\.\.\)"
        ),
    ):
        _run(adata, backend=backend, pretrain_epochs=3, max_epochs=3, cluster_lr=1e12)
    assert_unchanged(adata, before)
