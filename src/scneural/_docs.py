"""Docstring parameter snippets shared by the tools and models (one home for each
description)."""

from __future__ import annotations

import re
from collections.abc import Callable
from textwrap import dedent
from typing import TypeVar

F = TypeVar("F", bound=Callable)

DOC_PARAMS: dict[str, str] = {
    "adata": dedent(
        """\
        adata
            Annotated data matrix (cells x genes), in memory or backed
            (``read_h5ad(..., backed="r")``). Results are written into it in place; if the
            call fails nothing is written."""
    ),
    "key_added": dedent(
        """\
        key_added
            Prefix of every key this tool writes in ``obs``, ``obsm`` and ``uns``."""
    ),
    "backend": dedent(
        """\
        backend
            ``"torch"`` (PyTorch, default) or ``"jax"`` (flax; needs ``pip install "scneural[jax]"``)."""
    ),
    "layer": dedent(
        """\
        layer
            Read raw counts from ``adata.layers[layer]`` instead of ``adata.X``."""
    ),
    "use_rep": dedent(
        """\
        use_rep
            Train on ``adata.obsm[use_rep]`` (e.g. ``"X_pca"``, ``"X_scVI"``) instead of genes.
            ``"X"`` means ``adata.X``, as in scanpy: it is the same as ``None`` and recorded
            as ``None`` in ``uns``, so a model trained either way is reused either way. It
            cannot be combined with ``layer``."""
    ),
    "model": dedent(
        """\
        model
            A model returned by an earlier call (or loaded with ``.load``). If given, it is not
            retrained; it is applied to ``adata``."""
    ),
    "random_state": dedent(
        """\
        random_state
            Seed for numpy, torch and JAX; the same seed on the same machine gives the same result."""
    ),
    "max_epochs": dedent(
        """\
        max_epochs
            Maximum number of training epochs; ``None``: the tool's default, below."""
    ),
    "accelerator": dedent(
        """\
        accelerator
            Lightning accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``, ..."""
    ),
    "devices": dedent(
        """\
        devices
            Lightning devices: ``"auto"`` (one device), a number of devices or a list of
            device ids. Several devices train with DDP, one process per device, each on its
            share of the cells (run from a script; in a notebook Lightning forks); early
            stopping is then off, as in scvi-tools. ``backend="jax"`` trains on one device."""
    ),
    "heatmap": dedent(
        """\
        cmap
            Matplotlib colour map.
        annotate
            Write each cell's value."""
    ),
    "ax": dedent(
        """\
        ax
            Axes to draw on; a new figure by default."""
    ),
    "show": dedent(
        """\
        show
            Show the figure (``None``: scanpy's ``sc.settings.autoshow``); ``False`` returns
            the Axes."""
    ),
    "model_adata": dedent(
        """\
        adata
            Cells to run the model on, with the model's genes (or inputs) in its order;
            registered like the training data if they are not yet. ``None``: the AnnData
            the model was set up with."""
    ),
    "indices": dedent(
        """\
        indices
            Positions of the cells of ``adata`` to use (all by default); the result has one
            row per index, in this order."""
    ),
    "inference_batch_size": dedent(
        """\
        batch_size
            Cells per minibatch of inference (``None``: 1024); changes memory use, not the
            result."""
    ),
    "setup_kwargs": dedent(
        """\
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields` (scvi-tools passes
            ``source_registry`` here when it sets up cells for a loaded model)."""
    ),
    "load_params": dedent(
        """\
        dir_path
            Folder the model was saved into (``model.save(dir_path)``).
        adata
            Cells with the saved model's genes in the same order (select them with
            ``adata[:, Model.saved_var_names(dir_path)]``); ``None``: the AnnData saved
            with the model (``save_anndata=True``).
        **kwargs
            Passed to scvi-tools' :meth:`~scvi.model.base.BaseModelClass.load`
            (``prefix``, ``accelerator``, ``device``, ``backup_url``)."""
    ),
    "train_type_error": dedent(
        """\
        TypeError
            If ``plan_kwargs`` is not a dict, or holds a name the training plan does not
            take (it used to be ignored without a word); or if ``datasplitter_kwargs`` is
            not a dict, holds a name scvi-tools' data splitter and its loaders do not take
            (it used to fail inside the training loop) or one ``train`` passes to the
            splitter itself (``batch_size``, ``train_size``...: pass them to ``train``)."""
    ),
    "train_kwargs": dedent(
        """\
        **train_kwargs
            Passed to the model's ``train`` and Lightning's ``Trainer`` (e.g.
            ``plan_kwargs``, ``logger``); a name neither takes is refused before any work,
            as is any of them with ``model=``."""
    ),
}


def doc_params(**extra: str) -> Callable[[F], F]:
    """Fill ``{name}`` placeholders in a docstring with the shared snippets (and ``extra``).

    A snippet's continuation lines are indented as the docstring's body (4 spaces in a
    function's, 8 in a method's), where its placeholders stand.
    """
    params = {**DOC_PARAMS, **extra}

    def decorator(obj: F) -> F:
        if obj.__doc__:
            body = [line for line in obj.__doc__.splitlines()[1:] if line.strip()]
            indent = " " * min((len(line) - len(line.lstrip()) for line in body), default=4)
            # blank lines of a snippet (between sections) stay empty
            filled = {k: re.sub(r"\n(?=.)", "\n" + indent, v) for k, v in params.items()}
            obj.__doc__ = obj.__doc__.format_map(filled)
        return obj

    return decorator
