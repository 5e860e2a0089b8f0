"""scvi-tools models behind the tools."""

from .classifier import Classifier, ClassifierModule
from .scgen import ScGen, ScGenModule

__all__ = ["Classifier", "ClassifierModule", "ScGen", "ScGenModule"]
