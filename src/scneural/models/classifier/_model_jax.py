"""The JAX twin of the classifier model (``backend="jax"``)."""

from __future__ import annotations

from typing import Any

from scvi.model.base import BaseModelClass

from scneural._docs import doc_params
from scneural.models._jax import JaxModelMixin, JaxTrainingMixin
from scneural.models._jax_base import ScneuralJaxTrainingPlan

from ._model import CLASSIFIER_PARAMS, ClassifierMixin
from ._module_jax import JaxClassifierModule, classifier_variables_from_torch


@doc_params(model_params=CLASSIFIER_PARAMS)
class JaxClassifier(ClassifierMixin, JaxModelMixin, JaxTrainingMixin, BaseModelClass):
    """Supervised MLP cell-type classifier on scvi-tools, JAX/flax backend.

    The same model as :class:`~scneural.models.Classifier` (arguments, layers, loss,
    ``setup_anndata``, ``train``, ``predict``, ``get_latent_representation``, ``save`` and
    ``load``), with a flax module trained by jitted steps through
    :class:`scvi.train.JaxTrainingPlan`. ``scvi.settings.seed`` (set by ``random_state`` in
    :func:`scneural.tl.classify`) seeds the parameter and dropout RNG streams.

    Parameters
    ----------
    {model_params}

    Examples
    --------
    >>> JaxClassifier.setup_anndata(adata, labels_key="cell_type")
    >>> model = JaxClassifier(adata)
    >>> model.train(max_epochs=50)
    >>> proba = model.predict(soft=True)
    """

    _module_cls = JaxClassifierModule
    _training_plan_cls = ScneuralJaxTrainingPlan
    backend = "jax"

    def load_torch_weights(self, torch_model: Any) -> None:
        """Take over the weights of a trained torch :class:`~scneural.models.Classifier`.

        Both models must have the same architecture. The JAX model must have a training
        state: train it for one step first, e.g. ``train(max_steps=1,
        early_stopping=False)`` (one step ends before any validation, which early stopping
        needs).

        Parameters
        ----------
        torch_model
            A trained :class:`~scneural.models.Classifier` set up on the same genes in the
            same order and the same labels, built with the same arguments.

        Raises
        ------
        RuntimeError
            If this model has no training state yet (train it for one step first).
        TypeError
            If ``torch_model`` is not a :class:`~scneural.models.Classifier`.
        ValueError
            If its genes (or their order), classes or layer sizes differ from this model's.
        """
        self._check_torch_counterpart(torch_model)
        variables = classifier_variables_from_torch(torch_model.module)
        self._check_torch_shapes(
            {"params": variables["params"], "batch_stats": variables["batch_stats"]}
        )
        state = self.module.train_state
        self.module.train_state = state.replace(
            params=variables["params"], state={"batch_stats": variables["batch_stats"]}
        )
