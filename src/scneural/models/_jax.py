"""The only module of scneural that imports scvi-tools' JAX classes.

scvi-tools 1.5 removed its JAX base classes; keeping every import of them here means a
future port touches one file. The classes are loaded on first access (module
``__getattr__``), so ``import scneural`` works without the optional JAX dependencies::

    from scneural.models._jax import JaxBaseModuleClass, flax_configure, JaxLossOutput
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from anndata import AnnData

from scneural.models._base import ScneuralModelMixin, several_devices

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


def jax_trainer_kwargs(trainer_kwargs: dict[str, Any], plan_kwargs: dict[str, Any]) -> dict:
    """Trainer arguments of a JAX model's training, made to mean what they mean for torch.

    - ``gradient_clip_val`` (Lightning clips the gradients of torch models; JAX steps are
      optimised by hand, where Lightning refuses it) becomes the plan's ``max_norm`` (optax
      ``clip_by_global_norm``), written into ``plan_kwargs`` unless they name one.
    - several ``devices`` raise a ValueError: scvi-tools' JAX training runs on one device.
    - ``accelerator="auto"`` trains on the CPU when this JAX install has no GPU backend
      (torch may see a GPU that a CPU-only ``jaxlib`` cannot use); an explicit GPU
      accelerator then raises a ValueError that says how to install JAX for GPUs.
    """
    trainer_kwargs = dict(trainer_kwargs)
    devices = trainer_kwargs.get("devices", "auto")
    if several_devices(devices):
        raise ValueError(
            f'devices={devices!r}, but backend="jax" trains on one device (scvi-tools\' JAX '
            'models have no multi-device training); pass devices=1, or backend="torch" to '
            "train on several devices (DDP)"
        )
    clip = trainer_kwargs.pop("gradient_clip_val", None)
    algorithm = trainer_kwargs.pop("gradient_clip_algorithm", None)
    if clip is not None:
        if algorithm not in (None, "norm"):
            raise ValueError(
                f'gradient_clip_algorithm={algorithm!r} is not supported with backend="jax"; '
                'only "norm" (the default) is'
            )
        plan_kwargs.setdefault("max_norm", float(clip))
    accelerator = trainer_kwargs.get("accelerator", "auto")
    if accelerator != "cpu":
        import jax

        try:
            jax.devices("gpu")
        except RuntimeError:
            if accelerator == "auto":
                import torch

                if torch.cuda.is_available():
                    warnings.warn(
                        'backend="jax" trains on the CPU: this JAX install has no GPU backend '
                        '(pip install "jax[cuda12]" to train on the GPU)',
                        UserWarning,
                        stacklevel=3,
                    )
                trainer_kwargs["accelerator"] = "cpu"
            elif accelerator in ("gpu", "cuda"):
                raise ValueError(
                    f"accelerator={accelerator!r}, but this JAX install has no GPU backend "
                    f'(jax.devices(): {jax.devices()}); pip install "jax[cuda12]", or pass '
                    'accelerator="cpu"'
                ) from None
    return trainer_kwargs


class JaxModelMixin(ScneuralModelMixin):
    """:class:`~scneural.models._base.ScneuralModelMixin` for models with a JAX module.

    Provides the same ``_batched_inference`` as the torch models (jitted inference over
    minibatches, numpy out) and the device plumbing scvi-tools' JAX models need.
    """

    def train(self, *args: Any, plan_kwargs: dict | None = None, **kwargs: Any) -> None:
        """scvi-tools' JAX ``train`` with Lightning's clipping and device arguments translated
        (see :func:`jax_trainer_kwargs`); the model is trained in place.

        Parameters
        ----------
        *args
            Passed to :meth:`scvi.model.base.JaxTrainingMixin.train` (``max_epochs``, ...).
        plan_kwargs
            Arguments of the training plan; a ``gradient_clip_val`` in ``kwargs`` becomes
            its ``max_norm`` unless it names one.
        **kwargs
            Passed to :meth:`scvi.model.base.JaxTrainingMixin.train` and the Lightning
            trainer, after :func:`jax_trainer_kwargs` translated them.

        Raises
        ------
        ValueError
            If ``devices`` asks for several devices, ``gradient_clip_algorithm`` is not
            ``"norm"``, or a GPU accelerator is named but this JAX install has no GPU
            backend.
        """
        plan_kwargs = dict(plan_kwargs or {})
        kwargs = jax_trainer_kwargs(kwargs, plan_kwargs)
        super().train(*args, plan_kwargs=plan_kwargs, **kwargs)

    @staticmethod
    def _ema_callback(decay: float) -> Any:
        """The JAX counterpart of the torch models' EMA callback (see
        :class:`~scneural.models._jax_base.JaxEMAWeightAveraging`)."""
        from scneural.models._jax_base import JaxEMAWeightAveraging

        return JaxEMAWeightAveraging(decay)

    def _check_torch_counterpart(self, torch_model: Any) -> None:
        """Refuse a torch model whose weights would not mean the same here: another model
        class, other genes (or their order) or other classes; and a JAX model without a
        training state to put them in."""
        if self.module.train_state is None:
            raise RuntimeError(
                f"this {type(self).__name__} has no training state to load the weights into: "
                "train it for one step first, e.g. train(max_steps=1, early_stopping=False)"
            )
        expected = type(self).__name__.removeprefix("Jax")  # JaxScGen -> ScGen
        if type(torch_model).__name__ != expected:
            raise TypeError(
                f"load_torch_weights needs a trained {expected}, got {type(torch_model).__name__}"
            )
        mine, theirs = self.adata.var_names, torch_model.adata.var_names
        if not mine.equals(theirs):
            raise ValueError(
                f"the torch model was trained on other genes (or another order) than this "
                f"{type(self).__name__} ({len(theirs)} vs {len(mine)} genes); set both up on "
                "the same genes in the same order"
            )
        classes = getattr(self, "classes_", None)
        if classes is not None and list(classes) != list(torch_model.classes_):
            raise ValueError(
                f"the torch model's classes {list(torch_model.classes_)} are not this "
                f"model's {list(classes)}; set both up with the same labels"
            )

    def _check_torch_shapes(self, variables: dict[str, Any]) -> None:
        """Refuse converted torch weights whose shapes are not this module's."""
        import jax

        current = {"params": self.module.params, **self.module.state}
        shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), current)
        given = jax.tree_util.tree_map(lambda a: tuple(a.shape), variables)
        for collection, tree in given.items():
            if collection in shapes and shapes[collection] != tree:
                raise ValueError(
                    f"the torch model's architecture differs from this {type(self).__name__}'s "
                    "(layer sizes, batches or clusters): build both with the same arguments"
                )

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
        """JAX places arrays itself (``train`` moves the module to the chosen device).

        Parameters
        ----------
        device
            Ignored: nothing is moved (scvi-tools' torch models take ``"cpu"``,
            ``"cuda:0"``, ...).
        """

    @property
    def device(self) -> Any:
        """The JAX device of the module."""
        return self.module.device
