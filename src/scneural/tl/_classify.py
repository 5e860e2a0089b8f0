"""``sn.tl.classify``: train or apply an MLP cell-type classifier."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from scneural import metrics
from scneural._docs import doc_params
from scneural._utils import label_order, label_strings, set_seed, to_h5ad_safe, write_results
from scneural._validation import (
    batch_labels,
    check_adata,
    check_counts,
    check_finite,
    check_finite_output,
    check_fraction,
    check_hidden_sizes,
    check_key_added,
    check_labels,
    check_not_constant,
    check_optional_int,
    check_probability,
    check_truth_labels,
    check_unique_var_names,
    looks_like_counts,
)
from scneural.models import Classifier
from scneural.models.classifier._model import UNLABELED_SENTINEL, ClassifierMixin

from ._arguments import check_tool_arguments
from ._common import (
    align_features,
    check_backend,
    check_reused_batch_key,
    check_reused_model,
    inference_batch_size,
    make_proxy,
    model_feature_names,
    quiet_setup_transfer,
    resolve_source,
    reused_batch_labels,
    trainer_kwargs,
)

UNKNOWN = "Unknown"


@doc_params()
def classify(
    adata: AnnData,
    labels_key: str | None = None,
    *,
    key_added: str = "classify",
    backend: Literal["torch", "jax"] = "torch",
    layer: str | None = None,
    use_rep: str | None = None,
    model: Classifier | None = None,
    batch_key: str | None = None,
    unlabeled_category: str | None = None,
    class_weight: Literal["balanced"] | None = None,
    min_confidence: float | None = None,
    n_hidden: Sequence[int] = (512, 256, 128),
    dropout_rate: float = 0.2,
    random_state: int = 0,
    max_epochs: int | None = None,
    accelerator: str = "auto",
    devices: int | str | Sequence[int] = "auto",
    batch_size: int | None = None,
    **train_kwargs: Any,
) -> Classifier:
    """Annotate cell types with a supervised MLP classifier.

    Trains a ``Linear -> BatchNorm -> ReLU -> Dropout`` network on labelled cells (or applies
    a trained one with ``model=``) and writes predicted labels, confidences, class
    probabilities and the learned embedding into ``adata``.

    Parameters
    ----------
    {adata}
    labels_key
        Column of ``adata.obs`` with the cell-type labels to learn. Cells with a missing
        label (NaN) or with ``unlabeled_category`` are not trained on but are predicted.
        With ``model=``, optional: if given, accuracy against it is stored in ``uns``.
    {key_added}
    {backend}
        With ``model=``, the model's own backend is used (and recorded).
    layer
        Read raw counts from ``adata.layers[layer]``; they are library-size normalised and
        log1p-transformed inside the model. Default: ``adata.X``, used as it is (expected
        log-normalised).
    {use_rep}
    {model}
        Query genes are aligned to the model's; missing genes are filled with zeros.
    batch_key
        Column of ``adata.obs`` with batches, given to the network as one-hot covariates.
    unlabeled_category
        Label value of cells to predict but not to train on (semi-supervised use).
    class_weight
        ``"balanced"`` weighs the cross-entropy by inverse class frequency.
    min_confidence
        Cells whose highest class probability is below this are labelled ``"Unknown"``.
    n_hidden
        Widths of the hidden layers; the last one is the embedding.
    dropout_rate
        Dropout after every hidden block.
    {random_state}
    {max_epochs}
        Default 100, with early stopping on the validation accuracy (patience 5; on the
        validation loss when some cells are unlabelled).
    {accelerator}
    {devices}
    batch_size
        Cells per training minibatch (``None``: the model's default, 128). Prediction uses
        minibatches of at least 1,024 cells.
    {train_kwargs}

    Returns
    -------
    The trained (or reused) :class:`~scneural.models.Classifier` (a
    :class:`~scneural.models.JaxClassifier` with ``backend="jax"``). Writes into ``adata``:

    ``obs[f"{{key_added}}_label"]``
        Predicted cell type (categorical). Its categories are the types predicted for some
        cell (``"Unknown"`` last, if any), in the order of ``labels_key``'s categories when
        it is categorical: a class no cell was given (a query may lack a type) is left
        out, as ``sc.tl.rank_genes_groups`` refuses empty groups. ``uns[key_added]
        ["classes"]`` and the columns of ``obsm[f"{{key_added}}_proba"]`` list every class.
    ``obs[f"{{key_added}}_confidence"]``
        Highest class probability (float32).
    ``obsm[f"{{key_added}}_proba"]``
        Class probabilities, a DataFrame with one column per class of the model.
    ``obsm[f"X_{{key_added}}"]``
        Penultimate-layer embedding, for ``sc.pp.neighbors(use_rep=...)``.
    ``uns[key_added]``
        ``params`` (with ``training``: every argument the model was trained with, its
        defaults included), ``history`` (per-epoch losses and accuracies of the model's
        training, also when reused), ``classes``, ``validation`` (``n_cells``, and
        ``accuracy`` and ``macro_f1`` on those held-out labelled validation cells when there
        are any) and, when ``labels_key`` is given with ``model=``, ``metrics``
        (``accuracy``, ``macro_f1``) against those labels.

    Examples
    --------
    >>> clf = sn.tl.classify(ref, labels_key="cell_type")
    >>> sn.tl.classify(query, model=clf)
    >>> sn.pl.confusion_matrix(query, "cell_type", "classify_label")
    """
    check_adata(adata)
    check_backend(backend, "classify", available=("torch", "jax"))
    if min_confidence is not None:
        min_confidence = check_probability(min_confidence, "min_confidence")
    check_key_added(key_added)
    batch_size = check_optional_int(batch_size, "batch_size", minimum=2)  # batch norm: 2+ cells
    max_epochs = check_optional_int(max_epochs, "max_epochs")
    n_hidden = check_hidden_sizes(n_hidden)
    dropout_rate = check_fraction(dropout_rate, "dropout_rate")
    inference_batch = inference_batch_size(batch_size)
    check_reused_model(model, ClassifierMixin, "Classifier")
    check_tool_arguments(
        classify,
        model,
        _model_class(backend),
        train_kwargs,
        class_weight=class_weight,
        n_hidden=n_hidden,
        dropout_rate=dropout_rate,
        max_epochs=max_epochs,
    )
    if model is not None:
        check_reused_batch_key(model, batch_key)
    if model is not None and labels_key is not None:
        check_truth_labels(adata, labels_key)  # scored against, after prediction
    source = resolve_source(adata, layer=layer, use_rep=use_rep, model=model)
    if source.use_rep is None:
        check_unique_var_names(adata)  # the model's genes are found by name (and on reuse)
    matrix = source.matrix(adata)
    check_finite(matrix, source.describe())
    if model is None:
        check_not_constant(matrix, source.describe())
    if source.layer is not None:
        check_counts(matrix, f"layer={source.layer!r}", "classify with layer=")
    elif source.use_rep is None and looks_like_counts(matrix):
        warnings.warn(
            "adata.X looks like raw counts; classify expects log-normalised X. Pass "
            "layer= with the counts (normalised inside the model), or run "
            "sc.pp.normalize_total and sc.pp.log1p first",
            UserWarning,
            stacklevel=2,
        )
    set_seed(random_state)

    if model is None:
        labelled = check_labels(adata, labels_key, unlabeled_category=unlabeled_category)
        unlabeled = UNLABELED_SENTINEL if unlabeled_category is None else str(unlabeled_category)
        obs = pd.DataFrame(index=adata.obs_names.copy())
        names = np.where(labelled, label_strings(adata.obs[labels_key]), unlabeled)
        # the unlabeled category last: scvi-tools swaps it with the last of the sorted
        # classes, which scrambled the classes' order whenever some label was missing
        obs[labels_key] = pd.Categorical(
            names, categories=[*sorted(set(names[labelled])), unlabeled]
        )
        if batch_key is not None:
            obs[batch_key] = batch_labels(adata, batch_key)
        proxy = make_proxy(adata, source, obs=obs)
        model_cls = _model_class(backend)
        model_cls.setup_anndata(
            proxy,
            labels_key=labels_key,
            layer=source.layer,
            batch_key=batch_key,
            unlabeled_category=unlabeled,
        )
        model = model_cls(
            proxy,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            log_normalize_input=source.layer is not None,
            class_weight=class_weight,
        )
        model.input_source_ = source.to_dict()
        model.train(
            **trainer_kwargs(
                accelerator=accelerator,
                devices=devices,
                max_epochs=max_epochs,
                train_kwargs=train_kwargs,
                batch_size=batch_size,
            )
        )
        model.validation_metrics_ = _validation_metrics(model, labelled, inference_batch)
        reused = False
    else:
        proxy = _query_proxy(adata, source, model)
        reused = True

    with quiet_setup_transfer():
        proba = model.predict(proxy, soft=True, batch_size=inference_batch)
        embedding = model.get_latent_representation(proxy, batch_size=inference_batch)
    check_finite_output(
        {"class probabilities": proba, "embedding": embedding}, model.history_dict()
    )
    classes = [str(c) for c in model.classes_]
    confidence = proba.to_numpy().max(axis=1).astype(np.float32)
    predicted = np.asarray(classes, dtype=object)[proba.to_numpy().argmax(axis=1)]
    # a categorical labels column's order, so scanpy colours a type alike in both columns
    labels = adata.obs[labels_key] if labels_key is not None else None
    categorical = labels is not None and isinstance(labels.dtype, pd.CategoricalDtype)
    categories = label_order(labels, classes) if categorical else list(classes)
    if min_confidence is not None:
        predicted = np.where(confidence < min_confidence, UNKNOWN, predicted)
        if UNKNOWN not in categories:
            categories.append(UNKNOWN)
    # only types with cells (as sc.tl.leiden): an empty group breaks
    # sc.tl.rank_genes_groups, sc.pl.dotplot... (a query may lack some of the classes)
    label = pd.Categorical(predicted, categories=categories).remove_unused_categories()

    uns: dict[str, Any] = {
        "params": {
            "labels_key": labels_key,
            "layer": source.layer,
            "use_rep": source.use_rep,
            "batch_key": model.adata_manager.registry["setup_args"].get("batch_key"),
            "unlabeled_category": unlabeled_category,
            "class_weight": model.init_params_["non_kwargs"].get("class_weight"),
            "min_confidence": min_confidence,
            "n_hidden": list(model.init_params_["non_kwargs"].get("n_hidden", n_hidden)),
            "dropout_rate": model.init_params_["non_kwargs"].get("dropout_rate"),
            "random_state": random_state,
            "max_epochs": max_epochs,
            "batch_size": batch_size,
            "backend": model.backend,
            "model_reused": reused,
            "train_kwargs": {k: str(v) for k, v in train_kwargs.items()},
            "training": model.training_record(),
        },
        "history": model.history_dict(),
        "classes": classes,
        "validation": dict(getattr(model, "validation_metrics_", {}) or {}),
    }
    if reused and labels_key is not None:
        truth = adata.obs[labels_key]
        known = truth.notna().to_numpy()
        uns["metrics"] = {
            "accuracy": metrics.accuracy(truth[known], predicted[known]),
            "macro_f1": metrics.macro_f1(truth[known], predicted[known]),
        }
    write_results(
        adata,
        obs={
            f"{key_added}_label": label,
            f"{key_added}_confidence": confidence,
        },
        obsm={
            f"{key_added}_proba": proba.set_axis(adata.obs_names, axis=0),
            f"X_{key_added}": embedding.astype(np.float32),
        },
        uns={key_added: to_h5ad_safe(uns)},
    )
    return model


def _model_class(backend: str) -> type[ClassifierMixin]:
    """The classifier model of a backend (the JAX one is imported only when asked for)."""
    if backend == "jax":
        from scneural.models.classifier._model_jax import JaxClassifier

        return JaxClassifier
    return Classifier


def _query_proxy(adata: AnnData, source: Any, model: Classifier) -> AnnData:
    """Proxy of a query for a trained classifier: its batch column and aligned features
    (no labels column: the model reads every query cell as unlabelled)."""
    batch_key = model.adata_manager.registry["setup_args"].get("batch_key")
    obs = pd.DataFrame(index=adata.obs_names.copy())
    if batch_key is not None:
        obs[batch_key] = reused_batch_labels(adata, model, batch_key)
    proxy = make_proxy(adata, source, obs=obs)
    return align_features(proxy, model_feature_names(model), source)


def _validation_metrics(model: Classifier, labelled: np.ndarray, batch_size: int) -> dict:
    """Accuracy and macro-F1 on the labelled cells of the model's validation split."""
    indices = getattr(model, "validation_indices", None)
    indices = np.asarray([] if indices is None else indices, dtype=int)
    indices = indices[labelled[indices]] if indices.size else indices
    if indices.size == 0:
        return {"n_cells": 0}
    labels_key = model.adata_manager.registry["setup_args"]["labels_key"]
    truth = model.adata.obs[labels_key].to_numpy()[indices]
    predicted = model.predict(model.adata, indices=indices, batch_size=batch_size)
    return {
        "n_cells": int(indices.size),
        "accuracy": metrics.accuracy(truth, predicted),
        "macro_f1": metrics.macro_f1(truth, predicted),
    }
