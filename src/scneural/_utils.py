"""Small helpers shared by every tool: seeding, result writing, uns sanitising, batching."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData, ImplicitModificationWarning
from scipy import sparse

_MISSING = object()
_XLA_DETERMINISTIC = "--xla_gpu_deterministic_ops=true"


def keyword_names(function: Callable) -> set[str]:
    """Names ``function`` takes by keyword (not ``self``, ``*args`` or ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return set()
    return {
        name
        for name, parameter in parameters.items()
        if name != "self"
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }


def class_keyword_names(cls: type, method: str) -> set[str]:
    """Names ``method`` takes by keyword in ``cls`` and in every class it derives from
    (each class's own definition: a subclass's ``**kwargs`` passes them on)."""
    return set().union(
        *(keyword_names(vars(base)[method]) for base in cls.__mro__ if method in vars(base))
    )


def with_suggestion(name: str, candidates: Iterable[str]) -> str:
    """``'name'``, with the closest candidates (a misspelling, or a longer name that ends
    with it, such as ``pretrain_lr`` for ``lr``)."""
    candidates = sorted(set(candidates))
    close = difflib.get_close_matches(name, candidates, n=2, cutoff=0.75)
    close += [c for c in candidates if c.endswith(f"_{name}") and c not in close]
    if not close:
        return repr(name)
    return f"{name!r} (did you mean {' or '.join(repr(c) for c in close[:3])}?)"


def counted(n: int, one: str, many: str | None = None) -> str:
    """``n`` followed by the words that agree with it: ``counted(1, "cell has", "cells
    have")`` is ``"1 cell has"``, ``counted(3, "gene")`` is ``"3 genes"``."""
    return f"{n} {one if n == 1 else (many or f'{one}s')}"


def set_seed(random_state: int) -> None:
    """Seed numpy, torch, Python's ``random`` and scvi-tools' JAX key with one number."""
    import scvi

    if (
        isinstance(random_state, bool)
        or not isinstance(random_state, int | np.integer)
        or not 0 <= random_state < 2**32
    ):
        raise ValueError(
            f"random_state must be an integer in [0, 2**32), got {random_state!r}; "
            "pass e.g. random_state=0"
        )
    flags = os.environ.get("XLA_FLAGS")
    scvi.settings.seed = int(random_state)
    # scvi-tools appends "--xla_gpu_deterministic_ops=true" to XLA_FLAGS at every seeding;
    # JAX hashes XLA_FLAGS into its persistent compilation cache keys, so the growing
    # string made every later compilation miss that cache. Keep the flag once.
    if flags is not None and _XLA_DETERMINISTIC in flags.split():
        os.environ["XLA_FLAGS"] = flags


def _label_string(value: Any) -> str:
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def label_strings(values: Any) -> np.ndarray:
    """Labels as strings (an object array), the same whatever the column's dtype.

    pandas stores an integer column that has a missing value as floats, so its labels
    would read ``"1.0"`` where the complete column reads ``"1"``: integral floats are
    written as integers. Missing values become ``"nan"``; leave them out first.
    """
    array = np.asarray(values, dtype=object)
    return np.array([_label_string(v) for v in array.ravel()], dtype=object).reshape(array.shape)


def label_order(values: Any, present: Sequence[str]) -> list[str]:
    """``present`` labels in the order of ``values``' categories when it is categorical,
    else numerically when every label is a number (``2`` before ``10``), else sorted."""
    present = list(dict.fromkeys(present))
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype):
        categories = list(label_strings(np.asarray(dtype.categories, dtype=object)))
        ordered = [c for c in categories if c in set(present)]
        return ordered + sorted(c for c in present if c not in set(ordered))
    try:  # numbers in numeric order, a missing ("nan") one last
        return sorted(present, key=lambda c: (np.isnan(float(c)), np.nan_to_num(float(c))))
    except ValueError:
        return sorted(present)


def to_h5ad_safe(value: Any) -> Any:
    """Convert a nested result into something :meth:`anndata.AnnData.write_h5ad` can store.

    ``None`` becomes the string ``"None"``, tuples and lists of scalars become arrays,
    numpy scalars become Python scalars and dict keys become strings.
    """
    if value is None:
        return "None"
    if isinstance(value, Mapping):
        return {str(k): to_h5ad_safe(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame | pd.Series):
        return value
    if isinstance(value, list | tuple):
        if len(value) == 0:
            return np.array([], dtype=float)
        if all(isinstance(v, str) for v in value):
            return np.array(value, dtype=object)
        if all(isinstance(v, int | float | bool | np.number | np.bool_) for v in value):
            return np.asarray(value)
        return {str(i): to_h5ad_safe(v) for i, v in enumerate(value)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | str | int | float | bool):
        return value
    return str(value)


def history_to_dict(history: Mapping[str, pd.DataFrame] | None) -> dict[str, np.ndarray]:
    """Flatten scvi-tools' ``model.history`` (one DataFrame per metric) into arrays per metric."""
    out: dict[str, np.ndarray] = {}
    for name, frame in (history or {}).items():
        values = np.asarray(frame.iloc[:, 0].to_numpy(), dtype=float)
        out[str(name)] = values
    return out


def write_results(
    adata: AnnData,
    *,
    obs: Mapping[str, Any] | None = None,
    obsm: Mapping[str, Any] | None = None,
    uns: Mapping[str, Any] | None = None,
    layers: Mapping[str, Any] | None = None,
) -> None:
    """Write a tool's results into ``adata`` all at once, or not at all.

    Every value is checked against ``adata``'s shape before anything is written; if an
    assignment still fails, the keys written so far are restored to their old values. A
    view becomes an actual AnnData first, with one warning.
    """
    obs, obsm, uns, layers = dict(obs or {}), dict(obsm or {}), dict(uns or {}), dict(layers or {})
    for key, value in {**obs, **obsm}.items():
        if len(value) != adata.n_obs:
            raise ValueError(
                f"result {key!r} has {len(value)} rows but adata has {adata.n_obs} cells"
            )
    for key, value in layers.items():
        if value.shape != adata.shape:
            raise ValueError(f"layer {key!r} has shape {value.shape}, adata has {adata.shape}")
    if adata.is_view:  # once here, not once per key as anndata would (scanpy does the same)
        warnings.warn(
            "adata is a view: the results are written into an actual AnnData made from it "
            "(a copy of the selected cells); the AnnData it was taken from is not changed",
            ImplicitModificationWarning,
            stacklevel=3,
        )
        adata._init_as_actual(adata.copy())
    saved: list[tuple[Any, str, Any]] = []
    try:
        for kind, store, values in (
            ("obs", adata.obs, obs),
            ("obsm", adata.obsm, obsm),
            ("uns", adata.uns, uns),
            ("layers", adata.layers, layers),
        ):
            for key, value in values.items():
                saved.append((store, key, store[key] if key in store else _MISSING))
                if kind == "obs" and isinstance(value, pd.Series | pd.Categorical):
                    value = pd.Series(value).set_axis(adata.obs_names).array
                if kind == "obsm" and isinstance(value, pd.DataFrame):
                    value = value.set_axis(adata.obs_names, axis=0)
                store[key] = value
    except BaseException:
        for store, key, old in reversed(saved):
            if old is _MISSING:
                with contextlib.suppress(KeyError):
                    del store[key]
            else:
                store[key] = old
        raise


def iter_row_batches(X: Any, batch_size: int) -> Iterator[np.ndarray]:
    """Yield dense float32 row blocks of ``X`` (dense, sparse or backed) without densifying all."""
    n = X.shape[0]
    for start in range(0, n, batch_size):
        block = X[start : start + batch_size]
        if sparse.issparse(block):
            block = block.toarray()
        yield np.asarray(block, dtype=np.float32)


def read_into_memory(X: Any) -> Any:
    """``X`` as an in-memory array or scipy sparse matrix; a backed matrix (an h5py dataset
    or anndata's backed sparse dataset) is read from disk, sparse staying sparse."""
    if sparse.issparse(X) or isinstance(X, np.ndarray):
        return X
    if hasattr(X, "to_memory"):  # anndata's backed CSR/CSC dataset
        return X.to_memory()
    return np.asarray(X[...])


def get_matrix(adata: AnnData, *, layer: str | None = None, use_rep: str | None = None) -> Any:
    """The matrix a tool reads: ``obsm[use_rep]``, ``layers[layer]`` or ``X``.

    A dense matrix of an AnnData view comes as a plain ndarray (no copy): anndata's
    ``ArrayView`` subclass is not converted by torch's data loading and breaks ops such as
    ``sum(dim=...)``.
    """
    if use_rep is not None:
        matrix = adata.obsm[use_rep]
        if isinstance(matrix, pd.DataFrame):  # numbers (check_use_rep), maybe nullable ones
            matrix = matrix.to_numpy(dtype=np.float64, na_value=np.nan)
    elif layer is not None:
        matrix = adata.layers[layer]
    else:
        matrix = adata.X
    return np.asarray(matrix) if isinstance(matrix, np.ndarray) else matrix
