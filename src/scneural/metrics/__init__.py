"""Metrics against known labels (wrapping scikit-learn and scipy)."""

from ._classification import accuracy, classification_report, confusion_matrix, macro_f1
from ._perturbation import perturbation_r2, r2_mean, r2_var, top_de_genes

__all__ = ["accuracy", "classification_report", "confusion_matrix", "macro_f1"]
__all__ += ["perturbation_r2", "r2_mean", "r2_var", "top_de_genes"]
