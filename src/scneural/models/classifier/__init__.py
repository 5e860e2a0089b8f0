from typing import Any

from ._model import Classifier, ClassifierMixin
from ._module import ClassifierModule
from ._plan import ClassifierTrainingPlan

_JAX_NAMES = {"JaxClassifier": "_model_jax", "JaxClassifierModule": "_module_jax"}

__all__ = [
    "Classifier",
    "ClassifierMixin",
    "ClassifierModule",
    "ClassifierTrainingPlan",
    *_JAX_NAMES,
]


def __getattr__(name: str) -> Any:
    # the JAX twins load on first use, so that scneural imports without the JAX extra
    if name in _JAX_NAMES:
        import importlib

        from scneural.models._jax import require_jax

        require_jax()
        return getattr(importlib.import_module(f"{__name__}.{_JAX_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
