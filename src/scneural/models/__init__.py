"""scvi-tools models behind the tools."""

from typing import Any as _Any

from . import classifier, deep_cluster, scgen
from .classifier import Classifier, ClassifierModule
from .deep_cluster import DeepCluster, DeepClusterModule
from .image import ImageExpressionModel, ImageExpressionModule, ImageFeatureExtractor
from .scgen import ScGen, ScGenModule

# JAX models load on first use (they need the optional extra: pip install "scneural[jax]")
_JAX_HOMES = {
    "JaxClassifier": classifier,
    "JaxClassifierModule": classifier,
    "JaxDeepCluster": deep_cluster,
    "JaxDeepClusterModule": deep_cluster,
    "JaxScGen": scgen,
    "JaxScGenModule": scgen,
}

__all__ = [
    "Classifier",
    "ClassifierModule",
    "DeepCluster",
    "DeepClusterModule",
    "ImageExpressionModel",
    "ImageExpressionModule",
    "ImageFeatureExtractor",
    "ScGen",
    "ScGenModule",
    *_JAX_HOMES,
]


def __getattr__(name: str) -> _Any:
    if name in _JAX_HOMES:
        return getattr(_JAX_HOMES[name], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
