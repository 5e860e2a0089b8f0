"""The scvi-tools model of scDeepCluster (Tian et al. 2019)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from anndata import AnnData
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField, NumericalObsField
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainingPlan, TrainRunner

from scneural._docs import doc_params
from scneural._validation import (
    check_finite_output,
    check_optional_int,
    check_plan_kwargs,
    check_plan_settings,
    check_positive_int,
    diverged_fix,
)
from scneural.models._base import (
    ScneuralModelMixin,
    SingleCellSafeDataSplitter,
    build_logger,
    distributed_trainer_kwargs,
    records_training,
    with_obs,
)

from ._kmeans import (
    Geometry,
    check_geometry,
    check_start_labels,
    kmeans_init,
    start_label_centres,
)
from ._module import DeepClusterModule
from ._plan import DECTrainingPlan

logger = logging.getLogger(__name__)

INDICES_COLUMN = "_indices"
_CHUNK = 4096


def normalization_stats(X: Any, chunk: int = _CHUNK) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-gene mean and standard deviation of ``log1p(counts / size_factor)`` and the median
    library size, computed in row chunks (a sparse ``X`` is never densified).

    The size factor of a cell is its library size over the median library size (scanpy's
    ``normalize_per_cell`` as used by scDeepCluster).
    """
    n_obs, n_vars = X.shape
    library = np.empty(n_obs, dtype=np.float64)
    for start in range(0, n_obs, chunk):
        block = X[start : start + chunk]
        library[start : start + chunk] = np.asarray(block.sum(axis=1)).ravel()
    median = float(np.median(library[library > 0])) if np.any(library > 0) else 1.0
    size_factor = np.clip(library, 1.0, None) / median
    total = np.zeros(n_vars)
    total_sq = np.zeros(n_vars)
    for start in range(0, n_obs, chunk):
        block = X[start : start + chunk]
        scale = 1.0 / size_factor[start : start + chunk]
        if sparse.issparse(block):
            block = sparse.csr_matrix(block, dtype=np.float64)
            block = sparse.diags(scale) @ block
            block.data = np.log1p(block.data)
            total += np.asarray(block.sum(axis=0)).ravel()
            total_sq += np.asarray(block.multiply(block).sum(axis=0)).ravel()
        else:
            block = np.log1p(np.asarray(block, dtype=np.float64) * scale[:, None])
            total += block.sum(axis=0)
            total_sq += (block**2).sum(axis=0)
    mean = total / n_obs
    var = np.clip(total_sq / n_obs - mean**2, 0.0, None) * n_obs / max(n_obs - 1, 1)
    std = np.sqrt(var)
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32), median


#: the constructor parameters shared by the torch and JAX models (docstrings)
DEEP_CLUSTER_PARAMS = """\
adata
    AnnData with raw counts, registered with :meth:`setup_anndata`.
n_clusters
    Number of clusters; ``None`` estimates it in :meth:`init_clusters`.
n_hidden
    Widths of the encoder's hidden layers (the decoder mirrors them).
n_latent
    Dimension of the latent space.
noise_sd
    Standard deviation of the Gaussian noise on the scaled input.
hidden_noise_sd
    Standard deviation of the noise on the hidden layers (``None``: ``noise_sd``).
alpha
    Degrees of freedom of the Student-t kernel.
use_batch_norm
    BatchNorm in the hidden layers (off in the paper). Not recommended with noise: its
    running statistics are collected on noisy activations while inference is noise-free;
    on worm and PBMC it scored far lower (``docs/deep_cluster_experiments.md``)."""


#: the advice after a diverged training phase, by phase: train and sn.tl.deep_cluster take
#: each phase's learning rate by its own name (a bare lr or plan_kwargs is refused)
DIVERGED_BY_PHASE = {
    "pretrain": diverged_fix("pretrain_lr=... of train and sn.tl.deep_cluster, lr=... of pretrain"),
    "cluster": diverged_fix("cluster_lr=..."),
}


def _set_by_phase(phase: str, prefix: str) -> dict[str, str]:
    """Training plan arguments that a phase sets itself, or that its optimizer does not
    use, each with what to pass instead (``prefix``: how the caller names the phase's
    learning rate, e.g. ``"cluster_"``)."""
    optimizer = "Adam with AMSGrad" if phase == "pretrain" else "Adadelta"
    advice = {
        "optimizer": f"the phase builds its own optimizer ({optimizer}, as the authors); "
        f"set its learning rate with {prefix}lr=",
        "weight_decay": f"not used: the phase's optimizer ({optimizer}) takes only its "
        f"learning rate, {prefix}lr=",
    }
    advice["optimizer_creator"] = advice["optimizer"]
    advice["eps"] = advice["weight_decay"]
    for name in (
        "reduce_lr_on_plateau",
        "lr_factor",
        "lr_patience",
        "lr_threshold",
        "lr_min",
        "lr_scheduler_metric",
    ):
        advice[name] = (
            "not supported: both phases train on every cell, so there is no validation "
            "loss for a learning-rate schedule to follow"
        )
    if phase == "cluster":
        for name in ("update_interval", "tol", "gamma"):
            advice[name] = (
                f"pass {name}= itself (an argument of train_clusters, train and sn.tl.deep_cluster)"
            )
        advice["initial_labels"] = "pass initial_labels= of train_clusters"
        advice["soft_assign_all"] = "set by the model (q of all cells, in batches)"
    return advice


@doc_params(model_params=DEEP_CLUSTER_PARAMS)
class DeepClusterMixin:
    """Model-level code of scDeepCluster, shared by both backends.

    :class:`DeepCluster` (PyTorch) and :class:`~scneural.models.JaxDeepCluster` (JAX/flax)
    differ in their module, training plans and ``_run``; registration, normalisation
    statistics, the training phases and inference live here once.

    Training runs in two phases, both through Lightning: :meth:`pretrain` fits the
    autoencoder on the ZINB loss; :meth:`init_clusters` runs k-means on the latent space
    (estimating k by Leiden when not given); :meth:`train_clusters` runs the DEC phase
    (:class:`~scneural.models.deep_cluster.DECTrainingPlan`). :meth:`train` does all three.

    Parameters
    ----------
    {model_params}

    Examples
    --------
    >>> DeepCluster.setup_anndata(adata, layer="counts")
    >>> model = DeepCluster(adata, n_clusters=8)
    >>> model.train()
    >>> adata.obs["deep_cluster"] = model.predict()
    """

    _history_exclude = ("elbo_", "kl_global_")
    #: the advice of records_training's warning, by method: when pretraining diverges in
    #: train, init_clusters refuses the NaN latent space first, so its warning is the DEC
    #: phase's
    _diverged_fixes: ClassVar[Mapping[str, str]] = {
        "pretrain": DIVERGED_BY_PHASE["pretrain"],
        "train": DIVERGED_BY_PHASE["cluster"],
    }

    def __init__(
        self,
        adata: AnnData | None = None,
        n_clusters: int | None = None,
        n_hidden: Sequence[int] = (256, 64),
        n_latent: int = 32,
        noise_sd: float = 2.5,
        hidden_noise_sd: float | None = None,
        alpha: float = 1.0,
        use_batch_norm: bool = False,
    ):
        super().__init__(adata)
        self._module_kwargs = {
            "n_input": self.summary_stats.n_vars,
            "n_batch": self.summary_stats.n_batch,
            "n_hidden": tuple(n_hidden),
            "n_latent": n_latent,
            "n_clusters": 0 if n_clusters is None else int(n_clusters),
            "noise_sd": noise_sd,
            "hidden_noise_sd": hidden_noise_sd,
            "alpha": alpha,
            "use_batch_norm": use_batch_norm,
        }
        self.module = self._module_cls(**self._module_kwargs)
        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        self._set_normalization(*normalization_stats(X))
        self.pretrain_history_: dict = {}
        self.cluster_history_: dict = {}
        self.label_change_: list[float] = []
        self.n_clusters_estimated_ = False
        self.is_pretrained_ = False
        self._model_summary_string = (
            f"{type(self).__name__}: {self.summary_stats.n_vars} genes, hidden {list(n_hidden)}, "
            f"latent {n_latent}, noise {noise_sd}, clusters {n_clusters}"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    @doc_params()
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register the raw counts and the batch column.

        Also writes ``adata.obs["_indices"]`` (cell positions, used by the DEC phase to find
        each cell's target distribution).

        Parameters
        ----------
        adata
            AnnData with raw counts.
        layer
            Layer with the counts (``None``: ``adata.X``).
        batch_key
            Column of ``adata.obs`` with batches, fed to encoder and decoder as one-hot.
        {setup_kwargs}
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        adata.obs[INDICES_COLUMN] = np.arange(adata.n_obs)
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            NumericalObsField(REGISTRY_KEYS.INDICES_KEY, INDICES_COLUMN),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    # ------------------------------------------------------------------ training
    def _phase_plan_kwargs(
        self, plan_kwargs: dict | None, phase: str, lr: float, *, prefix: str = ""
    ) -> dict:
        """A phase's training plan arguments with its learning rate, checked before any
        training: names its plan does not take, or that the phase sets itself, are refused
        (:func:`~scneural._validation.check_plan_kwargs`), then the values
        (:func:`~scneural._validation.check_plan_settings`). ``prefix`` names the arguments
        as the caller passed them (``"cluster_"``: ``cluster_lr``, ``cluster_plan_kwargs``)."""
        plan_cls = self._pretrain_plan_cls if phase == "pretrain" else self._dec_plan_cls
        check_plan_kwargs(
            plan_kwargs,
            plan_cls,
            argument=f"{prefix}plan_kwargs",
            set_elsewhere=_set_by_phase(phase, prefix),
        )
        return check_plan_settings(plan_kwargs, prefix=prefix, lr=lr)

    @records_training
    def pretrain(
        self,
        max_epochs: int | None = None,
        *,
        lr: float = 1e-3,
        batch_size: int = 256,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Pretrain the autoencoder on the ZINB loss (Adam with AMSGrad, as the authors).

        Parameters
        ----------
        max_epochs
            Epochs, at least 1; ``None``: :func:`default_pretrain_epochs` of the number of
            cells.
        lr
            Adam's learning rate.
        batch_size
            Minibatch size.
        plan_kwargs
            More arguments of the training plan (scvi-tools' ``TrainingPlan``); ``lr``
            here wins over ``lr=``. The phase builds its own optimizer, so ``optimizer``,
            ``optimizer_creator``, ``weight_decay`` and ``eps`` are refused, as are the
            learning-rate schedule's (``reduce_lr_on_plateau``, ``lr_patience``...: there
            are no validation cells), all before training.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (``accelerator``, ``devices``, ``logger``...).
            ``logger="csv"`` or ``"tensorboard"`` writes to ``lightning_logs/pretrain/`` (under
            ``default_root_dir`` when given, else the working directory); ``logger=False``
            is Lightning's "no logger" (the history is kept all the same).

        Raises
        ------
        ValueError
            If ``max_epochs`` is below 1 (the model would count as pretrained with random
            weights), ``lr`` is not > 0, or ``plan_kwargs`` hold a refused name.
        TypeError
            If ``plan_kwargs`` hold a name the training plan does not take.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        max_epochs = check_optional_int(max_epochs, "max_epochs")
        if max_epochs is None:
            max_epochs = default_pretrain_epochs(self.adata.n_obs, batch_size)
        # the optimizer is built here: a learning rate given in plan_kwargs is honoured too
        plan_kwargs = self._phase_plan_kwargs(plan_kwargs, "pretrain", lr)
        plan = self._pretrain_plan(plan_kwargs.pop("lr"), plan_kwargs)
        history = _rename(
            self._run(plan, max_epochs, batch_size, phase="pretrain", **trainer_kwargs)
        )
        # pretraining has no KL term: scvi-tools logs a column of zeros for it
        self.pretrain_history_ = {k: v for k, v in history.items() if not k.startswith("kl_")}
        self.is_pretrained_ = True
        self.is_trained_ = False

    def estimate_n_clusters(
        self,
        latent: np.ndarray | None = None,
        *,
        resolution: float = 0.8,
        n_neighbors: int = 20,
        random_state: int = 0,
    ) -> tuple[int, np.ndarray]:
        """Estimate k by Leiden on a kNN graph of the latent space (authors: Louvain).

        Parameters
        ----------
        latent
            Latent codes, cells x ``n_latent`` (``None``: :meth:`get_latent_representation`
            of the model's cells).
        resolution
            Leiden resolution; a larger one finds more clusters.
        n_neighbors
            Neighbours per cell of the kNN graph (at most the number of cells - 1).
        random_state
            Seed of the neighbour search and of Leiden.

        Returns
        -------
        n_clusters : int
            Number of Leiden clusters.
        labels : numpy.ndarray
            Leiden cluster of each cell, numbered from 0 (int64, shape ``(n_cells,)``).
        """
        import scanpy as sc

        latent = self.get_latent_representation() if latent is None else latent
        graph = AnnData(np.zeros((latent.shape[0], 0), dtype=np.float32))
        graph.obsm["X_latent"] = latent
        sc.pp.neighbors(
            graph,
            n_neighbors=min(n_neighbors, latent.shape[0] - 1),
            use_rep="X_latent",
            random_state=random_state,
        )
        sc.tl.leiden(
            graph,
            resolution=resolution,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=random_state,
        )
        labels = graph.obs["leiden"].astype(int).to_numpy()
        return int(labels.max() + 1), labels

    def init_clusters(
        self,
        n_clusters: int | None = None,
        *,
        init: Geometry = "euclidean",
        n_init: int = 20,
        resolution: float = 0.8,
        n_neighbors: int = 20,
        random_state: int = 0,
        start_labels: np.ndarray | None = None,
    ) -> np.ndarray:
        """Initialise the cluster centres by k-means on the pretrained latent space, or at
        the latent means of given start clusters.

        Sets the clustering layer's centres (and the model's k); the model must be
        pretrained (:meth:`pretrain`).

        Parameters
        ----------
        n_clusters
            Number of clusters; ``None``: the model's ``n_clusters``, else estimated with
            :meth:`estimate_n_clusters` (recorded in ``n_clusters_estimated_``).
        init
            Geometry of k-means: ``"euclidean"`` (the authors') or ``"cosine"`` (codes
            scaled to unit length; see :func:`~scneural.models.deep_cluster.kmeans_init`).
        n_init
            k-means runs from different seeds; the one with the lowest inertia is kept.
        resolution, n_neighbors
            Leiden resolution and kNN neighbours when k is estimated (see
            :meth:`estimate_n_clusters`).
        random_state
            Seed of k-means and of the estimate of k.
        start_labels
            Start clusters instead of k-means: the code of each of the model's cells,
            ``0`` to ``k - 1``, or ``-1`` for a cell without one (e.g.
            ``pandas.Categorical(labels).codes`` of a Leiden clustering or an annotation).
            Each centre starts at its cluster's mean code, and k is the number of start
            clusters. ``init`` then stays at its default (no k-means runs).

        Returns
        -------
        numpy.ndarray
            Start cluster of each of the model's cells, numbered from 0 (integer, shape
            ``(n_cells,)``): its k-means cluster, or with ``start_labels`` its nearest
            centre.

        Raises
        ------
        ValueError
            If ``init`` is not a known geometry, the latent space holds NaN or infinite
            values (pretraining diverged), the estimate of k finds a single cluster, or
            ``start_labels`` is not valid (see
            :func:`~scneural.models.deep_cluster.check_start_labels`), is given with a
            non-default ``init``, or holds another number of clusters than ``n_clusters``.
        """
        check_geometry(init)
        if start_labels is not None:
            codes, k = self._check_start(start_labels, init, n_clusters)
        latent = self.get_latent_representation()
        check_finite_output(
            {"latent representation": latent},
            {"pretrain": self.pretrain_history_},
            fix=DIVERGED_BY_PHASE["pretrain"],
        )
        if start_labels is not None:
            centres, labels = start_label_centres(latent, codes, k)
            self.n_clusters_estimated_ = False
            self._set_initial_centres(centres, k)
            return labels
        k = n_clusters or (self.module.n_clusters or None)
        if k is None:
            k, _ = self.estimate_n_clusters(
                latent, resolution=resolution, n_neighbors=n_neighbors, random_state=random_state
            )
            self.n_clusters_estimated_ = True
            if k < 2:
                raise ValueError(
                    f"Leiden at resolution {resolution} found a single cluster; pass "
                    "n_clusters= or a larger resolution"
                )
        centres, labels = kmeans_init(
            latent, int(k), geometry=init, n_init=n_init, random_state=random_state
        )
        self._set_initial_centres(centres, int(k))
        return labels

    def _check_start(
        self, start_labels: Any, init: str, n_clusters: int | None
    ) -> tuple[np.ndarray, int]:
        """Validated start cluster codes and their number (see :meth:`init_clusters`)."""
        if init != "euclidean":
            raise ValueError(
                f"init={init!r} is the geometry of k-means, which does not run when "
                "start_labels are given; leave init at its default"
            )
        return check_start_labels(start_labels, self.adata.n_obs, n_clusters)

    def _set_initial_centres(self, centres: np.ndarray, k: int) -> None:
        """Set the clustering layer and record the model's k (also in its summary)."""
        self._set_cluster_centres(centres)
        self.init_params_["non_kwargs"]["n_clusters"] = k
        summary = self._model_summary_string.rsplit(", clusters ", 1)[0]
        estimated = " (estimated)" if self.n_clusters_estimated_ else ""
        self._model_summary_string = f"{summary}, clusters {k}{estimated}"

    def train_clusters(
        self,
        max_epochs: int = 200,
        *,
        initial_labels: np.ndarray | None = None,
        update_interval: int | None = None,
        tol: float = 1e-3,
        gamma: float = 1.0,
        lr: float = 1.0,
        batch_size: int = 256,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """The DEC phase: ``KL(p || q) + gamma * ZINB``, Adadelta (as the authors).

        Parameters
        ----------
        max_epochs
            Maximum number of epochs (training usually stops earlier, at ``tol``); ``0``
            keeps the centres k-means found.
        initial_labels
            Labels before the first update (default: the current hard assignment).
        update_interval
            Training steps between target updates (``None``: one epoch, which on several
            devices is one pass of each process over its share of the cells).
        tol
            Stop when fewer than this fraction of labels changed between two updates.
        gamma
            Weight of the ZINB loss.
        lr
            Adadelta's learning rate.
        batch_size
            Minibatch size.
        plan_kwargs
            More arguments of the DEC training plan, refused as those of :meth:`pretrain`
            are; ``update_interval``, ``tol``, ``gamma`` and ``initial_labels`` are refused
            too: they are this method's own arguments.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`. ``logger="csv"`` or ``"tensorboard"``
            writes to ``lightning_logs/cluster/`` (under ``default_root_dir`` when given, else
            the working directory).
        """
        max_epochs = check_positive_int(max_epochs, "max_epochs", minimum=0)
        batch_size = check_positive_int(batch_size, "batch_size")
        if self.module.n_clusters == 0:
            raise ValueError("the clustering layer is not initialised; call init_clusters() first")
        if initial_labels is None:
            initial_labels = self.predict()
        plan_kwargs = self._phase_plan_kwargs(plan_kwargs, "cluster", lr)
        plan = self._dec_plan(
            plan_kwargs.pop("lr"),
            plan_kwargs,
            # picklable (no lambda), for strategy="ddp_spawn"
            soft_assign_all=functools.partial(
                self.get_soft_assignment, batch_size=max(batch_size, 1024)
            ),
            initial_labels=np.asarray(initial_labels),
            update_interval=update_interval,
            tol=tol,
            gamma=gamma,
        )
        history = _rename(
            self._run(plan, max_epochs, batch_size, phase="cluster", **trainer_kwargs)
        )
        history["label_change"] = np.asarray(plan.label_change, dtype=float)
        self.cluster_history_ = history
        self.label_change_ = list(plan.label_change)
        self.converged_ = bool(plan.converged)
        self.is_trained_ = True

    @records_training
    def train(
        self,
        max_epochs: int = 200,
        *,
        pretrain_epochs: int | None = None,
        n_clusters: int | None = None,
        init: Geometry = "euclidean",
        n_init: int = 20,
        resolution: float = 0.8,
        update_interval: int | None = None,
        tol: float = 1e-3,
        gamma: float = 1.0,
        batch_size: int = 256,
        random_state: int = 0,
        pretrain_lr: float = 1e-3,
        cluster_lr: float = 1.0,
        pretrain_plan_kwargs: dict | None = None,
        cluster_plan_kwargs: dict | None = None,
        start_labels: np.ndarray | None = None,
        **trainer_kwargs,
    ) -> None:
        """Pretrain (unless done), initialise the clusters by k-means (or at the means of
        ``start_labels``) and run the DEC phase.

        Parameters
        ----------
        max_epochs
            Maximum number of epochs of the DEC phase (it usually stops earlier, at
            ``tol``); ``0``: pretraining and k-means only.
        pretrain_epochs
            Epochs of pretraining, at least 1 (``None``: :func:`default_pretrain_epochs`
            of the number of cells); not used when the model is already pretrained.
        n_clusters, init, n_init, resolution
            Of the k-means initialisation: see :meth:`init_clusters`.
        update_interval, tol, gamma
            Of the DEC phase: see :meth:`train_clusters`.
        batch_size
            Minibatch size of both phases.
        random_state
            Seed of k-means and of the estimate of k (the networks' weights and minibatches
            follow ``scvi.settings.seed``).
        pretrain_lr, pretrain_plan_kwargs
            Learning rate of the pretraining's Adam and more arguments of its training
            plan: see :meth:`pretrain`.
        cluster_lr, cluster_plan_kwargs
            Learning rate of the DEC phase's Adadelta and more arguments of its training
            plan: see :meth:`train_clusters`.
        start_labels
            Start clusters instead of k-means, one integer code per cell (``-1``: none):
            see :meth:`init_clusters`. Checked before pretraining.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` in both phases (``accelerator``,
            ``devices``, ``logger``, ...). ``logger="csv"`` or ``"tensorboard"`` logs each
            phase to its own directory, ``lightning_logs/pretrain/`` and
            ``lightning_logs/cluster/`` (under ``default_root_dir`` when given, else the
            working directory); ``logger=False`` is Lightning's "no logger" (the history is
            kept all the same).

        Raises
        ------
        ValueError
            If ``max_epochs`` is negative, ``pretrain_epochs`` is below 1, ``init`` is not
            a known geometry, the estimate of k finds a single cluster, ``start_labels``
            is not valid (see :meth:`init_clusters`), or
            ``trainer_kwargs`` hold ``train_size``, ``validation_size`` or
            ``early_stopping`` (both phases train on every cell, without early stopping),
            or ``pretrain_plan_kwargs`` / ``cluster_plan_kwargs`` hold a name refused by
            :meth:`pretrain` / :meth:`train_clusters` (checked before pretraining).
        TypeError
            If ``trainer_kwargs`` hold ``lr`` or ``plan_kwargs``: the two phases have their
            own optimizers, on learning rates a thousand times apart, so each takes its own;
            or a phase's plan arguments hold a name its training plan does not take.
        """
        shared = [name for name in ("lr", "plan_kwargs") if name in trainer_kwargs]
        if shared:
            raise TypeError(
                f"{type(self).__name__}.train does not take {' or '.join(shared)}: the "
                "pretraining (Adam, lr 1e-3) and the DEC phase (Adadelta, lr 1.0) have their "
                "own optimizers; pass pretrain_lr=/cluster_lr= or "
                "pretrain_plan_kwargs=/cluster_plan_kwargs="
            )
        max_epochs = check_positive_int(max_epochs, "max_epochs", minimum=0)
        pretrain_epochs = check_optional_int(pretrain_epochs, "pretrain_epochs")
        check_geometry(init)
        if start_labels is not None:
            self._check_start(start_labels, init, n_clusters)  # before pretraining
        # both phases' plan arguments before pretraining, named as passed here
        self._phase_plan_kwargs(pretrain_plan_kwargs, "pretrain", pretrain_lr, prefix="pretrain_")
        self._phase_plan_kwargs(cluster_plan_kwargs, "cluster", cluster_lr, prefix="cluster_")
        if not self.is_pretrained_:
            self.pretrain(
                pretrain_epochs,
                lr=pretrain_lr,
                batch_size=batch_size,
                plan_kwargs=pretrain_plan_kwargs,
                **trainer_kwargs,
            )
        labels = self.init_clusters(
            n_clusters,
            init=init,
            n_init=n_init,
            resolution=resolution,
            random_state=random_state,
            start_labels=start_labels,
        )
        self.train_clusters(
            max_epochs,
            initial_labels=labels,
            update_interval=update_interval,
            tol=tol,
            gamma=gamma,
            lr=cluster_lr,
            batch_size=batch_size,
            plan_kwargs=cluster_plan_kwargs,
            **trainer_kwargs,
        )

    # ----------------------------------------------------------------- inference
    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True):
        """scvi-tools' check, for new cells too: they lack the ``_indices`` column that
        :meth:`setup_anndata` writes, so they are read through a light copy that has it
        (the caller's ``obs`` is not written)."""
        if (
            adata is not None
            and INDICES_COLUMN not in adata.obs
            and self.get_anndata_manager(adata) is None
        ):
            obs = adata.obs.copy()
            obs[INDICES_COLUMN] = np.arange(adata.n_obs)
            adata = with_obs(adata, obs)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def _ready_for_inference(self) -> bool:
        """The latent space is usable once pretrained (k-means starts from it)."""
        return bool(self.is_trained_ or self.is_pretrained_)

    @doc_params()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """The noise-free latent representation of each cell.

        Parameters
        ----------
        {model_adata}
        {indices}
        {inference_batch_size}

        Returns
        -------
        numpy.ndarray
            The encoder's output without noise, float32 of shape ``(n_cells, n_latent)``.

        Raises
        ------
        RuntimeError
            If a torch model has not been pretrained.
        """
        return self._batched_inference(adata, ["z"], indices=indices, batch_size=batch_size)["z"]

    @doc_params()
    def get_soft_assignment(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Student-t soft assignment q of each cell to each cluster (rows sum to 1).

        Parameters
        ----------
        {model_adata}
        {indices}
        {inference_batch_size}

        Returns
        -------
        numpy.ndarray
            float32 array of shape ``(n_cells, n_clusters)``: the probability of each cell
            (row) to belong to each cluster (column).

        Raises
        ------
        ValueError
            If the clustering layer is not initialised (:meth:`init_clusters` or
            :meth:`train` first).
        RuntimeError
            If a torch model has not been pretrained.
        """
        if self.module.n_clusters == 0:
            raise ValueError("the clustering layer is not initialised; train the model first")
        return self._batched_inference(adata, ["q"], indices=indices, batch_size=batch_size)["q"]

    def _phase_trainer_kwargs(self, trainer_kwargs: dict[str, Any], phase: str) -> dict[str, Any]:
        """Trainer arguments of one training phase, ``"pretrain"`` or ``"cluster"`` (all
        cells, no validation, no early stopping); resets the history, as each phase keeps
        its own. A ``logger="csv"`` or ``"tensorboard"`` writes to
        ``lightning_logs/<phase>/version_N`` (under ``default_root_dir`` when given)."""
        trainer_kwargs = dict(trainer_kwargs)
        held_out = [
            name
            for name in ("train_size", "validation_size")
            if trainer_kwargs.get(name) not in (None, 1.0)
        ]
        if trainer_kwargs.get("early_stopping"):
            held_out.append("early_stopping")
        # without validation cells Lightning would fail on a missing validation loader
        held_out += [
            name
            for name in ("check_val_every_n_epoch", "val_check_interval")
            if trainer_kwargs.get(name) is not None
        ]
        if held_out:
            raise ValueError(
                f"{type(self).__name__} does not take {', '.join(held_out)}: both phases "
                "train on every cell (clustering has no held-out cells), with no validation "
                "and no early stopping; the DEC phase stops by tol="
            )
        for name in ("train_size", "validation_size"):
            trainer_kwargs.pop(name, None)
        if "logger" in trainer_kwargs and not isinstance(trainer_kwargs["logger"], list):
            trainer_kwargs["logger"] = build_logger(
                trainer_kwargs["logger"],
                trainer_kwargs.get("default_root_dir"),
                name=f"lightning_logs/{phase}",
            )
        trainer_kwargs.setdefault("early_stopping", False)
        trainer_kwargs.setdefault("check_val_every_n_epoch", None)
        # the cluster centres take no part in pretraining
        trainer_kwargs = distributed_trainer_kwargs(trainer_kwargs, find_unused_parameters=True)
        self.history_ = None
        self.is_trained_ = False
        return trainer_kwargs

    @doc_params()
    def predict(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Hard cluster of each cell (argmax of q).

        Parameters
        ----------
        {model_adata}
        {indices}
        {inference_batch_size}

        Returns
        -------
        numpy.ndarray
            The most probable cluster of each cell, numbered from 0 (int64, shape
            ``(n_cells,)``).

        Raises
        ------
        ValueError
            If the clustering layer is not initialised.
        RuntimeError
            If a torch model has not been pretrained.
        """
        return self.get_soft_assignment(adata, indices, batch_size).argmax(axis=1)


@doc_params(model_params=DEEP_CLUSTER_PARAMS)
class DeepCluster(DeepClusterMixin, ScneuralModelMixin, BaseModelClass):
    """scDeepCluster: ZINB denoising autoencoder + deep embedded clustering, on scvi-tools.

    Training runs in two phases, both through Lightning: :meth:`pretrain` fits the
    autoencoder on the ZINB loss; :meth:`init_clusters` runs k-means on the latent space
    (estimating k by Leiden when not given); :meth:`train_clusters` runs the DEC phase
    (:class:`~scneural.models.deep_cluster.DECTrainingPlan`). :meth:`train` does all three.

    Parameters
    ----------
    {model_params}

    Examples
    --------
    >>> DeepCluster.setup_anndata(adata, layer="counts")
    >>> model = DeepCluster(adata, n_clusters=8)
    >>> model.train()
    >>> adata.obs["deep_cluster"] = model.predict()
    """

    _module_cls = DeepClusterModule
    _pretrain_plan_cls = TrainingPlan
    _dec_plan_cls = DECTrainingPlan
    backend = "torch"

    def _set_normalization(self, mean: np.ndarray, std: np.ndarray, median: float) -> None:
        self.module.set_normalization(torch.from_numpy(mean), torch.from_numpy(std), median)

    def _set_cluster_centres(self, centres: np.ndarray) -> None:
        self.module.set_cluster_centres(torch.from_numpy(centres))

    def _pretrain_plan(self, lr: float, plan_kwargs: dict) -> TrainingPlan:
        return self._pretrain_plan_cls(
            self.module,
            optimizer="Custom",
            optimizer_creator=functools.partial(torch.optim.Adam, lr=lr, amsgrad=True),
            **plan_kwargs,
        )

    def _dec_plan(self, lr: float, plan_kwargs: dict, **dec_kwargs) -> DECTrainingPlan:
        return self._dec_plan_cls(
            self.module,
            **dec_kwargs,
            optimizer="Custom",
            optimizer_creator=functools.partial(torch.optim.Adadelta, lr=lr, rho=0.95),
            **plan_kwargs,
        )

    def _run(
        self, plan: TrainingPlan, max_epochs: int, batch_size: int, *, phase: str, **trainer_kwargs
    ):
        # batch norm (off by default) cannot train on a last minibatch of one cell
        batch_norm = self.init_params_["non_kwargs"].get("use_batch_norm")
        splitter_cls = SingleCellSafeDataSplitter if batch_norm else DataSplitter
        splitter = splitter_cls(
            self.adata_manager, train_size=1.0, batch_size=batch_size, shuffle_set_split=True
        )
        trainer_kwargs = self._phase_trainer_kwargs(trainer_kwargs, phase)
        # Lightning keeps the modules' mode; inference left them in eval mode (no noise)
        self.module.train()
        runner = TrainRunner(
            self,
            training_plan=plan,
            data_splitter=splitter,
            max_epochs=max_epochs,
            **trainer_kwargs,
        )
        runner()
        return self.history_dict()


#: pretraining length of the default schedule, in optimizer steps
PRETRAIN_STEPS = 2500


def default_pretrain_epochs(n_obs: int, batch_size: int = 256) -> int:
    """Pretraining epochs: about 2,500 steps, between 20 and 300 epochs (authors: 300).

    Measured on the scDeepCluster benchmark sets (seed 0): 1,000 steps gave ARI 0.51 on
    worm_neuron_cell and 0.54 on mouse_bladder_cell_select_2100, 2,500 steps 0.68 and 0.60.
    """
    steps_per_epoch = max(int(np.ceil(n_obs / batch_size)), 1)
    return int(np.clip(round(PRETRAIN_STEPS / steps_per_epoch), 20, 300))


def _rename(history: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Readable names for the loss terms scvi-tools logs."""
    names = {
        "reconstruction_loss_train": "zinb_loss_train",
        "kl_local_train": "kl_loss_train",
    }
    return {names.get(k, k): v for k, v in history.items()}
