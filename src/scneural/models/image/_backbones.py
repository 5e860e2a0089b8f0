"""Pretrained CNN backbones from torchvision, cut before their classifier."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: torchvision backbones and the size of their pooled feature vector
TORCHVISION_BACKBONES: dict[str, int] = {"vgg16": 512, "resnet50": 2048}


def _weights_enum(name: str) -> Any:
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT


def preprocessing(name: str, input_size: int) -> nn.Module:
    """The backbone's own ImageNet preprocessing, resizing square patches to ``input_size``.

    torchvision's ``weights.transforms()`` (resize, centre crop, scale to [0, 1], normalise
    with the ImageNet mean and std); resize and crop are set to ``input_size`` so the whole
    patch is kept. Takes uint8 tensors ``(n, 3, h, w)``.
    """
    if name not in TORCHVISION_BACKBONES:
        raise ValueError(f"no torchvision preprocessing for backbone {name!r}")
    return _weights_enum(name).transforms(crop_size=input_size, resize_size=input_size)


def default_input_size(name: str) -> int:
    """The input size the backbone's weights were trained at (224 for ImageNet)."""
    return int(_weights_enum(name).transforms().crop_size[0])


class TorchvisionTrunk(nn.Module):
    """A torchvision classification network without its classifier, globally average-pooled.

    ``vgg16``: the 13 convolutional layers (``features``), 512 features;
    ``resnet50``: everything up to the average pool, 2048 features.
    """

    def __init__(self, name: str):
        super().__init__()
        from torchvision.models import get_model

        if name not in TORCHVISION_BACKBONES:
            raise ValueError(f"backbone={name!r} is not one of {list(TORCHVISION_BACKBONES)}")
        self.name = name
        self.n_features = TORCHVISION_BACKBONES[name]
        if name == "vgg16":
            # only VGG16's convolutional part (the 120M-parameter classifier is not needed),
            # initialised as torchvision's VGG initialises it
            from torchvision.models.vgg import cfgs, make_layers

            self.body = make_layers(cfgs["D"], batch_norm=False)
            for layer in self.body.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(layer.bias)
        else:
            full = get_model(name, weights=None)
            self.body = nn.Sequential(*list(full.children())[:-2])
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(n, n_features)`` of preprocessed images ``(n, 3, h, w)``."""
        return torch.flatten(self.pool(self.body(x)), 1)


def _full_to_trunk(name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a full torchvision state dict (``features.0.weight``, ``conv1.weight``, ...) to ours."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("body.") for k in state):
        return {k: v for k, v in state.items() if k.startswith("body.")}
    out = {}
    if name == "vgg16":
        for key, value in state.items():
            if key.startswith("features."):
                out["body." + key.removeprefix("features.")] = value
        return out
    order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    for key, value in state.items():
        head = key.split(".", 1)[0]
        if head in order:
            out[f"body.{order.index(head)}.{key.split('.', 1)[1]}"] = value
    return out


def load_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save`` (also inside a ``{"state_dict": ...}`` checkpoint);
    a leading ``~`` of ``path`` is expanded."""
    try:
        state = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"weights={str(path)!r} could not be read as a PyTorch state dict ({err}); save one "
            "with torch.save(model.state_dict(), path)"
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights={str(path)!r} does not hold a state dict of tensors")
    return state


def imagenet_state(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights through torchvision's weights API (downloaded once, then cached).

    Without network and without a cached file, raises an error that says where to put the
    file (``$TORCH_HOME/hub/checkpoints``) or how to pass it with ``weights=<path>``.
    """
    weights = _weights_enum(name)
    checkpoint_dir = Path(torch.hub.get_dir()) / "checkpoints"
    filename = weights.url.rsplit("/", 1)[-1]
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as err:
        raise RuntimeError(
            f"could not download the ImageNet weights of {name} ({type(err).__name__}: {err}). "
            f"On a machine with internet, download {weights.url} and put it at "
            f"{checkpoint_dir / filename} (set TORCH_HOME to use another cache folder), or pass "
            f"weights='/path/to/{filename}' (a state dict), or weights=None for random "
            "initialisation, or backbone='expression' to learn features from this tissue"
        ) from err


def build_trunk(name: str, weights: Any) -> TorchvisionTrunk:
    """A :class:`TorchvisionTrunk` with ``weights``: ``"imagenet"``, a state-dict path or ``None``."""
    trunk = TorchvisionTrunk(name)
    if weights is None:
        return trunk
    if isinstance(weights, str) and weights == "imagenet":
        state = imagenet_state(name)
    elif isinstance(weights, dict):
        state = weights
    else:
        state = load_state_file(weights)
    mapped = _full_to_trunk(name, state)
    own = trunk.state_dict()
    missing = [key for key in own if key not in mapped]
    unexpected = [key for key in mapped if key not in own]
    misshapen = [
        key
        for key, value in mapped.items()
        if key in own and tuple(getattr(value, "shape", ())) != tuple(own[key].shape)
    ]
    if missing or unexpected or misshapen or not mapped:
        raise ValueError(
            f"the weights do not fit torchvision's {name}: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(misshapen)} of another shape (e.g. {misshapen[:3]}); pass a state dict "
            f"of torchvision.models.{name}()"
        )
    trunk.load_state_dict(mapped)
    return trunk
