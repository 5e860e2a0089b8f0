"""scvi-tools models behind the tools."""

from .classifier import Classifier, ClassifierModule

__all__ = ["Classifier", "ClassifierModule"]
