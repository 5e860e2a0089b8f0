"""scvi-tools models behind the tools."""

from typing import Any

from . import classifier
from .classifier import Classifier, ClassifierModule

_JAX_NAMES = ("JaxClassifier", "JaxClassifierModule")

__all__ = ["Classifier", "ClassifierModule", *_JAX_NAMES]


def __getattr__(name: str) -> Any:
    # JAX models load on first use (needs the optional extra: pip install "scneural[jax]")
    if name in _JAX_NAMES:
        return getattr(classifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
