"""Count likelihoods for the JAX models (the PyTorch models use :mod:`scvi.distributions`).

The functions live in :mod:`scneural.distributions._jax` and are loaded on first use, so
``import scneural`` works without the optional JAX dependencies.
"""

from __future__ import annotations

from typing import Any

__all__ = ["log_nb_positive", "log_zinb_positive"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from scneural.models._jax import require_jax

        require_jax()
        from . import _jax

        return getattr(_jax, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
