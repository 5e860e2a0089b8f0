"""PyTorch module of scDeepCluster: ZINB denoising autoencoder with a clustering layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.distributions import ZeroInflatedNegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from scneural.nn import NoisyMLP


def student_t_assignment(
    z: torch.Tensor, centres: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """DEC soft assignment: ``q_ij ∝ (1 + ||z_i - mu_j||² / alpha)^(-(alpha + 1) / 2)``."""
    dist2 = torch.cdist(z, centres).pow(2)
    logits = -(alpha + 1.0) / 2.0 * torch.log1p(dist2 / alpha)
    return torch.softmax(logits, dim=-1)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC target ``p_ij = (q_ij² / f_j) / sum_j' (q_ij'² / f_j')`` with ``f_j = sum_i q_ij``."""
    weight = q.pow(2) / q.sum(dim=0, keepdim=True)
    return weight / weight.sum(dim=1, keepdim=True)


class DeepClusterModule(BaseModuleClass):
    """ZINB denoising autoencoder (scDeepCluster) with Student-t cluster centres.

    Reads raw counts. Inside the module, each cell's size factor is its library size over
    the median library size of the training cells, and the encoder input is
    ``(log1p(counts / size_factor) - gene_mean) / gene_std`` with the training cells' gene
    means and standard deviations (buffers set by the model). Gaussian noise is added to the
    input and the hidden layers in training. The decoder gives the ZINB mean (times the
    size factor), dispersion and dropout logits.

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
    """

    def __init__(
        self,
        n_input: int,
        *,
        n_batch: int = 0,
        n_hidden: Sequence[int] = (256, 64),
        n_latent: int = 32,
        n_clusters: int = 0,
        noise_sd: float = 2.5,
        hidden_noise_sd: float | None = None,
        alpha: float = 1.0,
        use_batch_norm: bool = False,
    ):
        super().__init__()
        self.n_input = n_input
        self.n_batch = n_batch
        self.n_latent = n_latent
        self.alpha = alpha
        n_cat = n_batch if n_batch > 1 else 0
        hidden_noise_sd = noise_sd if hidden_noise_sd is None else hidden_noise_sd
        self.encoder = NoisyMLP(
            n_input,
            list(n_hidden),
            n_latent,
            n_cat=n_cat,
            input_noise=noise_sd,
            hidden_noise=hidden_noise_sd,
            use_batch_norm=use_batch_norm,
        )
        self.decoder = NoisyMLP(
            n_latent, list(n_hidden)[::-1], n_cat=n_cat, use_batch_norm=use_batch_norm
        )
        n_dec = self.decoder.n_out
        self.mean_head = nn.Linear(n_dec, n_input)
        self.dispersion_head = nn.Linear(n_dec, n_input)
        self.dropout_head = nn.Linear(n_dec, n_input)
        self.cluster_centres = nn.Parameter(torch.zeros(n_clusters, n_latent))
        self.register_buffer("gene_mean", torch.zeros(n_input))
        self.register_buffer("gene_std", torch.ones(n_input))
        self.register_buffer("median_library", torch.ones(()))
        #: set by the clustering training plan: training steps also need the noise-free q
        self.clustering = False

    @property
    def n_clusters(self) -> int:
        """Number of cluster centres (0 before the clustering layer is initialised)."""
        return int(self.cluster_centres.shape[0])

    def set_normalization(
        self, gene_mean: torch.Tensor, gene_std: torch.Tensor, median_library: float
    ) -> None:
        """Store the training cells' per-gene statistics and median library size."""
        self.gene_mean.copy_(torch.as_tensor(gene_mean, dtype=torch.float32))
        self.gene_std.copy_(torch.as_tensor(gene_std, dtype=torch.float32))
        self.median_library.fill_(float(median_library))

    def set_cluster_centres(self, centres: torch.Tensor) -> None:
        """(Re)create the clustering layer with the given centres (k x n_latent)."""
        centres = torch.as_tensor(centres, dtype=torch.float32)
        device = self.gene_mean.device
        self.cluster_centres = nn.Parameter(centres.clone().to(device))

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    @auto_move_data
    def inference(self, x: torch.Tensor, batch_index: torch.Tensor | None = None) -> dict:
        """Size factors, noisy latent (training), noise-free latent and soft assignment q."""
        library = x.sum(dim=-1, keepdim=True).clamp(min=1.0)
        size_factor = library / self.median_library
        h = (torch.log1p(x / size_factor) - self.gene_mean) / self.gene_std
        out = {"size_factor": size_factor}
        if self.training:
            out["z"] = self.encoder(h, batch_index, noisy=True)
            if self.clustering:
                out["z_clean"] = self.encoder(h, batch_index, noisy=False)
        else:
            out["z"] = out["z_clean"] = self.encoder(h, batch_index, noisy=False)
        if "z_clean" in out and self.n_clusters > 0:
            out["q"] = student_t_assignment(out["z_clean"], self.cluster_centres, self.alpha)
        return out

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {
            "z": inference_outputs["z"],
            "size_factor": inference_outputs["size_factor"],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    @auto_move_data
    def generative(
        self, z: torch.Tensor, size_factor: torch.Tensor, batch_index: torch.Tensor | None = None
    ) -> dict:
        """ZINB parameters: mean (scaled by the size factor), dispersion and dropout logits."""
        h = self.decoder(z, batch_index, noisy=False)
        mean = torch.clamp(torch.exp(self.mean_head(h)), 1e-5, 1e6)
        dispersion = torch.clamp(F.softplus(self.dispersion_head(h)), 1e-4, 1e4)
        dropout_logits = self.dropout_head(h)
        return {
            "px": ZeroInflatedNegativeBinomial(
                mu=mean * size_factor, theta=dispersion, zi_logits=dropout_logits
            ),
            "mean": mean,
        }

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        target_p: torch.Tensor | None = None,
        gamma: float = 1.0,
    ) -> LossOutput:
        """ZINB negative log-likelihood (mean over genes), plus ``KL(p || q)`` with a target.

        Without ``target_p`` (pretraining) the loss is the ZINB term alone; with it (DEC
        phase) the loss is ``KL(p || q) + gamma * ZINB``.
        """
        x = tensors[REGISTRY_KEYS.X_KEY]
        zinb = -generative_outputs["px"].log_prob(x).mean(dim=-1)
        if target_p is None:
            return LossOutput(
                loss=zinb.mean(), reconstruction_loss=zinb, n_obs_minibatch=x.shape[0]
            )
        q = inference_outputs["q"]
        kl = (
            target_p * (torch.log(target_p.clamp(min=1e-12)) - torch.log(q.clamp(min=1e-12)))
        ).sum(dim=-1)
        return LossOutput(
            loss=kl.mean() + gamma * zinb.mean(),
            reconstruction_loss=gamma * zinb,
            kl_local=kl,
            n_obs_minibatch=x.shape[0],
        )

    @torch.inference_mode()
    def sample(self, tensors: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        """Sample counts from the ZINB of each cell (noise-free encoding)."""
        was_training = self.training
        self.eval()
        _, generative_outputs = self.forward(tensors, compute_loss=False)
        self.train(was_training)
        return generative_outputs["px"].sample()
