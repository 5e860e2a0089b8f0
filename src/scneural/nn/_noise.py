"""Noisy building blocks: Gaussian noise layers and the denoising encoder built from them."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


class GaussianNoise(nn.Module):
    """Add ``N(0, sigma^2)`` noise in training mode only (Keras' ``GaussianNoise``).

    Parameters
    ----------
    sigma
        Standard deviation of the noise; 0 makes the layer the identity.
    """

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor, noisy: bool | None = None) -> torch.Tensor:
        """``x`` plus noise when ``noisy`` (default: when the module is in training mode)."""
        noisy = self.training if noisy is None else noisy
        if not noisy or self.sigma == 0:
            return x
        # randn, not randn_like: randn_like follows x's memory layout, so a column-major
        # minibatch (rows of a CSC matrix) would draw other noise than the same cells in CSR
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device)
        return x + noise * self.sigma

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class NoisyMLP(nn.Module):
    """Denoising encoder: noise on the input and on every hidden layer before its activation.

    ``x -> noise -> [Linear -> (BatchNorm) -> noise -> activation] x k -> Linear`` (the
    stacked denoising autoencoder of DCA/scDeepCluster). With ``n_out=None`` the last
    hidden layer is the output. The noise is only added when asked (``noisy=True``) or, by
    default, in training mode.

    Parameters
    ----------
    n_in
        Input width.
    n_hidden
        Widths of the hidden layers.
    n_out
        Width of a final linear layer without noise or activation (``None``: none).
    n_cat
        Number of categories of a covariate (e.g. batch) whose one-hot code is concatenated
        to the input of every layer; 0 for none.
    input_noise, hidden_noise
        Standard deviations of the Gaussian noise on the input and the hidden layers.
    use_batch_norm
        Normalise each hidden linear output with :class:`torch.nn.BatchNorm1d`.
    activation
        Activation module class (default :class:`torch.nn.ReLU`).
    """

    def __init__(
        self,
        n_in: int,
        n_hidden: Sequence[int],
        n_out: int | None = None,
        *,
        n_cat: int = 0,
        input_noise: float = 0.0,
        hidden_noise: float = 0.0,
        use_batch_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.n_cat = n_cat
        self.input_noise = GaussianNoise(input_noise)
        widths = [n_in, *n_hidden]
        self.linears = nn.ModuleList(nn.Linear(a + n_cat, b) for a, b in itertools.pairwise(widths))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(b, momentum=0.01, eps=1e-3) if use_batch_norm else nn.Identity()
            for b in n_hidden
        )
        self.noises = nn.ModuleList(GaussianNoise(hidden_noise) for _ in n_hidden)
        self.activation = activation()
        self.output = nn.Linear(widths[-1] + n_cat, n_out) if n_out is not None else None
        self.n_out = n_out if n_out is not None else widths[-1]

    def forward(
        self, x: torch.Tensor, cat: torch.Tensor | None = None, *, noisy: bool | None = None
    ) -> torch.Tensor:
        """Encode ``x``; ``cat`` holds category indices (n, 1) when ``n_cat``."""
        onehot = None
        if self.n_cat and cat is not None:
            onehot = nn.functional.one_hot(cat.long().view(-1), self.n_cat).to(x.dtype)

        def with_cat(h: torch.Tensor) -> torch.Tensor:
            return torch.cat([h, onehot], dim=-1) if onehot is not None else h

        h = self.input_noise(x, noisy)
        for linear, norm, noise in zip(self.linears, self.norms, self.noises):
            h = self.activation(noise(norm(linear(with_cat(h))), noisy))
        if self.output is not None:
            h = self.output(with_cat(h))
        return h
