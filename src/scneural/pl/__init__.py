"""Plots that read tool results from ``adata`` (``sn.pl.*``)."""

from ._classify import confusion_matrix
from ._history import training_history
from ._image import image_features, image_patches

__all__ = ["confusion_matrix", "image_features", "image_patches", "training_history"]
