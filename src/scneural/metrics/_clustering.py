"""Clustering metrics against known labels: ARI, NMI and Hungarian-matched accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

from scneural._docs import doc_params
from scneural._utils import label_order

from ._classification import LABELS_PARAMS, LABELS_RAISES, ArrayLike, _as_labels, check_normalize

#: y_pred of a clustering metric holds clusters (docstrings)
CLUSTER_PARAMS = LABELS_PARAMS.replace(
    "Predicted label (or cluster) of each cell", "Cluster of each cell (any label type)"
)


@doc_params(labels=CLUSTER_PARAMS, labels_raises=LABELS_RAISES)
def adjusted_rand_index(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Adjusted Rand index between true labels and clusters (missing truths skipped).

    Parameters
    ----------
    {labels}

    Returns
    -------
    float
        scikit-learn's :func:`~sklearn.metrics.adjusted_rand_score`: 1 for identical
        partitions, about 0 for random ones (it can be negative).

    Raises
    ------
    {labels_raises}
    """
    true, pred = _as_labels(y_true, y_pred)
    return float(skm.adjusted_rand_score(true, pred))


@doc_params(labels=CLUSTER_PARAMS, labels_raises=LABELS_RAISES)
def normalized_mutual_info(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Normalised mutual information (arithmetic mean normalisation, scikit-learn's default).

    Parameters
    ----------
    {labels}

    Returns
    -------
    float
        scikit-learn's :func:`~sklearn.metrics.normalized_mutual_info_score`, between 0
        (independent) and 1 (identical partitions).

    Raises
    ------
    {labels_raises}
    """
    true, pred = _as_labels(y_true, y_pred)
    return float(skm.normalized_mutual_info_score(true, pred))


def _contingency(true: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    return pd.crosstab(pd.Series(true, name="true"), pd.Series(pred, name="cluster"))


@doc_params(labels=CLUSTER_PARAMS, labels_raises=LABELS_RAISES)
def match_clusters(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, str]:
    """One-to-one matching of clusters to labels maximising agreement (Hungarian algorithm).

    Parameters
    ----------
    {labels}

    Returns
    -------
    dict[str, str]
        Each matched cluster (as a string) and the true label (as a string) it is
        matched to; the matching maximises the number of cells the pairs share. Clusters
        left without a partner (more clusters than labels) are not in it.

    Raises
    ------
    {labels_raises}
    """
    true, pred = _as_labels(y_true, y_pred)
    table = _contingency(true, pred)
    rows, cols = linear_sum_assignment(-table.to_numpy())
    return {str(table.columns[c]): str(table.index[r]) for r, c in zip(rows, cols)}


@doc_params(labels=CLUSTER_PARAMS, labels_raises=LABELS_RAISES)
def clustering_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Accuracy after the best one-to-one matching of clusters to labels (Hungarian).

    Parameters
    ----------
    {labels}

    Returns
    -------
    float
        Fraction of labelled cells whose cluster is matched to their label (see
        :func:`match_clusters`), between 0 and 1; cells of unmatched clusters count as
        wrong.

    Raises
    ------
    {labels_raises}
    """
    true, pred = _as_labels(y_true, y_pred)
    table = _contingency(true, pred).to_numpy()
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


@doc_params(labels=CLUSTER_PARAMS, labels_raises=LABELS_RAISES)
def clustering_scores(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """ARI, NMI and Hungarian clustering accuracy in one dict.

    Parameters
    ----------
    {labels}

    Returns
    -------
    dict[str, float]
        ``"ari"`` (:func:`adjusted_rand_index`), ``"nmi"``
        (:func:`normalized_mutual_info`) and ``"accuracy"`` (:func:`clustering_accuracy`).

    Raises
    ------
    {labels_raises}
    """
    true, pred = _as_labels(y_true, y_pred)  # pairs, checks and warns once for all three
    return {
        "ari": adjusted_rand_index(true, pred),
        "nmi": normalized_mutual_info(true, pred),
        "accuracy": clustering_accuracy(true, pred),
    }


@doc_params(labels=CLUSTER_PARAMS, labels_raises=LABELS_RAISES)
def cluster_contingency(
    y_true: ArrayLike, y_pred: ArrayLike, normalize: str | None = "true"
) -> pd.DataFrame:
    """Contingency table of labels (rows) and clusters (columns), ordered by the matching.

    Matched clusters come first, in the order of their labels, so a good clustering shows a
    bright diagonal.

    Parameters
    ----------
    {labels}
    normalize
        ``"true"`` (each label's row sums to 1), ``"pred"`` (each cluster's column sums to
        1), ``"all"`` (the table sums to 1) or ``None`` (cell counts); any other value
        raises a ValueError.

    Returns
    -------
    pandas.DataFrame
        Float table, one row per true label (index name ``"true"``, in the order of
        ``y_true``'s categories when categorical, else numeric or sorted) and one column
        per cluster (string names, columns name ``"cluster"``): first each label's matched
        cluster in row order, then the unmatched clusters.

    Raises
    ------
    {labels_raises}
    ValueError
        If ``normalize`` is not one of the values above.
    """
    check_normalize(normalize)
    true, pred = _as_labels(y_true, y_pred)
    table = _contingency(true, pred)
    table = table.loc[
        label_order(y_true, list(table.index)), label_order(y_pred, list(table.columns))
    ]
    rows, cols = linear_sum_assignment(-table.to_numpy())
    partner = dict(zip(rows, cols))
    ordered = [table.columns[partner[r]] for r in range(table.shape[0]) if r in partner]
    ordered += [c for c in table.columns if c not in ordered]
    table = table.loc[:, ordered].astype(float)
    if normalize == "true":
        table = table.div(table.sum(axis=1), axis=0)
    elif normalize == "pred":
        table = table.div(table.sum(axis=0), axis=1)
    elif normalize == "all":
        table = table / table.to_numpy().sum()
    table.columns = [str(c) for c in table.columns]
    table.columns.name = "cluster"
    return table
