"""AlexNet in torchvision's layout (Krizhevsky 2014, "One weird trick", torchvision's variant).

Module paths are torchvision's: `features.{0,3,6,8,10}` convs, `classifier.{1,4,6}` linears
(ReLUs, pools and dropouts have no parameters and are not modules here). Any input of at least
63x63 works: the adaptive average pool brings the last pool to 6x6 as torchvision does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax

from . import _torch_layers as L
from .base import adaptive_avg_pool


class AlexNetFeatures(nn.Module):
    """`features`: five convs, three 3x3 stride-2 max pools."""

    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = L.max_pool2d(self.act(L.conv(64, 11, stride=4, padding=2, name="0")(x)), 3, 2)
        x = L.max_pool2d(self.act(L.conv(192, 5, padding=2, name="3")(x)), 3, 2)
        x = self.act(L.conv(384, 3, padding=1, name="6")(x))
        x = self.act(L.conv(256, 3, padding=1, name="8")(x))
        return L.max_pool2d(self.act(L.conv(256, 3, padding=1, name="10")(x)), 3, 2)


class AlexNetClassifier(nn.Module):
    """`classifier`: dropout, fc 4096, relu, dropout, fc 4096, relu, fc."""

    num_classes: int = 1000
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Dropout(0.5, deterministic=not train)(x)
        x = self.act(nn.Dense(4096, name="1")(x))
        x = nn.Dropout(0.5, deterministic=not train)(x)
        x = self.act(nn.Dense(4096, name="4")(x))
        return nn.Dense(self.num_classes, name="6")(x)


class AlexNet(nn.Module):
    """`(N, H, W, 3)` -> logits `(N, num_classes)`."""

    cam_layer = "features"  # where the CAM family looks by default (`taps.default_cam_layer`)
    head = "other"  # flatten → dense: CAM refuses (use grad_cam)

    num_classes: int = 1000
    act: Callable[[jax.Array], jax.Array] = nn.relu

    # The dense layer after the (H, W, C) flatten and the (C, H, W) it sees: ports reorder its rows.
    FLATTEN_CHW: ClassVar[tuple[str, tuple[int, int, int]]] = ("classifier.1", (256, 6, 6))

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = AlexNetFeatures(act=self.act, name="features")(x)
        x = L.flatten_hwc(adaptive_avg_pool(x, (6, 6)))
        return AlexNetClassifier(self.num_classes, act=self.act, name="classifier")(x, train)
