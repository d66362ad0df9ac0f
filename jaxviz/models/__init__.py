"""Model zoo: architectures by name.

`build(arch)` gives a Flax module; `jaxviz.models.load(...)` (in `loading.py`) gives a module with
its weights, preprocessing and class names.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import (
    Layer,
    LayerError,
    SequentialNet,
    activations,
    adaptive_avg_pool,
    forward,
    layer_gradient,
    layer_table,
)
from .lenet import LeNet5
from .minivgg import MiniVGG
from .shapesnet import ShapesNet
from .vgg import VGG, VGG16, VGG19

ARCHS: dict[str, Callable[..., SequentialNet]] = {
    "vgg16": VGG16,
    "vgg19": VGG19,
    "lenet5": LeNet5,
    "lenet5_3x3": lambda **kw: LeNet5(kernel=3, **kw),
    "shapesnet": ShapesNet,
    "minivgg": MiniVGG,
}

# Input shape each architecture is usually run at (H, W, C); any size the net allows also works.
DEFAULT_INPUT = {"vgg16": (224, 224, 3), "vgg19": (224, 224, 3), "lenet5": (28, 28, 1),
                 "lenet5_3x3": (28, 28, 1), "shapesnet": (64, 64, 3),
                 "minivgg": (64, 64, 3)}


def build(arch: str, **kwargs) -> SequentialNet:
    """The module for an architecture name (`vgg16`, `vgg19`, `lenet5`, `lenet5_3x3`, `shapesnet`, `minivgg`)."""
    try:
        return ARCHS[arch](**kwargs)
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}") from None


__all__ = [
    "ARCHS",
    "DEFAULT_INPUT",
    "VGG",
    "VGG16",
    "VGG19",
    "Layer",
    "LayerError",
    "LeNet5",
    "MiniVGG",
    "SequentialNet",
    "ShapesNet",
    "activations",
    "adaptive_avg_pool",
    "build",
    "forward",
    "layer_gradient",
    "layer_table",
]
