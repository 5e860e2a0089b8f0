"""JAX/flax module of scGen, twin of :class:`~scneural.models.ScGenModule`."""

from __future__ import annotations

from typing import Any

import flax.linen as fnn
import jax
import jax.numpy as jnp
from scvi import REGISTRY_KEYS

from scneural.models._jax import JaxLossOutput, flax_configure
from scneural.models._jax_base import ScneuralJaxModule
from scneural.nn._blocks_jax import Dense, FlaxMLP, linear_to_flax, mlp_to_flax


@flax_configure
class JaxScGenModule(ScneuralJaxModule):
    """scGen's Gaussian VAE on log-normalised expression in flax.

    Same arguments, layers (``(Dense -> BatchNorm -> LeakyReLU -> Dropout) x n_layers``,
    mean and log-variance heads, linear output) and loss (squared error summed over genes
    plus ``kl_weight`` x KL to ``N(0, I)``, averaged over cells) as
    :class:`~scneural.models.ScGenModule`. The RNG streams are ``"params"``
    (initialisation), ``"dropout"`` and ``"z"`` (the reparameterised sample), all split
    from ``scvi.settings.seed`` when the module is built.

    Parameters
    ----------
    n_input
        Number of genes.
    n_hidden
        Width of every hidden layer.
    n_latent
        Dimension of the latent space.
    n_layers
        Hidden layers of the encoder and of the decoder.
    dropout_rate
        Dropout after every hidden block.
    kl_weight
        Weight of the KL divergence in the loss.
    use_batch_norm
        Whether the hidden blocks use batch normalisation.
    training
        Train mode (batch statistics, dropout); switched by ``train()``/``eval()``.
    """

    n_input: int
    n_hidden: int = 800
    n_latent: int = 100
    n_layers: int = 2
    dropout_rate: float = 0.2
    kl_weight: float = 5e-5
    use_batch_norm: bool = True
    training: bool = True

    def setup(self):
        """Build encoder, the two latent heads, decoder and output layer."""
        block = {
            "n_hidden": (self.n_hidden,) * self.n_layers,
            "dropout_rate": self.dropout_rate,
            "use_batch_norm": self.use_batch_norm,
            "activation": fnn.leaky_relu,  # slope 0.01, as torch.nn.LeakyReLU
        }
        self.encoder = FlaxMLP(**block)
        self.z_mean = Dense(self.n_latent)
        self.z_logvar = Dense(self.n_latent)
        self.decoder = FlaxMLP(**block)
        self.px = Dense(self.n_input)

    @property
    def required_rngs(self) -> tuple[str, ...]:
        return ("params", "dropout", "z")

    def _get_inference_input(self, tensors: dict[str, jax.Array], **kwargs) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def inference(self, x: jax.Array, n_samples: int = 1) -> dict:
        """Posterior mean ``qz_m``, variance ``qz_v`` and a reparameterised sample ``z``."""
        x = jnp.asarray(x, dtype=jnp.float32)
        hidden = self.encoder(x, training=self.training)
        qz_m = self.z_mean(hidden)
        qz_v = jnp.exp(jnp.clip(self.z_logvar(hidden), -15.0, 15.0)) + 1e-4
        noise = jax.random.normal(self.make_rng("z"), qz_m.shape, qz_m.dtype)
        return {"z": qz_m + jnp.sqrt(qz_v) * noise, "qz_m": qz_m, "qz_v": qz_v}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {"z": inference_outputs["z"]}

    def generative(self, z: jax.Array) -> dict:
        """Decoded expression ``px`` (log-normalised scale)."""
        return {"px": self.px(self.decoder(z, training=self.training))}

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs):
        """Squared error summed over genes + ``kl_weight`` x KL, averaged over cells.

        The training plan's ``kl_weight`` is ignored, as in the torch module.
        """
        x = jnp.asarray(tensors[REGISTRY_KEYS.X_KEY], dtype=jnp.float32)
        reconstruction = ((x - generative_outputs["px"]) ** 2).sum(axis=-1)
        qz_m, qz_v = inference_outputs["qz_m"], inference_outputs["qz_v"]
        # KL(N(m, v) || N(0, 1)), as torch.distributions.kl_divergence of two Normals
        kl = 0.5 * (qz_v + qz_m**2 - 1.0 - jnp.log(qz_v)).sum(axis=-1)
        loss = (reconstruction + self.kl_weight * kl).mean()
        return JaxLossOutput(loss=loss, reconstruction_loss=reconstruction, kl_local=kl)


def scgen_variables_from_torch(torch_module: Any) -> dict[str, dict[str, Any]]:
    """Flax variables of :class:`JaxScGenModule` holding a torch ScGenModule's weights.

    Returns ``{"params": ..., "batch_stats": ...}`` for ``module.apply``; with them the two
    modules compute the same outputs (see ``tests/test_perturb_jax.py``).
    """
    encoder = mlp_to_flax(torch_module.encoder)
    decoder = mlp_to_flax(torch_module.decoder)
    params = {
        "encoder": encoder["params"],
        "z_mean": linear_to_flax(torch_module.z_mean),
        "z_logvar": linear_to_flax(torch_module.z_logvar),
        "decoder": decoder["params"],
        "px": linear_to_flax(torch_module.px),
    }
    batch_stats = {"encoder": encoder["batch_stats"], "decoder": decoder["batch_stats"]}
    if not batch_stats["encoder"]:  # no BatchNorm: flax has no batch_stats collection
        return jax.tree_util.tree_map(jnp.asarray, {"params": params})
    return jax.tree_util.tree_map(jnp.asarray, {"params": params, "batch_stats": batch_stats})


__all__ = ["JaxScGenModule", "scgen_variables_from_torch"]
