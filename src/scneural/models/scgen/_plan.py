"""Training plan of scGen (PyTorch)."""

from __future__ import annotations

from scvi.train import TrainingPlan

from scneural.models._optim import FastAdamPlanMixin


class ScGenTrainingPlan(FastAdamPlanMixin, TrainingPlan):
    """:class:`scvi.train.TrainingPlan` whose Adam runs torch's fused kernel.

    Everything else, including the logged ELBO terms, is scvi-tools'. The fused step took
    training of the Kang et al. benchmark from about 1.05 to 0.87 s per epoch on one CPU
    thread (``docs/perturb_experiments.md``).
    """

    adam_implementation = "fused"
