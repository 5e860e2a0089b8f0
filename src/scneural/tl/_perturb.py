"""``sn.tl.perturb``: predict a cell type's perturbation response with scGen."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scvi import REGISTRY_KEYS

from scneural._docs import doc_params
from scneural._utils import counted, set_seed, to_h5ad_safe, write_results
from scneural._validation import (
    check_adata,
    check_finite,
    check_finite_output,
    check_fraction,
    check_key_added,
    check_non_negative_float,
    check_not_constant,
    check_obs_key,
    check_optional_int,
    check_positive_int,
    check_unique_var_names,
    has_negative,
    looks_like_counts,
)
from scneural.models import ScGen
from scneural.models.scgen._model import (
    ScGenMixin,
    arithmetic_cell_types,
    as_label,
    check_arithmetic_options,
    check_conditions,
    control_mask,
    predicted_anndata,
)

from ._arguments import check_tool_arguments
from ._common import (
    InputSource,
    align_features,
    check_backend,
    check_reused_model,
    inference_batch_size,
    make_proxy,
    model_feature_names,
    quiet_setup_transfer,
    resolve_source,
    trainer_kwargs,
)


@doc_params()
def perturb(
    adata: AnnData,
    *,
    condition_key: str,
    control: str,
    perturbed: str,
    cell_type_key: str,
    predict: str | AnnData,
    key_added: str = "perturb",
    backend: Literal["torch", "jax"] = "torch",
    layer: str | None = None,
    model: ScGenMixin | None = None,
    restrict_arithmetic_to: Sequence[str] | None = None,
    balance: Literal["resample", "mean"] = "resample",
    delta_cells: Literal["all", "paired"] = "all",
    residual: bool = False,
    clip_at_zero: bool | None = None,
    n_hidden: int = 800,
    n_latent: int = 100,
    n_layers: int = 2,
    dropout_rate: float = 0.2,
    kl_weight: float = 5e-5,
    random_state: int = 0,
    max_epochs: int | None = None,
    accelerator: str = "auto",
    devices: int | str | Sequence[int] = "auto",
    batch_size: int | None = None,
    return_model: bool = False,
    **train_kwargs: Any,
) -> AnnData | tuple[AnnData, ScGenMixin]:
    """Predict how a cell type responds to a perturbation with scGen.

    Trains scGen's VAE on log-normalised expression of control and perturbed cells (or
    reuses ``model=``), computes the cell-type balanced latent shift
    ``delta = mean z(perturbed) - mean z(control)`` and decodes ``z(control cells) + delta``
    for the cells to predict (``residual=True`` adds the decoded change to the control
    cells' expression instead).

    For a held-out prediction, remove the perturbed cells of the target type from
    ``adata`` before calling (a warning says so when they are present).

    Parameters
    ----------
    {adata}
        Log-normalised expression (``sc.pp.normalize_total`` + ``sc.pp.log1p``), usually
        on highly variable genes.
    condition_key
        Column of ``adata.obs`` with the condition of each cell.
    control, perturbed
        The control and perturbed values of ``obs[condition_key]``.
    cell_type_key
        Column of ``adata.obs`` with cell types.
    predict
        The cell type whose response is predicted from its control cells in ``adata``,
        or an AnnData of control cells to shift: log-normalised, with the same genes,
        read from the same layer as ``adata`` (``layer=``, or the model's).
    {key_added}
    {backend}
        With ``model=``, the model's own backend is used (and recorded).
    layer
        Read log-normalised expression from ``adata.layers[layer]`` instead of ``adata.X``.
    {model}
        The delta is computed on ``adata`` with the model's encoder.
    restrict_arithmetic_to
        Compute the delta from these cell types only.
    balance
        ``"resample"`` (scGen's balancing: as many cells of each type as the largest has,
        drawn with ``random_state``) or ``"mean"`` (exact average of per-type means).
    delta_cells
        ``"all"`` (scGen): each condition's mean averages every cell type present in it,
        so the control cells of the type to predict count too. ``"paired"``: only the
        types seen in both conditions, i.e. the average within-type shift. On the Kang
        benchmark the two score the same on average over four held-out types; ``"all"``
        is better for B and CD4 Naive T, ``"paired"`` for CD14 Mono and NK
        (``docs/benchmarks.md``).
    residual
        ``False`` (scGen): the prediction is ``decode(z + delta)``. ``True``: the control
        cells' expression plus the decoded change, ``decode(z + delta) - decode(z)``, so
        each predicted cell keeps its control cell's deviation from the model's
        reconstruction. On the Kang benchmark (26 seeds) the per-gene variances are far
        closer to the real ones (R² of variances 0.455-0.733 instead of 0.283-0.441); R² of
        means rises for CD4 Naive T and NK, stays level for B and drops for CD14 Mono
        (``docs/benchmarks.md``).
    clip_at_zero
        Raise predicted values below 0 to 0. ``None``: when the input holds no negative
        value (log-normalised data), not when it does (scaled data). The decoder's linear
        output, like scgen 2.1.0's, puts about a third of the predicted values below 0 on
        log-normalised data, where scGen's original decoder ends in a ReLU; negative
        values give scanpy's log fold changes NaN. ``False`` keeps the decoder's output.
    n_hidden, n_latent, n_layers
        Width of the hidden layers, latent dimension and hidden layers of encoder and
        decoder (scGen: 800, 100, 2).
    dropout_rate
        Dropout after every hidden block.
    kl_weight
        Weight of the KL divergence against the squared-error reconstruction.
    {random_state}
    {max_epochs}
        Default 40 (minibatches of 64), with early stopping on the validation loss.
    {accelerator}
    {devices}
    batch_size
        Cells per training minibatch (``None``: the model's default, 64). Encoding and
        decoding use minibatches of at least 1,024 cells.
    return_model
        Also return the trained (or reused) :class:`~scneural.models.ScGen` (or
        :class:`~scneural.models.JaxScGen` with ``backend="jax"``).
    {train_kwargs}

    Returns
    -------
    The predicted cells as a new AnnData: one per control cell, with the model's genes
    (``adata``'s, unless ``model=`` was trained on others) and their rows of ``adata.var``,
    the control cells' ``obs`` with ``obs[condition_key] = "predicted"`` and
    ``obs["control_cell"]`` (the cell it was predicted from), and ``obsm[f"X_{{key_added}}"]``
    (shifted latent codes). With ``return_model=True``, ``(predicted, model)``. Predicted
    values below 0 are raised to 0 as ``clip_at_zero`` says (``params["clipped_at_zero"]``).
    Writes into ``adata``:

    ``obsm[f"X_{{key_added}}"]``
        Latent code (posterior mean) of every cell.
    ``uns[key_added]``
        ``params`` (with ``training``: every argument the model was trained with, its
        defaults included), ``history`` (per-epoch losses of the model's training, also
        when reused), ``delta`` (the latent shift), ``delta_cell_types`` (types it was
        computed from), ``n_predicted`` and ``train_seconds``.

    Examples
    --------
    >>> held_out = (adata.obs["cell_type"] == "CD14 Mono") & (adata.obs["stim"] == "STIM")
    >>> train = adata[~held_out].copy()
    >>> pred = sn.tl.perturb(train, condition_key="stim", control="CTRL", perturbed="STIM",
    ...                      cell_type_key="cell_type", predict="CD14 Mono")
    >>> sn.pl.reg_mean(sc.concat([adata[held_out], pred]), condition_key="stim",
    ...                x="STIM", y="predicted")
    """
    check_adata(adata)
    check_backend(backend, "perturb", available=("torch", "jax"))
    check_reused_model(model, ScGenMixin, "ScGen")
    check_arithmetic_options(balance, delta_cells)
    if not isinstance(residual, bool | np.bool_):
        raise TypeError(f"residual must be True or False, got {residual!r}")
    if clip_at_zero is not None and not isinstance(clip_at_zero, bool | np.bool_):
        raise TypeError(f"clip_at_zero must be True, False or None, got {clip_at_zero!r}")
    check_key_added(key_added)
    batch_size = check_optional_int(batch_size, "batch_size", minimum=2)  # batch norm: 2+ cells
    max_epochs = check_optional_int(max_epochs, "max_epochs")
    n_hidden = check_positive_int(n_hidden, "n_hidden")
    n_latent = check_positive_int(n_latent, "n_latent")
    n_layers = check_positive_int(n_layers, "n_layers")
    dropout_rate = check_fraction(dropout_rate, "dropout_rate")
    kl_weight = check_non_negative_float(kl_weight, "kl_weight")
    check_tool_arguments(
        perturb,
        model,
        _model_class(backend),
        train_kwargs,
        n_hidden=n_hidden,
        n_latent=n_latent,
        n_layers=n_layers,
        dropout_rate=dropout_rate,
        kl_weight=kl_weight,
        max_epochs=max_epochs,
    )
    check_obs_key(adata, condition_key, "condition_key")
    check_obs_key(adata, cell_type_key, "cell_type_key")
    n_untyped = int(adata.obs[cell_type_key].isna().sum())
    if n_untyped:
        raise ValueError(
            f"cell_type_key={cell_type_key!r} is missing (NaN) for "
            f"{counted(n_untyped, 'cell')}; they would count as a cell type 'nan' in the "
            "delta: give them a type or remove them"
        )
    condition_column = adata.obs[condition_key]
    control = as_label(control, "control", condition_column)
    perturbed = as_label(perturbed, "perturbed", condition_column)
    if not isinstance(predict, AnnData | str):
        try:
            predict = as_label(predict, "predict", adata.obs[cell_type_key])
        except TypeError:
            raise TypeError(
                f"predict must be a cell type (a value of obs[{cell_type_key!r}]) or an "
                f"AnnData of control cells, got {type(predict).__name__}"
            ) from None
    check_unique_var_names(adata)
    source = resolve_source(adata, layer=layer, use_rep=None, model=model)
    matrix = source.matrix(adata)
    check_finite(matrix, source.describe())
    # log-normalised data are never negative: neither are its predictions (scaled data are)
    clip = bool(clip_at_zero) if clip_at_zero is not None else not has_negative(matrix)
    if model is None:
        check_not_constant(matrix, source.describe())
    conditions = adata.obs[condition_key].astype(str).to_numpy()
    types = adata.obs[cell_type_key].astype(str).to_numpy()
    check_conditions(conditions, condition_key, control, perturbed)
    arithmetic_cell_types(types, conditions, control, perturbed, restrict_arithmetic_to)
    inputs = {source.describe(): matrix}
    if isinstance(predict, AnnData):
        given_controls = _check_control_cells(predict, model, adata, source)
        inputs["predict= AnnData"] = given_controls
    else:  # a str: as_label made it one
        control_mask(adata.obs, condition_key, cell_type_key, control, predict)
        n_seen = int(((types == predict) & (conditions == perturbed)).sum())
        if n_seen:
            warnings.warn(
                f"adata holds {counted(n_seen, f'{perturbed!r} cell')} of {predict!r}, the "
                "type to predict; they are "
                f"{'' if model is not None else 'trained on and '}used in the delta, so this "
                "is not a held-out prediction. Remove them from adata to predict an unseen "
                "response",
                UserWarning,
                stacklevel=2,
            )
    for description, values in inputs.items():
        if looks_like_counts(values):
            warnings.warn(
                f"{description} looks like raw counts (integers, maximum > 20); scGen "
                "expects log-normalised expression: run sc.pp.normalize_total and "
                "sc.pp.log1p first (or pass layer= with log-normalised values)",
                UserWarning,
                stacklevel=2,
            )
    set_seed(random_state)

    train_seconds = 0.0
    if model is None:
        obs = pd.DataFrame(
            {condition_key: conditions, cell_type_key: types}, index=adata.obs_names.copy()
        )
        proxy = make_proxy(adata, source, obs=obs)
        model_cls = _model_class(backend)
        model_cls.setup_anndata(
            proxy, condition_key=condition_key, cell_type_key=cell_type_key, layer=source.layer
        )
        model = model_cls(
            proxy,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            kl_weight=kl_weight,
        )
        model.input_source_ = source.to_dict()
        start = time.perf_counter()
        model.train(
            **trainer_kwargs(
                accelerator=accelerator,
                devices=devices,
                max_epochs=max_epochs,
                train_kwargs=train_kwargs,
                batch_size=batch_size,
            )
        )
        train_seconds = time.perf_counter() - start
        reused = False
    else:
        proxy = _query_proxy(adata, source, model, conditions, types)
        reused = True

    inference_batch = inference_batch_size(batch_size)
    with quiet_setup_transfer():
        latent = model.get_latent_representation(proxy, batch_size=inference_batch)
    delta, delta_types = model.latent_delta(
        control,
        perturbed,
        adata=proxy,
        latent=latent,
        restrict_arithmetic_to=restrict_arithmetic_to,
        balance=balance,
        delta_cells=delta_cells,
        random_state=random_state,
    )
    if isinstance(predict, AnnData):
        source_obs = predict.obs
        control_matrix = given_controls  # the model's genes: those of adata when trained here
        z_control = model.encode_matrix(control_matrix, batch_size=inference_batch)
    else:
        mask = control_mask(adata.obs, condition_key, cell_type_key, control, predict)
        source_obs = adata.obs.loc[mask]
        z_control = latent[mask]
        control_matrix = (
            model.get_from_registry(proxy, REGISTRY_KEYS.X_KEY)[np.flatnonzero(mask)]
            if residual
            else None
        )
    expression, z_predicted = model.shift_and_decode(
        z_control,
        delta,
        control_expression=control_matrix if residual else None,
        batch_size=inference_batch,
        clip_min=0.0 if clip else None,
    )
    check_finite_output(
        {"latent codes": latent, "delta": delta, "predicted expression": expression},
        model.history_dict(),
    )
    genes = model_feature_names(model)
    predicted = predicted_anndata(
        expression,
        source_obs,
        adata.var.copy() if adata.var_names.equals(genes) else _reindexed_var(adata.var, genes),
        condition_key,
    )
    predicted.obsm[f"X_{key_added}"] = z_predicted
    params = {
        "condition_key": condition_key,
        "control": control,
        "perturbed": perturbed,
        "cell_type_key": cell_type_key,
        "predict": predict if isinstance(predict, str) else f"AnnData of {predict.n_obs} cells",
        "layer": source.layer,
        "restrict_arithmetic_to": None
        if restrict_arithmetic_to is None
        else [str(t) for t in restrict_arithmetic_to],
        "balance": balance,
        "delta_cells": delta_cells,
        "residual": bool(residual),
        "clipped_at_zero": clip,
        **{
            name: model.init_params_["non_kwargs"].get(name)
            for name in ("n_hidden", "n_latent", "n_layers", "dropout_rate", "kl_weight")
        },
        "random_state": random_state,
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "backend": model.backend,
        "model_reused": reused,
        "train_kwargs": {k: str(v) for k, v in train_kwargs.items()},
        "training": model.training_record(),
    }
    uns = {
        "params": params,
        "history": model.history_dict(),
        "delta": delta,
        "delta_cell_types": [str(t) for t in delta_types],
        "n_predicted": int(predicted.n_obs),
        "train_seconds": float(train_seconds),
    }
    write_results(
        adata,
        obsm={f"X_{key_added}": latent.astype(np.float32)},
        uns={key_added: to_h5ad_safe(uns)},
    )
    return (predicted, model) if return_model else predicted


def _reindexed_var(var: pd.DataFrame, genes: pd.Index) -> pd.DataFrame:
    """``var`` on the model's genes, with the rows of genes the input lacks left empty.

    Plain reindexing would turn a boolean or string column into objects mixing values and
    NaN, which ``write_h5ad`` refuses; such columns become nullable booleans or categories.
    """
    out = var.reindex(genes)
    for column in out.columns:
        if out[column].dtype != object or not out[column].isna().any():
            continue
        if pd.api.types.is_bool_dtype(var[column]):
            out[column] = out[column].astype("boolean")
        else:
            out[column] = out[column].astype(str).where(out[column].notna()).astype("category")
    return out


def _model_class(backend: str) -> type[ScGenMixin]:
    """The scGen model of a backend (the JAX one is imported only when asked for)."""
    if backend == "jax":
        from scneural.models.scgen._model_jax import JaxScGen

        return JaxScGen
    return ScGen


def _check_control_cells(
    cells: AnnData, model: ScGenMixin | None, adata: AnnData, source: InputSource
) -> Any:
    """Check a ``predict=`` AnnData before any training: genes, names, the layer and finite
    values; returns the expression that will be shifted."""
    genes = model_feature_names(model) if model is not None else adata.var_names
    check_adata(cells, argument="predict", writes_results=False)
    missing = pd.Index(genes).difference(cells.var_names)
    if len(missing):
        raise ValueError(
            f"predict= AnnData lacks {len(missing)} of the {len(genes)} genes trained on "
            f"(e.g. {list(missing[:5])}); pass control cells with the same genes"
        )
    check_unique_var_names(cells, "predict")
    if source.layer is not None and source.layer not in cells.layers:
        raise KeyError(
            f"predict= AnnData has no layers[{source.layer!r}], which the model reads "
            f"(layer={source.layer!r}); put the control cells' log-normalised expression "
            f"there (its layers: {list(cells.layers)})"
        )
    subset = cells[:, pd.Index(genes)]
    control = subset.layers[source.layer] if source.layer is not None else subset.X
    check_finite(control, "predict= AnnData")
    return control


def _query_proxy(
    adata: AnnData,
    source: InputSource,
    model: ScGenMixin,
    conditions: np.ndarray,
    types: np.ndarray,
) -> AnnData:
    """Proxy of ``adata`` for a trained model: its obs columns and the model's genes."""
    setup = model.adata_manager.registry["setup_args"]
    obs = pd.DataFrame(
        {setup["condition_key"]: conditions, setup["cell_type_key"]: types},
        index=adata.obs_names.copy(),
    )
    if setup.get("batch_key") is not None:
        obs[setup["batch_key"]] = (
            adata.obs[setup["batch_key"]].astype(str).to_numpy()
            if setup["batch_key"] in adata.obs
            else "unknown"
        )
    proxy = align_features(make_proxy(adata, source, obs=obs), model_feature_names(model), source)
    return model.register_query(proxy)
