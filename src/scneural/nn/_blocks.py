"""PyTorch building blocks shared by the models."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


class MLPBlock(nn.Sequential):
    """``Linear -> BatchNorm1d -> activation -> Dropout``, the block of every scneural MLP.

    Parameters
    ----------
    n_in, n_out
        Input and output widths.
    dropout_rate
        Dropout probability after the activation (0 disables it).
    use_batch_norm
        Whether to normalise the linear output with :class:`torch.nn.BatchNorm1d`.
    activation
        Activation module class (default :class:`torch.nn.ReLU`).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        dropout_rate: float = 0.0,
        use_batch_norm: bool = True,
        activation: type[nn.Module] = nn.ReLU,
    ):
        layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
        if use_batch_norm:
            # scvi-tools' momentum and eps, which train stably with small minibatches
            layers.append(nn.BatchNorm1d(n_out, momentum=0.01, eps=1e-3))
        layers.append(activation())
        if dropout_rate > 0:
            layers.append(nn.Dropout(dropout_rate))
        super().__init__(*layers)


class MLP(nn.Module):
    """A stack of :class:`MLPBlock` with optional one-hot covariates fed to every block.

    Parameters
    ----------
    n_in
        Input width.
    n_hidden
        Widths of the hidden layers; the output width is ``n_hidden[-1]``.
    n_cat
        Number of categories of a covariate (e.g. batch) whose one-hot code is
        concatenated to the input of every block; 0 for none.
    dropout_rate, use_batch_norm, activation
        See :class:`MLPBlock`.
    """

    def __init__(
        self,
        n_in: int,
        n_hidden: Sequence[int],
        *,
        n_cat: int = 0,
        dropout_rate: float = 0.0,
        use_batch_norm: bool = True,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        if len(n_hidden) == 0:
            raise ValueError("n_hidden must list at least one layer width")
        self.n_cat = n_cat
        widths = [n_in, *n_hidden]
        self.blocks = nn.ModuleList(
            MLPBlock(
                a + n_cat,
                b,
                dropout_rate=dropout_rate,
                use_batch_norm=use_batch_norm,
                activation=activation,
            )
            for a, b in itertools.pairwise(widths)
        )
        self.n_out = widths[-1]

    def forward(self, x: torch.Tensor, cat: torch.Tensor | None = None) -> torch.Tensor:
        """Run ``x`` through the blocks; ``cat`` holds category indices (n, 1) when ``n_cat``."""
        onehot = None
        if self.n_cat and cat is not None:
            onehot = nn.functional.one_hot(cat.long().view(-1), self.n_cat).to(x.dtype)
        for block in self.blocks:
            x = block(torch.cat([x, onehot], dim=-1) if onehot is not None else x)
        return x


def log_normalize(x: torch.Tensor, target_sum: float = 1e4) -> torch.Tensor:
    """Library-size normalisation to ``target_sum`` followed by ``log1p`` (scanpy's default)."""
    library = x.sum(dim=-1, keepdim=True).clamp(min=1.0)
    return torch.log1p(x / library * target_sum)
