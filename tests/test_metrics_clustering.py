"""Clustering metrics: ARI, NMI, Hungarian accuracy and the matched contingency table."""

from __future__ import annotations

import numpy as np
import pytest

import scneural as sn


def test_perfect_clustering_up_to_renaming():
    truth = np.array(["a", "a", "b", "b", "c", "c"])
    clusters = np.array([2, 2, 0, 0, 1, 1])
    assert sn.metrics.adjusted_rand_index(truth, clusters) == pytest.approx(1.0)
    assert sn.metrics.normalized_mutual_info(truth, clusters) == pytest.approx(1.0)
    assert sn.metrics.clustering_accuracy(truth, clusters) == pytest.approx(1.0)
    assert sn.metrics.match_clusters(truth, clusters) == {"2": "a", "0": "b", "1": "c"}


def test_hungarian_accuracy_known_value():
    # best matching: 0->a (3), 1->b (2); one cell of each label is misassigned: 5/7
    truth = ["a", "a", "a", "a", "b", "b", "b"]
    clusters = [0, 0, 0, 1, 1, 1, 0]
    assert sn.metrics.clustering_accuracy(truth, clusters) == pytest.approx(5 / 7)
    # plain accuracy of argmax-majority would allow both clusters to map to "a"
    assert sn.metrics.clustering_accuracy(truth, [0] * 7) == pytest.approx(4 / 7)


def test_random_clusters_score_near_zero():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, 5000)
    clusters = rng.integers(0, 5, 5000)
    assert abs(sn.metrics.adjusted_rand_index(truth, clusters)) < 0.01
    assert sn.metrics.normalized_mutual_info(truth, clusters) < 0.01
    scores = sn.metrics.clustering_scores(truth, clusters)
    assert set(scores) == {"ari", "nmi", "accuracy"}


def test_missing_truth_skipped_and_length_checked():
    truth = np.array(["a", None, "b", "b"], dtype=object)
    assert sn.metrics.adjusted_rand_index(truth, [0, 5, 1, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="y_true has 4 labels but y_pred has 3"):
        sn.metrics.clustering_accuracy(truth, [0, 1, 1])


def test_contingency_is_ordered_by_matching():
    truth = ["a"] * 4 + ["b"] * 3 + ["c"] * 2
    clusters = [7] * 4 + [3] * 3 + [5, 9]
    table = sn.metrics.cluster_contingency(truth, clusters)
    assert list(table.index) == ["a", "b", "c"]
    assert list(table.columns[:3]) == ["7", "3", "5"] or list(table.columns[:3]) == ["7", "3", "9"]
    assert table.shape == (3, 4)
    np.testing.assert_allclose(table.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.diag(table.iloc[:, :3].to_numpy())[:2], 1.0)
    counts = sn.metrics.cluster_contingency(truth, clusters, normalize=None)
    assert counts.to_numpy().sum() == 9
    with pytest.raises(ValueError, match="normalize"):
        sn.metrics.cluster_contingency(truth, clusters, normalize="rows")


def test_scores_warn_once_about_cells_without_a_cluster():
    # deep_cluster leaves cells without counts unassigned (NaN); the three scores skip them
    truth = np.array(["a", "a", "b", "b", "c", "c"])
    clusters = np.array(["0", "0", "1", np.nan, "2", "2"], dtype=object)
    with pytest.warns(UserWarning, match="1 cell has a true label but no predicted") as record:
        scores = sn.metrics.clustering_scores(truth, clusters)
    assert len([w for w in record if "no predicted label" in str(w.message)]) == 1
    assert record[0].filename == __file__  # points at the caller, not at scneural
    assert scores == pytest.approx({"ari": 1.0, "nmi": 1.0, "accuracy": 1.0})
