from typing import Any

from ._kmeans import check_geometry, check_start_labels, kmeans_init, start_label_centres
from ._model import DeepCluster, DeepClusterMixin, default_pretrain_epochs, normalization_stats
from ._module import DeepClusterModule, student_t_assignment, target_distribution
from ._plan import DECScheduleMixin, DECTrainingPlan

_JAX_NAMES = {
    "JaxDeepCluster": "_model_jax",
    "JaxDeepClusterModule": "_module_jax",
    "JaxDECTrainingPlan": "_plan_jax",
}

__all__ = [
    "DECScheduleMixin",
    "DECTrainingPlan",
    "DeepCluster",
    "DeepClusterMixin",
    "DeepClusterModule",
    "check_geometry",
    "check_start_labels",
    "default_pretrain_epochs",
    "kmeans_init",
    "normalization_stats",
    "start_label_centres",
    "student_t_assignment",
    "target_distribution",
    *_JAX_NAMES,
]


def __getattr__(name: str) -> Any:
    # the JAX twins load on first use, so that scneural imports without the JAX extra
    if name in _JAX_NAMES:
        import importlib

        from scneural.models._jax import require_jax

        require_jax()
        return getattr(importlib.import_module(f"{__name__}.{_JAX_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
