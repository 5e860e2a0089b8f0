from ._backbones import TORCHVISION_BACKBONES, TorchvisionTrunk, build_trunk
from ._extractor import ImageFeatureExtractor
from ._model import ImageExpressionModel
from ._module import ImageExpressionModule, augment_patches

__all__ = [
    "TORCHVISION_BACKBONES",
    "ImageExpressionModel",
    "ImageExpressionModule",
    "ImageFeatureExtractor",
    "TorchvisionTrunk",
    "augment_patches",
    "build_trunk",
]
