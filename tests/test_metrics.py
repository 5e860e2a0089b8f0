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


def test_classification_report():
    report = sn.metrics.classification_report(["a", "b", "b"], ["a", "b", "a"])
    assert report.loc["b", "recall"] == pytest.approx(0.5)
    assert report.loc["a", "support"] == 1


def test_metric_errors():
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred has 1"):
        sn.metrics.accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no labels"):
        sn.metrics.accuracy([np.nan], ["a"])
