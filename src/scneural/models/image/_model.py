"""The scvi-tools model of the expression-supervised image CNN."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField, ObsmField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

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
    has_validation_set,
    records_training,
)

from ._module import PATCHES_KEY, ImageExpressionModule
from ._plan import ImageExpressionTrainingPlan


class ImageExpressionModel(ScneuralModelMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """A compact CNN trained on a tissue's own patches to predict each spot's expression.

    The targets (``X`` of the registered AnnData) are the spots' log-normalised expression
    PCs; the patches (``obsm[patches_key]``) are square uint8 RGB images flattened to
    ``s * s * 3`` values. The penultimate layer is the image feature vector.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_channels, n_latent, dropout_rate, augment, jitter
        See :class:`~scneural.models.image.ImageExpressionModule`.

    Examples
    --------
    >>> ImageExpressionModel.setup_anndata(proxy, patches_key="patches")
    >>> model = ImageExpressionModel(proxy)
    >>> model.train(max_epochs=50)
    >>> features = model.get_latent_representation()
    """

    _module_cls = ImageExpressionModule
    _training_plan_cls = ImageExpressionTrainingPlan
    _history_exclude = ("elbo_", "reconstruction_loss_", "kl_local_", "kl_global_")

    def __init__(
        self,
        adata: AnnData | None = None,
        n_channels: Sequence[int] = (32, 64, 128),
        n_latent: int = 128,
        dropout_rate: float = 0.1,
        augment: bool = True,
        jitter: float = 0.2,
    ):
        super().__init__(adata)
        n_values = self.adata_manager.get_from_registry(PATCHES_KEY).shape[1]
        input_size = round(np.sqrt(n_values / 3))
        if input_size * input_size * 3 != n_values:
            raise ValueError(
                f"obsm patches have {n_values} values per spot; expected s*s*3 (square RGB)"
            )
        self.module = self._module_cls(
            n_targets=self.summary_stats.n_vars,
            input_size=input_size,
            n_channels=tuple(n_channels),
            n_latent=n_latent,
            dropout_rate=dropout_rate,
            augment=augment,
            jitter=jitter,
        )
        self._model_summary_string = (
            f"ImageExpressionModel: {input_size}x{input_size} RGB patches -> conv "
            f"{[*n_channels, n_latent]} -> {self.module.n_features} features (mean and max "
            f"pooled) -> {self.summary_stats.n_vars} "
            f"expression PCs; augment {augment}"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    @doc_params()
    def setup_anndata(
        cls,
        adata: AnnData,
        patches_key: str = "patches",
        layer: str | None = None,
        **kwargs,
    ) -> None:
        """Register the expression targets (``X`` or ``layer``) and the patches (``obsm``).

        Parameters
        ----------
        adata
            AnnData whose ``X`` holds the expression PCs to predict.
        patches_key
            Key of ``adata.obsm`` with the flattened uint8 patches.
        layer
            Layer with the targets instead of ``X``.
        {setup_kwargs}
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            ObsmField(PATCHES_KEY, patches_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @doc_params()
    @records_training
    def train(
        self,
        max_epochs: int | None = 60,
        *,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        early_stopping: bool = True,
        early_stopping_patience: int = 15,
        train_size: float | None = 0.9,
        logger: str | None = None,
        plan_kwargs: dict | None = None,
        **kwargs,
    ) -> None:
        """Train with AdamW on the mean squared error; early stopping on the validation loss.

        The model is trained in place: ``model.history`` (:meth:`history_dict`) holds the
        per-epoch curves and :meth:`training_record` the arguments of this call.

        Parameters
        ----------
        max_epochs
            Maximum number of epochs, at least 1 (``None``: scvi-tools' default for the
            number of spots).
        lr, weight_decay
            Learning rate and weight decay.
        batch_size
            Minibatch size (patches).
        early_stopping, early_stopping_patience
            Stop when the validation loss has not improved for this many epochs.
        train_size
            Fraction of spots trained on; the rest is the validation set (``None``:
            scvi-tools' default split; ``1.0``: no validation, no early stopping).
        logger
            Also log to ``"tensorboard"``, ``"csv"`` (in ``lightning_logs/`` under the
            trainer's ``default_root_dir`` when ``**kwargs`` give one, else the working
            directory) or a Lightning logger; ``None`` or ``False``: no other logger. The
            per-epoch history is always kept in ``model.history``.
        plan_kwargs
            More arguments of :class:`scvi.train.TrainingPlan`.
        **kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train`.

        Raises
        ------
        ValueError
            If ``max_epochs`` is below 1 (no training step would run, yet the model would
            count as trained), ``lr`` is not positive, ``weight_decay`` is negative, or
            ``train_size`` is not in (0, 1] or leaves no spot for validation.
        {train_type_error}
        """
        max_epochs = check_optional_int(max_epochs, "max_epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        check_plan_kwargs(plan_kwargs, self._training_plan_cls)
        plan = check_plan_settings(
            plan_kwargs,
            lr=lr,
            weight_decay=weight_decay,
            optimizer="AdamW",
            reduce_lr_on_plateau=True,
            lr_patience=8,
            lr_scheduler_metric="validation_loss",
        )
        if not has_validation_set(train_size):
            plan["reduce_lr_on_plateau"] = False
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

    @doc_params()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Image features (penultimate layer) of the registered spots.

        Computed on the patches as stored, without augmentation (for features that do not
        depend on the patches' orientation, see :meth:`embed_patches`).

        Parameters
        ----------
        adata
            Spots with their patches in ``obsm`` as at :meth:`setup_anndata`; ``None``: the
            AnnData the model was set up with.
        {indices}
        batch_size
            Patches per minibatch of inference (``None``: 128); changes memory use, not
            the result.

        Returns
        -------
        numpy.ndarray
            float32 array of shape ``(n_spots, n_features)`` (``n_features`` is
            ``2 * n_latent``: the last convolution's maps mean- and max-pooled).

        Raises
        ------
        RuntimeError
            If the model has not been trained.
        """
        return self._batched_inference(
            adata, ["embedding"], indices=indices, batch_size=batch_size or 128
        )["embedding"]

    @torch.inference_mode()
    def embed_patches(self, patches: np.ndarray, orientations: bool = True) -> np.ndarray:
        """Image features of uint8 patches ``(n, s, s, 3)`` at the model's input size.

        With ``orientations=True`` the features are averaged over the 8 flips and 90-degree
        rotations the CNN was trained with, so they do not depend on the patch's orientation.

        Parameters
        ----------
        patches
            uint8 RGB patches, shape ``(n, s, s, 3)`` with ``s`` the model's
            :attr:`input_size`; all are passed through the CNN at once, on the module's
            device.
        orientations
            Average the features over the 8 orientations; ``False``: the patches as given.

        Returns
        -------
        numpy.ndarray
            float32 array of shape ``(n, n_features)``.
        """
        self.module.eval()
        device = next(self.module.parameters()).device
        tensor = torch.from_numpy(np.ascontiguousarray(patches)).to(device)
        views = [tensor]
        if orientations:
            views = [
                torch.rot90(view, k, dims=(1, 2))
                for view in (tensor, tensor.flip(2))
                for k in range(4)
            ]
        features = [self.module.inference(view)["embedding"] for view in views]
        return torch.stack(features).mean(0).cpu().numpy()

    @property
    def input_size(self) -> int:
        """Side of the square patches the CNN takes."""
        return int(self.module.input_size)
