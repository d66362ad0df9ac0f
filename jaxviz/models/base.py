"""Sequential CNNs with named layers, swappable activations, truncation and taps.

Every model in the library is a `SequentialNet`: an ordered tuple of `Layer`s. That one
shape gives all models the same abilities:

- `act` is a field, so a backward rule swaps in with the same params
  (`model.clone(act=guided_relu)`); `layer_acts` overrides it for chosen layers only;
- each layer has a semantic name (`conv5_3`) and aliases (torchvision's `features.28`);
- `__call__(x, start_after=..., stop_at=...)` runs any contiguous slice of the network, so a
  prefix gives a layer's activation and the suffix gives the gradient with respect to it;
- `capture=(names...)` sows the named activations into the `intermediates` collection.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Params = Any

CONV, ACT, POOL, ADAPTIVE_AVG, GAP, GMP, FLATTEN, DENSE, DROPOUT, PAD = (
    "conv", "act", "pool", "adaptive_avg", "gap", "gmp", "flatten", "dense", "dropout", "pad")


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


class LayerError(KeyError):
    """An unknown layer name; the message lists what exists."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


def adaptive_avg_pool(x: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """torchvision's AdaptiveAvgPool2d on NHWC: bin i covers [floor(i·H/o), ceil((i+1)·H/o))."""

    def bins(n: int, o: int) -> np.ndarray:
        m = np.zeros((o, n), np.float32)
        for i in range(o):
            lo, hi = (i * n) // o, -((-(i + 1) * n) // o)
            m[i, lo:hi] = 1.0 / (hi - lo)
        return m

    ph, pw = bins(x.shape[1], out_hw[0]), bins(x.shape[2], out_hw[1])
    return jnp.einsum("ih,nhwc,jw->nijc", ph, x, pw)



@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x: jax.Array, w: int) -> jax.Array:
    """`w`x`w`, stride-`w` max-pool (VALID) of `(N, H, W, C)`, with the backward of `max_pool_vjp`."""
    return nn.max_pool(x, (w, w), strides=(w, w))


def max_pool_vjp(x: jax.Array, g: jax.Array, w: int) -> jax.Array:
    """The cotangent of `x` `(N, H, W, C)` for `max_pool(x, w)` with output cotangent `g`.

    Each window's cotangent goes to its first maximum in row-major order — exactly what XLA's
    select-and-scatter (JAX's own max-pool VJP) does, ties included (all-zero windows after a ReLU
    are common; the tests compare bit for bit), but built from `w²` strided slices and selects that
    XLA fuses: several times faster on CPU (8x for VGG16's pools).
    """
    n, h, wd, c = x.shape
    ho, wo = h // w, wd // w
    parts = [x[:, i:ho * w:w, j:wo * w:w] for i in range(w) for j in range(w)]
    peak = functools.reduce(jnp.maximum, parts)
    taken = jnp.zeros(peak.shape, bool)
    grads = []
    for part in parts:
        hit = (part == peak) & ~taken
        taken = taken | hit
        grads.append(jnp.where(hit, g, jnp.zeros((), g.dtype)))
    rows = [jnp.stack(grads[i * w:(i + 1) * w], axis=3) for i in range(w)]  # (N, ho, wo, w, C) each
    out = jnp.stack(rows, axis=2).reshape(n, ho * w, wo * w, c)
    return jnp.pad(out, ((0, 0), (0, h - ho * w), (0, wd - wo * w), (0, 0)))


max_pool.defvjp(lambda x, w: (max_pool(x, w), x), lambda w, x, g: (max_pool_vjp(x, g, w),))

class SequentialNet(nn.Module):
    """Base class: subclasses define `layers()` and fields; this runs them.

    Attributes:
      act: activation used at every `act` layer (nn.relu, a backward-rule ReLU, tanh, ...).
      layer_acts: `((layer_name, fn), ...)` overrides of `act` for chosen activation layers.
    """

    act: Callable[[jax.Array], jax.Array] = nn.relu
    layer_acts: tuple[tuple[str, Callable[[jax.Array], jax.Array]], ...] = ()

    # --- the architecture -------------------------------------------------------------
    def layers(self) -> tuple[Layer, ...]:
        raise NotImplementedError

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
            f"Layers: {', '.join(layer.name for layer in layers)} (run `jaxviz models` to list them with aliases)")

    def layer(self, name: str | int) -> Layer:
        return self.layers()[self.resolve(name)]

    def act_layers(self) -> tuple[str, ...]:
        """Names of the layers where `act` applies (where backward rules go)."""
        return tuple(layer.name for layer in self.layers() if layer.kind == ACT)

    def _act_for(self, name: str) -> Callable[[jax.Array], jax.Array]:
        for layer_name, fn in self.layer_acts:
            if layer_name == name:
                return fn
        return self.act

    # --- running it --------------------------------------------------------------------
    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False, start_after: str | int | None = None,
                 stop_at: str | int | None = None, capture: Sequence[str] = ()) -> jax.Array:
        """Run the layers after `start_after` up to and including `stop_at`.

        Args:
          x: `(N, H, W, C)` input, or the activation of `start_after` when it is given.
          train: enables dropout (needs a `dropout` PRNG key).
          start_after: name of the layer whose output `x` is; None starts at the input.
          stop_at: the last layer to run; None runs to the logits.
          capture: names of layers whose outputs are sown into `intermediates`.
        """
        layers = self.layers()
        first = 0 if start_after is None else self.resolve(start_after) + 1
        last = len(layers) - 1 if stop_at is None else self.resolve(stop_at)
        if last < first:
            raise LayerError(f"stop_at={stop_at!r} comes before start_after={start_after!r}")
        wanted = {layers[self.resolve(n)].name for n in capture}
        for layer in layers[first:last + 1]:
            x = self._run(layer, x, train)
            if layer.name in wanted:
                self.sow("intermediates", _tap(layer.name), x)
        return x

    def _run(self, layer: Layer, x: jax.Array, train: bool) -> jax.Array:
        kind = layer.kind
        if kind == CONV:
            k = layer.kernel
            pad = layer.padding if isinstance(layer.padding, str) else [(layer.padding, layer.padding)] * 2
            return nn.Conv(layer.size, (k, k), padding=pad, name=layer.name)(x)
        if kind == ACT:
            return self._act_for(layer.name)(x)
        if kind == POOL:
            return max_pool(x, layer.size)
        if kind == ADAPTIVE_AVG:
            return adaptive_avg_pool(x, layer.size)
        if kind == GAP:
            return jnp.mean(x, axis=(1, 2))
        if kind == GMP:
            return jnp.max(x, axis=(1, 2))
        if kind == FLATTEN:
            return x.reshape(x.shape[0], -1)  # NHWC rows: (H, W, C) order
        if kind == DENSE:
            return nn.Dense(layer.size, name=layer.name)(x)
        if kind == DROPOUT:
            return nn.Dropout(layer.rate, deterministic=not train)(x)
        if kind == PAD:
            p = layer.size
            return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        raise ValueError(f"unknown layer kind {kind!r}")


# --- functional helpers used by every method -------------------------------------------

def _tap(name: str) -> str:
    """Key of a captured activation: flax forbids reusing the submodule's own name."""
    return f"{name}:out"


def forward(model: SequentialNet, params: Params, x: jax.Array, **kwargs) -> jax.Array:
    """`model.apply` with plain params (no collections) — the logits, or a slice of the net."""
    return model.apply({"params": params}, x, **kwargs)


def activations(model: SequentialNet, params: Params, x: jax.Array, names: Iterable[str | int],
                *, stop_early: bool = True) -> dict[str, jax.Array]:
    """Activations of the named layers for a batch `x` `(N, H, W, C)`.

    Runs only up to the deepest requested layer when `stop_early`. Keys are the names
    as given by the caller (an alias stays an alias).
    """
    names = list(names)
    idx = [model.resolve(n) for n in names]
    stop = max(idx) if stop_early and idx else None
    _, state = model.apply({"params": params}, x, stop_at=stop, capture=names, mutable=["intermediates"])
    sown = state["intermediates"]
    return {n: sown[_tap(model.layers()[i].name)][0] for n, i in zip(names, idx)}


def layer_gradient(model: SequentialNet, params: Params, x: jax.Array, layer: str | int,
                   scalar: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Activation `A` of `layer` and the gradient of `scalar(model output)` with respect to it.

    `scalar` maps the output `(N, ...)` to per-image values `(N,)`; images are independent, so
    the gradient of their sum gives each image's own gradient. Returns `(A, dA)`, both shaped
    like the layer's output.
    """
    a = forward(model, params, x, stop_at=layer)

    def tail(a):
        return jnp.sum(scalar(forward(model, params, a, start_after=layer)))

    return a, jax.grad(tail)(a)


def layer_table(model: SequentialNet, params: Params | None, input_shape: tuple[int, int, int]) -> list[dict]:
    """One row per layer: name, aliases, kind, output shape (for one image), parameter count."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    names = [layer.name for layer in model.layers()]
    if params is None:
        params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape))))["params"]
    shapes = jax.eval_shape(lambda p, x: activations(model, p, x, names), params, x)
    rows = []
    for layer in model.layers():
        p = params.get(layer.name, {})
        count = int(sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(p)))
        rows.append({"name": layer.name, "aliases": list(layer.aliases), "kind": layer.kind,
                     "shape": list(shapes[layer.name].shape[1:]), "params": count})
    return rows
