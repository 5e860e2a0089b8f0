"""Plots of clustering results."""

from __future__ import annotations

from typing import Any, Literal

from anndata import AnnData

from scneural import metrics
from scneural._docs import doc_params
from scneural._validation import check_obs_key

from ._utils import finish, get_axes, labelled_heatmap


@doc_params()
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
    {heatmap}
    {ax}
    {show}

    Returns
    -------
    The matplotlib Axes when the figure is not shown (see ``show``), else ``None``.
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
    labelled_heatmap(
        ax,
        frame,
        cmap=cmap,
        annotate=annotate,
        fractions=normalize is not None,
        xlabel=f"cluster ({key})",
        ylabel=labels_key,
        fontsize=6,
    )
    ax.set_title(
        f"ARI {scores['ari']:.2f}  NMI {scores['nmi']:.2f}  acc {scores['accuracy']:.2f}",
        fontsize=9,
    )
    return finish(ax, show)
