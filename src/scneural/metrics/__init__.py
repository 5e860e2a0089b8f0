"""Metrics against known labels (wrapping scikit-learn and scipy)."""

from ._classification import accuracy, classification_report, confusion_matrix, macro_f1
from ._clustering import (
    adjusted_rand_index,
    cluster_contingency,
    clustering_accuracy,
    clustering_scores,
    match_clusters,
    normalized_mutual_info,
)

__all__ = [
    "accuracy",
    "adjusted_rand_index",
    "classification_report",
    "cluster_contingency",
    "clustering_accuracy",
    "clustering_scores",
    "confusion_matrix",
    "macro_f1",
    "match_clusters",
    "normalized_mutual_info",
]
