"""The JAX twin of the scDeepCluster model (``backend="jax"``)."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from scneural._docs import doc_params
from scneural.models._jax import JaxModelMixin, jax_trainer_kwargs
from scneural.models._jax_base import ScneuralJaxTrainingPlan

from ._model import DEEP_CLUSTER_PARAMS, DeepClusterMixin
from ._module_jax import BUFFERS, JaxDeepClusterModule, deep_cluster_variables_from_torch
from ._plan_jax import JaxDECTrainingPlan


@doc_params(model_params=DEEP_CLUSTER_PARAMS)
class JaxDeepCluster(DeepClusterMixin, JaxModelMixin, BaseModelClass):
    """scDeepCluster on scvi-tools, JAX/flax backend.

    The same model as :class:`~scneural.models.DeepCluster` (arguments, layers, losses,
    ``setup_anndata``, ``pretrain``, ``init_clusters``, ``train_clusters``, ``train``,
    ``predict``, ``get_soft_assignment``, ``get_latent_representation``, ``save`` and
    ``load``), with a flax module trained by jitted steps: pretraining through
    :class:`scvi.train.JaxTrainingPlan` (AMSGrad) and the DEC phase through
    :class:`~scneural.models.deep_cluster._plan_jax.JaxDECTrainingPlan` (Adadelta).
    ``scvi.settings.seed`` (set by ``random_state`` in :func:`scneural.tl.deep_cluster`)
    seeds the parameter and noise RNG streams, so runs repeat.

    Parameters
    ----------
    {model_params}

    Examples
    --------
    >>> JaxDeepCluster.setup_anndata(adata, layer="counts")
    >>> model = JaxDeepCluster(adata, n_clusters=8)
    >>> model.train()
    >>> adata.obs["deep_cluster"] = model.predict()
    """

    _module_cls = JaxDeepClusterModule
    _training_plan_cls = ScneuralJaxTrainingPlan
    _pretrain_plan_cls = ScneuralJaxTrainingPlan
    _dec_plan_cls = JaxDECTrainingPlan
    backend = "jax"

    # ------------------------------------------------------------ backend hooks
    def _set_normalization(self, mean: np.ndarray, std: np.ndarray, median: float) -> None:
        # injected into the training state when the variables are first built (in _run)
        self._buffers = {
            "gene_mean": np.asarray(mean, dtype=np.float32),
            "gene_std": np.asarray(std, dtype=np.float32),
            "median_library": np.asarray(median, dtype=np.float32),
        }

    def _set_state(self, params: Any, state: Any, plan: ScneuralJaxTrainingPlan | None = None):
        """Give the module a fresh training state (the plan's optimizer) with these variables."""
        self.module.train_state = None
        (plan or ScneuralJaxTrainingPlan(self.module)).set_train_state(params, state)

    def _set_cluster_centres(self, centres: np.ndarray) -> None:
        old = self.module
        old._check_train_state_is_not_none()
        params, state = old.params, old.state
        k = int(centres.shape[0])
        if k != old.n_clusters:
            # k is a shape of the flax module: rebuild it, keeping its RNG streams
            self._module_kwargs["n_clusters"] = k
            self.module = self._module_cls(**self._module_kwargs)
            self.module.seed_rng, self.module._rngs = old.seed_rng, old._rngs
        params = {**params, "cluster_centres": jnp.asarray(centres, dtype=jnp.float32)}
        self._set_state(params, state)

    def _pretrain_plan(self, lr: float, plan_kwargs: dict) -> ScneuralJaxTrainingPlan:
        return self._pretrain_plan_cls(
            self.module, optimizer="Custom", optimizer_creator=optax.amsgrad(lr), **plan_kwargs
        )

    def _dec_plan(self, lr: float, plan_kwargs: dict, **dec_kwargs) -> JaxDECTrainingPlan:
        return self._dec_plan_cls(
            self.module,
            **dec_kwargs,
            optimizer="Custom",
            optimizer_creator=optax.adadelta(lr, rho=0.95, eps=1e-6),
            **plan_kwargs,
        )

    def _run(
        self,
        plan: ScneuralJaxTrainingPlan,
        max_epochs: int,
        batch_size: int,
        *,
        phase: str,
        **trainer_kwargs,
    ) -> dict[str, np.ndarray]:
        """Train one phase with ``plan`` (a fresh optimizer on the current variables)."""
        import flax
        from scvi.model._utils import parse_device_args

        clip: dict[str, Any] = {}
        trainer_kwargs = jax_trainer_kwargs(trainer_kwargs, clip)
        if "max_norm" in clip:
            plan.max_norm = clip["max_norm"]  # read when _set_state builds the optimizer
        accelerator = trainer_kwargs.pop("accelerator", "auto")
        devices = trainer_kwargs.pop("devices", "auto")
        _, _, device = parse_device_args(
            accelerator, devices, return_device="jax", validate_single_device=False
        )
        try:
            self.module.to(device)
        except RuntimeError:
            pass
        module = self.module
        if module.train_state is None:
            loader = self._make_data_loader(
                adata=self.adata, batch_size=batch_size, shuffle=False, iter_ndarray=True
            )
            variables = module.init(module.rngs, next(iter(loader)))
            state, params = flax.core.pop(variables, "params")
            state = {**state, BUFFERS: jax.tree_util.tree_map(jnp.asarray, self._buffers)}
        else:
            params, state = module.params, module.state
        self._set_state(params, state, plan)
        splitter = DataSplitter(
            self.adata_manager,
            train_size=1.0,
            batch_size=batch_size,
            shuffle_set_split=True,
            iter_ndarray=True,
        )
        trainer_kwargs = self._phase_trainer_kwargs(trainer_kwargs, phase)
        module.train()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"pytorch_lightning.*")
            runner = TrainRunner(
                self,
                training_plan=plan,
                data_splitter=splitter,
                max_epochs=max_epochs,
                accelerator="cpu",
                devices="auto",
                **trainer_kwargs,
            )
            runner()
        module.eval()
        return self.history_dict()

    def load_torch_weights(self, torch_model: Any) -> None:
        """Take over the weights, buffers and centres of a torch
        :class:`~scneural.models.DeepCluster` of the same architecture (and the same k).

        The JAX model must have a training state (train or load it first).

        Parameters
        ----------
        torch_model
            A :class:`~scneural.models.DeepCluster`, pretrained or trained, set up on the
            same genes in the same order and built with the same arguments (and k).

        Raises
        ------
        RuntimeError
            If this model has no training state yet (train it for one step first).
        TypeError
            If ``torch_model`` is not a :class:`~scneural.models.DeepCluster`.
        ValueError
            If its genes (or their order) or layer sizes differ from this model's.
        """
        self._check_torch_counterpart(torch_model)
        variables = deep_cluster_variables_from_torch(torch_model.module)
        self._check_torch_shapes(variables)
        params = variables.pop("params")
        self._set_state(params, {**self.module.state, **variables})
