"""PyTorch module of the expression-supervised image CNN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

PATCHES_KEY = "patches"

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def augment_patches(x: torch.Tensor, *, jitter: float = 0.2, shift: float = 0.125) -> torch.Tensor:
    """Random shifts, flips, 90-degree rotations and colour jitter, drawn per patch.

    ``x`` is ``(n, 3, s, s)`` in ``[0, 1]``. Shifts (up to ``shift * s`` pixels, the border
    reflected) move the spot slightly within its patch; flips and rotations keep the
    tissue's appearance (an H&E patch has no orientation); colour jitter (brightness,
    contrast, saturation, hue of torchvision's ``ColorJitter``) mimics staining differences.
    """
    from torchvision.transforms import v2

    n, size = x.shape[0], x.shape[-1]
    pad = round(shift * size)
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        offsets = torch.randint(0, 2 * pad + 1, (n, 2))
        x = torch.stack(
            [
                padded[i, :, dy : dy + size, dx : dx + size]
                for i, (dy, dx) in enumerate(offsets.tolist())
            ]
        )
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    k = torch.randint(0, 4, (n,), device=x.device)
    rotated = torch.stack([torch.rot90(x, r, dims=(-2, -1)) for r in range(4)])
    x = rotated[k, torch.arange(n, device=x.device)]
    if jitter > 0:
        color = v2.ColorJitter(
            brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter / 4, 0.5)
        )
        x = torch.stack([color(patch) for patch in x])
    return x.clamp(0.0, 1.0)


class ImageExpressionModule(BaseModuleClass):
    """Compact CNN that predicts a spot's expression PCs from its image patch.

    ``(Conv3x3 -> BatchNorm -> ReLU -> MaxPool2) x k -> global average and max pool``
    gives the penultimate layer (the image features, ``2 * n_latent`` of them: how much and
    how strongly each learned pattern occurs); ``Dropout -> Linear`` predicts the
    standardised expression PCs, trained with the mean squared error.

    Parameters
    ----------
    n_targets
        Number of expression PCs predicted.
    input_size
        Side of the square uint8 RGB patches (stored flattened, ``s * s * 3`` values).
    n_channels
        Channels of the convolutional blocks before the last one.
    n_latent
        Channels of the last convolutional block (each gives an average- and a max-pooled
        feature).
    dropout_rate
        Dropout on the features before the linear head during training.
    augment
        Random flips, rotations and colour jitter of the patches during training.
    jitter
        Strength of the colour jitter.
    """

    def __init__(
        self,
        n_targets: int,
        input_size: int,
        *,
        n_channels: Sequence[int] = (32, 64, 128),
        n_latent: int = 128,
        dropout_rate: float = 0.1,
        augment: bool = True,
        jitter: float = 0.2,
    ):
        super().__init__()
        self.input_size = int(input_size)
        self.augment = augment
        self.jitter = jitter
        blocks: list[nn.Module] = []
        n_in = 3
        for n_out in [*n_channels, n_latent]:
            blocks += [
                nn.Conv2d(n_in, n_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(n_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            n_in = n_out
        self.conv = nn.Sequential(*blocks)
        self.n_features = 2 * n_latent
        self.head = nn.Sequential(nn.Dropout(dropout_rate), nn.Linear(self.n_features, n_targets))
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def to_images(self, patches: torch.Tensor) -> torch.Tensor:
        """Flattened (or ``(n, s, s, 3)``) 0-255 patches to ``(n, 3, s, s)`` floats in [0, 1]."""
        s = self.input_size
        return patches.reshape(-1, s, s, 3).permute(0, 3, 1, 2).float() / 255.0

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {"patches": tensors[PATCHES_KEY]}

    @auto_move_data
    def inference(self, patches: torch.Tensor) -> dict:
        """Embedding (image features) and predicted expression PCs of the patches."""
        x = self.to_images(patches)
        if self.training and self.augment:
            x = augment_patches(x, jitter=self.jitter)
        x = (x - self.mean) / self.std
        maps = self.conv(x)
        embedding = torch.cat([maps.mean(dim=(-2, -1)), maps.amax(dim=(-2, -1))], dim=1)
        return {"embedding": embedding, "prediction": self.head(embedding)}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {}

    def generative(self, **kwargs) -> dict:
        """The CNN generates nothing; it regresses."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """Mean squared error between predicted and observed (standardised) expression PCs."""
        target = tensors[REGISTRY_KEYS.X_KEY].float()
        prediction = inference_outputs["prediction"]
        per_spot = F.mse_loss(prediction, target, reduction="none").mean(-1)
        loss = per_spot.mean()
        total = ((target - target.mean(0)) ** 2).mean()
        r2 = 1.0 - loss.detach() / total.clamp_min(1e-8)
        return LossOutput(
            loss=loss,
            reconstruction_loss=per_spot.detach(),
            n_obs_minibatch=target.shape[0],
            extra_metrics={"r2": r2},
        )
