"""Flax twins of the PyTorch building blocks in :mod:`scneural.nn._blocks`.

Same layer order, widths, initialisation and BatchNorm settings as the torch blocks, and
helpers that copy trained torch weights into flax variables (used by the equivalence tests,
and usable to move a trained torch model to JAX).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np

#: torch BatchNorm1d momentum 0.01 (weight of the new batch) is flax momentum 0.99 (weight of
#: the running value); eps as scvi-tools' torch blocks
BATCH_NORM_MOMENTUM = 0.99
BATCH_NORM_EPS = 1e-3


def _torch_uniform(bound: float) -> Callable[..., jax.Array]:
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init


class Dense(fnn.Module):
    """``x @ kernel + bias`` initialised as :class:`torch.nn.Linear` (U(±1/sqrt(fan_in)))."""

    features: int

    @fnn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the affine map."""
        fan_in = x.shape[-1]
        init = _torch_uniform(1.0 / math.sqrt(fan_in))
        kernel = self.param("kernel", init, (fan_in, self.features))
        bias = self.param("bias", init, (self.features,))
        return x @ kernel + bias


class FlaxMLPBlock(fnn.Module):
    """``Dense -> BatchNorm -> activation -> Dropout``, twin of :class:`scneural.nn.MLPBlock`.

    Parameters
    ----------
    n_out
        Output width.
    dropout_rate
        Dropout probability after the activation (0 disables it); needs the ``"dropout"``
        RNG stream when training.
    use_batch_norm
        Whether to normalise the dense output (running statistics in ``batch_stats``).
    activation
        Activation function (default :func:`flax.linen.relu`).
    """

    n_out: int
    dropout_rate: float = 0.0
    use_batch_norm: bool = True
    activation: Callable[[jax.Array], jax.Array] = fnn.relu

    @fnn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        """Run the block; ``training`` uses batch statistics and dropout."""
        x = Dense(self.n_out, name="dense")(x)
        if self.use_batch_norm:
            x = fnn.BatchNorm(
                use_running_average=not training,
                momentum=BATCH_NORM_MOMENTUM,
                epsilon=BATCH_NORM_EPS,
                name="batch_norm",
            )(x)
        x = self.activation(x)
        if self.dropout_rate > 0:
            x = fnn.Dropout(self.dropout_rate, deterministic=not training)(x)
        return x


class FlaxMLP(fnn.Module):
    """A stack of :class:`FlaxMLPBlock`, twin of :class:`scneural.nn.MLP`.

    Parameters
    ----------
    n_hidden
        Widths of the hidden layers; the output width is ``n_hidden[-1]``.
    n_cat
        Number of categories of a covariate whose one-hot code is concatenated to the input
        of every block; 0 for none.
    dropout_rate, use_batch_norm, activation
        See :class:`FlaxMLPBlock`.
    """

    n_hidden: tuple[int, ...]
    n_cat: int = 0
    dropout_rate: float = 0.0
    use_batch_norm: bool = True
    activation: Callable[[jax.Array], jax.Array] = fnn.relu

    @fnn.compact
    def __call__(
        self, x: jax.Array, cat: jax.Array | None = None, training: bool = False
    ) -> jax.Array:
        """Run ``x`` through the blocks; ``cat`` holds category indices (n, 1) when ``n_cat``."""
        if len(self.n_hidden) == 0:
            raise ValueError("n_hidden must list at least one layer width")
        onehot = None
        if self.n_cat and cat is not None:
            onehot = jax.nn.one_hot(jnp.asarray(cat).reshape(-1).astype(jnp.int32), self.n_cat)
            onehot = onehot.astype(x.dtype)
        for i, width in enumerate(self.n_hidden):
            if onehot is not None:
                x = jnp.concatenate([x, onehot], axis=-1)
            x = FlaxMLPBlock(
                width,
                dropout_rate=self.dropout_rate,
                use_batch_norm=self.use_batch_norm,
                activation=self.activation,
                name=f"block_{i}",
            )(x, training=training)
        return x


def log_normalize(x: jax.Array, target_sum: float = 1e4) -> jax.Array:
    """Library-size normalisation to ``target_sum`` then ``log1p`` (twin of the torch one)."""
    library = jnp.clip(x.sum(axis=-1, keepdims=True), 1.0)
    return jnp.log1p(x / library * target_sum)


# --------------------------------------------------------------------- torch -> flax weights


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def linear_to_flax(linear: Any) -> dict[str, np.ndarray]:
    """Params of :class:`Dense` from a :class:`torch.nn.Linear` (the weight is transposed)."""
    return {"kernel": _np(linear.weight).T.copy(), "bias": _np(linear.bias)}


def batchnorm_to_flax(bn: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(params, batch_stats)`` of :class:`flax.linen.BatchNorm` from a torch BatchNorm1d.

    Raises if the torch layer's momentum/eps differ from the flax blocks' (the copy would
    then not behave the same in training).
    """
    if not math.isclose(bn.momentum, 1.0 - BATCH_NORM_MOMENTUM) or not math.isclose(
        bn.eps, BATCH_NORM_EPS
    ):
        raise ValueError(
            f"torch BatchNorm has momentum={bn.momentum}, eps={bn.eps}; the flax blocks use "
            f"momentum={1.0 - BATCH_NORM_MOMENTUM} (torch convention), eps={BATCH_NORM_EPS}"
        )
    params = {"scale": _np(bn.weight), "bias": _np(bn.bias)}
    stats = {"mean": _np(bn.running_mean), "var": _np(bn.running_var)}
    return params, stats


def mlp_to_flax(mlp: Any) -> dict[str, dict[str, Any]]:
    """Variables ``{"params": ..., "batch_stats": ...}`` of :class:`FlaxMLP` from a torch MLP."""
    import torch

    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for i, block in enumerate(mlp.blocks):
        name = f"block_{i}"
        params[name] = {}
        for layer in block:
            if isinstance(layer, torch.nn.Linear):
                params[name]["dense"] = linear_to_flax(layer)
            elif isinstance(layer, torch.nn.BatchNorm1d):
                bn_params, bn_stats = batchnorm_to_flax(layer)
                params[name]["batch_norm"] = bn_params
                stats[name] = {"batch_norm": bn_stats}
    return {"params": params, "batch_stats": stats}


class FlaxNoisyMLP(fnn.Module):
    """Denoising encoder, twin of :class:`scneural.nn.NoisyMLP`.

    ``x -> noise -> [Dense -> (BatchNorm) -> noise -> activation] x k -> Dense``; the
    Gaussian noise is drawn from the ``"noise"`` RNG stream when ``noisy``.

    Parameters
    ----------
    n_hidden
        Widths of the hidden layers.
    n_out
        Width of a final dense layer without noise or activation (``None``: none).
    n_cat
        Number of categories of a covariate whose one-hot code is concatenated to the input
        of every layer; 0 for none.
    input_noise, hidden_noise
        Standard deviations of the Gaussian noise on the input and the hidden layers.
    use_batch_norm
        Normalise each hidden dense output (running statistics in ``batch_stats``).
    activation
        Activation function (default :func:`flax.linen.relu`).
    """

    n_hidden: tuple[int, ...]
    n_out: int | None = None
    n_cat: int = 0
    input_noise: float = 0.0
    hidden_noise: float = 0.0
    use_batch_norm: bool = False
    activation: Callable[[jax.Array], jax.Array] = fnn.relu

    def _noise(self, x: jax.Array, sigma: float, noisy: bool) -> jax.Array:
        if not noisy or sigma == 0:
            return x
        return x + jax.random.normal(self.make_rng("noise"), x.shape, x.dtype) * sigma

    @fnn.compact
    def __call__(
        self,
        x: jax.Array,
        cat: jax.Array | None = None,
        *,
        noisy: bool = False,
        training: bool = False,
    ) -> jax.Array:
        """Encode ``x``; ``cat`` holds category indices (n, 1) when ``n_cat``."""
        onehot = None
        if self.n_cat and cat is not None:
            onehot = jax.nn.one_hot(jnp.asarray(cat).reshape(-1).astype(jnp.int32), self.n_cat)
            onehot = onehot.astype(x.dtype)

        def with_cat(h: jax.Array) -> jax.Array:
            return jnp.concatenate([h, onehot], axis=-1) if onehot is not None else h

        h = self._noise(x, self.input_noise, noisy)
        for i, width in enumerate(self.n_hidden):
            h = Dense(width, name=f"linear_{i}")(with_cat(h))
            if self.use_batch_norm:
                h = fnn.BatchNorm(
                    use_running_average=not training,
                    momentum=BATCH_NORM_MOMENTUM,
                    epsilon=BATCH_NORM_EPS,
                    name=f"norm_{i}",
                )(h)
            h = self.activation(self._noise(h, self.hidden_noise, noisy))
        if self.n_out is not None:
            h = Dense(self.n_out, name="output")(with_cat(h))
        return h


def noisy_mlp_to_flax(mlp: Any) -> dict[str, dict[str, Any]]:
    """Variables ``{"params": ..., "batch_stats": ...}`` of :class:`FlaxNoisyMLP` from a
    torch :class:`scneural.nn.NoisyMLP`."""
    import torch

    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for i, (linear, norm) in enumerate(zip(mlp.linears, mlp.norms)):
        params[f"linear_{i}"] = linear_to_flax(linear)
        if isinstance(norm, torch.nn.BatchNorm1d):
            params[f"norm_{i}"], stats[f"norm_{i}"] = batchnorm_to_flax(norm)
    if mlp.output is not None:
        params["output"] = linear_to_flax(mlp.output)
    return {"params": params, "batch_stats": stats}
