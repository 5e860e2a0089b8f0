"""scGen's regression plots: real vs predicted per-gene means and variances."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from anndata import AnnData

from scneural._docs import doc_params
from scneural._validation import check_layer, check_obs_key, check_obs_values
from scneural.metrics._perturbation import STAT_NAMES, gene_stats, squared_pearson

from ._utils import finish, get_axes

#: the arguments of :func:`reg_mean` and :func:`reg_var` before ``ax`` (docstrings)
REG_PARAMS = """\
adata
    Real and predicted cells together (e.g. ``sc.concat([real, predicted])``).
condition_key
    Column of ``adata.obs`` that tells the groups apart.
x, y
    Values of ``obs[condition_key]`` on the x axis (e.g. the real perturbed cells)
    and the y axis (default ``"predicted"``, as written by :func:`scneural.tl.perturb`).
top_genes
    Genes highlighted with their own R² (e.g. from
    :func:`scneural.metrics.top_de_genes`).
gene_list
    Genes labelled by name.
layer
    Read expression from ``adata.layers[layer]`` instead of ``X``."""

#: what :func:`reg_mean` and :func:`reg_var` raise (docstrings)
REG_RAISES = """\
KeyError
    If ``condition_key``, ``layer`` or a gene of ``top_genes``/``gene_list`` is not in
    ``adata``.
ValueError
    If ``x`` or ``y`` is not a value of ``obs[condition_key]``."""


def _gene_names(genes: Any) -> list[str] | None:
    """``None``, or the gene names as a list (one name, a list, an array, an Index)."""
    if genes is None:
        return None
    return [genes] if isinstance(genes, str) else [str(g) for g in genes]


def _reg_plot(
    stat: str,
    adata: AnnData,
    condition_key: str,
    x: str,
    y: str,
    top_genes: Sequence[str] | None,
    gene_list: Sequence[str] | None,
    layer: str | None,
    ax: Any,
    show: bool | None,
) -> Any:
    check_obs_key(adata, condition_key, "condition_key")
    check_layer(adata, layer)
    known = adata.obs[condition_key].notna().to_numpy()
    values = np.where(known, adata.obs[condition_key].astype(str).to_numpy(), None)
    x, y = str(x), str(y)
    hint = ". Concatenate the real and predicted cells first, e.g. sc.concat([real, predicted])"
    check_obs_values(values[known], condition_key, hint=hint, x=x, y=y)
    # one gene name is a list of one, not of its letters; arrays and Indexes become lists
    top_genes = _gene_names(top_genes)
    gene_list = _gene_names(gene_list)
    for argument, genes in (("top_genes", top_genes), ("gene_list", gene_list)):
        missing = [g for g in genes or [] if g not in adata.var_names]
        if missing:
            raise KeyError(f"{argument} has genes not in adata.var_names: {missing[:5]}")
    matrix = adata.layers[layer] if layer is not None else adata.X
    xs = gene_stats(matrix[values == x], stat)
    ys = gene_stats(matrix[values == y], stat)
    ax = get_axes(ax, figsize=(4.5, 4.5))
    ax.scatter(xs, ys, s=6, color="0.6", alpha=0.7, linewidths=0, label="all genes")
    stats = STAT_NAMES[stat]
    text = f"R² all genes: {squared_pearson(xs, ys, (x, y), stats):.3f}"
    if top_genes is not None and len(top_genes):
        top = np.asarray(adata.var_names.isin(list(top_genes)))
        ax.scatter(xs[top], ys[top], s=10, color="tab:red", linewidths=0, label="top DE genes")
        r2_top = squared_pearson(xs[top], ys[top], (x, y), stats)
        text += f"\nR² top {int(top.sum())} DE genes: {r2_top:.3f}"
    if np.std(xs) > 0:
        slope, intercept = np.polyfit(xs, ys, 1)
        grid = np.linspace(xs.min(), xs.max(), 50)
        ax.plot(grid, slope * grid + intercept, color="tab:blue", linewidth=1)
    for gene in gene_list or []:
        j = adata.var_names.get_loc(gene)
        ax.annotate(gene, (xs[j], ys[j]), fontsize=8, xytext=(3, 3), textcoords="offset points")
        ax.scatter([xs[j]], [ys[j]], s=18, color="black", linewidths=0)
    ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=9)
    what = "mean" if stat == "mean" else "variance"
    ax.set_xlabel(f"{what} expression, {x}")
    ax.set_ylabel(f"{what} expression, {y}")
    ax.legend(loc="lower right", fontsize=8)
    return finish(ax, show)


@doc_params(reg_params=REG_PARAMS, reg_raises=REG_RAISES)
def reg_mean(
    adata: AnnData,
    *,
    condition_key: str,
    x: str,
    y: str = "predicted",
    top_genes: Sequence[str] | None = None,
    gene_list: Sequence[str] | None = None,
    layer: str | None = None,
    ax: Any = None,
    show: bool | None = None,
) -> Any:
    """Per-gene mean expression of two conditions against each other, with R² (scGen).

    Parameters
    ----------
    {reg_params}
    {ax}
    {show}

    Returns
    -------
    The matplotlib Axes when the figure is not shown (see ``show``), else ``None``.

    Raises
    ------
    {reg_raises}
    """
    return _reg_plot("mean", adata, condition_key, x, y, top_genes, gene_list, layer, ax, show)


@doc_params(reg_params=REG_PARAMS, reg_raises=REG_RAISES)
def reg_var(
    adata: AnnData,
    *,
    condition_key: str,
    x: str,
    y: str = "predicted",
    top_genes: Sequence[str] | None = None,
    gene_list: Sequence[str] | None = None,
    layer: str | None = None,
    ax: Any = None,
    show: bool | None = None,
) -> Any:
    """Per-gene variance of two conditions against each other, with R² (scGen).

    The variances are population variances (``ddof=0``) of each gene within each group.

    Parameters
    ----------
    {reg_params}
    {ax}
    {show}

    Returns
    -------
    The matplotlib Axes when the figure is not shown (see ``show``), else ``None``.

    Raises
    ------
    {reg_raises}
    """
    return _reg_plot("var", adata, condition_key, x, y, top_genes, gene_list, layer, ax, show)
