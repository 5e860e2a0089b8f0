"""Plots of classification results."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from anndata import AnnData

from scneural import metrics
from scneural._validation import check_obs_key

from ._utils import finish, get_axes


def confusion_matrix(
    adata: AnnData,
    true_key: str,
    pred_key: str,
    normalize: Literal["true", "pred", "all"] | None = "true",
    *,
    cmap: str = "Blues",
    annotate: bool = True,
    ax: Any = None,
    show: bool | None = None,
) -> Any:
    """Heatmap of true (rows) against predicted (columns) labels.

    Parameters
    ----------
    adata
        AnnData with both label columns in ``obs``.
    true_key, pred_key
        Columns of ``adata.obs`` with the true and the predicted labels.
    normalize
        ``"true"`` (rows sum to 1), ``"pred"`` (columns), ``"all"`` or ``None`` (counts).
    cmap
        Matplotlib colour map.
    annotate
        Write each cell's value.
    ax
        Axes to draw on; a new figure by default.
    show
        Show the figure; ``False`` returns the Axes.

    Returns
    -------
    The matplotlib Axes when ``show=False``, else ``None``.
    """
    check_obs_key(adata, true_key, "true_key")
    check_obs_key(adata, pred_key, "pred_key")
    frame = metrics.confusion_matrix(adata.obs[true_key], adata.obs[pred_key], normalize=normalize)
    n_rows, n_cols = frame.shape
    ax = get_axes(ax, figsize=(1.0 + 0.55 * n_cols, 1.0 + 0.5 * n_rows))
    image = ax.imshow(frame.to_numpy(), cmap=cmap, aspect="auto", vmin=0)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(np.arange(n_cols), labels=frame.columns, rotation=90)
    ax.set_yticks(np.arange(n_rows), labels=frame.index)
    ax.set_xlabel(f"predicted ({pred_key})")
    ax.set_ylabel(f"true ({true_key})")
    if annotate:
        values = frame.to_numpy()
        threshold = values.max() / 2 if values.size else 0
        for i in range(n_rows):
            for j in range(n_cols):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if values[i, j] > threshold else "black",
                )
    return finish(ax, show)
