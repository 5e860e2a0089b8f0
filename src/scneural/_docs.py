"""Docstring parameter snippets shared by the tools (one home for each description)."""

from __future__ import annotations

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
            Train on ``adata.obsm[use_rep]`` (e.g. ``"X_pca"``, ``"X_scVI"``) instead of genes."""
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
    "train_kwargs": dedent(
        """\
        **train_kwargs
            Passed to the model's ``train`` (e.g. ``plan_kwargs``, ``logger``)."""
    ),
}


def doc_params(**extra: str) -> Callable[[F], F]:
    """Fill ``{name}`` placeholders in a docstring with the shared snippets (and ``extra``)."""
    params = {**DOC_PARAMS, **extra}

    def decorator(obj: F) -> F:
        if obj.__doc__:
            indent = " " * 4
            filled = {k: v.replace("\n", "\n" + indent) for k, v in params.items()}
            obj.__doc__ = obj.__doc__.format_map(filled)
        return obj

    return decorator
