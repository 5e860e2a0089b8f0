"""Plots that read tool results from ``adata`` (``sn.pl.*``)."""

from ._classify import confusion_matrix
from ._history import training_history

__all__ = ["confusion_matrix", "training_history"]
