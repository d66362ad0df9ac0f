"""VGG11/13 and VGG11/13/16/19 with batch norm, in torchvision's layout (Simonyan & Zisserman 2015;
BN variants as torchvision trains them).

Module paths are torchvision's: `features.N` for every conv (and BatchNorm, in the `_bn`
variants), numbered as in torchvision's `make_layers` (ReLUs and pools count but, having no
parameters, are not modules), then `classifier.{0,3,6}`. Plain VGG16/VGG19 live in `vgg.py` with
semantic layer names (`conv1_1`, ...) and these paths as aliases. Any input of at least 32x32 works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax

from . import _torch_layers as L
from .base import adaptive_avg_pool, max_pool

# torchvision's cfgs: conv widths, "M" a 2x2 max pool.
CFGS = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGGFeatures(nn.Module):
    """`features`: torchvision's `make_layers(cfg, batch_norm)`."""

    cfg: tuple[int | str, ...]
    batch_norm: bool = False
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        i = 0
        for v in self.cfg:
            if v == "M":
                x, i = max_pool(x, 2), i + 1
                continue
            x = L.conv(v, 3, padding=1, name=str(i))(x)
            if self.batch_norm:
                x = L.batch_norm(train, name=str(i + 1))(x)
            x, i = self.act(x), i + (3 if self.batch_norm else 2)
        return x


class VGGClassifier(nn.Module):
    """`classifier`: fc `hidden` (4096), relu, dropout, fc `hidden`, relu, dropout, fc."""

    num_classes: int = 1000
    act: Callable[[jax.Array], jax.Array] = nn.relu
    hidden: int = 4096

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Dropout(0.5, deterministic=not train)(self.act(nn.Dense(self.hidden, name="0")(x)))
        x = nn.Dropout(0.5, deterministic=not train)(self.act(nn.Dense(self.hidden, name="3")(x)))
        return nn.Dense(self.num_classes, name="6")(x)


class TorchvisionVGG(nn.Module):
    """torchvision's `VGG(make_layers(cfg, batch_norm))`: `(N, H, W, 3)` -> logits `(N, num_classes)`.

    `hidden`: the classifier's two hidden widths (torchvision: 4096; its first layer alone holds 103M of
    VGG-11's 133M parameters). A narrower one is the same network otherwise, e.g. for fast tests."""

    cam_layer = "features"  # where the CAM family looks by default (`taps.default_cam_layer`)
    head = "other"  # flatten → dense: CAM refuses (use grad_cam)

    cfg: tuple[int | str, ...] = CFGS["A"]
    batch_norm: bool = False
    num_classes: int = 1000
    act: Callable[[jax.Array], jax.Array] = nn.relu
    hidden: int = 4096

    # The dense layer after the (H, W, C) flatten and the (C, H, W) it sees: ports reorder its rows.
    FLATTEN_CHW: ClassVar[tuple[str, tuple[int, int, int]]] = ("classifier.0", (512, 7, 7))

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = VGGFeatures(self.cfg, self.batch_norm, act=self.act, name="features")(x, train)
        x = L.flatten_hwc(adaptive_avg_pool(x, (7, 7)))
        return VGGClassifier(self.num_classes, act=self.act, hidden=self.hidden, name="classifier")(x, train)


def VGG11(**kwargs) -> TorchvisionVGG:
    return TorchvisionVGG(cfg=CFGS["A"], **kwargs)


def VGG13(**kwargs) -> TorchvisionVGG:
    return TorchvisionVGG(cfg=CFGS["B"], **kwargs)


def VGG11_BN(**kwargs) -> TorchvisionVGG:
    return TorchvisionVGG(cfg=CFGS["A"], batch_norm=True, **kwargs)


def VGG13_BN(**kwargs) -> TorchvisionVGG:
    return TorchvisionVGG(cfg=CFGS["B"], batch_norm=True, **kwargs)


def VGG16_BN(**kwargs) -> TorchvisionVGG:
    return TorchvisionVGG(cfg=CFGS["D"], batch_norm=True, **kwargs)


def VGG19_BN(**kwargs) -> TorchvisionVGG:
    return TorchvisionVGG(cfg=CFGS["E"], batch_norm=True, **kwargs)
