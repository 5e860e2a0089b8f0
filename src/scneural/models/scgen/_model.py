"""The scvi-tools model of scGen: VAE training, latent arithmetic and batch removal."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from scneural._docs import doc_params
from scneural._utils import iter_row_batches
from scneural._validation import (
    check_obs_values,
    check_optional_int,
    check_plan_kwargs,
    check_plan_settings,
    check_positive_float,
    check_positive_int,
)
from scneural.models._base import (
    ScneuralModelMixin,
    early_stopping_trainer_kwargs,
    ema_trainer_kwargs,
    records_training,
)

from ._module import ScGenModule
from ._plan import ScGenTrainingPlan

logger = logging.getLogger(__name__)

#: registry key of the condition column (control / perturbed)
CONDITION_KEY = "condition"
#: value of ``obs[condition_key]`` in predicted cells
PREDICTED = "predicted"


#: the constructor parameters shared by the torch and JAX models (docstrings)
SCGEN_PARAMS = """\
adata
    AnnData registered with :meth:`setup_anndata` (log-normalised expression).
n_hidden
    Width of every hidden layer of encoder and decoder.
n_latent
    Dimension of the latent space.
n_layers
    Hidden layers of encoder and decoder.
dropout_rate
    Dropout after every hidden block.
kl_weight
    Weight of the KL divergence against the squared-error reconstruction."""


#: the docstring sections of ``encode_matrix``, shared by the torch and JAX models
ENCODE_MATRIX_SECTIONS = """\
Parameters
----------
X
    Cells x genes matrix (dense, sparse or backed) of log-normalised expression, its
    columns the model's genes in the model's order.
batch_size
    Rows encoded at once (only one minibatch is densified at a time).

Returns
-------
numpy.ndarray
    float32 array of shape ``(n_rows, n_latent)``: the mean of q(z | x) of each row."""

#: the docstring sections of ``decode``, shared by the torch and JAX models
DECODE_SECTIONS = """\
Parameters
----------
z
    Latent codes, shape ``(n_cells, n_latent)``.
batch_size
    Codes decoded at once.

Returns
-------
numpy.ndarray
    float32 array of shape ``(n_cells, n_genes)``: the decoder's output, on the
    log-normalised scale of the training data, columns in the model's gene order."""


@doc_params(model_params=SCGEN_PARAMS)
class ScGenMixin:
    """Model-level code of scGen, shared by both backends.

    :class:`ScGen` (PyTorch) and :class:`~scneural.models.JaxScGen` (JAX/flax) differ only
    in their module, training mixin and the two array methods ``encode_matrix`` and
    ``decode``; registration, training arguments, latent arithmetic, prediction and batch
    removal live here once.

    Parameters
    ----------
    {model_params}

    Examples
    --------
    >>> ScGen.setup_anndata(train, condition_key="stim", cell_type_key="cell_type")
    >>> model = ScGen(train)
    >>> model.train()
    >>> pred, delta = model.predict("CTRL", "STIM", cell_type="CD14 Mono")
    """

    _history_exclude = ("kl_global_",)

    def __init__(
        self,
        adata: AnnData,
        n_hidden: int = 800,
        n_latent: int = 100,
        n_layers: int = 2,
        dropout_rate: float = 0.2,
        kl_weight: float = 5e-5,
    ):
        super().__init__(adata)
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            kl_weight=kl_weight,
        )
        self._model_summary_string = (
            f"{type(self).__name__}: {self.summary_stats.n_vars} genes, {n_layers}x{n_hidden} hidden, "
            f"latent {n_latent}, dropout {dropout_rate}, KL weight {kl_weight}"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    @doc_params()
    def setup_anndata(
        cls,
        adata: AnnData,
        condition_key: str,
        cell_type_key: str,
        layer: str | None = None,
        batch_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register the AnnData fields scGen reads.

        Parameters
        ----------
        adata
            AnnData with log-normalised expression.
        condition_key
            Column of ``adata.obs`` with the condition (control / perturbed).
        cell_type_key
            Column of ``adata.obs`` with cell types (for balancing and batch removal).
        layer
            Layer with the log-normalised expression (``None``: ``adata.X``).
        batch_key
            Column of ``adata.obs`` with batches, used only by :meth:`batch_removal`.
        {setup_kwargs}
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            CategoricalObsField(CONDITION_KEY, condition_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, cell_type_key),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        if kwargs.get("source_registry") is not None:
            # load(adata=...): new cell types, conditions or batches are fine (as in
            # register_query); the VAE reads only the expression
            kwargs.setdefault("extend_categories", True)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    # -- training ---------------------------------------------------------------------------

    @doc_params()
    @records_training
    def train(
        self,
        max_epochs: int | None = 40,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        early_stopping: bool = True,
        early_stopping_patience: int = 10,
        train_size: float | None = 0.95,
        max_grad_norm: float | None = 50.0,
        ema_decay: float | None = 0.99,
        logger: str | None = None,
        plan_kwargs: dict | None = None,
        **kwargs,
    ) -> None:
        """Train with Adam; early stopping watches the validation loss (the weighted ELBO).

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
            Stop when the validation loss (squared error + ``kl_weight`` x KL, the quantity
            trained) has not improved for this many epochs; the best weights are not
            restored, as in scvi-tools.
        train_size
            Fraction of cells trained on; the rest is the validation set, used only for early
            stopping. 0.95 rather than scvi-tools' 0.9 trains on more cells of every type: on
            Kang et al. it raised the held-out R² of B (24 seeds) and CD14 Mono (12 seeds;
            ``docs/perturb_experiments.md``). ``1.0`` trains on every cell for ``max_epochs`` epochs,
            without validation.
        max_grad_norm
            Clip the global norm of the gradients to this value before every optimizer step
            (``None`` turns clipping off). The squared error summed over genes gives rare
            minibatches gradients 5-30x the typical norm (about 40-110 on 2,000 genes);
            clipping them makes the predictions steadier from seed to seed (see
            ``docs/perturb_experiments.md``).
        ema_decay
            Train with an exponential moving average of the weights (and batch-norm
            statistics), updated after every step as ``average = ema_decay * average +
            (1 - ema_decay) * weights``; validation and early stopping see the average, and
            the trained model keeps it in place of the last step's weights. 0.99 averages
            over about the last 100 steps (3-4 epochs of the Kang et al. benchmark). There,
            in paired runs (the same training scored with and without it), it raised the
            held-out R² over all genes of CD4 Naive T, NK and B by 0.007-0.009 and lowered
            CD14 Mono's by about 0.014, which stays above the peer
            (``docs/benchmarks.md``). ``None``: the last step's weights.
        logger
            Also log to ``"tensorboard"``, ``"csv"`` (in ``lightning_logs/`` under the
            trainer's ``default_root_dir`` when ``**kwargs`` give one, else the working
            directory) or a Lightning logger; ``None`` or ``False``: no other logger. The
            per-epoch history is always kept in ``model.history``.
        plan_kwargs
            More arguments of :class:`scvi.train.TrainingPlan`.
        **kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train` and the Lightning
            trainer (``accelerator``, ``devices``, ...).

        Raises
        ------
        ValueError
            If ``max_epochs`` is below 1 (no training step would run, yet the model would
            count as trained), ``lr`` or ``max_grad_norm`` is not positive,
            ``weight_decay`` is negative, ``ema_decay`` is not in [0, 1), or ``train_size``
            is not in (0, 1] or leaves no cell for validation (``1.0`` trains on every cell
            without one).
        {train_type_error}
        """
        max_epochs = check_optional_int(max_epochs, "max_epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        check_plan_kwargs(plan_kwargs, self._training_plan_cls)
        plan = check_plan_settings(plan_kwargs, lr=lr, weight_decay=weight_decay, eps=1e-8)
        if max_grad_norm is not None:
            # Lightning's clipping; JAX models translate it into their optax chain
            max_norm = check_positive_float(max_grad_norm, "max_grad_norm")
            kwargs = {"gradient_clip_val": max_norm, **kwargs}
        kwargs = ema_trainer_kwargs(kwargs, ema_decay, self._ema_callback)
        kwargs = early_stopping_trainer_kwargs(
            kwargs,
            early_stopping=early_stopping,
            patience=early_stopping_patience,
            logger=logger,
            train_size=train_size,
            n_obs=self.adata.n_obs,
        )
        super().train(
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_size=train_size,
            plan_kwargs=plan,
            **kwargs,
        )

    # -- latent space -----------------------------------------------------------------------

    @doc_params()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Latent code of each cell: the posterior mean (or a sample with ``give_mean=False``).

        Parameters
        ----------
        {model_adata}
        {indices}
        give_mean
            Return the mean of q(z | x); ``False``: one random sample of it.
        {inference_batch_size}

        Returns
        -------
        numpy.ndarray
            float32 array of shape ``(n_cells, n_latent)``.

        Raises
        ------
        RuntimeError
            If a torch model has not been trained.
        """
        name = "qz_m" if give_mean else "z"
        return self._batched_inference(adata, [name], indices=indices, batch_size=batch_size)[name]

    def register_query(self, adata: AnnData) -> AnnData:
        """Register ``adata`` (same genes, the model's obs columns) for this model.

        Unlike the automatic transfer, new cell types or batches are accepted: the VAE does
        not read them, only the arithmetic does.

        Parameters
        ----------
        adata
            Cells with the model's genes in its order and the ``obs`` columns it was set up
            with (condition, cell type and, if any, batch).

        Returns
        -------
        anndata.AnnData
            ``adata`` itself, now registered (scvi-tools writes its ``_scvi_*`` columns
            into ``adata.obs``).
        """
        self._register_manager_for_instance(
            self.adata_manager.transfer_fields(adata, extend_categories=True)
        )
        return adata

    def _setup_key(self, name: str) -> str | None:
        return self.adata_manager.registry["setup_args"].get(name)

    # -- prediction ---------------------------------------------------------------------------

    def latent_delta(
        self,
        control: str,
        perturbed: str,
        *,
        adata: AnnData | None = None,
        latent: np.ndarray | None = None,
        restrict_arithmetic_to: Sequence[str] | None = None,
        balance: Literal["resample", "mean"] = "resample",
        delta_cells: Literal["all", "paired"] = "all",
        random_state: int = 0,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Cell-type balanced ``mean z(perturbed) - mean z(control)``.

        Each condition's mean gives every cell type the same weight.
        ``balance="resample"`` draws, with a seeded generator, as many cells of every type
        as the largest type has (with replacement, as scGen's balancer); ``"mean"``
        averages the per-type means exactly.

        ``delta_cells="all"`` (scGen) averages every cell type present in a condition, so
        the control mean also holds the control cells of a type held out from the
        perturbed condition (and types seen in one condition only count there).
        ``"paired"`` uses only the types seen in both conditions: the average within-type
        shift. Either way at least one type must be seen in both conditions.

        Parameters
        ----------
        control, perturbed
            Values of the registered condition column (compared as strings).
        adata
            Registered AnnData the delta is computed from; ``None``: the training data.
        latent
            Latent codes of ``adata``'s cells if already computed (cells x ``n_latent``, in
            ``adata``'s order); ``None``: :meth:`get_latent_representation`.
        restrict_arithmetic_to
            Compute the delta from these cell types only (a list, not one string).
        balance
            ``"resample"`` (scGen, seeded) or ``"mean"``, as above.
        delta_cells
            ``"all"`` (scGen) or ``"paired"``, as above.
        random_state
            Seed of the resampling (``balance="resample"``).
        batch_size
            Minibatch size of the encoding when ``latent`` is not given.

        Returns
        -------
        delta : numpy.ndarray
            The delta vector, float32 of shape ``(n_latent,)``.
        cell_types : list[str]
            The cell types it was computed from (either condition), sorted.

        Raises
        ------
        ValueError
            If ``control`` or ``perturbed`` is not a value of the condition column or
            both are the same, ``balance`` or ``delta_cells`` is unknown,
            ``restrict_arithmetic_to`` names cell types not in ``adata``, or no cell type
            (among them) has both control and perturbed cells.
        TypeError
            If ``restrict_arithmetic_to`` is a string, or ``control``/``perturbed`` is
            not a label.
        """
        adata = self._validate_anndata(adata)
        condition_column = adata.obs[self._setup_key("condition_key")]
        control = as_label(control, "control", condition_column)
        perturbed = as_label(perturbed, "perturbed", condition_column)
        conditions = condition_column.astype(str).to_numpy()
        types = adata.obs[self._setup_key("cell_type_key")].astype(str).to_numpy()
        check_conditions(conditions, self._setup_key("condition_key"), control, perturbed)
        check_arithmetic_options(balance, delta_cells)
        candidates, shared = arithmetic_cell_types(
            types, conditions, control, perturbed, restrict_arithmetic_to
        )
        if latent is None:
            latent = self.get_latent_representation(adata, batch_size=batch_size)
        allowed = candidates if delta_cells == "all" else shared
        groups = {
            cond: {
                t: np.flatnonzero((conditions == cond) & (types == t))
                for t in sorted(set(types[conditions == cond]) & allowed, key=str)
            }
            for cond in (control, perturbed)
        }
        rng = np.random.default_rng(random_state)
        n_max = max(len(idx) for by_type in groups.values() for idx in by_type.values())
        means = {}
        for cond, by_type in groups.items():
            if balance == "mean":
                means[cond] = np.mean([latent[idx].mean(axis=0) for idx in by_type.values()], 0)
            else:
                drawn = [rng.choice(idx, size=n_max, replace=True) for idx in by_type.values()]
                means[cond] = latent[np.concatenate(drawn)].mean(axis=0)
        used = sorted(set(groups[control]) | set(groups[perturbed]), key=str)
        return (means[perturbed] - means[control]).astype(np.float32), used

    def shift_and_decode(
        self,
        z_control: np.ndarray,
        delta: np.ndarray,
        *,
        control_expression: Any | None = None,
        batch_size: int | None = None,
        clip_min: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Expression of control cells moved by ``delta`` in latent space.

        Without ``control_expression`` this is scGen's ``decode(z_control + delta)``. With
        it (the control cells' own expression, cells x the model's genes), the prediction
        is ``control_expression + decode(z_control + delta) - decode(z_control)``: the
        decoder supplies only the change, and each cell keeps its deviation from the
        model's reconstruction (the ``residual`` option of :meth:`predict`).

        Parameters
        ----------
        z_control
            Latent codes of the control cells, shape ``(n_cells, n_latent)``.
        delta
            The latent shift, shape ``(n_latent,)`` (see :meth:`latent_delta`).
        control_expression
            The control cells' own expression, cells x the model's genes (dense, sparse
            or backed, log-normalised); ``None``: scGen's plain decoding.
        batch_size
            Cells decoded at once (``None``: 1024).
        clip_min
            Raise predicted values below this to it (``None``: no clipping).
            ``sn.tl.perturb`` passes 0 for data without negative values: the decoder's
            linear output (as scgen 2.1.0's) puts about a third of the values of
            log-normalised data below 0, where scGen's original decoder ends in a ReLU.

        Returns
        -------
        expression : numpy.ndarray
            The predicted expression, float32 of shape ``(n_cells, n_genes)``.
        z_predicted : numpy.ndarray
            The shifted codes ``z_control + delta``, float32 of shape
            ``(n_cells, n_latent)``.

        Raises
        ------
        ValueError
            If ``control_expression`` is not of shape ``(n_cells, n_genes)``.
        """
        batch = batch_size or 1024
        z_predicted = (z_control + delta[None, :]).astype(np.float32)
        expected = (z_predicted.shape[0], self.summary_stats.n_vars)
        if control_expression is not None and control_expression.shape != expected:
            raise ValueError(
                f"control_expression has shape {control_expression.shape}, expected "
                f"{expected} (the control cells x the model's genes)"
            )
        expression = self.decode(z_predicted, batch_size=batch)  # float32, (cells x genes)
        if control_expression is not None:
            # in place, block by block: no dense copies of the control cells' expression or
            # of their reconstruction as a whole
            z_control = np.asarray(z_control, dtype=np.float32)
            for start, control in zip(
                range(0, expected[0], batch), iter_row_batches(control_expression, batch)
            ):
                rows = slice(start, start + batch)
                expression[rows] -= self.decode(z_control[rows], batch_size=batch)
                expression[rows] += control
        if clip_min is not None:
            np.maximum(expression, clip_min, out=expression)
        return expression, z_predicted

    def predict(
        self,
        control: str,
        perturbed: str,
        *,
        cell_type: str | None = None,
        control_cells: AnnData | None = None,
        control_layer: str | None = None,
        adata: AnnData | None = None,
        restrict_arithmetic_to: Sequence[str] | None = None,
        balance: Literal["resample", "mean"] = "resample",
        delta_cells: Literal["all", "paired"] = "all",
        residual: bool = False,
        clip_min: float | None = None,
        random_state: int = 0,
        batch_size: int | None = None,
    ) -> tuple[AnnData, np.ndarray]:
        """Predict perturbed cells from control cells by latent arithmetic.

        Parameters
        ----------
        control, perturbed
            Values of the registered condition column.
        cell_type
            Predict this cell type's response from its control cells in ``adata``.
        control_cells
            Or: the control cells to shift, passed directly (their genes must include the
            model's; they are reordered to the model's).
        control_layer
            Layer of ``control_cells`` with log-normalised expression (``None``: ``X``).
        adata
            Registered AnnData the delta (and ``cell_type``'s control cells) are taken from;
            default the training data.
        restrict_arithmetic_to
            Compute the delta from these cell types only.
        balance
            ``"resample"`` (scGen, seeded) or ``"mean"``: see :meth:`latent_delta`.
        delta_cells
            ``"all"`` (scGen) or ``"paired"`` cell types: see :meth:`latent_delta`.
        residual
            ``False`` (scGen): predict ``decode(z + delta)``. ``True``: add the decoded
            change ``decode(z + delta) - decode(z)`` to the control cells' own expression
            (see :meth:`shift_and_decode`).
        clip_min
            Raise predicted values below this to it (``None``: none); ``sn.tl.perturb``
            uses 0 on data without negative values (see :meth:`shift_and_decode`).
        random_state
            Seed of the balancing.
        batch_size
            Minibatch size of encoding and decoding.

        Returns
        -------
        The predicted cells (``obs`` of the control cells with the condition set to
        ``"predicted"`` and ``obs["control_cell"]`` naming the cell each was predicted from;
        ``obsm["latent"]`` the shifted codes) and the latent ``delta``.
        """
        if (cell_type is None) == (control_cells is None):
            raise ValueError("pass exactly one of cell_type= or control_cells=")
        adata = self._validate_anndata(adata)
        condition_key = self._setup_key("condition_key")
        cell_type_key = self._setup_key("cell_type_key")
        control = as_label(control, "control", adata.obs[condition_key])
        perturbed = as_label(perturbed, "perturbed", adata.obs[condition_key])
        if cell_type is not None:
            cell_type = as_label(cell_type, "cell_type", adata.obs[cell_type_key])
        latent = self.get_latent_representation(adata, batch_size=batch_size)
        delta, _ = self.latent_delta(
            control,
            perturbed,
            adata=adata,
            latent=latent,
            restrict_arithmetic_to=restrict_arithmetic_to,
            balance=balance,
            delta_cells=delta_cells,
            random_state=random_state,
        )
        if cell_type is not None:
            mask = control_mask(adata.obs, condition_key, cell_type_key, control, cell_type)
            z_control = latent[mask]
            obs = adata.obs.loc[mask].copy()
            matrix = (
                self.get_from_registry(adata, REGISTRY_KEYS.X_KEY)[np.flatnonzero(mask)]
                if residual
                else None
            )
        else:
            genes = pd.Index(self.adata.var_names)
            missing = genes.difference(control_cells.var_names)
            if len(missing):
                raise ValueError(
                    f"control_cells lack {len(missing)} of the model's genes "
                    f"(e.g. {list(missing[:5])}); pass cells with the genes the model was "
                    "trained on"
                )
            cells = control_cells[:, genes]
            matrix = cells.layers[control_layer] if control_layer is not None else cells.X
            z_control = self.encode_matrix(matrix, batch_size=batch_size or 1024)
            obs = control_cells.obs.copy()
        expression, z_predicted = self.shift_and_decode(
            z_control,
            delta,
            control_expression=matrix if residual else None,
            batch_size=batch_size,
            clip_min=clip_min,
        )
        predicted = predicted_anndata(
            expression,
            obs,
            pd.DataFrame(index=pd.Index(self.adata.var_names).copy()),
            condition_key,
        )
        predicted.obsm["latent"] = z_predicted
        return predicted, delta

    # -- batch removal ------------------------------------------------------------------------

    def batch_removal(self, adata: AnnData | None = None, batch_size: int | None = None) -> AnnData:
        """Remove batch effects in latent space and decode, as scGen does.

        Within every cell type seen in two or more batches, each batch's latent codes are
        shifted so their mean equals the largest batch's; types seen in one batch are kept.

        Parameters
        ----------
        adata
            Registered AnnData to correct; ``None``: the training data.
        batch_size
            Minibatch size of encoding and decoding (``None``: 1024).

        Returns
        -------
        anndata.AnnData
            AnnData with the corrected expression in ``X`` (float32, the model's genes),
            the same cells in the same order with the same names and ``obs`` as ``adata``,
            and ``obsm["latent"]`` the corrected codes.

        Raises
        ------
        ValueError
            If the model was set up without a ``batch_key``.
        """
        batch_key = self._setup_key("batch_key")
        if batch_key is None:
            raise ValueError(
                "batch_removal needs batches: set the model up with "
                f"{type(self).__name__}.setup_anndata(..., batch_key=...) before training"
            )
        adata = self._validate_anndata(adata)
        latent = self.get_latent_representation(adata, batch_size=batch_size)
        types = adata.obs[self._setup_key("cell_type_key")].astype(str).to_numpy()
        batches = adata.obs[batch_key].astype(str).to_numpy()
        corrected = latent.copy()
        for cell_type in np.unique(types):
            in_type = types == cell_type
            present, sizes = np.unique(batches[in_type], return_counts=True)
            if len(present) < 2:
                continue
            reference = latent[in_type & (batches == present[np.argmax(sizes)])].mean(axis=0)
            for batch in present:
                cells = in_type & (batches == batch)
                corrected[cells] += reference - latent[cells].mean(axis=0)
        expression = self.decode(corrected, batch_size=batch_size or 1024)
        result = AnnData(X=expression, obs=adata.obs.copy(), var=adata.var.copy())
        result.obsm["latent"] = corrected.astype(np.float32)
        return result


@doc_params(model_params=SCGEN_PARAMS)
class ScGen(ScGenMixin, ScneuralModelMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """scGen (Lotfollahi et al. 2019): predict a perturbation response by latent arithmetic.

    PyTorch backend; the model-level code is :class:`ScGenMixin`.

    A VAE is trained on log-normalised expression of control and perturbed cells of
    several cell types. The perturbation is the vector ``delta`` between the cell-type
    balanced mean latent codes of perturbed and control cells; a cell type never seen
    perturbed is predicted by decoding ``z(control cells) + delta``.

    Parameters
    ----------
    {model_params}

    Examples
    --------
    >>> ScGen.setup_anndata(train, condition_key="stim", cell_type_key="cell_type")
    >>> model = ScGen(train)
    >>> model.train()
    >>> pred, delta = model.predict("CTRL", "STIM", cell_type="CD14 Mono")
    """

    _module_cls = ScGenModule
    _training_plan_cls = ScGenTrainingPlan
    backend = "torch"

    @torch.inference_mode()
    @doc_params(sections=ENCODE_MATRIX_SECTIONS)
    def encode_matrix(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Posterior means of the rows of a matrix whose columns are the model's genes.

        {sections}
        """
        self.module.eval()
        parts = []
        for block in iter_row_batches(X, batch_size):
            x = torch.from_numpy(block).to(self.device)
            parts.append(self.module.inference(x)["qz_m"].cpu().numpy())
        return np.concatenate(parts, axis=0)

    @torch.inference_mode()
    @doc_params(sections=DECODE_SECTIONS)
    def decode(self, z: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Expression decoded from latent codes ``z`` (cells x ``n_latent``).

        {sections}
        """
        self.module.eval()
        # filled block by block: no list of parts, concatenation and cast, each as large
        # as the (cells x genes) result
        out = np.empty((z.shape[0], self.summary_stats.n_vars), dtype=np.float32)
        for start in range(0, z.shape[0], batch_size):
            block = torch.as_tensor(z[start : start + batch_size], dtype=torch.float32)
            out[start : start + batch_size] = self.module.decode(block.to(self.device)).cpu()
        return out


def check_arithmetic_options(balance: str, delta_cells: str) -> None:
    """Require known ``balance`` and ``delta_cells`` modes of the latent arithmetic."""
    if balance not in ("resample", "mean"):
        raise ValueError(f"balance={balance!r} is not supported; choose 'resample' or 'mean'")
    if delta_cells not in ("all", "paired"):
        raise ValueError(f"delta_cells must be 'all' or 'paired', got {delta_cells!r}")


def arithmetic_cell_types(
    types: np.ndarray,
    conditions: np.ndarray,
    control: str,
    perturbed: str,
    restrict: Sequence[str] | None,
) -> tuple[set[str], set[str]]:
    """The cell types the delta may use, and those among them seen in both conditions.

    ``restrict`` (``restrict_arithmetic_to``) narrows the candidates to the types it names.
    Raises when it is a string or names unknown types, and when no candidate type has both
    control and perturbed cells (scGen then has no shift to learn).
    """
    if isinstance(restrict, str):
        raise TypeError("restrict_arithmetic_to must be a list of cell types, not a string")
    candidates = set(types)
    if restrict is not None:
        wanted = {str(t) for t in restrict}
        unknown = sorted(wanted - candidates)
        if unknown:
            raise ValueError(
                f"restrict_arithmetic_to names cell types not in the data: {unknown}; "
                f"types found: {sorted(candidates)[:20]}"
            )
        candidates &= wanted
    shared = candidates & set(types[conditions == control]) & set(types[conditions == perturbed])
    if not shared:
        raise ValueError(
            "no cell type has both control and perturbed cells"
            + (" among restrict_arithmetic_to" if restrict is not None else "")
            + "; scGen needs at least one type seen in both conditions to learn the shift"
        )
    return candidates, shared


def as_label(value: Any, argument: str, column: pd.Series | None = None) -> str:
    """A condition or cell-type value as the string the ``obs`` column compares with.

    The columns are compared as strings, so ``control=0`` finds the cells of an integer
    column's 0 (and ``"0"`` too). A number that is not itself one of ``column``'s strings
    is matched by value, so ``control=0`` also finds a float column's ``"0.0"``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(value)  # a boolean column's values read "True" and "False"
    if isinstance(value, int | float | np.integer | np.floating):
        if column is not None:
            values = column.cat.categories if column.dtype == "category" else column.dropna()
            labels = pd.unique(values.astype(str))
            if str(value) not in labels:
                return next((label for label in labels if _number(label) == value), str(value))
        return str(value)
    raise TypeError(f"{argument} must be a value of the obs column (a str), got {value!r}")


def _number(label: str) -> float | None:
    """The number a label reads as, or None."""
    try:
        return float(label)
    except ValueError:
        return None


def check_conditions(
    conditions: np.ndarray, condition_key: str, control: str, perturbed: str
) -> None:
    """Require ``control`` and ``perturbed`` to be two different values of the condition."""
    check_obs_values(conditions, condition_key, control=control, perturbed=perturbed)
    if control == perturbed:
        raise ValueError(f"control and perturbed are both {control!r}; pass two different values")


def control_mask(
    obs: pd.DataFrame, condition_key: str, cell_type_key: str, control: str, cell_type: str
) -> np.ndarray:
    """Cells of ``cell_type`` under ``control``; errors if the type or its controls are absent."""
    types = obs[cell_type_key].astype(str).to_numpy()
    if cell_type not in set(types):
        raise ValueError(
            f"cell type {cell_type!r} is not in obs[{cell_type_key!r}]; "
            f"types found: {sorted(set(types))[:20]}"
        )
    mask = (types == cell_type) & (obs[condition_key].astype(str).to_numpy() == control)
    if not mask.any():
        raise ValueError(
            f"cell type {cell_type!r} has no control cells ({condition_key}={control!r}); "
            "scGen predicts a type's response from its control cells"
        )
    return mask


def predicted_anndata(
    expression: np.ndarray, obs: pd.DataFrame, var: pd.DataFrame, condition_key: str
) -> AnnData:
    """AnnData of predicted cells: ``obs`` of their control cells, condition ``"predicted"``.

    Cells are named ``"{control cell}-predicted"`` (so they can be concatenated with the
    real data) and ``obs["control_cell"]`` names the cell each was predicted from.
    """
    # scvi-tools' registration columns (``_scvi_labels``...) describe the training data
    obs = obs.drop(columns=[c for c in obs.columns if str(c).startswith("_scvi_")])
    for column in obs.columns:  # as an AnnData subset: no category without cells
        if isinstance(obs[column].dtype, pd.CategoricalDtype):
            obs[column] = obs[column].cat.remove_unused_categories()
    obs["control_cell"] = obs.index.astype(str).to_numpy()
    obs[condition_key] = pd.Categorical([PREDICTED] * len(obs))
    obs.index = pd.Index([f"{name}-{PREDICTED}" for name in obs.index.astype(str)])
    return AnnData(X=np.asarray(expression, dtype=np.float32), obs=obs, var=var)
