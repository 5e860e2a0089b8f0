from ._model import Classifier
from ._module import ClassifierModule

__all__ = ["Classifier", "ClassifierModule"]
