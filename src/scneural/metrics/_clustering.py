"""Clustering metrics against known labels: ARI, NMI and Hungarian-matched accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

from scneural._utils import label_order

from ._classification import ArrayLike, _as_labels


def adjusted_rand_index(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Adjusted Rand index between true labels and clusters (missing truths skipped)."""
    true, pred = _as_labels(y_true, y_pred)
    return float(skm.adjusted_rand_score(true, pred))


def normalized_mutual_info(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Normalised mutual information (arithmetic mean normalisation, scikit-learn's default)."""
    true, pred = _as_labels(y_true, y_pred)
    return float(skm.normalized_mutual_info_score(true, pred))


def _contingency(true: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    return pd.crosstab(pd.Series(true, name="true"), pd.Series(pred, name="cluster"))


def match_clusters(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, str]:
    """One-to-one matching of clusters to labels maximising agreement (Hungarian algorithm).

    Returns a dict ``cluster -> label``; clusters left without a partner (more clusters than
    labels) are not in it.
    """
    true, pred = _as_labels(y_true, y_pred)
    table = _contingency(true, pred)
    rows, cols = linear_sum_assignment(-table.to_numpy())
    return {str(table.columns[c]): str(table.index[r]) for r, c in zip(rows, cols)}


def clustering_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Accuracy after the best one-to-one matching of clusters to labels (Hungarian)."""
    true, pred = _as_labels(y_true, y_pred)
    table = _contingency(true, pred).to_numpy()
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def clustering_scores(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """ARI, NMI and Hungarian clustering accuracy in one dict."""
    return {
        "ari": adjusted_rand_index(y_true, y_pred),
        "nmi": normalized_mutual_info(y_true, y_pred),
        "accuracy": clustering_accuracy(y_true, y_pred),
    }


def cluster_contingency(
    y_true: ArrayLike, y_pred: ArrayLike, normalize: str | None = "true"
) -> pd.DataFrame:
    """Contingency table of labels (rows) and clusters (columns), ordered by the matching.

    Matched clusters come first, in the order of their labels, so a good clustering shows a
    bright diagonal. ``normalize``: ``"true"`` (rows sum to 1), ``"pred"`` (columns), ``"all"``
    or ``None`` (counts).
    """
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
    elif normalize is not None:
        raise ValueError(f"normalize must be 'true', 'pred', 'all' or None, got {normalize!r}")
    table.columns = [str(c) for c in table.columns]
    table.columns.name = "cluster"
    return table
