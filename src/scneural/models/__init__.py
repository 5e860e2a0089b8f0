"""scvi-tools models behind the tools."""

from .classifier import Classifier, ClassifierModule
from .deep_cluster import DeepCluster, DeepClusterModule

__all__ = ["Classifier", "ClassifierModule", "DeepCluster", "DeepClusterModule"]
