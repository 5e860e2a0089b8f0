"""Bases of scneural's JAX modules and training plan (on scvi-tools' JAX classes).

They remove one-off costs of scvi-tools' JAX path that dominate for small models on CPU:
``module.init`` and the optimizer's state are built eagerly there (one XLA compilation per
parameter shape), and the training state's step counter starts as a weakly-typed Python
int on no particular device, which makes the jitted training step compile twice. Here both
are built in one jitted call with a strongly-typed, device-committed state, so a training
run compiles its step once per minibatch shape. Loading a saved model builds the state
without a training step.
"""

from __future__ import annotations

from typing import Any

import flax.linen as fnn
import jax
import jax.numpy as jnp
from lightning.pytorch.callbacks import Callback

from scneural.models._jax import JaxBaseModuleClass, JaxTrainingPlan, TrainStateWithState


class ScneuralJaxModule(JaxBaseModuleClass):
    """:class:`scvi.module.base.JaxBaseModuleClass` whose ``init`` runs jitted."""

    @fnn.nowrap
    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Any:
        """Initialise the variables in one compiled call (same values as eager ``init``)."""
        parent_init = super().init
        if kwargs:
            return parent_init(rngs, *args, **kwargs)
        return jax.jit(parent_init)(rngs, *args)

    @staticmethod
    @fnn.nowrap
    def on_load(model: Any, **kwargs: Any) -> None:
        """Give a freshly built model a training state for ``load_state_dict`` to fill.

        scvi-tools trains one step here (with the model's own ``train``, whose early
        stopping cannot run in one step); initialising the variables and the optimizer
        state from one minibatch gives the same structure without training.
        """
        import flax

        module = model.module
        loader = model._make_data_loader(
            adata=model.adata, batch_size=128, shuffle=False, iter_ndarray=True
        )
        variables = module.init(module.rngs, next(iter(loader)))
        state, params = flax.core.pop(variables, "params")
        model._training_plan_cls(module).set_train_state(params, state)


class ScneuralJaxTrainingPlan(JaxTrainingPlan):
    """:class:`scvi.train.JaxTrainingPlan` that builds its training state in one jitted call."""

    def __init__(self, module: Any, **kwargs: Any):
        if kwargs.get("reduce_lr_on_plateau"):
            # JAX steps are optimised by optax; Lightning's scheduler would only step the
            # plan's dummy torch optimizer (and log its learning rate as "lr-Adam")
            raise ValueError(
                'plan_kwargs={"reduce_lr_on_plateau": True} is not supported with '
                'backend="jax" (the learning rate would stay fixed); use backend="torch", '
                'or plan_kwargs={"optimizer": "Custom", "optimizer_creator": <optax '
                "transformation with a schedule>}"
            )
        super().__init__(module, **kwargs)

    def set_train_state(self, params: Any, state: Any = None) -> None:
        """Create the training state (optimizer state included).

        A module that already has one (trained before, or loaded) keeps its variables, but
        they are optimised with this plan's optimizer (a fresh state, as a torch model's
        ``train`` builds a new optimizer): scvi-tools keeps the old state, so a second
        ``train`` (or one after ``load``) ignored its ``lr``/``weight_decay``.
        """
        if self.module.train_state is not None:
            params, state = self.module.train_state.params, self.module.train_state.state
        optimizer = self.get_optimizer_creator()()

        @jax.jit
        def _opt_state(p: Any) -> Any:
            return optimizer.init(p)

        train_state = TrainStateWithState(
            step=jnp.zeros((), dtype=jnp.int32),
            apply_fn=self.module.apply,
            params=params,
            tx=optimizer,
            opt_state=_opt_state(params),
            state=state,
        )
        # committed to the module's device, like the states the training step returns, so
        # the step is not compiled a second time for differently placed inputs
        self.module.train_state = jax.device_put(train_state, self.module.device)

    def get_optimizer_creator(self) -> Any:
        """As scvi-tools', but ``optimizer="Custom"`` works (scvi-tools 1.4 reads a missing
        ``_optimizer_creator``; here ``optimizer_creator`` is the optax transformation, clipped
        at ``max_norm`` when given) and ``"AdamW"`` works without ``max_norm``."""
        import optax

        clip = optax.clip_by_global_norm(self.max_norm) if self.max_norm else optax.identity()
        if self.optimizer_name == "Custom":
            optimizer = (
                optax.chain(clip, self.optimizer_creator)
                if self.max_norm
                else self.optimizer_creator
            )
            return lambda: optimizer
        if self.optimizer_name == "AdamW":
            # scvi-tools 1.4 chains clip_by_global_norm(max_norm) even when max_norm is None,
            # which fails inside the jitted step
            optimizer = optax.chain(
                clip, optax.adamw(self.lr, eps=self.eps, weight_decay=self.weight_decay)
            )
            return lambda: optimizer
        return super().get_optimizer_creator()


class JaxEMAWeightAveraging(Callback):
    """Exponential moving average of a JAX module's weights, as Lightning's
    ``WeightAveraging`` keeps for the torch models (see
    :func:`~scneural.models._base.ema_trainer_kwargs`).

    The average covers the parameters and the module's state (batch-norm statistics). It
    starts from the weights after the first optimizer step and moves towards the current
    weights after every step, ``average = decay * average + (1 - decay) * weights``;
    validation runs on the average, and at the end of training the module keeps it.

    Parameters
    ----------
    decay
        Weight of the old average at each step, in [0, 1).
    """

    def __init__(self, decay: float):
        self.decay = decay = float(decay)
        self._average: Any = None

        @jax.jit
        def _update(average: Any, current: Any) -> Any:
            return jax.tree_util.tree_map(
                lambda old, new: decay * old + (1.0 - decay) * new, average, current
            )

        self._update = _update

    @staticmethod
    def _weights(pl_module: Any) -> tuple[Any, Any]:
        state = pl_module.module.train_state
        return state.params, state.state

    @staticmethod
    def _set_weights(pl_module: Any, weights: tuple[Any, Any]) -> None:
        params, state = weights
        train_state = pl_module.module.train_state
        pl_module.module.train_state = train_state.replace(params=params, state=state)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._average = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        current = self._weights(pl_module)
        self._average = current if self._average is None else self._update(self._average, current)

    def _swap(self, pl_module: Any) -> None:
        if self._average is not None:
            current = self._weights(pl_module)
            self._set_weights(pl_module, self._average)
            self._average = current

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._swap(pl_module)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._swap(pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._average is not None:
            self._set_weights(pl_module, self._average)
            self._average = None
