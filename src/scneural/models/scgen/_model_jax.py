"""The JAX twin of the scGen model (``backend="jax"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from scvi import REGISTRY_KEYS
from scvi.model.base import BaseModelClass

from scneural._docs import doc_params
from scneural._utils import iter_row_batches
from scneural.models._jax import JaxModelMixin, JaxTrainingMixin
from scneural.models._jax_base import ScneuralJaxTrainingPlan

from ._model import DECODE_SECTIONS, ENCODE_MATRIX_SECTIONS, SCGEN_PARAMS, ScGenMixin
from ._module_jax import JaxScGenModule, scgen_variables_from_torch


@doc_params(model_params=SCGEN_PARAMS)
class JaxScGen(ScGenMixin, JaxModelMixin, JaxTrainingMixin, BaseModelClass):
    """scGen (Lotfollahi et al. 2019) on scvi-tools, JAX/flax backend.

    The same model as :class:`~scneural.models.ScGen` (arguments, layers, loss,
    ``setup_anndata``, ``train``, ``latent_delta``, ``predict``, ``batch_removal``, ``save``
    and ``load``), with a flax module trained by jitted steps through
    :class:`scvi.train.JaxTrainingPlan`. ``scvi.settings.seed`` (set by ``random_state`` in
    :func:`scneural.tl.perturb`) seeds the parameter, dropout and latent-sample RNG streams.

    Parameters
    ----------
    {model_params}

    Examples
    --------
    >>> JaxScGen.setup_anndata(train, condition_key="stim", cell_type_key="cell_type")
    >>> model = JaxScGen(train)
    >>> model.train()
    >>> pred, delta = model.predict("CTRL", "STIM", cell_type="CD14 Mono")
    """

    _module_cls = JaxScGenModule
    _training_plan_cls = ScneuralJaxTrainingPlan
    backend = "jax"

    def _variables(self) -> dict[str, Any]:
        self.module._check_train_state_is_not_none()
        return {"params": self.module.params, **self.module.state}

    @doc_params(sections=ENCODE_MATRIX_SECTIONS)
    def encode_matrix(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Posterior means of the rows of a matrix whose columns are the model's genes.

        {sections}
        """
        self.module.eval()
        inference = self._jit_inference()
        variables = self._variables()
        parts = [
            np.asarray(inference(variables, self.module.rngs, {REGISTRY_KEYS.X_KEY: block})["qz_m"])
            for block in iter_row_batches(X, batch_size)
        ]
        if not parts:
            return np.zeros((0, self.module.n_latent), dtype=np.float32)
        return np.concatenate(parts, axis=0)

    @doc_params(sections=DECODE_SECTIONS)
    def decode(self, z: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Expression decoded from latent codes ``z`` (cells x ``n_latent``).

        {sections}
        """
        self.module.eval()
        generative = self._jit_generative()
        variables = self._variables()
        out = np.empty((z.shape[0], self.summary_stats.n_vars), dtype=np.float32)
        for start in range(0, z.shape[0], batch_size):
            block = np.asarray(z[start : start + batch_size], np.float32)
            out[start : start + batch_size] = np.asarray(generative(variables, block))
        return out

    def _jit_generative(self) -> Callable[..., Any]:
        """The module's decoder jitted once per module, with the variables as arguments."""
        cached = getattr(self, "_jit_generative_cache", None)
        if cached is None or cached[0] is not self.module:
            module = self.module

            @jax.jit
            def run(variables: Any, z: Any) -> Any:
                bound = module.clone()
                return bound.apply(variables, z, method=bound.generative)["px"]

            cached = (module, run)
            self._jit_generative_cache = cached
        return cached[1]

    def load_torch_weights(self, torch_model: Any) -> None:
        """Take over the weights of a trained torch :class:`~scneural.models.ScGen`.

        Both models must have the same architecture. The JAX model must have a training
        state: train it for one step, e.g. ``train(max_steps=1, early_stopping=False)``
        (one step ends before any validation, which early stopping needs), or load a saved
        model.

        Parameters
        ----------
        torch_model
            A trained :class:`~scneural.models.ScGen` set up on the same genes in the same
            order, built with the same arguments.

        Raises
        ------
        RuntimeError
            If this model has no training state yet (train it for one step first).
        TypeError
            If ``torch_model`` is not a :class:`~scneural.models.ScGen`.
        ValueError
            If its genes (or their order) or layer sizes differ from this model's.
        """
        self._check_torch_counterpart(torch_model)
        variables = scgen_variables_from_torch(torch_model.module)
        self._check_torch_shapes(variables)
        state = self.module.train_state
        self.module.train_state = state.replace(
            params=variables["params"],
            state={"batch_stats": variables["batch_stats"]} if "batch_stats" in variables else {},
        )
