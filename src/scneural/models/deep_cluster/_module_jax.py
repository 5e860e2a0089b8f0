"""JAX/flax module of scDeepCluster, twin of :class:`DeepClusterModule`."""

from __future__ import annotations

from typing import Any

import flax.linen as fnn
import jax
import jax.numpy as jnp
from scvi import REGISTRY_KEYS

from scneural.distributions._jax import log_zinb_positive
from scneural.models._jax import JaxLossOutput, flax_configure
from scneural.models._jax_base import ScneuralJaxModule
from scneural.nn._blocks_jax import Dense, FlaxNoisyMLP, linear_to_flax, noisy_mlp_to_flax

#: variable collection of the training cells' normalisation statistics (not trained)
BUFFERS = "buffers"


def student_t_assignment(z: jax.Array, centres: jax.Array, alpha: float = 1.0) -> jax.Array:
    """DEC soft assignment ``q_ij ∝ (1 + ||z_i - mu_j||² / alpha)^(-(alpha + 1) / 2)``."""
    dist2 = jnp.sum((z[:, None, :] - centres[None, :, :]) ** 2, axis=-1)
    logits = -(alpha + 1.0) / 2.0 * jnp.log1p(dist2 / alpha)
    return jax.nn.softmax(logits, axis=-1)


@flax_configure
class JaxDeepClusterModule(ScneuralJaxModule):
    """ZINB denoising autoencoder (scDeepCluster) with Student-t cluster centres, in flax.

    Same arguments, layers, normalisation and losses as
    :class:`~scneural.models.DeepClusterModule`. The training cells' gene means, standard
    deviations and median library size live in the ``"buffers"`` variable collection; the
    cluster centres are the parameter ``cluster_centres`` (k x n_latent). The RNG streams
    are ``"params"`` (initialisation) and ``"noise"`` (the Gaussian noise of the denoising
    encoder), both split from ``scvi.settings.seed`` when the module is built.

    Parameters
    ----------
    n_input
        Number of genes.
    n_batch
        Number of batches; their one-hot code is fed to encoder and decoder (0 or 1: none).
    n_hidden
        Widths of the encoder's hidden layers; the decoder mirrors them.
    n_latent
        Dimension of the latent space.
    n_clusters
        Number of cluster centres (0 until the clustering layer is initialised).
    noise_sd
        Standard deviation of the Gaussian noise on the (scaled) input.
    hidden_noise_sd
        Standard deviation of the noise on the encoder's hidden layers (``None``: ``noise_sd``).
    alpha
        Degrees of freedom of the Student-t kernel.
    use_batch_norm
        BatchNorm in encoder and decoder hidden layers.
    training
        Train mode (noise, batch statistics); switched by ``train()``/``eval()``.
    """

    n_input: int
    n_batch: int = 0
    n_hidden: tuple[int, ...] = (256, 64)
    n_latent: int = 32
    n_clusters: int = 0
    noise_sd: float = 2.5
    hidden_noise_sd: float | None = None
    alpha: float = 1.0
    use_batch_norm: bool = False
    training: bool = True

    def setup(self):
        """Build encoder, decoder, ZINB heads, centres and normalisation buffers."""
        n_cat = self.n_batch if self.n_batch > 1 else 0
        hidden_noise = self.noise_sd if self.hidden_noise_sd is None else self.hidden_noise_sd
        self.encoder = FlaxNoisyMLP(
            n_hidden=tuple(self.n_hidden),
            n_out=self.n_latent,
            n_cat=n_cat,
            input_noise=self.noise_sd,
            hidden_noise=hidden_noise,
            use_batch_norm=self.use_batch_norm,
        )
        self.decoder = FlaxNoisyMLP(
            n_hidden=tuple(self.n_hidden)[::-1], n_cat=n_cat, use_batch_norm=self.use_batch_norm
        )
        self.mean_head = Dense(self.n_input)
        self.dispersion_head = Dense(self.n_input)
        self.dropout_head = Dense(self.n_input)
        self.cluster_centres = self.param(
            "cluster_centres", jax.nn.initializers.zeros, (self.n_clusters, self.n_latent)
        )
        self.gene_mean = self.variable(BUFFERS, "gene_mean", jnp.zeros, (self.n_input,))
        self.gene_std = self.variable(BUFFERS, "gene_std", jnp.ones, (self.n_input,))
        self.median_library = self.variable(BUFFERS, "median_library", jnp.ones, ())

    @property
    def required_rngs(self) -> tuple[str, ...]:
        return ("params", "noise")

    @fnn.nowrap
    def state_dict(self) -> dict[str, Any]:
        """The trained variables (``params`` and ``state``), without the optimizer's state.

        Each training phase starts its own optimizer (AMSGrad, then Adadelta), so a saved
        model is restored into a training state of any optimizer.
        """
        import flax

        self._check_train_state_is_not_none()
        return flax.serialization.to_state_dict(
            {"params": self.train_state.params, "state": self.train_state.state}
        )

    @fnn.nowrap
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load variables saved by :meth:`state_dict` into the training state."""
        import flax

        self._check_train_state_is_not_none()
        target = {"params": self.train_state.params, "state": self.train_state.state}
        restored = flax.serialization.from_state_dict(target, state_dict)
        self.train_state = self.train_state.replace(
            params=restored["params"], state=restored["state"]
        )

    def _get_inference_input(self, tensors: dict[str, jax.Array], **kwargs) -> dict:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    def _encode(self, h: jax.Array, batch_index: jax.Array | None, noisy: bool) -> jax.Array:
        return self.encoder(h, batch_index, noisy=noisy, training=self.training)

    def inference(self, x: jax.Array, batch_index: jax.Array | None = None) -> dict:
        """Size factors, noisy latent (training), noise-free latent and soft assignment q.

        In training mode the outputs are ``size_factor``, the noisy ``z`` and the scaled
        input ``h`` (the DEC loss encodes it again without noise); in eval mode ``z`` and
        ``z_clean`` are the noise-free latent and ``q`` the soft assignment (with centres).
        """
        x = jnp.asarray(x, dtype=jnp.float32)
        library = jnp.clip(x.sum(axis=-1, keepdims=True), 1.0)
        size_factor = library / self.median_library.value
        h = (jnp.log1p(x / size_factor) - self.gene_mean.value) / self.gene_std.value
        out = {"size_factor": size_factor}
        if self.training:
            out["z"] = self._encode(h, batch_index, noisy=True)
            out["h"] = h
        else:
            out["z"] = out["z_clean"] = self._encode(h, batch_index, noisy=False)
            if self.n_clusters > 0:
                out["q"] = student_t_assignment(out["z_clean"], self.cluster_centres, self.alpha)
        return out

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {
            "z": inference_outputs["z"],
            "size_factor": inference_outputs["size_factor"],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    def generative(
        self, z: jax.Array, size_factor: jax.Array, batch_index: jax.Array | None = None
    ) -> dict:
        """ZINB parameters: mean (times the size factor), dispersion and dropout logits."""
        h = self.decoder(z, batch_index, noisy=False, training=self.training)
        mean = jnp.clip(jnp.exp(self.mean_head(h)), 1e-5, 1e6)
        dispersion = jnp.clip(jax.nn.softplus(self.dispersion_head(h)), 1e-4, 1e4)
        return {
            "mu": mean * size_factor,
            "theta": dispersion,
            "zi_logits": self.dropout_head(h),
            "mean": mean,
        }

    def loss(
        self,
        tensors: dict[str, jax.Array],
        inference_outputs: dict,
        generative_outputs: dict,
        target_p: jax.Array | None = None,
        gamma: float = 1.0,
    ):
        """ZINB negative log-likelihood (mean over genes), plus ``KL(p || q)`` with a target.

        Without ``target_p`` (pretraining) the loss is the ZINB term alone; with it (DEC
        phase) ``KL(p || q) + gamma * ZINB``, q computed from the noise-free encoding.
        """
        x = jnp.asarray(tensors[REGISTRY_KEYS.X_KEY], dtype=jnp.float32)
        g = generative_outputs
        zinb = -log_zinb_positive(x, g["mu"], g["theta"], g["zi_logits"]).mean(axis=-1)
        if target_p is None:
            return JaxLossOutput(
                loss=zinb.mean(), reconstruction_loss=zinb, n_obs_minibatch=x.shape[0]
            )
        if "q" in inference_outputs:
            q = inference_outputs["q"]
        else:
            batch = tensors.get(REGISTRY_KEYS.BATCH_KEY)
            z_clean = self._encode(inference_outputs["h"], batch, noisy=False)
            q = student_t_assignment(z_clean, self.cluster_centres, self.alpha)
        kl = (target_p * (jnp.log(jnp.clip(target_p, 1e-12)) - jnp.log(jnp.clip(q, 1e-12)))).sum(
            axis=-1
        )
        return JaxLossOutput(
            loss=kl.mean() + gamma * zinb.mean(),
            reconstruction_loss=gamma * zinb,
            kl_local=kl,
            n_obs_minibatch=x.shape[0],
        )


def deep_cluster_variables_from_torch(torch_module: Any) -> dict[str, dict[str, Any]]:
    """Flax variables of :class:`JaxDeepClusterModule` holding a torch module's weights.

    Returns ``{"params": ..., "batch_stats": ..., "buffers": ...}`` for ``module.apply``
    (``batch_stats`` only with BatchNorm); with them both modules compute the same outputs
    (see ``tests/test_deep_cluster_jax.py``).
    """
    encoder = noisy_mlp_to_flax(torch_module.encoder)
    decoder = noisy_mlp_to_flax(torch_module.decoder)
    params = {
        "encoder": encoder["params"],
        "decoder": decoder["params"],
        "mean_head": linear_to_flax(torch_module.mean_head),
        "dispersion_head": linear_to_flax(torch_module.dispersion_head),
        "dropout_head": linear_to_flax(torch_module.dropout_head),
        "cluster_centres": torch_module.cluster_centres.detach().cpu().numpy(),
    }
    variables: dict[str, Any] = {
        "params": params,
        BUFFERS: {
            "gene_mean": torch_module.gene_mean.cpu().numpy(),
            "gene_std": torch_module.gene_std.cpu().numpy(),
            "median_library": torch_module.median_library.cpu().numpy(),
        },
    }
    if encoder["batch_stats"] or decoder["batch_stats"]:
        variables["batch_stats"] = {
            "encoder": encoder["batch_stats"],
            "decoder": decoder["batch_stats"],
        }
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float32), variables)


__all__ = ["JaxDeepClusterModule", "deep_cluster_variables_from_torch", "student_t_assignment"]
