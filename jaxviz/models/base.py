"""Sequential CNNs with named layers: the embedded models, LeNet-5 and VGG16/19.

A `SequentialNet` is an ordinary Flax module built from an ordered tuple of `Layer`s. Every layer
runs as a submodule named after it (`conv1_1`, `relu1_1`, `pool1`, `fc6`), so its module path is
its semantic name, and `layer_aliases()` adds the names users know from elsewhere (torchvision's
`features.28`). Nothing in jaxviz depends on this class: methods see any Flax module (`core`).
`act` is the activation at every `act` layer (nn.relu; LeNet-5 uses tanh).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..core import LayerError
from . import pool

CONV, ACT, POOL, ADAPTIVE_AVG, GAP, GMP, FLATTEN, DENSE, DROPOUT, PAD = (
    "conv",
    "act",
    "pool",
    "adaptive_avg",
    "gap",
    "gmp",
    "flatten",
    "dense",
    "dropout",
    "pad",
)


@dataclass(frozen=True)
class Layer:
    """One step of a sequential net.

    `name` is the semantic name (`conv1_1`, `relu1_1`, `pool1`, `fc6`); `aliases` are other names
    users know (torchvision's `features.0`). `size` is the output channels of a conv/dense, the
    window of a pool, the output grid of an adaptive pool, or the padding of a pad layer.
    """

    name: str
    kind: str
    size: int | tuple[int, int] | None = None
    kernel: int | None = None
    padding: str | int = 0
    aliases: tuple[str, ...] = ()
    rate: float = 0.0
    stride: int = 1  # a conv's step (2: a strided conv that downsamples, as in the all-conv net)


def adaptive_avg_pool(x: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """torchvision's AdaptiveAvgPool2d on NHWC: bin i covers [floor(i·H/o), ceil((i+1)·H/o))."""

    def bins(n: int, o: int) -> np.ndarray:
        m = np.zeros((o, n), np.float32)
        for i in range(o):
            lo, hi = (i * n) // o, -((-(i + 1) * n) // o)
            m[i, lo:hi] = 1.0 / (hi - lo)
        return m

    # One product with the (out cells × in cells) bin matrix: a single fixed linear map, which LRP's
    # norm rule treats as one pool (as zennit treats torch's AdaptiveAvgPool2d).
    n, h, w, c = x.shape
    bins2d = np.kron(bins(h, out_hw[0]), bins(w, out_hw[1]))
    pooled = jnp.einsum("pq,nqc->npc", bins2d.astype(x.dtype), x.reshape(n, h * w, c))
    return pooled.reshape(n, *out_hw, c)


def max_pool(x: jax.Array, w: int) -> jax.Array:
    """`w`x`w`, stride-`w` max-pool (VALID) of `(N, H, W, C)`, with `pool.max_pool`'s fast backward."""
    return pool.max_pool(x, (w, w), (w, w))


class _Op(nn.Module):
    """A layer without parameters (activation, pooling, flatten, ...) as a named submodule."""

    fn: Callable[[jax.Array], jax.Array]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)  # NHWC rows: (H, W, C) order


def _pad(p: int, x: jax.Array) -> jax.Array:
    return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))


def _pool(w: int, x: jax.Array) -> jax.Array:
    return max_pool(x, w)


def _gap(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2))


def _gmp(x: jax.Array) -> jax.Array:
    return jnp.max(x, axis=(1, 2))


class SequentialNet(nn.Module):
    """Base class: subclasses define `layers()` and fields; `__call__` runs them in order.

    Attributes:
      act: activation used at every `act` layer (nn.relu, tanh, ...).
    """

    act: Callable[[jax.Array], jax.Array] = nn.relu

    # --- the architecture -------------------------------------------------------------
    def layers(self) -> tuple[Layer, ...]:
        raise NotImplementedError

    def layer_aliases(self) -> dict[str, str]:
        """`{alias: layer name}` (torchvision's module paths for VGG)."""
        return {a: layer.name for layer in self.layers() for a in layer.aliases}

    def layer_groups(self) -> dict[str, tuple[str, ...]]:
        """Named groups of layers: `features` (before the flatten / global pooling) and `classifier`."""
        layers = self.layers()
        cut = next((i for i, layer in enumerate(layers) if layer.kind in (FLATTEN, GAP, GMP)), len(layers))
        return {
            "features": tuple(layer.name for layer in layers[:cut]),
            "classifier": tuple(layer.name for layer in layers[cut:]),
        }

    def act_layers(self) -> tuple[str, ...]:
        """The activation layers before the head (spatial maps), in order: where optvis and inspect look."""
        return tuple(n for n in self.layer_groups()["features"] if self.layer(n).kind == ACT)

    def head(self) -> str:
        """ "gap" / "gmp" for a global average / max pool followed by one dense layer, else "other"."""
        kinds = [layer.kind for layer in self.layers()]
        for kind in (GAP, GMP):
            if kind in kinds and kinds[kinds.index(kind) + 1 :] == [DENSE]:
                return kind
        return "other"

    def cam_layer(self) -> str:
        """The activation layer right before the head (flatten / global pooling), e.g. `relu5_3`."""
        layers = self.layers()
        cut = next((i for i, layer in enumerate(layers) if layer.kind in (FLATTEN, GAP, GMP)), len(layers))
        acts = [layer.name for layer in layers[:cut] if layer.kind == ACT]
        if not acts:
            raise LayerError(f"{type(self).__name__} has no activation layer before its head")
        return acts[-1]

    def resolve(self, name: str | int) -> int:
        """Index of a layer given its semantic name, an alias, or its position."""
        layers = self.layers()
        if isinstance(name, (int, np.integer)):
            if -len(layers) <= name < len(layers):
                return int(name) % len(layers)
            raise LayerError(f"layer index {name} out of range: {type(self).__name__} has {len(layers)} layers")
        for i, layer in enumerate(layers):
            if name == layer.name or name in layer.aliases:
                return i
        known = [n for layer in layers for n in (layer.name, *layer.aliases)]
        close = difflib.get_close_matches(str(name), known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise LayerError(
            f"unknown layer {name!r} for {type(self).__name__}.{hint} "
            f"Layers: {', '.join(layer.name for layer in layers)} (run `jaxviz models` to list them with aliases)"
        )

    def layer(self, name: str | int) -> Layer:
        return self.layers()[self.resolve(name)]

    # --- running it --------------------------------------------------------------------
    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits of `x` `(N, H, W, C)`; `train` enables dropout (needs a `dropout` PRNG key)."""
        for layer in self.layers():
            x = self._module(layer, train)(x)
        return x

    def _module(self, layer: Layer, train: bool) -> nn.Module:
        kind, name = layer.kind, layer.name
        if kind == CONV:
            k = layer.kernel
            pad = layer.padding if isinstance(layer.padding, str) else [(layer.padding, layer.padding)] * 2
            return nn.Conv(layer.size, (k, k), strides=(layer.stride, layer.stride), padding=pad, name=name)
        if kind == DENSE:
            return nn.Dense(layer.size, name=name)
        if kind == DROPOUT:
            return nn.Dropout(layer.rate, deterministic=not train, name=name)
        fns = {
            ACT: self.act,
            POOL: functools.partial(_pool, layer.size),
            GAP: _gap,
            GMP: _gmp,
            FLATTEN: _flatten,
            ADAPTIVE_AVG: functools.partial(adaptive_avg_pool, out_hw=layer.size),
            PAD: functools.partial(_pad, layer.size),
        }
        if kind not in fns:
            raise ValueError(f"unknown layer kind {kind!r}")
        return _Op(fns[kind], name=name)
