"""Plots that read tool results from ``adata`` (``sn.pl.*``)."""

from ._classify import confusion_matrix
from ._clustering import cluster_contingency
from ._history import training_history
from ._image import image_features, image_patches
from ._perturbation import reg_mean, reg_var

__all__ = [
    "cluster_contingency",
    "confusion_matrix",
    "image_features",
    "image_patches",
    "reg_mean",
    "reg_var",
    "training_history",
]
