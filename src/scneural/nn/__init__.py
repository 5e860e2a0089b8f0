"""Neural-network building blocks (PyTorch; flax twins live in ``_blocks_jax``)."""

from ._blocks import MLP, MLPBlock, log_normalize

__all__ = ["MLP", "MLPBlock", "log_normalize"]
