from ._model import Classifier
from ._module import ClassifierModule
from ._plan import ClassifierTrainingPlan

__all__ = ["Classifier", "ClassifierModule", "ClassifierTrainingPlan"]
