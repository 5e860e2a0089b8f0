"""Metric logging of scneural's training plans that have no ELBO."""

from __future__ import annotations

import torch
from scvi.module.base import LossOutput


class ExtraMetricsPlanMixin:
    """Log only the module's extra metrics, per epoch, instead of scvi-tools' ELBO terms.

    Mix in before :class:`scvi.train.TrainingPlan` for modules that have no ELBO (a
    classifier, a regression): scvi-tools' plan also updates and logs ELBO ``torchmetrics``
    objects at every step, which models without an ELBO drop from their history anyway, and
    which cost about as much CPU per step as the classifier's network on a few thousand
    genes. ``train_loss``/``validation_loss`` are logged by the parent as before; the
    module's ``extra_metrics`` (e.g. ``accuracy``) become ``{name}_train`` and
    ``{name}_validation``.

    Logged under ``no_grad``, not inference mode (scvi-tools' choice): tensors logged in
    inference mode cannot be averaged across processes by Lightning's gloo backend, so
    training on several CPU processes (DDP) failed.
    """

    @torch.no_grad()
    def compute_and_log_metrics(self, loss_output: LossOutput, metrics: dict, mode: str) -> None:
        """Log the extra metrics of ``loss_output`` as ``{name}_{mode}``, averaged per epoch."""
        for key, value in (loss_output.extra_metrics or {}).items():
            if isinstance(value, torch.Tensor):
                if value.dim() != 0:
                    continue
                value = value.detach()
            self.log(
                f"{key}_{mode}",
                value,
                on_step=self.on_step,
                on_epoch=self.on_epoch,
                batch_size=loss_output.n_obs_minibatch,
                sync_dist=self.use_sync_dist,
            )
