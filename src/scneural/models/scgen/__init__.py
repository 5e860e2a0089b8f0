from ._model import ScGen
from ._module import ScGenModule

__all__ = ["ScGen", "ScGenModule"]
