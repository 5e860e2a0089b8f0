"""Plots that read tool results from ``adata`` (``sn.pl.*``)."""

from ._classify import confusion_matrix
from ._history import training_history
from ._perturbation import reg_mean, reg_var

__all__ = ["confusion_matrix", "training_history"]
__all__ += ["reg_mean", "reg_var"]
