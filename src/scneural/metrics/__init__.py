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
from ._perturbation import perturbation_r2, r2_mean, r2_var, top_de_genes

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
    "perturbation_r2",
    "r2_mean",
    "r2_var",
    "top_de_genes",
]
