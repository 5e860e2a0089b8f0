"""Adam for scvi-tools' :class:`~scvi.train.TrainingPlan` with torch's faster kernels."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from lightning.pytorch.plugins.precision import MixedPrecision


class FastAdamPlanMixin:
    """Build scvi-tools' ``"Adam"``/``"AdamW"`` optimizers with a faster torch kernel.

    Mix in before :class:`scvi.train.TrainingPlan`. The optimizer and its arguments (``lr``,
    ``eps``, ``weight_decay``) are scvi-tools'; only the implementation changes. On CPU,
    torch uses the per-parameter loop unless told otherwise: ``"foreach"`` batches the
    parameters (about 3x faster optimizer steps for the classifier), and ``"fused"`` runs one
    kernel (about 15% less training time for scGen on one CPU thread). Both also run on GPUs.
    Under Lightning's mixed precision, ``"fused"`` falls back to ``"foreach"``: Lightning
    cannot clip the gradients of a fused optimizer there. Other optimizer choices
    (``"Custom"``) are left to scvi-tools.
    """

    adam_implementation: ClassVar[Literal["foreach", "fused"]] = "foreach"

    def get_optimizer_creator(self):
        """Adam/AdamW as in scvi-tools, with :attr:`adam_implementation` switched on."""
        optimizers = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}
        if self.optimizer_name not in optimizers:
            return super().get_optimizer_creator()
        optimizer_cls = optimizers[self.optimizer_name]
        implementation = {self._adam_kernel(): True}
        return lambda params: optimizer_cls(
            params, lr=self.lr, eps=self.eps, weight_decay=self.weight_decay, **implementation
        )

    def _adam_kernel(self) -> str:
        trainer = getattr(self, "_trainer", None)
        mixed = trainer is not None and isinstance(trainer.precision_plugin, MixedPrecision)
        return "foreach" if mixed else self.adam_implementation
