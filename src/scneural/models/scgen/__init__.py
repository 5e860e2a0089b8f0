from typing import Any

from ._model import ScGen, ScGenMixin
from ._module import ScGenModule
from ._plan import ScGenTrainingPlan

_JAX_NAMES = {"JaxScGen": "_model_jax", "JaxScGenModule": "_module_jax"}

__all__ = ["ScGen", "ScGenMixin", "ScGenModule", "ScGenTrainingPlan", *_JAX_NAMES]


def __getattr__(name: str) -> Any:
    # the JAX twins load on first use, so that scneural imports without the JAX extra
    if name in _JAX_NAMES:
        import importlib

        from scneural.models._jax import require_jax

        require_jax()
        return getattr(importlib.import_module(f"{__name__}.{_JAX_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
