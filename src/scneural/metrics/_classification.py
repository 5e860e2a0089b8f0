"""Classification metrics: thin wrappers of scikit-learn that skip missing true labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

ArrayLike = Sequence | np.ndarray | pd.Series


def _as_labels(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    true = pd.Series(np.asarray(y_true, dtype=object))
    pred = pd.Series(np.asarray(y_pred, dtype=object))
    if len(true) != len(pred):
        raise ValueError(f"y_true has {len(true)} labels but y_pred has {len(pred)}")
    keep = true.notna().to_numpy()
    if not keep.any():
        raise ValueError("y_true holds no labels (all missing)")
    return true[keep].astype(str).to_numpy(), pred[keep].astype(str).to_numpy()


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of cells whose predicted label equals the true one (missing truths skipped)."""
    true, pred = _as_labels(y_true, y_pred)
    return float(skm.accuracy_score(true, pred))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted mean of per-class F1 over the true classes (missing truths skipped)."""
    true, pred = _as_labels(y_true, y_pred)
    return float(skm.f1_score(true, pred, labels=np.unique(true), average="macro", zero_division=0))


def classification_report(y_true: ArrayLike, y_pred: ArrayLike) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support as a DataFrame (one row per class)."""
    true, pred = _as_labels(y_true, y_pred)
    report = skm.classification_report(
        true, pred, labels=np.unique(true), output_dict=True, zero_division=0
    )
    return pd.DataFrame(report).T


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, normalize: str | None = None
) -> pd.DataFrame:
    """Confusion matrix (rows: true, columns: predicted) as a labelled DataFrame.

    ``normalize`` is scikit-learn's: ``None``, ``"true"``, ``"pred"`` or ``"all"``.
    """
    true, pred = _as_labels(y_true, y_pred)
    rows = list(np.unique(true))
    cols = rows + [c for c in np.unique(pred) if c not in rows]
    labels = cols
    matrix = skm.confusion_matrix(true, pred, labels=labels, normalize=normalize)
    frame = pd.DataFrame(matrix, index=labels, columns=labels)
    frame.index.name, frame.columns.name = "true", "predicted"
    return frame.loc[rows, cols]
