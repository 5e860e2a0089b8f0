"""Perturbation-prediction metrics of scGen: R² of per-gene means and variances."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scneural._docs import doc_params
from scneural._utils import counted
from scneural._validation import check_layer, check_obs_key, check_obs_values

MatrixLike = Any


#: the arguments of :func:`r2_mean` and :func:`r2_var` (docstrings)
R2_PARAMS = """\
real, predicted
    Cells x genes matrices or AnnData objects with the same genes (two AnnData objects
    are matched by gene name, in any order).
genes
    Only these genes (e.g. the top DE genes; one name or a list); needs an AnnData
    input to look the names up."""

#: what :func:`r2_mean` and :func:`r2_var` raise (docstrings)
R2_RAISES = """\
ValueError
    If the two inputs differ in genes (their number, or for two AnnData objects their
    names), if a selected gene's statistic is NaN or infinite in either, or
    if ``genes`` is given without an AnnData input.
KeyError
    If ``genes`` names genes that are not in the data."""

#: what :func:`gene_stats` computes, by its ``what`` argument, in words
STAT_NAMES = {"mean": "per-gene means", "var": "per-gene variances"}


def gene_stats(X: MatrixLike, what: str, chunk: int = 10_000) -> np.ndarray:
    """Per-gene mean or variance of a dense, sparse, backed or AnnData matrix.

    Accumulated in float64 over row chunks: the matrix is never copied whole (a float64
    copy of a float32 matrix alone is twice its size).
    """
    if isinstance(X, AnnData):
        X = X.X
    if not (sparse.issparse(X) or hasattr(X, "shape")):
        X = np.asarray(X, dtype=float)
    if len(X.shape) != 2:
        raise ValueError(f"expected a 2-D matrix (cells x genes), got shape {X.shape}")
    n = X.shape[0]
    rows = max(1, min(chunk, 2_000_000 // max(X.shape[1], 1)))  # ~16 MB float64 per chunk

    def blocks():
        for start in range(0, n, rows):
            block = X[start : start + rows]
            # float64 per chunk: squares of integer counts overflow
            yield (
                sparse.csr_matrix(block, dtype=np.float64)
                if sparse.issparse(block)
                else np.asarray(block, dtype=np.float64)
            )

    total = np.zeros(X.shape[1])
    for block in blocks():
        total += np.asarray(block.sum(axis=0)).ravel()
    mean = total / n
    if what == "mean":
        return mean
    # second pass around the mean (as numpy's var) for dense blocks; sparse ones keep zeros
    squares = np.zeros(X.shape[1])
    is_sparse = False
    for block in blocks():
        if sparse.issparse(block):
            is_sparse = True
            squares += np.asarray(block.multiply(block).sum(axis=0)).ravel()
        else:
            squares += np.square(block - mean).sum(axis=0)
    return squares / n - mean**2 if is_sparse else squares / n


def squared_pearson(
    x: np.ndarray, y: np.ndarray, labels: tuple[str, str] = ("x", "y"), what: str = "values"
) -> float:
    """Squared Pearson correlation; NaN, with a warning saying why, where it is undefined
    (fewer than 2 values, or one side constant). ``labels`` name ``x`` and ``y`` and
    ``what`` their values, for the warning."""
    if x.shape != y.shape:
        raise ValueError(f"the two data sets have {x.size} and {y.size} genes; they must match")
    constant = [label for label, v in zip(labels, (x, y)) if x.size >= 2 and np.std(v) == 0]
    if x.size < 2 or constant:
        why = f"only {x.size} gene" if x.size < 2 else f"the {what} of {constant[0]} are all equal"
        warnings.warn(f"R² is undefined ({why}); it is NaN", UserWarning, stacklevel=3)
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def _gene_mask(var_names: pd.Index | None, genes: Sequence[str] | None, n: int) -> np.ndarray:
    if genes is None:
        return np.ones(n, dtype=bool)
    if var_names is None:
        raise ValueError("genes= needs an AnnData input (to look the gene names up)")
    genes = [genes] if isinstance(genes, str) else list(genes)
    missing = [g for g in genes if g not in set(var_names)]
    if missing:
        raise KeyError(f"genes not in the data: {missing[:5]}")
    return np.asarray(var_names.isin(genes))


def _genes_as_in(real: AnnData, predicted: AnnData) -> AnnData:
    """``predicted`` with its genes in ``real``'s order (matched by name)."""
    if real.var_names.equals(predicted.var_names):
        return predicted
    for argument, names in (("real", real.var_names), ("predicted", predicted.var_names)):
        if not names.is_unique:
            raise ValueError(f"{argument}'s var_names are not unique; call var_names_make_unique()")
    missing = real.var_names.difference(predicted.var_names)
    extra = predicted.var_names.difference(real.var_names)
    if len(missing) or len(extra):
        raise ValueError(
            f"real and predicted have different genes: {len(missing)} of real's are not in "
            f"predicted (e.g. {list(missing[:3])}), {len(extra)} of predicted's are not in "
            f"real (e.g. {list(extra[:3])}); score the shared ones, e.g. "
            "predicted[:, shared] against real[:, shared]"
        )
    return predicted[:, real.var_names]


def _r2_of(stat: str, real: MatrixLike, predicted: MatrixLike, genes: Sequence[str] | None):
    named = [data for data in (real, predicted) if isinstance(data, AnnData)]
    names = named[0].var_names if named else None
    if isinstance(real, AnnData) and isinstance(predicted, AnnData):
        predicted = _genes_as_in(real, predicted)
    with np.errstate(invalid="ignore"):  # inf values: refused below, with their genes
        x, y = gene_stats(real, stat), gene_stats(predicted, stat)
    if x.shape != y.shape:
        raise ValueError(f"the two data sets have {x.size} and {y.size} genes; they must match")
    mask = _gene_mask(names, genes, x.size)
    for argument, values in (("real", x), ("predicted", y)):
        bad = mask & ~np.isfinite(values)
        if bad.any():
            where = f" (e.g. {list(names[bad][:5])})" if names is not None else ""
            raise ValueError(
                f"{argument} holds NaN or infinite values in "
                f"{counted(int(bad.sum()), 'gene')}{where}; remove or impute them first (a "
                "prediction with NaN: retrain the model)"
            )
    what = STAT_NAMES[stat]
    return squared_pearson(x[mask], y[mask], ("real", "predicted"), what)


@doc_params(r2_params=R2_PARAMS, r2_raises=R2_RAISES)
def r2_mean(
    real: MatrixLike, predicted: MatrixLike, *, genes: Sequence[str] | None = None
) -> float:
    """Squared Pearson correlation of per-gene means of real and predicted cells (scGen's R²).

    The means are accumulated in float64 over row chunks (sparse and backed matrices are
    not densified whole).

    Parameters
    ----------
    {r2_params}

    Returns
    -------
    float
        R² of the per-gene means, between 0 and 1; NaN, with a UserWarning saying why,
        when it is undefined (fewer than 2 genes, or the means of one side all equal).

    Raises
    ------
    {r2_raises}
    """
    return _r2_of("mean", real, predicted, genes)


@doc_params(r2_params=R2_PARAMS, r2_raises=R2_RAISES)
def r2_var(real: MatrixLike, predicted: MatrixLike, *, genes: Sequence[str] | None = None) -> float:
    """Squared Pearson correlation of per-gene variances of real and predicted cells.

    The variances are population variances (``ddof=0``), accumulated in float64 over row
    chunks as in :func:`r2_mean`.

    Parameters
    ----------
    {r2_params}

    Returns
    -------
    float
        R² of the per-gene variances, between 0 and 1; NaN, with a UserWarning saying
        why, when it is undefined (fewer than 2 genes, or the variances of one side all
        equal).

    Raises
    ------
    {r2_raises}
    """
    return _r2_of("var", real, predicted, genes)


def top_de_genes(
    adata: AnnData,
    groupby: str,
    group: str,
    reference: str,
    *,
    n_genes: int = 100,
    method: str = "wilcoxon",
    layer: str | None = None,
) -> list[str]:
    """The top ``n_genes`` differentially expressed genes of ``group`` vs ``reference``.

    Runs :func:`scanpy.tl.rank_genes_groups` on a copy (``adata`` is not changed) and
    returns the gene names ranked by score. ``group`` and ``reference`` are matched as
    strings (``1`` finds the cells of an integer column's 1).

    Parameters
    ----------
    adata
        Annotated data matrix (cells x genes) with log-normalised expression.
    groupby
        Column of ``adata.obs`` holding ``group`` and ``reference``.
    group
        The value of ``obs[groupby]`` whose genes are ranked (e.g. the stimulated cells).
    reference
        The value ``group`` is compared with (e.g. the control cells).
    n_genes
        Number of genes returned.
    method
        Test of :func:`scanpy.tl.rank_genes_groups` (``"wilcoxon"``, ``"t-test"``,
        ``"t-test_overestim_var"`` or ``"logreg"``).
    layer
        Read expression from ``adata.layers[layer]`` instead of ``adata.X``.

    Returns
    -------
    list[str]
        At most ``n_genes`` gene names, highest score (most up in ``group``) first.

    Raises
    ------
    KeyError
        If ``groupby`` is not a column of ``adata.obs`` or ``layer`` not a layer.
    ValueError
        If ``group`` or ``reference`` is not a value of ``obs[groupby]``, or both are the
        same.
    """
    import scanpy as sc

    check_obs_key(adata, groupby, "groupby")
    check_layer(adata, layer)
    group, reference = str(group), str(reference)
    if group == reference:
        raise ValueError(f"group and reference are both {group!r}; pass two different values")
    values = adata.obs[groupby].astype(str).where(adata.obs[groupby].notna())
    check_obs_values(values.dropna(), groupby, group=group, reference=reference)
    subset = adata[values.isin([group, reference]).to_numpy()]
    work = AnnData(
        X=subset.layers[layer] if layer is not None else subset.X,
        obs=pd.DataFrame({groupby: values[values.isin([group, reference])].to_numpy()}),
        var=pd.DataFrame(index=subset.var_names.copy()),
    )
    work.obs.index = work.obs.index.astype(str)
    work.obs[groupby] = work.obs[groupby].astype("category")
    sc.tl.rank_genes_groups(
        work, groupby, groups=[group], reference=reference, method=method, n_genes=n_genes
    )
    return [str(g) for g in work.uns["rank_genes_groups"]["names"][group][:n_genes]]


def perturbation_r2(
    real: AnnData, predicted: AnnData, *, de_genes: Sequence[str] | None = None
) -> dict[str, float]:
    """R² of means and variances over all genes and over ``de_genes`` (when given).

    Parameters
    ----------
    real
        The real cells (e.g. the held-out perturbed cells of one type).
    predicted
        The predicted cells, with the same genes as ``real`` (matched by name).
    de_genes
        Genes for the second pair of scores (e.g. from :func:`top_de_genes`).

    Returns
    -------
    dict[str, float]
        ``"r2_mean_all"`` and ``"r2_var_all"`` (:func:`r2_mean` and :func:`r2_var` over
        all genes) plus, with ``de_genes``, ``"r2_mean_de"`` and ``"r2_var_de"`` over
        those genes.

    Raises
    ------
    ValueError, KeyError
        As :func:`r2_mean`: different genes, non-finite statistics, or ``de_genes`` not
        in the data.
    """
    out = {
        "r2_mean_all": r2_mean(real, predicted),
        "r2_var_all": r2_var(real, predicted),
    }
    if de_genes is not None:
        out["r2_mean_de"] = r2_mean(real, predicted, genes=de_genes)
        out["r2_var_de"] = r2_var(real, predicted, genes=de_genes)
    return out
