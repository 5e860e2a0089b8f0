"""PyTorch module of the cell-type classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from scneural.nn import MLP, log_normalize


class ClassifierModule(BaseModuleClass):
    """MLP classifier: ``(Linear -> BatchNorm -> ReLU -> Dropout) x k -> Linear``.

    Parameters
    ----------
    n_input
        Number of input features (genes or dimensions of a representation).
    n_labels
        Number of classes.
    n_batch
        Number of batches; their one-hot code is fed to every hidden block (0: none).
    n_hidden
        Widths of the hidden layers; the last one is the embedding ``X_{key}``.
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
    """

    def __init__(
        self,
        n_input: int,
        n_labels: int,
        *,
        n_batch: int = 0,
        n_hidden: Sequence[int] = (512, 256, 128),
        dropout_rate: float = 0.2,
        log_normalize_input: bool = False,
        class_weights: Sequence[float] | None = None,
        unlabeled_index: int | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.n_labels = n_labels
        self.n_batch = n_batch
        self.log_normalize_input = log_normalize_input
        self.unlabeled_index = unlabeled_index
        self.label_smoothing = label_smoothing
        self.encoder = MLP(
            n_input, list(n_hidden), n_cat=n_batch if n_batch > 1 else 0, dropout_rate=dropout_rate
        )
        self.classifier = nn.Linear(self.encoder.n_out, n_labels)
        weights = torch.ones(n_labels) if class_weights is None else torch.tensor(class_weights)
        self.register_buffer("class_weights", weights.float())

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    @auto_move_data
    def inference(self, x: torch.Tensor, batch_index: torch.Tensor | None = None) -> dict:
        """Embedding (last hidden layer) and class logits."""
        if self.log_normalize_input:
            x = log_normalize(x)
        embedding = self.encoder(x, batch_index)
        return {"embedding": embedding, "logits": self.classifier(embedding)}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {}

    def generative(self, **kwargs) -> dict:
        """A classifier generates nothing."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """Weighted cross-entropy over the labelled cells of the minibatch."""
        logits = inference_outputs["logits"]
        labels = tensors[REGISTRY_KEYS.LABELS_KEY].long().view(-1)
        labelled = torch.ones_like(labels, dtype=torch.bool)
        if self.unlabeled_index is not None:
            labelled = labels != self.unlabeled_index
        n = labels.shape[0]
        if labelled.any():
            ce = F.cross_entropy(
                logits[labelled],
                labels[labelled],
                weight=self.class_weights,
                label_smoothing=self.label_smoothing,
            )
            accuracy = (logits[labelled].argmax(-1) == labels[labelled]).float().mean()
        else:
            ce = logits.sum() * 0.0
            accuracy = torch.tensor(float("nan"), device=logits.device)
        return LossOutput(
            loss=ce,
            reconstruction_loss=ce.detach().expand(n),
            n_obs_minibatch=n,
            extra_metrics={"accuracy": accuracy},
        )

    @torch.inference_mode()
    def sample(self, tensors: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        """Sample class labels from the predicted class probabilities."""
        logits = self.inference(**self._get_inference_input(tensors))["logits"]
        return torch.distributions.Categorical(logits=logits).sample()
