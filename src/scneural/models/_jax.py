"""The only module of scneural that imports scvi-tools' JAX classes.

scvi-tools 1.5 removed its JAX base classes; keeping every import of them here means a
future port touches one file. The classes are loaded on first access (module
``__getattr__``), so ``import scneural`` works without the optional JAX dependencies::

    from scneural.models._jax import JaxBaseModuleClass, flax_configure, JaxLossOutput
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from anndata import AnnData

from scneural.models._base import ScneuralModelMixin

JAX_INSTALL_HINT = 'backend="jax" needs the optional JAX dependencies: pip install "scneural[jax]"'

#: name -> (module, attribute) of every scvi-tools JAX class scneural uses
_SCVI_JAX = {
    "JaxBaseModuleClass": ("scvi.module.base", "JaxBaseModuleClass"),
    "flax_configure": ("scvi.module.base", "flax_configure"),
    "TrainStateWithState": ("scvi.module.base", "TrainStateWithState"),
    # the flax-struct LossOutput that jitted JAX modules return (the torch one is not a pytree)
    "JaxLossOutput": ("scvi.module._jaxvae", "LossOutput"),
    "JaxTrainingPlan": ("scvi.train", "JaxTrainingPlan"),
    "JaxModuleInit": ("scvi.train", "JaxModuleInit"),
    "JaxTrainingMixin": ("scvi.model.base", "JaxTrainingMixin"),
}


def require_jax() -> None:
    """Raise an ImportError that says how to install JAX support when it is missing."""
    try:
        import flax  # noqa: F401
        import jax  # noqa: F401
        import optax  # noqa: F401
        from scvi.module.base import JaxBaseModuleClass  # noqa: F401
        from scvi.train import JaxTrainingPlan  # noqa: F401
    except ImportError as err:
        raise ImportError(JAX_INSTALL_HINT) from err


def __getattr__(name: str) -> Any:
    if name in _SCVI_JAX:
        import importlib

        require_jax()
        module, attribute = _SCVI_JAX[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class JaxModelMixin(ScneuralModelMixin):
    """:class:`~scneural.models._base.ScneuralModelMixin` for models with a JAX module.

    Provides the same ``_batched_inference`` as the torch models (jitted inference over
    minibatches, numpy out) and the device plumbing scvi-tools' JAX models need.
    """

    def _gradient_clipping(self, max_norm: float) -> tuple[dict, dict]:
        """JAX steps are optimised by hand, so Lightning cannot clip them: scvi-tools' JAX
        training plan clips in its optax chain (``max_norm``)."""
        return {"max_norm": max_norm}, {}

    def _batched_inference(
        self,
        adata: AnnData | None,
        outputs: Sequence[str],
        *,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the module's jitted ``inference`` over ``adata`` in minibatches."""
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(
            adata=adata,
            indices=indices,
            batch_size=batch_size or 1024,
            shuffle=False,
            iter_ndarray=True,
        )
        self.module.eval()
        inference = self._jit_inference()
        variables = {"params": self.module.params, **self.module.state}
        collected: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
        for tensors in loader:
            result = inference(variables, self.module.rngs, tensors)
            if transform is not None:
                result = transform(result)
            for name in outputs:
                collected[name].append(self.module.as_numpy_array(result[name]))
        return {name: np.concatenate(parts, axis=0) for name, parts in collected.items()}

    def _jit_inference(self) -> Callable[..., dict[str, Any]]:
        """The module's ``inference`` jitted once per module, with the variables as arguments.

        scvi-tools' ``get_jit_inference_fn`` closes over the trained parameters, so every
        call compiles anew with the weights baked in as constants; here the compiled
        function is reused by every prediction (one compilation per minibatch shape).
        """
        import jax

        cached = getattr(self, "_jit_inference_cache", None)
        if cached is None or cached[0] is not self.module:
            module = self.module

            @jax.jit
            def run(variables: Any, rngs: Any, tensors: Any) -> dict[str, Any]:
                bound = module.clone()
                inputs = bound._get_inference_input(tensors)
                return bound.apply(variables, rngs=rngs, method=bound.inference, **inputs)

            cached = (module, run)
            self._jit_inference_cache = cached
        return cached[1]

    def to_device(self, device: Any) -> None:
        """JAX places arrays itself (``train`` moves the module to the chosen device)."""

    @property
    def device(self) -> Any:
        """The JAX device of the module."""
        return self.module.device
