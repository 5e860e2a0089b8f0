"""scvi-tools models behind the tools."""

from .classifier import Classifier, ClassifierModule
from .image import ImageExpressionModel, ImageExpressionModule, ImageFeatureExtractor

__all__ = [
    "Classifier",
    "ClassifierModule",
    "ImageExpressionModel",
    "ImageExpressionModule",
    "ImageFeatureExtractor",
]
