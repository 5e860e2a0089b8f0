"""Training plan of the CNN that learns the tissue's expression from its image."""

from __future__ import annotations

from scvi.train import TrainingPlan

from scneural.models._metrics_plan import ExtraMetricsPlanMixin


class ImageExpressionTrainingPlan(ExtraMetricsPlanMixin, TrainingPlan):
    """:class:`scvi.train.TrainingPlan` that logs the regression's own metrics
    (``train_loss``, ``validation_loss``, ``r2_train``, ``r2_validation``), without
    scvi-tools' ELBO terms (:class:`~scneural.models._metrics_plan.ExtraMetricsPlanMixin`)."""
