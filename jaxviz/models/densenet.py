"""DenseNet-121 in torchvision's layout (Huang et al. 2017, DenseNet-BC).

Module paths are torchvision's: `features.conv0`, `features.norm0`, `features.denseblock1` ...
`denseblock4` (children `denselayer1`, ... each with `norm1`, `conv1`, `norm2`, `conv2`),
`features.transition1` ... `transition3` (`norm`, `conv`, then a 2x2 average pool),
`features.norm5`, `classifier`. The output of `features` is `norm5`'s, before the final ReLU
and global average pool, as in torchvision. Any input of at least 29x29 works.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from . import _torch_layers as L


class DenseLayer(nn.Module):
    """`denselayerK`: BN -> relu -> conv1x1 (bn_size * growth) -> BN -> relu -> conv3x3 (growth).

    Returns only the `growth_rate` new channels; the block concatenates them.
    """

    growth_rate: int = 32
    bn_size: int = 4
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = L.conv(self.bn_size * self.growth_rate, 1, bias=False, name="conv1")(
            self.act(L.batch_norm(train, name="norm1")(x))
        )
        return L.conv(self.growth_rate, 3, padding=1, bias=False, name="conv2")(
            self.act(L.batch_norm(train, name="norm2")(x))
        )


class DenseBlock(nn.Module):
    """`denseblockK`: each layer sees the concatenation of the block input and all earlier layers' outputs."""

    layers: int
    growth_rate: int = 32
    bn_size: int = 4
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        features = [x]
        for i in range(1, self.layers + 1):
            layer = DenseLayer(self.growth_rate, self.bn_size, act=self.act, name=f"denselayer{i}")
            features.append(layer(jnp.concatenate(features, axis=-1), train))
        return jnp.concatenate(features, axis=-1)


class Transition(nn.Module):
    """`transitionK`: BN -> relu -> conv1x1 (halves the channels) -> 2x2 average pool."""

    features: int
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = L.conv(self.features, 1, bias=False, name="conv")(self.act(L.batch_norm(train, name="norm")(x)))
        return L.avg_pool2d(x, 2)


class DenseNetFeatures(nn.Module):
    """`features`: conv0, norm0, relu, 3x3 max pool, then dense blocks with transitions between, norm5."""

    blocks: tuple[int, ...] = (6, 12, 24, 16)
    growth_rate: int = 32
    init_features: int = 64
    bn_size: int = 4
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = L.conv(self.init_features, 7, 2, 3, bias=False, name="conv0")(x)
        x = L.max_pool2d(self.act(L.batch_norm(train, name="norm0")(x)), 3, 2, padding=1)
        channels = self.init_features
        for k, n in enumerate(self.blocks, start=1):
            x = DenseBlock(n, self.growth_rate, self.bn_size, act=self.act, name=f"denseblock{k}")(x, train)
            channels += n * self.growth_rate
            if k != len(self.blocks):
                channels //= 2
                x = Transition(channels, act=self.act, name=f"transition{k}")(x, train)
        return L.batch_norm(train, name="norm5")(x)


class DenseNet(nn.Module):
    """`(N, H, W, 3)` -> logits `(N, num_classes)`."""

    cam_layer = "features"  # where the CAM family looks by default (`taps.default_cam_layer`)

    blocks: tuple[int, ...] = (6, 12, 24, 16)
    growth_rate: int = 32
    init_features: int = 64
    bn_size: int = 4
    num_classes: int = 1000
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = DenseNetFeatures(
            self.blocks, self.growth_rate, self.init_features, self.bn_size, act=self.act, name="features"
        )(x, train)
        return nn.Dense(self.num_classes, name="classifier")(L.global_avg_pool(self.act(x)))


def DenseNet121(**kwargs) -> DenseNet:
    return DenseNet(blocks=(6, 12, 24, 16), growth_rate=32, init_features=64, **kwargs)
