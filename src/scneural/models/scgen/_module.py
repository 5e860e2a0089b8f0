"""PyTorch module of scGen: a Gaussian VAE on log-normalised expression."""

from __future__ import annotations

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn
from torch.distributions import Normal, kl_divergence

from scneural.nn import MLP


class ScGenModule(BaseModuleClass):
    """scGen's VAE (Lotfollahi et al. 2019).

    Encoder ``(Linear -> BatchNorm -> LeakyReLU -> Dropout) x n_layers`` to the mean and
    log-variance of a diagonal Gaussian ``q(z|x)``; decoder of the same shape from ``z`` to
    a linear output layer. The loss is the squared error summed over genes plus
    ``kl_weight`` times the KL divergence to ``N(0, I)``, both averaged over the cells of a
    minibatch (so the loss does not depend on the batch size).

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
    """

    def __init__(
        self,
        n_input: int,
        *,
        n_hidden: int = 800,
        n_latent: int = 100,
        n_layers: int = 2,
        dropout_rate: float = 0.2,
        kl_weight: float = 5e-5,
        use_batch_norm: bool = True,
    ):
        super().__init__()
        self.n_input = n_input
        self.n_latent = n_latent
        self.kl_weight = kl_weight
        hidden = [n_hidden] * n_layers
        block = {
            "dropout_rate": dropout_rate,
            "use_batch_norm": use_batch_norm,
            "activation": nn.LeakyReLU,
        }
        self.encoder = MLP(n_input, hidden, **block)
        self.z_mean = nn.Linear(n_hidden, n_latent)
        self.z_logvar = nn.Linear(n_hidden, n_latent)
        self.decoder = MLP(n_latent, hidden, **block)
        self.px = nn.Linear(n_hidden, n_input)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    @auto_move_data
    def inference(self, x: torch.Tensor, n_samples: int = 1) -> dict:
        """Posterior mean ``qz_m``, variance ``qz_v`` and a reparameterised sample ``z``."""
        hidden = self.encoder(x)
        qz_m = self.z_mean(hidden)
        qz_v = torch.exp(self.z_logvar(hidden).clamp(-15.0, 15.0)) + 1e-4
        z = Normal(qz_m, qz_v.sqrt(), validate_args=False).rsample()
        return {"z": z, "qz_m": qz_m, "qz_v": qz_v}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def generative(self, z: torch.Tensor) -> dict:
        """Decoded expression ``px`` (log-normalised scale)."""
        return {"px": self.px(self.decoder(z))}

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """Squared error summed over genes + ``kl_weight`` x KL, averaged over cells.

        The training plan's annealed ``kl_weight`` (a VAE default for counts) is ignored:
        scGen uses a fixed small weight, the module's ``kl_weight``.
        """
        x = tensors[REGISTRY_KEYS.X_KEY]
        reconstruction = ((x - generative_outputs["px"]) ** 2).sum(dim=-1)
        kl = kl_divergence(
            Normal(
                inference_outputs["qz_m"], inference_outputs["qz_v"].sqrt(), validate_args=False
            ),
            Normal(torch.zeros_like(inference_outputs["qz_m"]), 1.0),
        ).sum(dim=-1)
        loss = (reconstruction + self.kl_weight * kl).mean()
        return LossOutput(loss=loss, reconstruction_loss=reconstruction, kl_local=kl)

    @torch.inference_mode()
    def sample(self, tensors: dict[str, torch.Tensor], n_samples: int = 1) -> torch.Tensor:
        """Decoded expression of posterior samples, ``(n_cells, n_genes)`` per sample."""
        inference = self.inference(**self._get_inference_input(tensors))
        return self.generative(inference["z"])["px"]

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Expression decoded from latent points (the module must be in eval mode)."""
        return self.generative(z)["px"]
