"""The scvi-tools model of the cell-type classifier."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.special import softmax
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LabelsWithUnlabeledObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from sklearn.utils.class_weight import compute_class_weight

from scneural._docs import doc_params
from scneural._validation import (
    check_optional_int,
    check_plan_kwargs,
    check_plan_settings,
    check_positive_int,
)
from scneural.models._base import (
    ScneuralModelMixin,
    early_stopping_trainer_kwargs,
    records_training,
    with_obs,
)

from ._module import ClassifierModule
from ._plan import ClassifierTrainingPlan

logger = logging.getLogger(__name__)

#: category used internally for cells without a label when the user names none
UNLABELED_SENTINEL = "_scneural_unlabeled_"


#: the constructor parameters shared by the torch and JAX models (docstrings)
CLASSIFIER_PARAMS = """\
adata
    AnnData registered with :meth:`setup_anndata`.
n_hidden
    Widths of the hidden layers (default 512-256-128); the last is the embedding.
dropout_rate
    Dropout after every hidden block.
log_normalize_input
    Whether the registered matrix holds raw counts, to be library-size normalised and
    log1p-transformed inside the model.
class_weight
    ``None`` (all classes weigh 1) or ``"balanced"`` (inverse class frequency, as
    scikit-learn's ``class_weight="balanced"``).
label_smoothing
    Label smoothing of the cross-entropy."""


def readable_query(adata: AnnData, registry: dict) -> AnnData:
    """``adata`` as the classifier can read it: cells to annotate usually have no labels
    column, or labels the model never saw (or missing ones), which scvi-tools refuses to
    register. Those are read through a light copy whose labels are all unlabelled (they
    play no part in inference); the caller's ``obs`` is not written."""
    state = registry["field_registries"][REGISTRY_KEYS.LABELS_KEY]["state_registry"]
    labels_key = registry["setup_args"]["labels_key"]
    column = adata.obs.get(labels_key)
    known = {str(c) for c in state["categorical_mapping"]}
    if column is not None and not column.isna().any() and set(column.astype(str)) <= known:
        return adata
    obs = adata.obs.copy()
    obs[labels_key] = state["unlabeled_category"]
    return with_obs(adata, obs)


@doc_params(model_params=CLASSIFIER_PARAMS)
class ClassifierMixin:
    """Model-level code of the cell-type classifier, shared by both backends.

    :class:`Classifier` (PyTorch) and :class:`~scneural.models.JaxClassifier` (JAX/flax)
    differ only in their module and training mixin; registration, class bookkeeping,
    training arguments and prediction live here once.

    Parameters
    ----------
    {model_params}

    Examples
    --------
    >>> Classifier.setup_anndata(adata, labels_key="cell_type")
    >>> model = Classifier(adata)
    >>> model.train(max_epochs=50)
    >>> proba = model.predict(soft=True)
    """

    _history_exclude = ("elbo_", "reconstruction_loss_", "kl_local_", "kl_global_")

    def __init__(
        self,
        adata: AnnData | None = None,
        n_hidden: Sequence[int] = (512, 256, 128),
        dropout_rate: float = 0.2,
        log_normalize_input: bool = False,
        class_weight: Literal["balanced"] | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__(adata)
        labels_registry = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        mapping = np.asarray(labels_registry.categorical_mapping)
        unlabeled = labels_registry.unlabeled_category
        self.classes_ = np.array([str(c) for c in mapping if c != unlabeled], dtype=object)
        n_labels = len(self.classes_)
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
        labelled_codes = codes[codes < n_labels]
        weights = None
        if class_weight == "balanced":
            # no labelled cell: a query passed to load(); the saved weights are restored
            # from the state dict, so these placeholder ones are never used
            present = np.unique(labelled_codes)
            weights = np.ones(n_labels)
            if present.size:
                weights[present] = compute_class_weight(
                    "balanced", classes=present, y=labelled_codes
                )
        elif class_weight is not None:
            raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
        n_batch = self.summary_stats.n_batch
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_labels=n_labels,
            n_batch=n_batch,
            n_hidden=tuple(n_hidden),
            dropout_rate=dropout_rate,
            log_normalize_input=log_normalize_input,
            class_weights=None if weights is None else tuple(weights.tolist()),
            unlabeled_index=n_labels,
            label_smoothing=label_smoothing,
        )
        self._model_summary_string = (
            f"{type(self).__name__}: {self.summary_stats.n_vars} inputs, hidden {list(n_hidden)}, "
            f"{n_labels} classes, dropout {dropout_rate}, class_weight {class_weight}"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    @doc_params()
    def setup_anndata(
        cls,
        adata: AnnData,
        labels_key: str,
        layer: str | None = None,
        batch_key: str | None = None,
        unlabeled_category: str | None = None,
        **kwargs,
    ) -> None:
        """Register the AnnData fields the classifier reads.

        Parameters
        ----------
        adata
            AnnData to register.
        labels_key
            Column of ``adata.obs`` with the cell-type labels.
        layer
            Layer with the input matrix (``None``: ``adata.X``).
        batch_key
            Column of ``adata.obs`` with batches, fed to the network as one-hot covariates.
        unlabeled_category
            Label of cells that are predicted but not trained on.
        {setup_kwargs}
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            LabelsWithUnlabeledObsField(
                REGISTRY_KEYS.LABELS_KEY,
                labels_key,
                UNLABELED_SENTINEL if unlabeled_category is None else unlabeled_category,
            ),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @doc_params()
    @records_training
    def train(
        self,
        max_epochs: int | None = 100,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 128,
        early_stopping: bool = True,
        early_stopping_patience: int = 5,
        train_size: float | None = 0.95,
        logger: str | None = None,
        plan_kwargs: dict | None = None,
        **kwargs,
    ) -> None:
        """Train with Adam on the cross-entropy; early stopping watches the validation accuracy.

        The model is trained in place: ``model.history`` (:meth:`history_dict`) holds the
        per-epoch curves and :meth:`training_record` the arguments of this call.

        Parameters
        ----------
        max_epochs
            Maximum number of epochs, at least 1 (``None``: scvi-tools' default for the
            number of cells).
        lr, weight_decay
            Adam's learning rate and weight decay.
        batch_size
            Minibatch size.
        early_stopping, early_stopping_patience
            Stop when the validation accuracy has not improved for this many epochs. (The
            validation loss is a poor signal here: it starts rising, as the network grows
            confident, while the accuracy still improves.) When some cells are unlabelled
            (semi-supervised use), a validation minibatch may hold no labelled cell, so the
            validation loss is watched instead. ``early_stopping_monitor``/``_mode`` in
            ``**kwargs`` override this.
        train_size
            Fraction of cells trained on; the rest is the validation set (early stopping
            and the validation accuracy / macro-F1 in ``uns``). 0.95 rather than scvi-tools'
            0.9 leaves more cells of rare types to train on: on pbmc3k it raised the test
            macro-F1 from 0.935 to 0.940 (mean of 6 seeds; ``docs/benchmarks.md``). ``1.0``
            trains on every cell for ``max_epochs`` epochs, without validation.
        logger
            Also log to ``"tensorboard"``, ``"csv"`` (in ``lightning_logs/`` under the
            trainer's ``default_root_dir`` when ``**kwargs`` give one, else the working
            directory) or a Lightning logger; ``None`` or ``False``: no other logger. The
            per-epoch history is always kept in ``model.history``.
        plan_kwargs
            More arguments of the training plan
            (:class:`~scneural.models.classifier.ClassifierTrainingPlan`, a
            :class:`scvi.train.TrainingPlan`).
        **kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train` and the Lightning
            trainer (``accelerator``, ``devices``, ``logger``, ...).

        Raises
        ------
        ValueError
            If ``max_epochs`` is below 1 (no training step would run, yet the model would
            count as trained), ``lr`` is not positive, ``weight_decay`` is negative, or
            ``train_size`` is not in (0, 1] or leaves no cell for validation (``1.0``
            trains on every cell without one).
        {train_type_error}
        """
        max_epochs = check_optional_int(max_epochs, "max_epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        check_plan_kwargs(plan_kwargs, self._training_plan_cls)
        plan = check_plan_settings(plan_kwargs, lr=lr, weight_decay=weight_decay, eps=1e-8)
        if plan.get("reduce_lr_on_plateau"):
            # scvi-tools' default, elbo_validation, is not logged by a classifier
            plan.setdefault("lr_scheduler_metric", "validation_loss")
        monitor, mode = (
            ("validation_loss", "min")
            if self._has_unlabeled_cells()
            else ("accuracy_validation", "max")
        )
        kwargs = early_stopping_trainer_kwargs(
            kwargs,
            early_stopping=early_stopping,
            patience=early_stopping_patience,
            logger=logger,
            train_size=train_size,
            n_obs=self.adata.n_obs,
            monitor=monitor,
            mode=mode,
        )
        super().train(
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_size=train_size,
            plan_kwargs=plan,
            **kwargs,
        )

    def _has_unlabeled_cells(self) -> bool:
        """Whether any registered cell carries the unlabelled category."""
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
        return bool((codes >= len(self.classes_)).any())

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True):
        """scvi-tools' check, for query cells too (see :func:`readable_query`)."""
        if adata is not None and self.get_anndata_manager(adata) is None:
            adata = readable_query(adata, self.registry_)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    @classmethod
    @doc_params()
    def load(cls, dir_path: str, adata: AnnData | None = None, **kwargs):
        """scvi-tools' ``load``; ``adata`` may be cells to annotate (see
        :func:`readable_query`).

        Their labels column may be missing or hold labels the model never saw: such cells
        are read through a light copy (``adata.obs`` is not written).

        Parameters
        ----------
        {load_params}

        Returns
        -------
        ClassifierMixin
            The classifier, an instance of the class ``load`` is called on, with the saved
            weights and classes, set up on ``adata``.

        Raises
        ------
        FileNotFoundError, ValueError
            If ``dir_path`` holds no model of this class saved with ``prefix``, or
            ``adata``'s genes are not the saved model's in the same order (see
            :meth:`ScneuralModelMixin.load <scneural.models._base.ScneuralModelMixin.load>`).
        """
        return super().load(dir_path, adata=adata, **kwargs)

    @classmethod
    def _query_for_load(cls, adata: AnnData, registry: dict) -> AnnData:
        return readable_query(adata, registry)

    @doc_params()
    def predict(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        soft: bool = False,
        batch_size: int | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """Predicted labels, or class probabilities (``soft=True``) as a DataFrame indexed
        by cell name (ready for ``adata.obsm``).

        Parameters
        ----------
        {model_adata}
        {indices}
        soft
            Return the class probabilities instead of the most probable class.
        {inference_batch_size}

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            ``soft=False``: the most probable class of each cell, an object array of class
            names (strings of ``model.classes_``), shape ``(n_cells,)``. ``soft=True``: the
            softmax probabilities, a float32 DataFrame of shape ``(n_cells, n_classes)``,
            one column per class of ``model.classes_``, indexed by cell name; rows sum
            to 1.

        Raises
        ------
        RuntimeError
            If a torch model has not been trained (its outputs would come from random
            weights).
        """
        logits = self._batched_inference(adata, ["logits"], indices=indices, batch_size=batch_size)[
            "logits"
        ]
        proba = softmax(logits, axis=-1)
        if soft:
            names = (self.adata if adata is None else adata).obs_names
            if indices is not None:
                names = names[np.asarray(indices)]
            return pd.DataFrame(proba, columns=list(self.classes_), index=names.copy())
        return self.classes_[proba.argmax(axis=1)]

    @doc_params()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """The penultimate-layer embedding of each cell (for neighbours/UMAP).

        Parameters
        ----------
        {model_adata}
        {indices}
        {inference_batch_size}

        Returns
        -------
        numpy.ndarray
            float32 array of shape ``(n_cells, n_hidden[-1])``: the activations of the last
            hidden layer (dropout off).

        Raises
        ------
        RuntimeError
            If a torch model has not been trained.
        """
        return self._batched_inference(
            adata, ["embedding"], indices=indices, batch_size=batch_size
        )["embedding"]


@doc_params(model_params=CLASSIFIER_PARAMS)
class Classifier(ClassifierMixin, ScneuralModelMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """Supervised MLP cell-type classifier on scvi-tools (PyTorch backend).

    Parameters
    ----------
    {model_params}

    Examples
    --------
    >>> Classifier.setup_anndata(adata, labels_key="cell_type")
    >>> model = Classifier(adata)
    >>> model.train(max_epochs=50)
    >>> proba = model.predict(soft=True)
    """

    _module_cls = ClassifierModule
    _training_plan_cls = ClassifierTrainingPlan
    backend = "torch"
