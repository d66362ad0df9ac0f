"""ResNet-18/34/50/101/152 in torchvision's layout (He et al. 2016; torchvision's v1.5 bottleneck,
the stride on the 3x3 conv).

Module paths are torchvision's: `conv1`, `bn1`, `layer1` ... `layer4` (stages, whose children
`"0"`, `"1"`, ... are the blocks: `conv1`, `bn1`, `conv2`, `bn2`, bottlenecks also `conv3`,
`bn3`, and the first block of a stage `downsample.0` conv / `downsample.1` BN), `fc`. A block's
output is after the residual sum and its ReLU, as in torchvision. Any input of at least 32x32
works (torchvision's global average pool).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax

from . import _torch_layers as L

WIDTHS = (64, 128, 256, 512)


class Downsample(nn.Module):
    """`downsample`: 1x1 conv with the block's stride, then BN."""

    features: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return L.batch_norm(train, name="1")(L.conv(self.features, 1, self.stride, bias=False, name="0")(x))


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> relu -> conv3x3 -> BN, + identity (or `downsample`), relu."""

    planes: int
    stride: int = 1
    downsample: bool = False
    act: Callable[[jax.Array], jax.Array] = nn.relu

    EXPANSION: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        out = self.act(
            L.batch_norm(train, name="bn1")(L.conv(self.planes, 3, self.stride, 1, bias=False, name="conv1")(x))
        )
        out = L.batch_norm(train, name="bn2")(L.conv(self.planes, 3, 1, 1, bias=False, name="conv2")(out))
        identity = Downsample(self.planes, self.stride, name="downsample")(x, train) if self.downsample else x
        return self.act(out + identity)


class Bottleneck(nn.Module):
    """conv1x1 -> BN -> relu -> conv3x3 (stride) -> BN -> relu -> conv1x1 (4x) -> BN, + identity, relu."""

    planes: int
    stride: int = 1
    downsample: bool = False
    act: Callable[[jax.Array], jax.Array] = nn.relu

    EXPANSION: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        out = self.act(L.batch_norm(train, name="bn1")(L.conv(self.planes, 1, bias=False, name="conv1")(x)))
        out = self.act(
            L.batch_norm(train, name="bn2")(L.conv(self.planes, 3, self.stride, 1, bias=False, name="conv2")(out))
        )
        out = L.batch_norm(train, name="bn3")(L.conv(self.planes * 4, 1, bias=False, name="conv3")(out))
        identity = Downsample(self.planes * 4, self.stride, name="downsample")(x, train) if self.downsample else x
        return self.act(out + identity)


class ResNetStage(nn.Module):
    """`layerK`: `blocks` blocks named "0", "1", ...; the first has the stride (and `downsample`
    when the stride or the width changes)."""

    planes: int
    blocks: int
    stride: int = 1
    bottleneck: bool = False
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        block = Bottleneck if self.bottleneck else BasicBlock
        downsample = self.stride != 1 or x.shape[-1] != self.planes * block.EXPANSION
        for i in range(self.blocks):
            x = block(self.planes, self.stride if i == 0 else 1, downsample and i == 0, act=self.act, name=str(i))(
                x, train
            )
        return x


class ResNet(nn.Module):
    """`(N, H, W, 3)` -> logits `(N, num_classes)`; `blocks` per stage, basic or bottleneck blocks."""

    cam_layer = "layer4"  # where the CAM family looks by default (`taps.default_cam_layer`)
    head = "gap"  # global average pool → fc: CAM applies

    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    bottleneck: bool = False
    num_classes: int = 1000
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.act(L.batch_norm(train, name="bn1")(L.conv(64, 7, 2, 3, bias=False, name="conv1")(x)))
        x = L.max_pool2d(x, 3, 2, padding=1)
        for k, (planes, n) in enumerate(zip(WIDTHS, self.blocks), start=1):
            x = ResNetStage(planes, n, 1 if k == 1 else 2, self.bottleneck, act=self.act, name=f"layer{k}")(x, train)
        return nn.Dense(self.num_classes, name="fc")(L.global_avg_pool(x))


def ResNet18(**kwargs) -> ResNet:
    return ResNet(blocks=(2, 2, 2, 2), **kwargs)


def ResNet34(**kwargs) -> ResNet:
    return ResNet(blocks=(3, 4, 6, 3), **kwargs)


def ResNet50(**kwargs) -> ResNet:
    return ResNet(blocks=(3, 4, 6, 3), bottleneck=True, **kwargs)


def ResNet101(**kwargs) -> ResNet:
    return ResNet(blocks=(3, 4, 23, 3), bottleneck=True, **kwargs)


def ResNet152(**kwargs) -> ResNet:
    return ResNet(blocks=(3, 8, 36, 3), bottleneck=True, **kwargs)
