"""Plot plumbing shared by every ``sn.pl`` function: axes creation and showing."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData


def get_axes(ax: Any = None, figsize: tuple[float, float] = (5.0, 4.0)) -> Any:
    """The given axes, or a new figure's."""
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def panel_axes(
    n: int, ax: Any = None, *, ncols: int = 3, size: tuple[float, float] = (4.0, 3.0)
) -> list:
    """``n`` Axes for a multi-panel plot: the ones given (one Axes for one panel, or a
    sequence of at least ``n``), or a new grid of ``ncols`` columns with panels of ``size``
    inches, its unused cells hidden."""
    if ax is not None:
        from matplotlib.axes import Axes

        given = [ax] if isinstance(ax, Axes) else list(np.ravel(ax))
        if len(given) < n:
            raise ValueError(
                f"ax= holds {len(given)} Axes, but this plot has {n} panels; pass one Axes "
                "per panel or leave ax=None for a new figure"
            )
        return given[:n]
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    # constrained layout spaces the panels when drawn, after their titles and labels are set
    _, grid = plt.subplots(
        nrows,
        ncols,
        figsize=(size[0] * ncols, size[1] * nrows),
        squeeze=False,
        layout="constrained",
    )
    cells = list(grid.ravel())
    for extra in cells[n:]:
        extra.set_visible(False)
    return cells[:n]


def finish(axes: Any, show: bool | None) -> Any:
    """Show the figure (scanpy's ``settings.autoshow`` when ``show=None``) or return the axes."""
    if show is None:
        import scanpy as sc

        show = sc.settings.autoshow
    if show:
        plt.show()
        return None
    return axes


def get_uns(adata: AnnData, key: str, tool: str | None = None) -> dict:
    """The ``uns[key]`` results of ``tool`` (any tool when ``None``), with an error saying
    how to create them."""
    if key not in adata.uns:
        run = (
            f"sn.tl.{tool}(adata, key_added={key!r})"
            if tool is not None
            else f"a tool (e.g. sn.tl.classify) with key_added={key!r}"
        )
        raise KeyError(f"adata.uns has no {key!r}; run {run} first")
    return adata.uns[key]


def labelled_heatmap(
    ax: Any,
    frame: Any,
    *,
    cmap: str,
    annotate: bool,
    fractions: bool,
    xlabel: str,
    ylabel: str,
    fontsize: float = 7,
) -> None:
    """Draw a DataFrame as a heatmap with its row/column labels and, optionally, its values."""
    import numpy as np

    values = frame.to_numpy()
    n_rows, n_cols = values.shape
    image = ax.imshow(values, cmap=cmap, aspect="auto", vmin=0)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(np.arange(n_cols), labels=frame.columns, rotation=90)
    ax.set_yticks(np.arange(n_rows), labels=frame.index)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if not annotate:
        return
    threshold = values.max() / 2 if values.size else 0
    for i in range(n_rows):
        for j in range(n_cols):
            ax.text(
                j,
                i,
                f"{values[i, j]:.2f}" if fractions else f"{int(values[i, j])}",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if values[i, j] > threshold else "black",
            )
