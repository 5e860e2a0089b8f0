"""The JAX training plan of the DEC phase of scDeepCluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scvi import REGISTRY_KEYS

from scneural.models._jax_base import ScneuralJaxTrainingPlan

from ._plan import DECScheduleMixin


def target_distribution_np(q: np.ndarray) -> np.ndarray:
    """DEC target ``p_ij = (q_ij² / f_j) / sum_j' (q_ij'² / f_j')`` with ``f_j = sum_i q_ij``."""
    q = np.asarray(q, dtype=np.float32)
    weight = q**2 / q.sum(axis=0, keepdims=True)
    return (weight / weight.sum(axis=1, keepdims=True)).astype(np.float32)


class JaxDECTrainingPlan(DECScheduleMixin, ScneuralJaxTrainingPlan):
    """Deep embedded clustering under JAX: ``KL(p || q) + gamma * ZINB``, jitted steps.

    The JAX twin of :class:`~scneural.models.deep_cluster.DECTrainingPlan` (same target
    schedule, :class:`~scneural.models.deep_cluster._plan.DECScheduleMixin`): every
    ``update_interval`` steps q of all cells is recomputed without noise, p derived from it,
    and training stops once fewer than ``tol`` of the labels change. Each step passes the
    minibatch's rows of p to the jitted training step of :class:`scvi.train.JaxTrainingPlan`.

    Parameters
    ----------
    module
        A :class:`JaxDeepClusterModule` with initialised cluster centres.
    soft_assign_all, initial_labels, update_interval, tol, gamma
        As in :class:`~scneural.models.deep_cluster.DECTrainingPlan`.
    **kwargs
        Passed to :class:`scvi.train.JaxTrainingPlan` (optimizer, ...).
    """

    def __init__(
        self,
        module: Any,
        *,
        soft_assign_all: Callable[[], np.ndarray],
        initial_labels: np.ndarray,
        update_interval: int | None,
        tol: float = 1e-3,
        gamma: float = 1.0,
        **kwargs,
    ):
        super().__init__(module, **kwargs)
        self._init_schedule(soft_assign_all, initial_labels, update_interval, tol, gamma)

    def _make_target(self, q: np.ndarray) -> np.ndarray:
        return target_distribution_np(q)

    def training_step(self, batch, batch_idx):
        idx = np.asarray(batch[REGISTRY_KEYS.INDICES_KEY]).reshape(-1).astype(np.int64)
        self.loss_kwargs.update({"target_p": self.target_p[idx], "gamma": self.gamma})
        return super().training_step(batch, batch_idx)
