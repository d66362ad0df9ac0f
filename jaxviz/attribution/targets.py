"""The one target convention every attribution method shares.

`target` may be:
- `None`: each image's top-1 predicted class;
- an int: that class for every image;
- a sequence or array of N ints: one class per image;
- `Top(n)`: each image's n-th best class (n=1 is the prediction; seed 000's `n`);
- `Unit(layer, channel)` or `Unit(layer, channel, y, x)`: one neuron (seed 003's guided backprop
  from a chosen neuron). Without a position, each image's strongest position of that channel.
Class names and WordNet ids are resolved to indices before this point (`Labels.index`;
`parse_target` does it for command-line strings). Class scores are pre-softmax logits.

Methods run the model up to `target_layer(target)` (None = the logits), pick the selected
values with `select`, and differentiate `score` (one value per image) or seed a VJP with
`cotangent`. The selection is made once on the clean input, so sample-based methods
(SmoothGrad, IG) explain the same class or neuron for every sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Top:
    """The n-th best class of each image (1-based)."""

    n: int = 1

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"Top(n) needs n >= 1, got {self.n}")


@dataclass(frozen=True)
class Unit:
    """A neuron: channel `channel` of layer `layer`, at `(y, x)` or at each image's maximum."""

    layer: str
    channel: int
    y: int | None = None
    x: int | None = None

    def __post_init__(self):
        if (self.y is None) != (self.x is None):
            raise ValueError("Unit needs both y and x, or neither")


Target = None | int | Top | Unit | np.ndarray | jax.Array | list[int] | tuple[int, ...]


class Selection(NamedTuple):
    """What a target selects in the output `(N, K)` or `(N, h, w, C)`: index per image, position."""

    index: jax.Array  # (N,) class or channel
    pos: jax.Array | None  # (N, 2) y, x for spatial units, else None


def target_layer(target: Target) -> str | None:
    """The layer a target lives at: None for classes (the logits), the unit's layer otherwise."""
    return target.layer if isinstance(target, Unit) else None


def select(out: jax.Array, target: Target) -> Selection:
    """Resolve `target` against the model output at `target_layer(target)`."""
    if isinstance(target, Unit):
        return _select_unit(out, target)
    if out.ndim != 2:
        raise ValueError(f"class targets need logits (N, K); got output shape {out.shape}")
    return Selection(resolve_target(out, target), None)


def score(out: jax.Array, sel: Selection) -> jax.Array:
    """The selected value per image `(N,)`; differentiable in `out`."""
    n = out.shape[0]
    rows = jnp.arange(n)
    if sel.pos is None:
        return out[rows, sel.index]
    return out[rows, sel.pos[:, 0], sel.pos[:, 1], sel.index]


def cotangent(out: jax.Array, sel: Selection) -> jax.Array:
    """One-hot seed shaped like `out`: the VJP of `score`."""
    return jax.grad(lambda o: jnp.sum(score(o, sel)))(out)


def resolve_target(logits: jax.Array, target: Target) -> jax.Array:
    """Class index per image `(N,)` int32 from logits `(N, K)` and a class target."""
    n, k = logits.shape
    if target is None:
        target = Top(1)
    if isinstance(target, Top):
        if target.n > k:
            raise ValueError(f"Top({target.n}) asked of a model with {k} classes")
        return jnp.argsort(-logits, axis=-1)[:, target.n - 1].astype(jnp.int32)
    t = jnp.asarray(target, jnp.int32)
    if t.ndim == 0:
        t = jnp.full((n,), t)
    if t.shape != (n,):
        raise ValueError(f"target has shape {t.shape}; expected a scalar or one class per image ({n},)")
    check_range(t, k, "target class")
    return t


def _select_unit(out: jax.Array, unit: Unit) -> Selection:
    n, c = out.shape[0], out.shape[-1]
    if not 0 <= unit.channel < c:
        raise ValueError(f"unit channel {unit.channel} out of range: layer {unit.layer} has {c} channels")
    index = jnp.full((n,), unit.channel, jnp.int32)
    if out.ndim == 2:
        if unit.y is not None:
            raise ValueError(f"layer {unit.layer} is not spatial (shape {out.shape[1:]}): give no y, x")
        return Selection(index, None)
    h, w = out.shape[1:3]
    if unit.y is None:
        flat = jnp.argmax(out[..., unit.channel].reshape(n, -1), axis=1)
        pos = jnp.stack([flat // w, flat % w], axis=1).astype(jnp.int32)
    else:
        if not (0 <= unit.y < h and 0 <= unit.x < w):
            raise ValueError(f"unit position ({unit.y}, {unit.x}) outside layer {unit.layer} of size {h}x{w}")
        pos = jnp.tile(jnp.array([[unit.y, unit.x]], jnp.int32), (n, 1))
    return Selection(index, pos)


def check_range(t: jax.Array, k: int, what: str) -> None:
    if isinstance(t, jax.core.Tracer):
        return  # checked when called eagerly; inside jit the caller validated concrete targets
    arr = np.asarray(t)
    bad = arr[(arr < 0) | (arr >= k)]
    if bad.size:
        raise ValueError(f"{what} {int(bad[0])} out of range: the model has {k} classes (0..{k - 1})")


def parse_target(text: str | None, labels) -> Target:
    """A command-line target: '' / 'top' → None, 'top2' → Top(2), '319', 'dragonfly', 'n02268443',
    or a unit 'relu5_3:12' / 'relu5_3:12:3:4' (layer:channel[:y:x])."""
    if text is None or text.strip().lower() in ("", "top", "top1"):
        return None
    text = text.strip()
    low = text.lower()
    if low.startswith("top") and low[3:].isdigit():
        return Top(int(low[3:]))
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 4) or not all(p.lstrip("-").isdigit() for p in parts[1:]):
            raise ValueError(f"unit target {text!r}: write layer:channel or layer:channel:y:x")
        nums = [int(p) for p in parts[1:]]
        return Unit(parts[0], *nums)
    return labels.index(text)
