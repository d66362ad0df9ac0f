"""SqueezeNet 1.0 and 1.1 in torchvision's layout (Iandola et al. 2016).

Module paths are torchvision's: `features.0` the first conv, `features.N` the Fire modules (each
with `squeeze`, `expand1x1`, `expand3x3`), `classifier.1` the final 1x1 conv to the classes,
whose ReLU output is averaged over space. Max pools are 3x3 stride 2 in ceil mode, exactly as torch
computes them. Any input of at least 21x21 (1.0) / 17x17 (1.1) works.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from . import _torch_layers as L

# Position in `features`: "M" a ceil-mode max pool, (squeeze, expand) a Fire module; position 0
# is the first conv and 1 its ReLU.
FIRES = {
    "1_0": ("M", (16, 64), (16, 64), (32, 128), "M", (32, 128), (48, 192), (48, 192), (64, 256), "M", (64, 256)),
    "1_1": ("M", (16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256), (64, 256)),
}


class Fire(nn.Module):
    """squeeze 1x1 -> relu -> [expand1x1 1x1, expand3x3 3x3] -> relu each -> concat channels."""

    squeeze_planes: int
    expand_planes: int
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.act(L.conv(self.squeeze_planes, 1, name="squeeze")(x))
        return jnp.concatenate(
            [
                self.act(L.conv(self.expand_planes, 1, name="expand1x1")(x)),
                self.act(L.conv(self.expand_planes, 3, padding=1, name="expand3x3")(x)),
            ],
            axis=-1,
        )


class SqueezeNetFeatures(nn.Module):
    """`features`: the first conv, then Fire modules and ceil-mode max pools at torchvision's positions."""

    version: str = "1_0"
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        first = L.conv(96, 7, stride=2, name="0") if self.version == "1_0" else L.conv(64, 3, stride=2, name="0")
        x = self.act(first(x))
        for i, spec in enumerate(FIRES[self.version], start=2):
            if spec == "M":
                x = L.max_pool2d(x, 3, 2, ceil_mode=True)
            else:
                x = Fire(*spec, act=self.act, name=str(i))(x)
        return x


class SqueezeNetClassifier(nn.Module):
    """`classifier`: dropout, 1x1 conv to the classes, relu, global average pool."""

    num_classes: int = 1000
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return L.global_avg_pool(self.act(L.conv(self.num_classes, 1, name="1")(x)))


class SqueezeNet(nn.Module):
    """`(N, H, W, 3)` -> logits `(N, num_classes)`; `version` "1_0" or "1_1"."""

    cam_layer = "features"  # where the CAM family looks by default (`taps.default_cam_layer`)

    version: str = "1_0"
    num_classes: int = 1000
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.version not in FIRES:
            raise ValueError(f"unsupported SqueezeNet version {self.version!r}: one of {', '.join(FIRES)}")
        x = SqueezeNetFeatures(self.version, act=self.act, name="features")(x)
        return SqueezeNetClassifier(self.num_classes, act=self.act, name="classifier")(x, train)


def SqueezeNet1_0(**kwargs) -> SqueezeNet:
    return SqueezeNet(version="1_0", **kwargs)


def SqueezeNet1_1(**kwargs) -> SqueezeNet:
    return SqueezeNet(version="1_1", **kwargs)
