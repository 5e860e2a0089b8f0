"""The Lightning training plan of the DEC phase of scDeepCluster."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scvi import REGISTRY_KEYS
from scvi.train import TrainingPlan

from ._module import DeepClusterModule, target_distribution


class DECScheduleMixin:
    """The DEC target schedule, shared by the torch and JAX training plans.

    Every ``update_interval`` training steps the soft assignment q of all cells is
    recomputed by ``soft_assign_all`` and the target p derived from it (``_make_target``,
    backend-specific); training stops when fewer than ``tol`` of the hard labels changed
    since the previous update. ``update_interval=None`` is one epoch: the training
    minibatches of one process, which on several devices (DDP) batches only its share of
    the cells.
    """

    def _init_schedule(
        self,
        soft_assign_all: Callable[[], np.ndarray],
        initial_labels: np.ndarray,
        update_interval: int | None,
        tol: float,
        gamma: float,
    ) -> None:
        self.soft_assign_all = soft_assign_all
        self.update_interval = None if update_interval is None else max(int(update_interval), 1)
        self.tol = float(tol)
        self.gamma = float(gamma)
        self.labels = np.asarray(initial_labels)
        self.label_change: list[float] = []
        self.update_steps: list[int] = []
        self.converged = False
        self.target_p = None

    def _update_target(self) -> bool:
        """Refresh p from q over all cells; return whether the labels have converged."""
        q = self.soft_assign_all()
        self.module.train()
        self.target_p = self._make_target(q)
        labels = q.argmax(axis=1)
        change = float(np.mean(labels != self.labels))
        self.labels = labels
        self.label_change.append(change)
        self.update_steps.append(int(self.global_step))
        return len(self.label_change) > 1 and change < self.tol

    def on_train_batch_start(self, batch, batch_idx):
        if self.update_interval is None:
            self.update_interval = max(int(self.trainer.num_training_batches), 1)
        if self.global_step % self.update_interval == 0 or self.target_p is None:
            # the processes of DDP stop together (one that stopped alone would leave the
            # others waiting), also where their q differs in the last digits (GPUs)
            if self.trainer.strategy.reduce_boolean_decision(self._update_target(), all=False):
                self.converged = True
                self.trainer.should_stop = True
                return -1
        return None


class DECTrainingPlan(DECScheduleMixin, TrainingPlan):
    """Deep embedded clustering: ``KL(p || q) + gamma * ZINB`` with a periodically refreshed p.

    Every ``update_interval`` training steps, the soft assignment q of *all* cells is
    recomputed (in batches, without noise) by ``soft_assign_all``; the target p is derived
    from it, and training stops when fewer than ``tol`` of the hard labels changed since the
    previous update. The fractions of changed labels are kept in ``label_change``.

    Parameters
    ----------
    module
        A :class:`DeepClusterModule` with initialised cluster centres.
    soft_assign_all
        Returns q of every training cell (n_cells x k, numpy), indexed like the cells'
        registered indices.
    initial_labels
        Hard labels before the first update (the k-means initialisation).
    update_interval
        Training steps between two target updates (``None``: one epoch).
    tol
        Stop when the fraction of labels changed between two updates is below this.
    gamma
        Weight of the ZINB term.
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan` (optimizer, lr, ...).
    """

    def __init__(
        self,
        module: DeepClusterModule,
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

    def on_train_start(self) -> None:
        self.module.clustering = True

    def get_extra_state(self) -> dict:
        """The schedule's record, kept in the plan's state dict: with
        ``strategy="ddp_fork"`` (Lightning's choice in a notebook) or ``"ddp_spawn"``,
        training runs in other processes and Lightning brings back only rank 0's state dict."""
        return {
            "label_change": list(self.label_change),
            "update_steps": list(self.update_steps),
            "converged": bool(self.converged),
        }

    def set_extra_state(self, state: dict) -> None:
        self.label_change = list(state["label_change"])
        self.update_steps = list(state["update_steps"])
        self.converged = bool(state["converged"])

    def on_train_end(self) -> None:
        self.module.clustering = False

    def _make_target(self, q: np.ndarray) -> torch.Tensor:
        q_t = torch.from_numpy(np.asarray(q, dtype=np.float32)).to(self.device)
        return target_distribution(q_t)

    def training_step(self, batch, batch_idx):
        idx = batch[REGISTRY_KEYS.INDICES_KEY].long().view(-1).to(self.target_p.device)
        self.loss_kwargs.update({"target_p": self.target_p[idx], "gamma": self.gamma})
        _, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self.log("train_loss", loss_output.loss, on_step=False, on_epoch=True, prog_bar=True)
        self.compute_and_log_metrics(loss_output, self.train_metrics, "train")
        return loss_output.loss
