"""Plots of classification results."""

from __future__ import annotations

from typing import Any, Literal

from anndata import AnnData

from scneural import metrics
from scneural._docs import doc_params
from scneural._validation import check_obs_key

from ._utils import finish, get_axes, labelled_heatmap


@doc_params()
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
    {heatmap}
    {ax}
    {show}

    Returns
    -------
    The matplotlib Axes when the figure is not shown (see ``show``), else ``None``.
    """
    check_obs_key(adata, true_key, "true_key")
    check_obs_key(adata, pred_key, "pred_key")
    frame = metrics.confusion_matrix(adata.obs[true_key], adata.obs[pred_key], normalize=normalize)
    n_rows, n_cols = frame.shape
    ax = get_axes(ax, figsize=(1.0 + 0.55 * n_cols, 1.0 + 0.5 * n_rows))
    labelled_heatmap(
        ax,
        frame,
        cmap=cmap,
        annotate=annotate,
        fractions=normalize is not None,
        xlabel=f"predicted ({pred_key})",
        ylabel=f"true ({true_key})",
    )
    return finish(ax, show)
