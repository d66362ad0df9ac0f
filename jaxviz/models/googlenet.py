"""GoogLeNet (Inception v1) in torchvision's layout, inference path (Szegedy et al. 2015).

Module paths are torchvision's: `conv1`, `conv2`, `conv3` (each a BasicConv2d: `.conv` without
bias, `.bn` with torch eps 1e-3, then ReLU), `inception3a` ... `inception5b` (branches `branch1`,
`branch2.0`/`.1`, `branch3.0`/`.1` and `branch4.1` after a ceil-mode 3x3 max pool), `fc`.
The auxiliary heads `aux1`/`aux2` exist in torchvision only for training and are not built (ports
drop their tensors). Like torchvision, branch3 uses a 3x3 conv where the paper has 5x5.

`transform_input` (default True, what torchvision's `googlenet(weights=...)` sets for its
pretrained weights, which came from the original paper's model) maps an input normalised with
the ImageNet mean/std to the (x - 0.5) / 0.5 scaling those weights expect; with
`transform_input=False` the input goes to `conv1` as it is (torchvision's `GoogLeNet()` default).
Any input of at least 15x15 works.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from . import _torch_layers as L

BN_EPSILON = 1e-3  # torchvision's BasicConv2d: BatchNorm2d(eps=0.001)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name: (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj), as torchvision's Inception(...).
INCEPTIONS = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
# torchvision's maxpool3 (3x3) and maxpool4 (2x2), stride 2, ceil mode, before these stages.
POOL_BEFORE = {"inception4a": 3, "inception5a": 2}


def renormalize(x: jax.Array) -> jax.Array:
    """torchvision's `GoogLeNet._transform_input` on `(N, H, W, 3)`: an input normalised with the
    ImageNet mean/std, re-scaled to what the original GoogLeNet weights expect, `(x01 - 0.5) / 0.5`."""
    std = jnp.asarray(IMAGENET_STD, x.dtype).reshape(1, 1, 1, 3)
    mean = jnp.asarray(IMAGENET_MEAN, x.dtype).reshape(1, 1, 1, 3)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


class BasicConv2d(nn.Module):
    """conv (no bias) -> BN (eps 1e-3) -> relu."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = L.conv(self.features, self.kernel, self.stride, self.padding, bias=False, name="conv")(x)
        return self.act(L.batch_norm(train, name="bn", epsilon=BN_EPSILON)(x))


class ConvPair(nn.Module):
    """`branch2` / `branch3`: a 1x1 BasicConv2d `"0"` then a 3x3 one `"1"`."""

    reduce: int
    features: int
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = BasicConv2d(self.reduce, 1, act=self.act, name="0")(x, train)
        return BasicConv2d(self.features, 3, padding=1, act=self.act, name="1")(x, train)


class PoolProj(nn.Module):
    """`branch4`: 3x3 stride-1 max pool (ceil mode, padding 1) `"0"`, then a 1x1 BasicConv2d `"1"`."""

    features: int
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = L.max_pool2d(x, 3, 1, padding=1, ceil_mode=True)
        return BasicConv2d(self.features, 1, act=self.act, name="1")(x, train)


class Inception(nn.Module):
    """Four branches concatenated over channels: `branch1`, `branch2`, `branch3`, `branch4`."""

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return jnp.concatenate(
            [
                BasicConv2d(self.ch1x1, 1, act=self.act, name="branch1")(x, train),
                ConvPair(self.ch3x3red, self.ch3x3, act=self.act, name="branch2")(x, train),
                ConvPair(self.ch5x5red, self.ch5x5, act=self.act, name="branch3")(x, train),
                PoolProj(self.pool_proj, act=self.act, name="branch4")(x, train),
            ],
            axis=-1,
        )


class GoogLeNet(nn.Module):
    """`(N, H, W, 3)` -> logits `(N, num_classes)`; see the module docstring for `transform_input`."""

    cam_layer = "inception5b"  # where the CAM family looks by default (`taps.default_cam_layer`)

    num_classes: int = 1000
    transform_input: bool = True
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.transform_input:
            x = renormalize(x)
        x = BasicConv2d(64, 7, 2, 3, act=self.act, name="conv1")(x, train)
        x = L.max_pool2d(x, 3, 2, ceil_mode=True)
        x = BasicConv2d(64, 1, act=self.act, name="conv2")(x, train)
        x = BasicConv2d(192, 3, padding=1, act=self.act, name="conv3")(x, train)
        x = L.max_pool2d(x, 3, 2, ceil_mode=True)
        for name, spec in INCEPTIONS.items():
            if name in POOL_BEFORE:
                x = L.max_pool2d(x, POOL_BEFORE[name], 2, ceil_mode=True)
            x = Inception(*spec, act=self.act, name=name)(x, train)
        x = nn.Dropout(0.2, deterministic=not train)(L.global_avg_pool(x))
        return nn.Dense(self.num_classes, name="fc")(x)
