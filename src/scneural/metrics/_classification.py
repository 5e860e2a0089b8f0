"""Classification metrics: thin wrappers of scikit-learn that skip missing labels.

Labels are compared as strings, with integral floats written as integers (an integer
column with a missing value, which pandas stores as floats, matches the complete one).
The two inputs are paired by position, except two pandas Series that hold the same index
labels in another order: those are aligned on their index.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from scneural._docs import doc_params
from scneural._utils import counted, label_order, label_strings

ArrayLike = Sequence | np.ndarray | pd.Series

#: the two label arguments every metric takes (docstrings)
LABELS_PARAMS = """\
y_true
    True label of each cell (array, list or pandas Series). Cells whose true label is
    missing (``NaN``, ``None``) are skipped.
y_pred
    Predicted label (or cluster) of each cell, paired with ``y_true`` by position; two
    Series holding the same index labels in another order are aligned on their index.
    Cells without a prediction (e.g. deep_cluster's cells without counts) are skipped
    too, with a warning that counts them."""

#: the errors every metric raises on its labels (docstrings)
LABELS_RAISES = """\
ValueError
    If ``y_true`` and ``y_pred`` are not 1-D or differ in length, if every true label is
    missing (or every cell with one has no prediction), or if they are Series whose
    indexes share only some labels."""


def _paired(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """``y_pred`` in ``y_true``'s order when both are Series with the same index labels."""
    if not (isinstance(y_true, pd.Series) and isinstance(y_pred, pd.Series)):
        return y_true, y_pred
    if y_true.index.equals(y_pred.index):
        return y_true, y_pred
    shared = y_true.index.intersection(y_pred.index)
    if len(shared) == 0:
        return y_true, y_pred  # unrelated indexes (e.g. a RangeIndex): by position
    if (
        len(shared) == len(y_true) == len(y_pred)
        and y_true.index.is_unique
        and y_pred.index.is_unique
    ):
        return y_true, y_pred.reindex(y_true.index)
    raise ValueError(
        f"y_true and y_pred are pandas Series whose indexes share only {len(shared)} of "
        f"{len(y_true)} / {len(y_pred)} labels; select the same cells in both (e.g. with "
        ".loc), or pass arrays to pair them by position"
    )


def _as_labels(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _paired(y_true, y_pred)
    arrays = []
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        array = np.asarray(values, dtype=object)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one label per cell), got shape {array.shape}")
        arrays.append(pd.Series(array))
    true, pred = arrays
    if len(true) != len(pred):
        raise ValueError(f"y_true has {len(true)} labels but y_pred has {len(pred)}")
    keep = true.notna().to_numpy()
    if not keep.any():
        raise ValueError("y_true holds no labels (all missing)")
    unpredicted = keep & pred.isna().to_numpy()
    if unpredicted[keep].all():
        raise ValueError("y_pred holds no label for any cell with a true label (all missing)")
    if unpredicted.any():  # e.g. deep_cluster's cells without counts: no cluster "nan"
        warnings.warn(
            f"{counted(int(unpredicted.sum()), 'cell has', 'cells have')} a true label but "
            "no predicted label (missing); they are left out of the score",
            UserWarning,
            stacklevel=3,
        )
        keep &= ~unpredicted
    return label_strings(true[keep]), label_strings(pred[keep])


@doc_params(labels=LABELS_PARAMS, labels_raises=LABELS_RAISES)
def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of cells whose predicted label equals the true one (missing truths skipped).

    Parameters
    ----------
    {labels}

    Returns
    -------
    float
        The accuracy, between 0 and 1.

    Raises
    ------
    {labels_raises}
    """
    true, pred = _as_labels(y_true, y_pred)
    return float(skm.accuracy_score(true, pred))


@doc_params(labels=LABELS_PARAMS, labels_raises=LABELS_RAISES)
def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted mean of per-class F1 over the true classes (missing truths skipped).

    Predicted labels that are no true class count as errors of the true classes but get
    no F1 of their own; a class never predicted has F1 0.

    Parameters
    ----------
    {labels}

    Returns
    -------
    float
        The macro-averaged F1, between 0 and 1.

    Raises
    ------
    {labels_raises}
    """
    true, pred = _as_labels(y_true, y_pred)
    return float(skm.f1_score(true, pred, labels=np.unique(true), average="macro", zero_division=0))


@doc_params(labels=LABELS_PARAMS, labels_raises=LABELS_RAISES)
def classification_report(y_true: ArrayLike, y_pred: ArrayLike) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support as a DataFrame (one row per class).

    Parameters
    ----------
    {labels}

    Returns
    -------
    pandas.DataFrame
        Columns ``precision``, ``recall``, ``f1-score`` and ``support`` (float); one row
        per true class (sorted as strings), then ``accuracy`` (the accuracy in
        ``f1-score``, the number of labelled cells in ``support``, NaN elsewhere),
        ``macro avg`` and ``weighted avg``, as scikit-learn's
        :func:`~sklearn.metrics.classification_report` (zero where undefined).

    Raises
    ------
    {labels_raises}
    """
    true, pred = _as_labels(y_true, y_pred)
    report = skm.classification_report(
        true, pred, labels=np.unique(true), output_dict=True, zero_division=0
    )
    # scikit-learn writes "micro avg" instead of "accuracy" when some prediction is not a
    # true class (e.g. a reference-only type): always report the accuracy, with its support
    report.pop("micro avg", None)
    report["accuracy"] = float(skm.accuracy_score(true, pred))
    frame = pd.DataFrame({k: v for k, v in report.items() if k != "accuracy"}).T
    frame.loc["accuracy"] = [np.nan, np.nan, report["accuracy"], float(len(true))]
    return frame.loc[[*frame.index[:-3], "accuracy", "macro avg", "weighted avg"]]


def check_normalize(normalize: str | None) -> None:
    """Require ``normalize`` to be one of scikit-learn's values (or None)."""
    if normalize not in ("true", "pred", "all", None):
        raise ValueError(
            f"normalize must be 'true' (rows), 'pred' (columns), 'all' or None, got {normalize!r}"
        )


@doc_params(labels=LABELS_PARAMS, labels_raises=LABELS_RAISES)
def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, normalize: str | None = None
) -> pd.DataFrame:
    """Confusion matrix (rows: true, columns: predicted) as a labelled DataFrame.

    Parameters
    ----------
    {labels}
    normalize
        As scikit-learn's: ``None`` (counts), ``"true"`` (rows sum to 1), ``"pred"``
        (columns sum to 1) or ``"all"`` (the whole matrix sums to 1).

    Returns
    -------
    pandas.DataFrame
        Labelled matrix (axis names ``"true"`` and ``"predicted"``): counts (int) or,
        with ``normalize``, fractions (float). Rows are the true classes, in the order of
        ``y_true``'s categories when it is categorical, else numeric or sorted; columns
        are the same classes followed by the predicted labels that are no true class.

    Raises
    ------
    {labels_raises}
    ValueError
        If ``normalize`` is not one of the values above.
    """
    check_normalize(normalize)
    true, pred = _as_labels(y_true, y_pred)
    rows = label_order(y_true, np.unique(true))
    cols = rows + label_order(y_pred, [c for c in np.unique(pred) if c not in rows])
    labels = cols
    matrix = skm.confusion_matrix(true, pred, labels=labels, normalize=normalize)
    frame = pd.DataFrame(matrix, index=labels, columns=labels)
    frame.index.name, frame.columns.name = "true", "predicted"
    return frame.loc[rows, cols]
