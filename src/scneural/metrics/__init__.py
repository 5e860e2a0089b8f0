"""Metrics against known labels (wrapping scikit-learn and scipy)."""

from ._classification import accuracy, classification_report, confusion_matrix, macro_f1

__all__ = ["accuracy", "classification_report", "confusion_matrix", "macro_f1"]
