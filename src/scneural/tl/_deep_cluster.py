"""``sn.tl.deep_cluster``: scDeepCluster clustering of raw counts."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from textwrap import dedent
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scneural import metrics
from scneural._docs import doc_params
from scneural._utils import counted, set_seed, to_h5ad_safe, write_results
from scneural._validation import (
    batch_labels,
    check_adata,
    check_counts,
    check_finite_output,
    check_fraction,
    check_hidden_sizes,
    check_key_added,
    check_non_negative_float,
    check_obs_key,
    check_optional_int,
    check_positive_float,
    check_positive_int,
    check_truth_labels,
    check_unique_var_names,
    first_nonfinite_loss,
)
from scneural.models import DeepCluster
from scneural.models.deep_cluster import check_geometry
from scneural.models.deep_cluster._model import DIVERGED_BY_PHASE, DeepClusterMixin

from ._arguments import check_tool_arguments
from ._common import (
    check_backend,
    check_reused_batch_key,
    check_reused_model,
    inference_batch_size,
    make_proxy,
    quiet_setup_transfer,
    resolve_source,
    reused_batch_labels,
)

logger = logging.getLogger(__name__)

_CHUNK = 4096


@doc_params(
    train_kwargs=dedent(
        """\
        **train_kwargs
            Passed to the model's :meth:`~scneural.models.DeepCluster.train` and Lightning's
            ``Trainer`` in both phases (e.g. ``logger``). Each phase has its own optimizer:
            ``pretrain_lr`` (Adam, default 1e-3) and ``cluster_lr`` (Adadelta, default 1.0),
            and ``pretrain_plan_kwargs`` / ``cluster_plan_kwargs`` (names a phase sets
            itself, such as ``optimizer`` or ``gamma``, are refused: see
            :meth:`~scneural.models.DeepCluster.train_clusters`); a bare ``lr`` or
            ``plan_kwargs`` is refused. A name no step takes is refused before any work, as
            is any of them with ``model=``."""
    )
)
def deep_cluster(
    adata: AnnData,
    n_clusters: int | None = None,
    *,
    key_added: str = "deep_cluster",
    backend: Literal["torch", "jax"] = "torch",
    layer: str | None = None,
    model: DeepClusterMixin | None = None,
    batch_key: str | None = None,
    labels_key: str | None = None,
    n_top_genes: int | None = 2000,
    n_latent: int = 32,
    n_hidden: Sequence[int] = (256, 64),
    noise_sd: float = 2.5,
    gamma: float = 1.0,
    tol: float = 1e-3,
    update_interval: int | None = None,
    pretrain_epochs: int | None = None,
    init: Literal["euclidean", "cosine"] = "euclidean",
    init_key: str | None = None,
    resolution: float = 0.8,
    random_state: int = 0,
    max_epochs: int | None = None,
    accelerator: str = "auto",
    devices: int | str | Sequence[int] = "auto",
    batch_size: int = 256,
    **train_kwargs: Any,
) -> DeepClusterMixin:
    """Cluster cells with scDeepCluster (Tian et al. 2019): a ZINB denoising autoencoder
    trained jointly with deep embedded clustering.

    The model reads raw counts. Size factors (library size over its median), the encoder
    input (log1p of size-normalised counts, scaled per gene) and the ZINB loss on the raw
    counts (size factor in the mean) are computed inside the model, minibatch by minibatch,
    so a sparse matrix is never densified. Training: pretraining of the autoencoder on the
    ZINB loss, k-means (``n_init=20``) on the latent space (``init``), then the DEC phase
    (``KL(p || q) + gamma * ZINB``, target p refreshed every ``update_interval`` steps over
    all cells) until fewer than ``tol`` of the labels change.

    Parameters
    ----------
    {adata}
    n_clusters
        Number of clusters. ``None`` estimates it by Leiden (``resolution``) on a kNN
        graph of the pretrained latent space, as the authors do with Louvain; the estimate
        is recorded in ``uns``. Pass the number of types when it is known: on the three
        benchmark sets the estimate overshot where types are few and large (29-32 clusters
        for 10 worm neuron types, 14-15 for 8 PBMC types), and the clusters then matched
        the labels less well than scanpy's Leiden at the same resolution
        (``docs/benchmarks.md``).
    {key_added}
    {backend}
        With ``model=``, the model's own backend is used (and recorded).
    layer
        Read raw counts from ``adata.layers[layer]`` instead of ``adata.X``.
    {model}
        The new cells are assigned to the model's clusters; they must have all the model's
        genes (and only batches it knows, if trained with ``batch_key``).
    batch_key
        Column of ``adata.obs`` with batches; its one-hot code is given to encoder and
        decoder so that clusters follow cell types rather than batches.
    labels_key
        Optional column of ``adata.obs`` with known labels; ARI, NMI and Hungarian-matched
        accuracy against it are stored in ``uns[key_added]["metrics"]``. Not used to train.
    n_top_genes
        Train on this many highly variable genes (scanpy ``flavor="seurat"`` on
        log-normalised counts); ``None`` keeps every gene with a non-zero count.
    n_latent
        Dimension of the latent space.
    n_hidden
        Widths of the encoder's hidden layers (the decoder mirrors them).
    noise_sd
        Standard deviation of the Gaussian noise on the scaled input and hidden layers.
    gamma
        Weight of the ZINB loss in the DEC phase.
    tol
        Stop the DEC phase when fewer than this fraction of labels change between updates.
    update_interval
        Training steps between two updates of the target distribution (``None``: one epoch).
    pretrain_epochs
        Pretraining epochs (``None``: about 2,500 steps, 20 to 300 epochs).
    init
        Geometry of the k-means that places the initial cluster centres: ``"euclidean"``
        (the authors') or ``"cosine"`` (latent codes scaled to unit length, so cells group
        by the direction of their code, not its length). On the very sparse worm neurons
        cosine raised the mean ARI over three seeds (0.572 to 0.611) but not in every run;
        on PBMC and bladder it was clearly worse (``docs/deep_cluster_experiments.md``).
    init_key
        Column of ``adata.obs`` with start clusters, instead of k-means: e.g. a Leiden
        clustering or a coarse annotation to refine. Each cluster centre starts at the mean
        latent code of one category (cells with a missing value add nothing), k is the
        number of categories among the cells with counts, and cluster ``"i"`` starts at
        the i-th category (recorded in ``uns[key_added]["init_categories"]``). DEC then
        moves the centres without looking at the column again. Measured with the true cell
        types as start clusters, DEC kept most of their agreement (ARI 0.73-0.78 on the
        three benchmark sets, against 0.58-0.77 from k-means; ``docs/deep_cluster_experiments.md``).
        With many annotated cells, transferring their labels with a classifier
        (:func:`~scneural.tl.classify`) does better: with 30% of the cells annotated, a
        15-NN vote beat this start on worm and PBMC; with 10% the start was better on
        worm and bladder and level on PBMC. Not with ``model=``, ``n_clusters`` other than
        the number of categories, or ``init="cosine"``.
    resolution
        Leiden resolution used to estimate k when ``n_clusters=None``.
    {random_state}
    max_epochs
        Maximum epochs of the DEC phase (default 100; it usually stops earlier at ``tol``).
        ``0`` skips it: the clusters are those of the k-means start.
    {accelerator}
    {devices}
    batch_size
        Minibatch size of training; inference uses minibatches of at least 1,024 cells.
    {train_kwargs}
        Both phases train on every cell: ``train_size``, ``validation_size`` and
        ``early_stopping`` are refused. ``logger="csv"`` or ``"tensorboard"`` logs them to
        ``lightning_logs/pretrain/`` and ``lightning_logs/cluster/`` (under
        ``default_root_dir`` when given).

    Returns
    -------
    The trained (or reused) :class:`~scneural.models.DeepCluster` (or
    :class:`~scneural.models.JaxDeepCluster` with ``backend="jax"``). Writes into ``adata``:

    ``obs[key_added]``
        Cluster of each cell (categorical ``"0"``, ``"1"``, ...; NaN for dropped cells
        without counts). Only clusters with cells are categories, as with ``sc.tl.leiden``
        (``sc.tl.rank_genes_groups`` refuses empty groups): when DEC empties some of the
        ``n_clusters`` clusters, or the cells given with ``model=`` fall in only some of
        them, a ``UserWarning`` says how many are empty and the remaining names keep
        their numbers (e.g. ``"0"``, ``"2"``).
    ``obsm[f"X_{{key_added}}"]``
        Latent representation (float32), for ``sc.pp.neighbors(use_rep=...)``; NaN rows
        for dropped cells without counts (leave them out before ``sc.pp.neighbors``).
    ``obsm[f"{{key_added}}_soft"]``
        Soft assignment q (cells x clusters, rows sum to 1; a column for each of the
        ``n_clusters`` clusters, empty ones included).
    ``uns[key_added]``
        ``params`` (with ``training``: every argument of the model's ``pretrain`` and
        ``train`` calls, defaults included); ``history`` as
        ``{{"pretrain": {{...}}, "cluster": {{...}}}}`` (per-epoch losses of the model's
        training, also when reused; ``cluster`` also holds ``label_change``); ``n_clusters``
        (the model's number of clusters, empty ones included);
        ``n_clusters_estimated``; ``label_change`` (fraction of labels changed at each
        target update); ``converged``; ``n_cells_dropped``; ``genes`` (genes used); with
        ``init_key``, ``init_categories`` (the category each cluster started at, in cluster
        order); and, with ``labels_key``, ``metrics`` (``ari``, ``nmi``, ``accuracy``).

    Examples
    --------
    >>> sn.tl.deep_cluster(adata, n_clusters=8, layer="counts")
    >>> sn.pl.cluster_contingency(adata, "deep_cluster", "cell_type")
    >>> model = sn.tl.deep_cluster(adata, layer="counts")  # k estimated
    >>> sn.tl.deep_cluster(new_cells, model=model)  # assign new cells
    """
    check_adata(adata)
    check_backend(backend, "deep_cluster", available=("torch", "jax"))
    check_reused_model(model, DeepClusterMixin, "DeepCluster")
    n_clusters = check_optional_int(n_clusters, "n_clusters", minimum=2)
    n_top_genes = check_optional_int(n_top_genes, "n_top_genes", minimum=2)
    batch_size = check_positive_int(batch_size, "batch_size")
    tol = check_fraction(tol, "tol")
    noise_sd = check_non_negative_float(noise_sd, "noise_sd")
    gamma = check_non_negative_float(gamma, "gamma")
    n_latent = check_positive_int(n_latent, "n_latent")
    n_hidden = check_hidden_sizes(n_hidden)
    update_interval = check_optional_int(update_interval, "update_interval")
    pretrain_epochs = check_optional_int(pretrain_epochs, "pretrain_epochs")
    max_epochs = check_optional_int(max_epochs, "max_epochs", minimum=0)
    check_geometry(init)
    check_tool_arguments(
        deep_cluster,
        model,
        _model_class(backend),
        train_kwargs,
        n_top_genes=n_top_genes,
        n_latent=n_latent,
        n_hidden=n_hidden,
        noise_sd=noise_sd,
        gamma=gamma,
        tol=tol,
        update_interval=update_interval,
        pretrain_epochs=pretrain_epochs,
        init=init,
        init_key=init_key,
        resolution=resolution,
        max_epochs=max_epochs,
    )
    if "start_labels" in train_kwargs:
        raise TypeError(
            "deep_cluster takes its start clusters from a column of adata.obs: pass "
            "init_key= instead of start_labels="
        )
    check_key_added(key_added)
    if n_clusters is None:
        resolution = check_positive_float(resolution, "resolution")
    source = resolve_source(adata, layer=layer, use_rep=None, model=model)
    check_unique_var_names(adata)  # the model's genes are found by name (and on reuse)
    matrix = source.matrix(adata)
    check_counts(matrix, source.describe(), "deep_cluster")
    library = _library_sizes(matrix)
    keep = library > 0
    n_dropped = int((~keep).sum())
    if not keep.any():
        raise ValueError(
            f"every cell of {source.describe()} has zero counts; deep_cluster needs raw counts"
        )
    if labels_key is not None:
        check_truth_labels(adata, labels_key, cells=keep)
    start = None  # the start cluster of each kept cell (init_key)
    if init_key is not None:
        start = _start_clusters(adata, init_key, keep, init=init, n_clusters=n_clusters)
        n_clusters = len(start.categories)
    batches = None  # the batch of each cell, as the model reads it
    if model is None:
        if batch_key is not None:
            batches = batch_labels(adata, batch_key)
        if n_clusters is not None and int(keep.sum()) < n_clusters:
            raise ValueError(
                f"n_clusters={n_clusters} but adata has only "
                f"{counted(int(keep.sum()), 'cell')} with counts; pass a smaller n_clusters"
            )
        if int(keep.sum()) < 3:
            raise ValueError(
                f"deep_cluster needs at least 3 cells with counts, got {int(keep.sum())}"
            )
    else:
        check_reused_batch_key(model, batch_key)
        learned = model.module.n_clusters
        if n_clusters is not None and n_clusters != learned:
            raise ValueError(
                f"n_clusters={n_clusters}, but the model= learned {learned} clusters and "
                "assigns cells to those; leave n_clusters out, or train a new model"
            )
        n_clusters = learned
        batch_key = model.adata_manager.registry["setup_args"].get("batch_key")
        _check_model_genes(adata, model)
        if batch_key is not None:
            batches = reused_batch_labels(adata, model, batch_key)
    if n_dropped:
        message = (
            f"{counted(n_dropped, 'cell has', 'cells have')} zero counts in "
            f"{source.describe()}; they are left out (NaN cluster, NaN rows in "
            f"obsm['X_{key_added}'] and obsm['{key_added}_soft']): "
            f"run sc.pp.neighbors(use_rep='X_{key_added}') on "
            f"adata[adata.obs[{key_added!r}].notna()], or remove them first "
            "(sc.pp.filter_cells(adata, min_counts=1))"
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    set_seed(random_state)

    obs = pd.DataFrame(index=adata.obs_names.copy())
    if batches is not None:
        obs[batch_key] = batches
    proxy = make_proxy(adata, source, obs=obs)
    if model is None:
        genes = _select_genes(proxy, source, keep, n_top_genes)
    else:
        genes = pd.Index(model.adata.var_names)
    if n_dropped or not proxy.var_names.equals(genes):
        proxy = proxy[keep, proxy.var_names.get_indexer(genes)].copy()
    trainer = {"accelerator": accelerator, "devices": devices, **train_kwargs}
    trainer.setdefault("enable_progress_bar", True)

    if model is None:
        model_cls = _model_class(backend)
        model_cls.setup_anndata(proxy, layer=source.layer, batch_key=batch_key)
        model = model_cls(
            proxy, n_clusters=n_clusters, n_hidden=n_hidden, n_latent=n_latent, noise_sd=noise_sd
        )
        model.input_source_ = source.to_dict()
        model.train(
            max_epochs=100 if max_epochs is None else max_epochs,
            pretrain_epochs=pretrain_epochs,
            init=init,
            resolution=resolution,
            update_interval=update_interval,
            tol=tol,
            gamma=gamma,
            batch_size=batch_size,
            random_state=random_state,
            start_labels=None if start is None else start.codes,
            **trainer,
        )
        reused = False
    else:
        reused = True  # the model reads the proxy without its _indices column

    inference_batch = inference_batch_size(batch_size)
    with quiet_setup_transfer():
        soft = model.get_soft_assignment(proxy, batch_size=inference_batch)
        latent = model.get_latent_representation(proxy, batch_size=inference_batch)
    diverged = "pretrain" if first_nonfinite_loss(model.pretrain_history_) else "cluster"
    check_finite_output(
        {"soft assignment": soft, "latent representation": latent},
        {"pretrain": model.pretrain_history_, "cluster": model.cluster_history_},
        fix=DIVERGED_BY_PHASE[diverged],
    )
    k = soft.shape[1]
    labels = np.full(adata.n_obs, -1)
    labels[keep] = soft.argmax(axis=1)
    categories = [str(i) for i in range(k)]
    # only clusters with cells (as sc.tl.leiden): an empty group breaks
    # sc.tl.rank_genes_groups, sc.pl.dotplot...
    clusters = pd.Categorical.from_codes(labels, categories=categories)
    clusters = clusters.remove_unused_categories()
    n_empty = k - len(clusters.categories)
    if n_empty:
        where = "among these cells" if reused else "after training"
        message = (
            f"{n_empty} of the model's {k} clusters {'has' if n_empty == 1 else 'have'} no "
            f"cell {where}: obs[{key_added!r}] lists only the {k - n_empty} "
            f"cluster{'' if k - n_empty == 1 else 's'} with cells, while "
            f"uns[{key_added!r}]['n_clusters'] is still {k} (and obsm['{key_added}_soft'] "
            "has a column for each)"
            + ("" if reused else "; a smaller n_clusters may suit these data")
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    latent_full = np.full((adata.n_obs, latent.shape[1]), np.nan, dtype=np.float32)
    latent_full[keep] = latent
    soft_full = np.full((adata.n_obs, k), np.nan, dtype=np.float32)
    soft_full[keep] = soft

    model_params = model.init_params_["non_kwargs"]
    # a reused model's clusters come from its own training: record its settings, not this
    # call's defaults (which it did not use)
    trained = model.training_record().get("train", {}) if reused else {}
    uns: dict[str, Any] = {
        "params": {
            "n_clusters": n_clusters,
            "layer": source.layer,
            "batch_key": batch_key,
            "n_top_genes": len(genes) if reused else n_top_genes,
            "n_latent": model_params.get("n_latent"),
            "n_hidden": list(model_params.get("n_hidden", n_hidden)),
            "noise_sd": model_params.get("noise_sd"),
            **{
                name: trained.get(name, value)
                for name, value in (
                    ("gamma", gamma),
                    ("tol", tol),
                    ("update_interval", update_interval),
                    ("pretrain_epochs", pretrain_epochs),
                    ("init", init),
                    ("resolution", resolution),
                    ("random_state", random_state),
                    ("max_epochs", max_epochs),
                    ("batch_size", batch_size),
                )
            },
            "init_key": init_key,
            "backend": model.backend,
            "model_reused": reused,
            "train_kwargs": {key: str(v) for key, v in train_kwargs.items()},
            "training": model.training_record(),
        },
        "history": {"pretrain": model.pretrain_history_, "cluster": model.cluster_history_},
        "n_clusters": int(k),
        "n_clusters_estimated": bool(model.n_clusters_estimated_),
        "label_change": np.asarray(model.label_change_, dtype=float),
        "converged": bool(getattr(model, "converged_", False)),
        "n_cells_dropped": n_dropped,
        "genes": np.asarray(model.adata.var_names, dtype=object),
    }
    if start is not None:
        uns["init_categories"] = np.asarray(start.categories.astype(str), dtype=object)
    if labels_key is not None:
        truth = adata.obs[labels_key][keep]
        uns["metrics"] = metrics.clustering_scores(truth, labels[keep].astype(str))
    write_results(
        adata,
        obs={key_added: clusters},
        obsm={f"X_{key_added}": latent_full, f"{key_added}_soft": soft_full},
        uns={key_added: to_h5ad_safe(uns)},
    )
    return model


def _start_clusters(
    adata: AnnData, init_key: str, keep: np.ndarray, *, init: str, n_clusters: int | None
) -> pd.Categorical:
    """The start cluster of each cell with counts, from ``adata.obs[init_key]`` (only the
    categories with cells; a missing value is code -1)."""
    check_obs_key(adata, init_key, "init_key")
    if init != "euclidean":
        raise ValueError(
            f"init={init!r} is the geometry of k-means, which does not run with init_key=; "
            "leave init at its default"
        )
    column = adata.obs[init_key]
    if pd.api.types.is_float_dtype(column):
        raise ValueError(
            f"init_key={init_key!r} holds floating-point numbers, not start clusters; pass a "
            "column of categories (e.g. 'leiden' or a cell-type annotation), or convert it "
            f"with adata.obs[{init_key!r}].astype('category') if its values are cluster ids"
        )
    start = pd.Categorical(column)[keep].remove_unused_categories()
    k = len(start.categories)
    if k < 2:
        raise ValueError(
            f"init_key={init_key!r} holds {k} categor{'y' if k == 1 else 'ies'} among the "
            "cells with counts; DEC needs at least 2 start clusters: pass a column with "
            "several, or leave init_key out to start from k-means"
        )
    if n_clusters is not None and n_clusters != k:
        raise ValueError(
            f"n_clusters={n_clusters}, but init_key={init_key!r} holds {k} categories among "
            "the cells with counts; leave n_clusters out (it is taken from init_key)"
        )
    return start


def _model_class(backend: str) -> type[DeepClusterMixin]:
    """The scDeepCluster model of a backend (the JAX one is imported only when asked for)."""
    if backend == "jax":
        from scneural.models.deep_cluster._model_jax import JaxDeepCluster

        return JaxDeepCluster
    return DeepCluster


def _library_sizes(matrix: Any) -> np.ndarray:
    """Total counts per cell, in row chunks."""
    out = np.empty(matrix.shape[0], dtype=np.float64)
    for start in range(0, matrix.shape[0], _CHUNK):
        out[start : start + _CHUNK] = np.asarray(matrix[start : start + _CHUNK].sum(axis=1)).ravel()
    return out


def _select_genes(
    proxy: AnnData, source: Any, keep: np.ndarray, n_top_genes: int | None
) -> pd.Index:
    """Genes with counts, then (if asked) the ``n_top_genes`` most variable (scanpy "seurat")."""
    import scanpy as sc

    matrix = proxy.layers[source.layer] if source.layer is not None else proxy.X
    matrix = matrix[keep] if not keep.all() else matrix
    gene_counts = np.zeros(matrix.shape[1])
    for start in range(0, matrix.shape[0], _CHUNK):
        gene_counts += np.asarray(matrix[start : start + _CHUNK].sum(axis=0)).ravel()
    expressed = gene_counts > 0
    if expressed.sum() < 2:
        raise ValueError("fewer than 2 genes have counts; deep_cluster needs more genes")
    names = proxy.var_names[expressed]
    if n_top_genes is None or n_top_genes >= expressed.sum():
        return names
    lognorm = matrix[:, expressed]
    lognorm = (
        sparse.csr_matrix(lognorm, dtype=np.float32, copy=True)
        if sparse.issparse(lognorm)
        else np.array(lognorm, dtype=np.float32)
    )
    tmp = AnnData(X=lognorm, var=pd.DataFrame(index=names))
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    hvg = sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat", inplace=False)
    return names[np.asarray(hvg["highly_variable"], dtype=bool)]


def _check_model_genes(adata: AnnData, model: DeepClusterMixin) -> None:
    genes = pd.Index(model.adata.var_names)
    missing = genes.difference(adata.var_names)
    if len(missing):
        raise ValueError(
            f"model= was trained on {len(genes)} genes, {len(missing)} of which are missing "
            f"from adata (e.g. {list(missing[:5])}); pass cells with the model's genes "
            "(uns[key]['genes'] of the training run)"
        )
