"""Training plan of the cell-type classifier."""

from __future__ import annotations

from scvi.train import TrainingPlan

from scneural.models._metrics_plan import ExtraMetricsPlanMixin
from scneural.models._optim import FastAdamPlanMixin


class ClassifierTrainingPlan(ExtraMetricsPlanMixin, FastAdamPlanMixin, TrainingPlan):
    """:class:`scvi.train.TrainingPlan` that logs only the classifier's own metrics.

    ``train_loss``/``validation_loss`` and the module's ``accuracy_train`` and
    ``accuracy_validation``, without scvi-tools' ELBO terms
    (:class:`~scneural.models._metrics_plan.ExtraMetricsPlanMixin`).

    Adam/AdamW use torch's multi-tensor (``foreach``) implementation
    (:class:`~scneural.models._optim.FastAdamPlanMixin`); on CPU it made the optimiser step
    about 3x faster here.
    """

    adam_implementation = "foreach"
