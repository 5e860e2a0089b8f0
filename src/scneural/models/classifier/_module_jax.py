"""JAX/flax module of the cell-type classifier, twin of :class:`ClassifierModule`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from scvi import REGISTRY_KEYS

from scneural.models._jax import JaxLossOutput, flax_configure
from scneural.models._jax_base import ScneuralJaxModule
from scneural.nn._blocks_jax import Dense, FlaxMLP, linear_to_flax, log_normalize, mlp_to_flax


@flax_configure
class JaxClassifierModule(ScneuralJaxModule):
    """MLP classifier ``(Dense -> BatchNorm -> ReLU -> Dropout) x k -> Dense`` in flax.

    Same arguments, layers and loss as :class:`~scneural.models.ClassifierModule`; the RNG
    streams are ``"params"`` (initialisation) and ``"dropout"``, both split from
    ``scvi.settings.seed`` when the module is built.

    Parameters
    ----------
    n_input
        Number of input features.
    n_labels
        Number of classes.
    n_batch
        Number of batches; their one-hot code is fed to every hidden block (0: none).
    n_hidden
        Widths of the hidden layers; the last one is the embedding.
    dropout_rate
        Dropout after every hidden block.
    log_normalize_input
        Whether the input holds raw counts to be library-size normalised and log1p-transformed.
    class_weights
        Per-class weights of the cross-entropy (``None``: all 1).
    unlabeled_index
        Code of the "unlabeled" category; those cells are excluded from the loss.
    label_smoothing
        Label smoothing of the cross-entropy.
    training
        Train mode (batch statistics, dropout); switched by ``train()``/``eval()``.
    """

    n_input: int
    n_labels: int
    n_batch: int = 0
    n_hidden: tuple[int, ...] = (512, 256, 128)
    dropout_rate: float = 0.2
    log_normalize_input: bool = False
    class_weights: tuple[float, ...] | None = None
    unlabeled_index: int | None = None
    label_smoothing: float = 0.0
    training: bool = True

    def setup(self):
        """Build the encoder MLP and the output layer."""
        self.encoder = FlaxMLP(
            n_hidden=tuple(self.n_hidden),
            n_cat=self.n_batch if self.n_batch > 1 else 0,
            dropout_rate=self.dropout_rate,
        )
        self.classifier = Dense(self.n_labels)

    @property
    def required_rngs(self) -> tuple[str, ...]:
        return ("params", "dropout")

    def _get_inference_input(self, tensors: dict[str, jax.Array], **kwargs) -> dict:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    def inference(self, x: jax.Array, batch_index: jax.Array | None = None) -> dict:
        """Embedding (last hidden layer) and class logits."""
        x = jnp.asarray(x, dtype=jnp.float32)
        if self.log_normalize_input:
            x = log_normalize(x)
        embedding = self.encoder(x, batch_index, training=self.training)
        return {"embedding": embedding, "logits": self.classifier(embedding)}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {}

    def generative(self, **kwargs) -> dict:
        """A classifier generates nothing."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs):
        """Weighted, optionally smoothed cross-entropy over the labelled cells.

        Matches :func:`torch.nn.functional.cross_entropy` with ``weight`` and
        ``label_smoothing``: the sum over labelled cells of
        ``(1 - s) w_y (-log p_y) + s/C sum_c w_c (-log p_c)`` divided by the sum of ``w_y``.
        """
        logits = inference_outputs["logits"]
        labels = jnp.asarray(tensors[REGISTRY_KEYS.LABELS_KEY]).reshape(-1).astype(jnp.int32)
        n = labels.shape[0]
        if self.unlabeled_index is None:
            labelled = jnp.ones((n,), dtype=bool)
        else:
            labelled = labels != self.unlabeled_index
        safe = jnp.where(labelled, labels, 0)
        weights = (
            jnp.ones((self.n_labels,), logits.dtype)
            if self.class_weights is None
            else jnp.asarray(self.class_weights, dtype=logits.dtype)
        )
        log_p = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(log_p, safe[:, None], axis=-1)[:, 0]
        w_y = weights[safe] * labelled
        per_cell = (1.0 - self.label_smoothing) * w_y * nll
        if self.label_smoothing:
            smooth = -(log_p * weights).sum(-1) / self.n_labels
            per_cell = per_cell + self.label_smoothing * smooth * labelled
        n_labelled = labelled.sum()
        ce = jnp.where(n_labelled > 0, per_cell.sum() / jnp.maximum(w_y.sum(), 1e-12), 0.0)
        correct = (logits.argmax(-1) == labels) & labelled
        accuracy = jnp.where(n_labelled > 0, correct.sum() / jnp.maximum(n_labelled, 1), jnp.nan)
        return JaxLossOutput(
            loss=ce,
            reconstruction_loss=jnp.broadcast_to(jax.lax.stop_gradient(ce), (n,)),
            extra_metrics={"accuracy": accuracy},
        )


def classifier_variables_from_torch(torch_module: Any) -> dict[str, dict[str, Any]]:
    """Flax variables of :class:`JaxClassifierModule` holding a torch ClassifierModule's weights.

    Returns ``{"params": ..., "batch_stats": ...}`` for ``module.apply``; with them the two
    modules compute the same outputs (see ``tests/test_classify_jax.py``).
    """
    encoder = mlp_to_flax(torch_module.encoder)
    params = {
        "encoder": encoder["params"],
        "classifier": linear_to_flax(torch_module.classifier),
    }
    batch_stats = {"encoder": encoder["batch_stats"]}
    return jax.tree_util.tree_map(jnp.asarray, {"params": params, "batch_stats": batch_stats})


__all__ = ["JaxClassifierModule", "classifier_variables_from_torch"]
