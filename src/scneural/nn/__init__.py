"""Neural-network building blocks (PyTorch; flax twins live in ``_blocks_jax``)."""

from typing import Any

from ._blocks import MLP, MLPBlock, log_normalize
from ._noise import GaussianNoise, NoisyMLP

_JAX_NAMES = (
    "Dense",
    "FlaxMLP",
    "FlaxMLPBlock",
    "mlp_to_flax",
    "linear_to_flax",
    "batchnorm_to_flax",
    "FlaxNoisyMLP",
    "noisy_mlp_to_flax",
)

__all__ = ["MLP", "GaussianNoise", "MLPBlock", "NoisyMLP", "log_normalize", *_JAX_NAMES]


def __getattr__(name: str) -> Any:
    # the flax twins load on first use, so that scneural imports without the JAX extra
    if name in _JAX_NAMES:
        from scneural.models._jax import require_jax

        require_jax()
        from . import _blocks_jax

        return getattr(_blocks_jax, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
