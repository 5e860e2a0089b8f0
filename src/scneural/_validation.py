"""Input validation shared by every tool.

Every check runs before any work and raises :class:`ValueError` or :class:`KeyError`
with a message that names the argument, says what was found and what to do.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scneural._utils import class_keyword_names, counted, label_strings, with_suggestion

_CHUNK = 10_000


def check_adata(adata: Any, *, argument: str = "adata", writes_results: bool = True) -> AnnData:
    """Require a non-empty AnnData; one the tool writes into must not be a backed view.

    anndata cannot turn a view of a backed object into one of its own, which writing
    results needs, so such a view is refused before any work (not after training).
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"{argument} must be an AnnData object, got {type(adata).__name__}")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"{argument} is empty ({adata.n_obs} cells x {adata.n_vars} genes); "
            "pass an AnnData with at least one cell and one gene"
        )
    if writes_results and adata.is_view and adata.isbacked:
        raise ValueError(
            f"{argument} is a view of a backed AnnData, and results cannot be written into "
            "it; pass the backed object itself (and subset the results afterwards), or "
            "load the cells with .to_memory() first"
        )
    return adata


def check_obs_key(adata: AnnData, key: str | None, argument: str) -> None:
    """Require ``key`` to be a column of ``adata.obs``."""
    if key is None:
        raise ValueError(f"{argument} is required: pass the name of a column of adata.obs")
    if key not in adata.obs.columns:
        raise KeyError(
            f"{argument}={key!r} is not a column of adata.obs; "
            f"available columns: {list(adata.obs.columns)[:20]}"
        )


def batch_labels(adata: AnnData, batch_key: str, argument: str = "batch_key") -> np.ndarray:
    """The batch of each cell as a string (an object array); a missing batch is an error.

    As strings a missing value would read ``"nan"``, ``"<NA>"`` or ``"None"`` depending on
    the column's dtype, so a query could not match its reference (and scvi-tools refuses
    missing batches itself, with a cryptic message).
    """
    check_obs_key(adata, batch_key, argument)
    column = adata.obs[batch_key]
    n_missing = int(column.isna().sum())
    if n_missing:
        raise ValueError(
            f"{argument}={batch_key!r} is missing (NaN) for {counted(n_missing, 'cell')}; "
            "give them a batch (e.g. a category 'unknown') or remove them"
        )
    return column.astype(str).to_numpy(dtype=object)


def check_obs_values(values: Any, key: str, *, hint: str = "", **arguments: str) -> None:
    """Require each argument's value (e.g. ``control="CTRL"``) to be among ``values``, the
    values of ``obs[key]`` as strings (missing ones left out)."""
    found = sorted(set(values))
    for argument, value in arguments.items():
        if value not in found:
            raise ValueError(
                f"{argument}={value!r} is not a value of obs[{key!r}]; values found: "
                f"{found[:20]}{hint}"
            )


def check_truth_labels(adata: AnnData, labels_key: str, cells: np.ndarray | None = None) -> None:
    """Require a column of known labels to score results against (``labels_key=``).

    ``cells`` (a boolean mask) restricts the check to the cells that will be scored.
    """
    check_obs_key(adata, labels_key, "labels_key")
    known = adata.obs[labels_key].notna().to_numpy()
    if cells is not None:
        known &= np.asarray(cells, dtype=bool)
    if not known.any():
        raise ValueError(
            f"labels_key={labels_key!r} holds no label for the cells to be scored (all "
            "missing); pass a column with known labels, or labels_key=None to skip the scores"
        )


def check_layer(adata: AnnData, layer: str | None) -> None:
    """Require ``layer`` to be one of ``adata.layers`` (``None`` means ``X``)."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"layer={layer!r} is not in adata.layers; available layers: {list(adata.layers)}. "
            "Pass layer=None to use adata.X"
        )


def check_use_rep(adata: AnnData, use_rep: str | None) -> None:
    """Require ``use_rep`` to be a 2-D entry of ``adata.obsm``."""
    if use_rep is None:
        return
    if use_rep not in adata.obsm:
        raise KeyError(
            f"use_rep={use_rep!r} is not in adata.obsm; available: {list(adata.obsm)}. "
            "Compute it first (e.g. sc.pp.pca for 'X_pca') or pass use_rep=None"
        )
    rep = adata.obsm[use_rep]
    if np.ndim(rep) != 2:
        raise ValueError(f"use_rep={use_rep!r} must be a 2-D array (cells x dimensions)")
    if isinstance(rep, pd.DataFrame):
        # nullable Int64/Float64/boolean columns are numbers too (their NA a NaN)
        other = [c for c in rep.columns if not pd.api.types.is_numeric_dtype(rep[c])]
        if other:
            raise ValueError(
                f"use_rep={use_rep!r} is a DataFrame with non-numeric columns {other[:5]}; "
                "store only its numeric columns under another obsm key and pass that"
            )
    elif not sparse.issparse(rep) and np.asarray(rep).dtype.kind not in "biuf":
        raise ValueError(
            f"use_rep={use_rep!r} holds {np.asarray(rep).dtype} values, not numbers; store it "
            "as a float array (e.g. .astype(np.float32))"
        )


def use_rep_or_x(use_rep: str | None, layer: str | None) -> str | None:
    """``use_rep`` with scanpy's ``"X"`` (``adata.X``) turned into ``None``, what the tools
    read ``X`` as; ``"X"`` together with a ``layer`` is refused (they name two matrices)."""
    if use_rep != "X":
        return use_rep
    if layer is not None:
        raise ValueError(
            f"use_rep='X' reads adata.X, but layer={layer!r} asks for "
            f"adata.layers[{layer!r}]; pass either layer= or use_rep=, not both"
        )
    return None


def check_input_source(adata: AnnData, *, layer: str | None, use_rep: str | None) -> None:
    """Check ``layer`` / ``use_rep`` and that they are not both given."""
    if layer is not None and use_rep is not None:
        raise ValueError("pass either layer= or use_rep=, not both")
    check_layer(adata, layer)
    check_use_rep(adata, use_rep)


def _values(X: Any) -> Any:
    """The stored values of a matrix (the non-zeros of a sparse one)."""
    if sparse.issparse(X):
        return X.data
    if isinstance(X, pd.DataFrame):
        return X.to_numpy()
    return X


def _iter_blocks(X: Any):
    """``X`` itself when in memory, else (backed or array-like) blocks of its rows."""
    if sparse.issparse(X) or isinstance(X, np.ndarray | pd.DataFrame):
        yield X
    else:
        for start in range(0, X.shape[0], _CHUNK):
            yield X[start : start + _CHUNK]


def _iter_value_chunks(X: Any):
    for block in _iter_blocks(X):
        values = np.asarray(_values(block)).ravel()
        for start in range(0, values.size, _CHUNK * 100):
            yield values[start : start + _CHUNK * 100]


def has_negative(X: Any) -> bool:
    """Whether ``X`` (dense, sparse or backed) holds a value below 0, read block by block."""
    return any((chunk < 0).any() for chunk in _iter_value_chunks(X))


#: the models compute in float32: larger values become infinite in them
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_finite(X: Any, argument: str) -> None:
    """Require every value of ``X`` to be finite, also once cast to float32."""
    for chunk in _iter_value_chunks(X):
        if not np.all(np.isfinite(chunk)):
            raise ValueError(
                f"{argument} holds NaN or infinite values; remove or impute them before "
                "calling this tool"
            )
        wide = chunk.dtype.kind == "f" and chunk.dtype.itemsize > 4
        if chunk.size and wide and np.abs(chunk).max() > _FLOAT32_MAX:
            raise ValueError(
                f"{argument} holds values beyond the float32 range (|x| > 3.4e38), which "
                "the models compute in (they would become infinite); rescale them first"
            )


def check_not_constant(X: Any, argument: str) -> None:
    """Require ``X`` to hold at least two different values: a model trained on a matrix of
    one value (e.g. an empty layer of zeros) learns nothing from the cells."""
    low, high = np.inf, -np.inf
    for block in _iter_blocks(X):
        values = np.asarray(_values(block))
        if values.size:
            low, high = min(low, values.min()), max(high, values.max())
        if sparse.issparse(block) and block.nnz < block.shape[0] * block.shape[1]:
            low, high = min(low, 0.0), max(high, 0.0)  # the zeros sparse storage leaves out
        if high > low:
            return
    raise ValueError(
        f"{argument} holds the same value ({low:g}) in every entry, so there is nothing "
        "to learn from; pass the expression values (layer= or use_rep= where the tool "
        "has it) or fill this one first"
    )


def diverged_fix(learning_rate: str = "plan_kwargs={'lr': ...}") -> str:
    """The advice after a diverged training; ``learning_rate`` says how the call that
    trained sets its learning rate (``sn.tl.deep_cluster`` refuses ``plan_kwargs``: each
    of its phases takes its own, ``pretrain_lr=`` and ``cluster_lr=``)."""
    return (
        f"Lower the learning rate ({learning_rate}), check the input for extreme values, or retrain"
    )


#: the advice of a training that takes ``plan_kwargs`` (every tool but deep_cluster)
DIVERGED_FIX = diverged_fix()


def check_finite_output(
    outputs: Mapping[str, Any],
    history: Mapping[str, Any] | None = None,
    *,
    fix: str = DIVERGED_FIX,
) -> None:
    """Refuse a model's results that hold NaN or infinite values (training diverged).

    ``outputs`` maps a description of each result to its values; ``history`` (per-epoch
    curves, possibly nested by training phase) is searched for the first non-finite loss,
    so the message says where training went wrong; ``fix`` is the advice that ends it
    (see :func:`diverged_fix` for a call that sets its learning rate by another
    argument). Called before a tool writes anything.
    """
    # as stored (float32): a float64 copy of a predicted (cells x genes) matrix is 2x its size
    bad = [name for name, values in outputs.items() if not np.isfinite(np.asarray(values)).all()]
    if not bad:
        return
    where = first_nonfinite_loss(history or {})
    raise ValueError(
        f"the model produced NaN or infinite values in {', '.join(bad)}: training "
        f"diverged{f' ({where})' if where else ''}, and nothing was written. {fix}"
    )


def first_nonfinite_loss(history: Mapping[str, Any]) -> str:
    """Where the first loss curve of ``history`` (per-epoch curves, possibly nested by
    training phase) stops being finite, as ``"<curve> became nan at epoch <n>"``; ``""``
    when every loss is finite."""
    for name, values in _flat_history(history):
        if "loss" not in name:  # e.g. an accuracy: NaN where a split has no labelled cell
            continue
        values = np.asarray(values, dtype=np.float64).ravel()
        nonfinite = np.flatnonzero(~np.isfinite(values))
        if nonfinite.size:
            return f"{name} became {values[nonfinite[0]]} at epoch {nonfinite[0] + 1}"
    return ""


def _flat_history(history: Mapping[str, Any], prefix: str = ""):
    """``(name, values)`` of every curve of a history, phases (nested dicts) flattened."""
    for name, values in history.items():
        if isinstance(values, Mapping):
            yield from _flat_history(values, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", values


def is_count_matrix(X: Any) -> bool:
    """Whether ``X`` holds non-negative integers only (checked chunk by chunk)."""
    for chunk in _iter_value_chunks(X):
        if chunk.size and (np.any(chunk < 0) or np.any(chunk != np.round(chunk))):
            return False
    return True


def check_counts(X: Any, argument: str, tool: str) -> None:
    """Require finite, non-negative integer counts."""
    check_finite(X, argument)
    for chunk in _iter_value_chunks(X):
        if chunk.size and np.any(chunk < 0):
            raise ValueError(
                f"{argument} holds negative values; {tool} needs raw counts: "
                "pass layer= with the raw counts"
            )
        if chunk.size and np.any(chunk != np.round(chunk)):
            raise ValueError(
                f"{argument} holds non-integer values; {tool} needs raw counts: "
                "pass layer= with the raw counts"
            )


def looks_like_counts(X: Any, n_rows: int = 500) -> bool:
    """Heuristic used for warnings: integer values with a large maximum look like raw counts."""
    block = X[: min(n_rows, X.shape[0])]
    values = np.asarray(_values(block)).ravel()
    if values.size == 0:
        return False
    return bool(np.all(values == np.round(values)) and values.max() > 20)


def check_labels(
    adata: AnnData,
    labels_key: str,
    *,
    unlabeled_category: str | None = None,
    min_cells_per_class: int = 2,
) -> np.ndarray:
    """Check a label column and return a boolean mask of cells with usable labels.

    Cells with missing labels are excluded with a warning; an error is raised if no
    labelled cell remains or a class has fewer than ``min_cells_per_class`` cells.
    """
    check_obs_key(adata, labels_key, "labels_key")
    labels = adata.obs[labels_key]
    missing = labels.isna().to_numpy()
    if missing.all():
        raise ValueError(f"labels_key={labels_key!r} holds only missing (NaN) labels")
    if missing.any():
        warnings.warn(
            f"{counted(int(missing.sum()), 'cell has', 'cells have')} a missing (NaN) label "
            f"in {labels_key!r}; they are not trained on but are predicted",
            UserWarning,
            stacklevel=3,
        )
    labelled = ~missing
    names = label_strings(labels)
    if unlabeled_category is not None:
        labelled &= names != label_strings([unlabeled_category])[0]
    if not labelled.any():
        raise ValueError(
            f"no labelled cells remain in {labels_key!r} after removing missing labels and "
            f"unlabeled_category={unlabeled_category!r}"
        )
    counts = pd.Series(names[labelled]).value_counts()
    small = counts[counts < min_cells_per_class]
    if len(small):
        raise ValueError(
            f"labels_key={labels_key!r}: classes {list(small.index)} have fewer than "
            f"{min_cells_per_class} cells; remove them or merge them into another class"
        )
    if len(counts) < 2:
        raise ValueError(
            f"labels_key={labels_key!r} has a single class ({counts.index[0]!r}); "
            "a classifier needs at least two"
        )
    return labelled


def check_positive_int(value: Any, argument: str, minimum: int = 1) -> int:
    """Require an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_number(
    value: Any, argument: str, requirement: str, accept: Callable[[float], bool]
) -> float:
    """Require a finite real number (not a bool) that ``accept`` takes."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not np.isfinite(value)
        or not accept(float(value))
    ):
        raise ValueError(f"{argument} must be {requirement}, got {value!r}")
    return float(value)


def check_positive_float(value: Any, argument: str) -> float:
    """Require a finite number greater than 0."""
    return _check_number(value, argument, "a number > 0", lambda number: number > 0)


def check_non_negative_float(value: Any, argument: str) -> float:
    """Require a finite number of at least 0 (a loss weight, a noise level)."""
    return _check_number(value, argument, "a number >= 0", lambda number: number >= 0)


def check_fraction(value: Any, argument: str) -> float:
    """Require a number in [0, 1) (a dropout rate, a tolerance)."""
    return _check_number(value, argument, "in [0, 1)", lambda number: 0 <= number < 1)


def check_train_size(value: Any, argument: str = "train_size") -> float:
    """Require a fraction of cells to train on, in (0, 1] (scvi-tools' splitter reads a
    ``train_size`` of 0 as "not given" and trains on its default 90% instead)."""
    return _check_number(
        value,
        argument,
        "in (0, 1], the fraction of cells trained on (1.0: every cell, without validation)",
        lambda number: 0 < number <= 1,
    )


def check_probability(value: Any, argument: str) -> float:
    """Require a number in [0, 1] (a confidence threshold)."""
    return _check_number(value, argument, "in [0, 1]", lambda number: 0 <= number <= 1)


def check_kwargs_dict(
    kwargs: Any, argument: str, what: str = "training plan arguments"
) -> Mapping[str, Any]:
    """Keyword arguments passed on as a dict (``plan_kwargs``, ``datasplitter_kwargs``):
    ``{}`` for ``None``, refused unless it is a dict of ``what``."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"{argument} must be a dict of {what}, got {kwargs!r}")
    return kwargs


def check_plan_settings(
    plan_kwargs: Mapping[str, Any] | None, *, prefix: str = "", **defaults: Any
) -> dict:
    """A training plan's arguments: ``defaults`` updated by ``plan_kwargs``, checked.

    ``lr`` and ``eps`` must be > 0 and ``weight_decay`` >= 0 where given. torch's optimizers
    reject bad values only once training has started, and optax's not at all (a negative
    learning rate silently ascends the loss). A message names the value as the caller
    passed it: ``f"{prefix}plan_kwargs['lr']"`` from ``plan_kwargs``, ``f"{prefix}lr"``
    from the defaults (``prefix="cluster_"``: the DEC phase's ``cluster_lr``).
    """
    argument = f"{prefix}plan_kwargs"
    given = check_kwargs_dict(plan_kwargs, argument)
    plan = {**defaults, **given}
    for name, check in (
        ("lr", check_positive_float),
        ("eps", check_positive_float),
        ("weight_decay", check_non_negative_float),
    ):
        if name in plan:
            check(plan[name], f"{argument}[{name!r}]" if name in given else f"{prefix}{name}")
    return plan


def check_plan_kwargs(
    plan_kwargs: Mapping[str, Any] | None,
    plan_cls: type,
    *,
    argument: str = "plan_kwargs",
    set_elsewhere: Mapping[str, str] | None = None,
) -> None:
    """Refuse, before any training, ``plan_kwargs`` that ``plan_cls`` does not take or that
    the caller sets itself.

    Parameters
    ----------
    plan_kwargs
        Arguments for ``plan_cls`` (``None``: none).
    plan_cls
        The training plan: the keyword arguments of its ``__init__`` and of those of the
        classes it derives from (scvi-tools' ``TrainingPlan``...) are known, ``module``
        excepted.
    argument
        Name of ``plan_kwargs`` in the caller's signature, for the messages.
    set_elsewhere
        Known names that the caller sets itself, or that have no effect in its plan, each
        with the advice for a user who passes it (e.g. ``"use gamma= instead"``).

    Raises
    ------
    TypeError
        If ``plan_kwargs`` is not a dict, or holds a name ``plan_cls`` does not take. The
        plan passes such a name on to the module's loss, which ignored it without a word
        when it takes ``**kwargs``, or failed inside the training loop, after any earlier
        training phase had run.
    ValueError
        If ``plan_kwargs`` holds a name of ``set_elsewhere``.
    """
    plan_kwargs = check_kwargs_dict(plan_kwargs, argument)
    set_elsewhere = set_elsewhere or {}
    refused = [
        f"{argument}[{name!r}]: {set_elsewhere[name]}"
        for name in plan_kwargs
        if name in set_elsewhere
    ]
    if refused:
        raise ValueError("; ".join(refused))
    known = class_keyword_names(plan_cls, "__init__") - {"module"}
    unknown = [name for name in plan_kwargs if name not in known]
    if unknown:
        raise TypeError(
            f"{argument} holds {', '.join(with_suggestion(name, known) for name in unknown)}, "
            f"which {plan_cls.__name__} does not take; its arguments are "
            f"{', '.join(sorted(known - set(set_elsewhere)))}"
        )


def check_optional_int(value: Any, argument: str, minimum: int = 1) -> int | None:
    """``None`` (the default is chosen later), or an integer of at least ``minimum``."""
    return None if value is None else check_positive_int(value, argument, minimum)


def check_hidden_sizes(value: Any, argument: str = "n_hidden") -> tuple[int, ...]:
    """Require one or more layer widths (an integer or a sequence of integers >= 1)."""
    sizes = (value,) if isinstance(value, int | np.integer) else value
    if not isinstance(sizes, list | tuple | np.ndarray) or len(sizes) == 0:
        raise ValueError(
            f"{argument} must be a list of layer widths, e.g. (256, 64); got {value!r}"
        )
    for size in sizes:
        check_positive_int(size, f"every width in {argument}")
    return tuple(int(size) for size in sizes)


def check_choice(value: Any, argument: str, choices: Sequence[Any]) -> Any:
    """Require ``value`` to be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{argument}={value!r} is not supported; choose one of {list(choices)}")
    return value


def check_unique_var_names(adata: AnnData, argument: str = "adata") -> None:
    """Require unique gene names (needed to align genes between data sets)."""
    if not adata.var_names.is_unique:
        raise ValueError(
            f"{argument}.var_names are not unique; call {argument}.var_names_make_unique() first"
        )


def check_key_added(key_added: Any) -> str:
    """Require a key that ``write_h5ad`` can store and read back (a non-empty str, no '/')."""
    if not isinstance(key_added, str) or not key_added or "/" in key_added:
        raise ValueError(
            f"key_added must be a non-empty string without '/', got {key_added!r} "
            "(write_h5ad cannot store such a key, or reads it back as a nested group)"
        )
    return key_added
