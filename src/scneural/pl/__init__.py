"""Plots that read tool results from ``adata`` (``sn.pl.*``)."""

from ._classify import confusion_matrix
from ._clustering import cluster_contingency
from ._history import training_history

__all__ = ["cluster_contingency", "confusion_matrix", "training_history"]
