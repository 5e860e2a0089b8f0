"""Neural-network building blocks (PyTorch; flax twins live in ``_blocks_jax``)."""

from ._blocks import MLP, MLPBlock, log_normalize
from ._noise import GaussianNoise, NoisyMLP

__all__ = ["MLP", "GaussianNoise", "MLPBlock", "NoisyMLP", "log_normalize"]
