from ._model import DeepCluster, default_pretrain_epochs, normalization_stats
from ._module import DeepClusterModule, student_t_assignment, target_distribution
from ._plan import DECTrainingPlan

__all__ = [
    "DECTrainingPlan",
    "DeepCluster",
    "DeepClusterModule",
    "default_pretrain_epochs",
    "normalization_stats",
    "student_t_assignment",
    "target_distribution",
]
