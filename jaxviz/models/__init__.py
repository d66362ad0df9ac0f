"""Model zoo: architectures by name.

`build(arch)` gives a Flax module; `jaxviz.models.load(...)` (in `loading.py`) gives a module with
its weights, preprocessing and class names.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

from ..core import LayerError
from .alexnet import AlexNet
from .allconv import AllConvNet
from .base import Layer, SequentialNet, adaptive_avg_pool
from .densenet import DenseNet121
from .googlenet import GoogLeNet
from .lenet import LeNet5
from .minivgg import MiniVGG
from .resnet import ResNet18, ResNet34, ResNet50, ResNet101, ResNet152
from .shapesnet import ShapesNet
from .squeezenet import SqueezeNet1_0, SqueezeNet1_1
from .vgg import VGG, VGG16, VGG19
from .vgg_torchvision import VGG11, VGG11_BN, VGG13, VGG13_BN, VGG16_BN, VGG19_BN

ARCHS: dict[str, Callable[..., nn.Module]] = {
    "vgg16": VGG16,
    "vgg19": VGG19,
    "lenet5": LeNet5,
    "lenet5_3x3": lambda **kw: LeNet5(kernel=3, **kw),
    "shapesnet": ShapesNet,
    "minivgg": MiniVGG,
    "allconv": AllConvNet,
    # torchvision's layout: module paths as in torchvision (`layer4.2.conv3`, `features.10`).
    "alexnet": AlexNet,
    "vgg11": VGG11,
    "vgg11_bn": VGG11_BN,
    "vgg13": VGG13,
    "vgg13_bn": VGG13_BN,
    "vgg16_bn": VGG16_BN,
    "vgg19_bn": VGG19_BN,
    "squeezenet1_0": SqueezeNet1_0,
    "squeezenet1_1": SqueezeNet1_1,
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "resnet101": ResNet101,
    "resnet152": ResNet152,
    "googlenet": GoogLeNet,
    "densenet121": DenseNet121,
}

TORCHVISION_ARCHS = (
    "alexnet",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "squeezenet1_0",
    "squeezenet1_1",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "googlenet",
    "densenet121",
)
"""Architectures whose module paths are torchvision's own (ported from, and compared with, torchvision)."""

# Input shape each architecture is usually run at (H, W, C); any size the net allows also works.
DEFAULT_INPUT = {
    "vgg16": (224, 224, 3),
    "vgg19": (224, 224, 3),
    "lenet5": (28, 28, 1),
    "lenet5_3x3": (28, 28, 1),
    "shapesnet": (64, 64, 3),
    "minivgg": (64, 64, 3),
    "allconv": (64, 64, 3),
    **{arch: (224, 224, 3) for arch in TORCHVISION_ARCHS},
}


def build(arch: str, **kwargs) -> nn.Module:
    """The Flax module for an architecture name (see `ARCHS`: the zoo, `vgg16`, `lenet5`, `shapesnet`, ...)."""
    try:
        return ARCHS[arch](**kwargs)
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}") from None


__all__ = [
    "ARCHS",
    "AllConvNet",
    "DEFAULT_INPUT",
    "TORCHVISION_ARCHS",
    "VGG",
    "VGG16",
    "VGG19",
    "Layer",
    "LayerError",
    "LeNet5",
    "MiniVGG",
    "SequentialNet",
    "ShapesNet",
    "adaptive_avg_pool",
    "build",
]
