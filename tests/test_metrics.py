"""sn.metrics (classification): agree with scikit-learn and skip missing truths."""

from __future__ import annotations

import numpy as np
import pytest

import scneural as sn


def test_accuracy_and_f1_known_values():
    truth = ["a", "a", "b", "b", np.nan]
    pred = ["a", "b", "b", "b", "a"]
    assert sn.metrics.accuracy(truth, pred) == pytest.approx(0.75)
    # F1(a) = 2*1*0.5/1.5 = 2/3; F1(b) = 2*(2/3)*1/(5/3) = 0.8
    assert sn.metrics.macro_f1(truth, pred) == pytest.approx((2 / 3 + 0.8) / 2)


def test_confusion_matrix_normalised_rows():
    truth = ["a", "a", "b", "b"]
    pred = ["a", "b", "b", "Unknown"]
    cm = sn.metrics.confusion_matrix(truth, pred, normalize="true")
    assert list(cm.index) == ["a", "b"]
    assert list(cm.columns) == ["a", "b", "Unknown"]
    np.testing.assert_allclose(cm.sum(axis=1), 1.0)
    assert cm.loc["b", "Unknown"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="normalize must be 'true' \\(rows\\).*got 'rows'"):
        sn.metrics.confusion_matrix(truth, pred, normalize="rows")


def test_classification_report():
    report = sn.metrics.classification_report(["a", "b", "b"], ["a", "b", "a"])
    assert report.loc["b", "recall"] == pytest.approx(0.5)
    assert report.loc["a", "support"] == 1


def test_metric_errors():
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred has 1"):
        sn.metrics.accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no labels"):
        sn.metrics.accuracy([np.nan], ["a"])


def test_cells_without_a_prediction_are_left_out_with_a_warning():
    """deep_cluster leaves cells without counts unclustered (NaN): every metric leaves them
    out, as sn.pl.cluster_contingency does, instead of scoring a cluster "nan"."""
    truth = ["a", "a", "b", "b", "b"]
    clusters = [0, 0, np.nan, 1, 1]
    with pytest.warns(UserWarning, match="1 cell has a true label but no predicted"):
        assert sn.metrics.adjusted_rand_index(truth, clusters) == 1.0
    with pytest.warns(UserWarning, match="left out of the score"):
        assert sn.metrics.accuracy(truth, ["a", "a", None, "b", "a"]) == pytest.approx(0.75)
    with pytest.warns(UserWarning, match="no predicted"):
        table = sn.metrics.cluster_contingency(truth, clusters, normalize=None)
    assert "nan" not in table.columns and table.to_numpy().sum() == 4
    with pytest.raises(ValueError, match="y_pred holds no label for any cell"):
        sn.metrics.accuracy(["a", "b", None], [None, np.nan, "a"])


def test_integer_labels_stored_as_floats_match():
    """pandas keeps an integer column with a missing value as floats (1.0); it must still
    match integer predictions (1), in every label metric."""
    import pandas as pd

    truth = pd.Series([0, 1, 2, 1, None], dtype=float)  # what obs holds for ints + NaN
    pred = np.array([0, 1, 2, 2, 0])
    assert sn.metrics.accuracy(truth, pred) == pytest.approx(0.75)
    cm = sn.metrics.confusion_matrix(truth, pred)
    assert list(cm.index) == ["0", "1", "2"] and list(cm.columns) == ["0", "1", "2"]
    assert np.trace(cm.to_numpy()) == 3
    assert sn.metrics.accuracy(["1.5", "x"], [1.5, "x"]) == 1.0  # other values: str()


def test_series_are_aligned_on_a_shared_index():
    import pandas as pd

    truth = pd.Series(["a", "b", "c", "a"], index=["c1", "c2", "c3", "c4"])
    shuffled = truth.iloc[[3, 2, 1, 0]]  # the same cells in another order
    assert sn.metrics.accuracy(truth, shuffled) == 1.0
    assert sn.metrics.adjusted_rand_index(truth, shuffled) == pytest.approx(1.0)
    # unrelated indexes (e.g. a fresh Series): paired by position, as arrays are
    assert sn.metrics.accuracy(truth, pd.Series(["a", "b", "c", "b"])) == 0.75
    with pytest.raises(ValueError, match="share only 2 of 4 / 4 labels"):
        sn.metrics.accuracy(truth, pd.Series(list("abca"), index=["c1", "c2", "x", "y"]))
    with pytest.raises(ValueError, match=r"y_true must be 1-D .* shape \(2, 2\)"):
        sn.metrics.accuracy(np.zeros((2, 2)), ["a", "b"])


def test_classification_report_keeps_accuracy_with_extra_predicted_labels():
    report = sn.metrics.classification_report(["a", "b", "b"], ["a", "b", "z"])
    assert report.loc["accuracy", "f1-score"] == pytest.approx(2 / 3)
    assert "micro avg" not in report.index
