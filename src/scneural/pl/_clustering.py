"""Plots of clustering results."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from anndata import AnnData

from scneural import metrics
from scneural._validation import check_obs_key

from ._utils import finish, get_axes


def cluster_contingency(
    adata: AnnData,
    key: str,
    labels_key: str,
    normalize: Literal["true", "pred", "all"] | None = "true",
    *,
    cmap: str = "Blues",
    annotate: bool = True,
    ax: Any = None,
    show: bool | None = None,
) -> Any:
    """Heatmap of known labels (rows) against clusters (columns), ordered by matching.

    Clusters are matched one-to-one to labels (Hungarian algorithm) and the matched
    clusters are drawn in the order of their labels, so a good clustering shows a bright
    diagonal; unmatched clusters come last. The title gives ARI, NMI and the matched
    accuracy.

    Parameters
    ----------
    adata
        AnnData with both columns in ``obs``.
    key
        Column of ``adata.obs`` with the clusters (e.g. ``"deep_cluster"``, ``"leiden"``).
    labels_key
        Column of ``adata.obs`` with the known labels.
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
    check_obs_key(adata, key, "key")
    check_obs_key(adata, labels_key, "labels_key")
    truth, clusters = adata.obs[labels_key], adata.obs[key]
    known = (truth.notna() & clusters.notna()).to_numpy()
    truth, clusters = truth[known], clusters[known]
    frame = metrics.cluster_contingency(truth, clusters, normalize=normalize)
    scores = metrics.clustering_scores(truth, clusters)
    n_rows, n_cols = frame.shape
    ax = get_axes(ax, figsize=(1.5 + 0.45 * n_cols, 1.0 + 0.4 * n_rows))
    image = ax.imshow(frame.to_numpy(), cmap=cmap, aspect="auto", vmin=0)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(np.arange(n_cols), labels=frame.columns, rotation=90)
    ax.set_yticks(np.arange(n_rows), labels=frame.index)
    ax.set_xlabel(f"cluster ({key})")
    ax.set_ylabel(labels_key)
    ax.set_title(
        f"ARI {scores['ari']:.2f}  NMI {scores['nmi']:.2f}  acc {scores['accuracy']:.2f}",
        fontsize=9,
    )
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
                    fontsize=6,
                    color="white" if values[i, j] > threshold else "black",
                )
    return finish(ax, show)
