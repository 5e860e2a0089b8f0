"""Plumbing shared by the tools: input sources, proxy AnnData objects, gene alignment, backends.

Tools never register the user's AnnData with scvi-tools directly (that writes bookkeeping
keys into ``adata.uns``). They build a *proxy*: a light AnnData that shares the user's
matrices and holds only the columns the model needs. The user's object is changed only by
:func:`scneural._utils.write_results`, once everything has succeeded.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scneural._utils import get_matrix
from scneural._validation import (
    batch_labels,
    check_choice,
    check_input_source,
    check_unique_var_names,
    use_rep_or_x,
)

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "jax")


@contextmanager
def quiet_setup_transfer() -> Iterator[None]:
    """Hide scvi-tools' note "Input AnnData not setup with scvi-tools. attempting to
    transfer AnnData setup": a tool always hands its model a fresh proxy of the user's
    cells, so the note would follow every call and say nothing the user can act on.
    Warnings still show."""
    scvi_logger = logging.getLogger("scvi.model.base._base_model")
    previous = scvi_logger.level
    scvi_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        scvi_logger.setLevel(previous)


@dataclass(frozen=True)
class InputSource:
    """Where a model reads its input: ``obsm[use_rep]``, ``layers[layer]`` or ``X``."""

    layer: str | None = None
    use_rep: str | None = None

    def matrix(self, adata: AnnData) -> Any:
        """The matrix of ``adata`` this source points at."""
        return get_matrix(adata, layer=self.layer, use_rep=self.use_rep)

    def describe(self) -> str:
        """Human-readable name of the source, for messages."""
        if self.use_rep is not None:
            return f"adata.obsm[{self.use_rep!r}]"
        if self.layer is not None:
            return f"adata.layers[{self.layer!r}]"
        return "adata.X"

    def to_dict(self) -> dict[str, str | None]:
        """Plain dict, stored on models (saved with them) and in ``uns[key]['params']``."""
        return asdict(self)


def model_input_source(model: Any) -> InputSource:
    """Where ``model`` was trained to read its input.

    The tools record it on the model (``input_source_``, saved with it); a model trained
    directly through ``scneural.models`` has only its ``setup_anndata`` registry, whose
    ``layer`` names the source (``None``: ``X``).
    """
    recorded = getattr(model, "input_source_", None)
    if recorded is not None:
        return InputSource(**recorded)
    setup_args = model.adata_manager.registry.get("setup_args", {})
    return InputSource(layer=setup_args.get("layer"))


def resolve_source(
    adata: AnnData, *, layer: str | None, use_rep: str | None, model: Any = None
) -> InputSource:
    """Check ``layer``/``use_rep`` and reconcile them with a reused model's own source.

    ``use_rep="X"`` means ``adata.X``, as in scanpy: the same source as ``use_rep=None``
    (recorded and compared with a model's as such). When ``model`` is given and the caller
    named no source, the model's source is used; a source that differs from the one the
    model was trained on is an error.
    """
    use_rep = use_rep_or_x(use_rep, layer)
    if model is not None:
        trained = model_input_source(model)
        if (layer is not None or use_rep is not None) and (
            InputSource(layer=layer, use_rep=use_rep) != trained
        ):
            # deep_cluster and perturb take no use_rep: name only what the call can pass
            takes_rep = use_rep is not None or trained.use_rep is not None
            arguments = "layer=/use_rep=" if takes_rep else "layer="
            raise ValueError(
                f"model= was trained on {trained.describe()}, but this call asks for "
                f"{InputSource(layer=layer, use_rep=use_rep).describe()}; pass the same "
                f"{arguments} as in training (or leave {'both' if takes_rep else 'it'} unset "
                "to use the model's)"
            )
        layer, use_rep = trained.layer, trained.use_rep
    check_input_source(adata, layer=layer, use_rep=use_rep)
    return InputSource(layer=layer, use_rep=use_rep)


def saved_model_hint(model: Any, model_class: str, load_args: str = "", note: str = "") -> str:
    """For a path given as ``model=`` (most likely a saved model's folder), how to load it:
    ``sn.models.{model_class}.load(path{load_args}){note}``; ``""`` for anything else."""
    if not isinstance(model, str | os.PathLike):
        return ""
    load = f"{model_class}.load({str(model)!r}{load_args}){note}"
    return f"; to reuse a saved model, load it first: model=sn.models.{load}"


def check_reused_model(model: Any, model_cls: type, model_name: str) -> None:
    """Require ``model=`` to be ``None`` or a trained model of ``model_cls`` (the tool's
    torch and JAX models, named ``model_name`` and ``Jax{model_name}``).

    A path is refused with how to load the model it holds, since a saved model is what a
    user most likely means by one.
    """
    if model is None:
        return
    if not isinstance(model, model_cls):
        raise TypeError(
            f"model= must be a scneural {model_name} (or Jax{model_name}), got "
            f"{type(model).__name__}"
            + saved_model_hint(
                model, model_name, ", adata=adata", f" (Jax{model_name} for a JAX model)"
            )
        )
    if not model.is_trained:
        raise ValueError("model= has not been trained; call model.train() or pass model=None")


def check_reused_batch_key(model: Any, batch_key: str | None) -> None:
    """``batch_key=`` with ``model=`` must name the column the model was trained with
    (the model reads that column; another one would be ignored without a word)."""
    if batch_key is None:
        return
    trained = model.adata_manager.registry["setup_args"].get("batch_key")
    if batch_key != trained:
        raise ValueError(
            f"model= was trained with batch_key={trained!r}, but this call passes "
            f"batch_key={batch_key!r}; leave batch_key unset to use the model's"
        )


def reused_batch_labels(adata: AnnData, model: Any, batch_key: str) -> np.ndarray:
    """The batch of each cell (strings) for a ``model=`` trained with ``batch_key``; batches
    the model has not seen are refused (its batch covariate has no slot for them)."""
    if batch_key not in adata.obs.columns:
        raise KeyError(
            f"model= was trained with batch_key={batch_key!r}, which is not a column of "
            f"adata.obs; add each cell's batch there (columns: {list(adata.obs.columns)[:20]})"
        )
    values = batch_labels(adata, batch_key)
    known = {str(b) for b in model.adata_manager.get_state_registry("batch").categorical_mapping}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"batch_key={batch_key!r} has batches the model has not seen: {unknown[:5]}; "
            "a model trained with batch_key can only be applied to cells of its own batches"
        )
    return values


def rep_feature_names(use_rep: str, n: int) -> pd.Index:
    """Feature names of a representation in ``obsm``, as the proxy's ``var_names``."""
    return pd.Index([f"{use_rep}-{i}" for i in range(n)])


def make_proxy(
    adata: AnnData,
    source: InputSource,
    *,
    obs: pd.DataFrame | None = None,
    obs_keys: Sequence[str] = (),
) -> AnnData:
    """A light AnnData that shares ``adata``'s input matrix and holds only ``obs_keys``.

    For a layer source the proxy keeps the layer under the same name (so the model's
    registry records the real layer) and has no ``X``; for a representation, the
    representation becomes ``X`` with feature names ``"{use_rep}-{i}"``.
    """
    if obs is None:
        obs = adata.obs.loc[:, list(obs_keys)].copy()
    matrix = source.matrix(adata)
    if sparse.issparse(matrix) and not sparse.isspmatrix(matrix):
        # a scipy sparse array (csr_array): scvi-tools' count check knows only sparse
        # matrices ("data type not understood"); the matrix shares the array's data
        matrix = sparse.csr_matrix(matrix) if matrix.format == "csr" else sparse.csc_matrix(matrix)
    if source.use_rep is not None:
        matrix = matrix.toarray() if sparse.issparse(matrix) else matrix  # (cells x a few)
        matrix = np.asarray(matrix, dtype=np.float32)
        var = pd.DataFrame(index=rep_feature_names(source.use_rep, matrix.shape[1]))
        return AnnData(X=matrix, obs=obs, var=var)
    var = pd.DataFrame(index=adata.var_names.copy())
    if source.layer is not None:
        # no X at all: scvi-tools takes an empty sparse X for a minified AnnData and then
        # refuses to load a model saved with save_anndata=True
        return AnnData(obs=obs, var=var, layers={source.layer: matrix})
    return AnnData(X=matrix, obs=obs, var=var)


def align_features(
    proxy: AnnData, feature_names: pd.Index, source: InputSource, *, what: str = "genes"
) -> AnnData:
    """Reorder the proxy's features to ``feature_names``; missing ones become zeros.

    Raises if no feature is shared; logs and warns how many were filled with zeros.
    """
    if proxy.var_names.equals(feature_names):
        return proxy
    if source.use_rep is not None:
        raise ValueError(
            f"model= was trained on {len(feature_names)} dimensions of "
            f"obsm[{source.use_rep!r}], but this adata's has {proxy.n_vars}; compute the "
            "representation the same way for both (e.g. project with sc.tl.ingest)"
        )
    check_unique_var_names(proxy)
    indexer = proxy.var_names.get_indexer(feature_names)
    present = indexer >= 0
    if not present.any():
        raise ValueError(
            f"adata shares no {what} with the model's {len(feature_names)} {what}; "
            "check that both use the same gene identifiers (symbols vs. Ensembl ids)"
        )
    n_missing = int((~present).sum())
    if n_missing:
        message = (
            f"{n_missing} of the model's {len(feature_names)} {what} are missing from adata; "
            "they are filled with zeros"
        )
        logger.info(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    selector = sparse.csr_matrix(
        (
            np.ones(int(present.sum()), dtype=np.float32),
            (indexer[present], np.flatnonzero(present)),
        ),
        shape=(proxy.n_vars, len(feature_names)),
    )
    key = source.layer
    matrix = proxy.layers[key] if key is not None else proxy.X
    if sparse.issparse(matrix) or isinstance(matrix, np.ndarray):
        aligned = matrix @ selector
        aligned = sparse.csr_matrix(aligned) if sparse.issparse(matrix) else np.asarray(aligned)
    else:  # backed (h5py dataset or anndata's backed CSR/CSC): aligned in row chunks
        blocks = [
            (sparse.csr_matrix(block) if sparse.issparse(block) else np.asarray(block)) @ selector
            for block in (matrix[start : start + 4096] for start in range(0, proxy.n_obs, 4096))
        ]
        aligned = (
            sparse.vstack(blocks, format="csr")
            if sparse.issparse(blocks[0])
            else np.concatenate(blocks, axis=0)
        )
    var = pd.DataFrame(index=feature_names.copy())
    if key is not None:
        return AnnData(obs=proxy.obs, var=var, layers={key: aligned})
    return AnnData(X=aligned, obs=proxy.obs, var=var)


def model_feature_names(model: Any) -> pd.Index:
    """The feature names a model was trained on."""
    return pd.Index(model.adata.var_names)


def check_backend(backend: str, tool: str, available: Sequence[str] = BACKENDS) -> str:
    """Require a known backend that ``tool`` offers; ``"jax"`` also needs the JAX extra."""
    check_choice(backend, "backend", BACKENDS)
    if backend not in available:
        raise ValueError(
            f"backend={backend!r} is not available for {tool} in this version; "
            f"use one of {list(available)}"
        )
    if backend == "jax":
        from scneural.models._jax import require_jax

        require_jax()
    return backend


#: fewest cells per minibatch when a tool only encodes or predicts (no gradients kept)
INFERENCE_BATCH_SIZE = 1024


def inference_batch_size(batch_size: int | None) -> int:
    """Minibatch size of inference: the training one, but at least ``INFERENCE_BATCH_SIZE``."""
    return max(batch_size or 0, INFERENCE_BATCH_SIZE)


def trainer_kwargs(
    *,
    accelerator: str,
    devices: Any,
    max_epochs: int | None,
    train_kwargs: dict,
    batch_size: int | None = None,
) -> dict:
    """Arguments for a model's ``train`` from a tool's common arguments.

    ``max_epochs`` and ``batch_size`` are passed only when given, so ``None`` keeps the
    model's own defaults.
    """
    kwargs = dict(train_kwargs)
    kwargs.setdefault("accelerator", accelerator)
    kwargs.setdefault("devices", devices)
    if max_epochs is not None:
        kwargs["max_epochs"] = max_epochs
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    kwargs.setdefault("enable_progress_bar", True)
    return kwargs
