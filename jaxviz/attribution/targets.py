"""The one target convention every attribution method shares.

`target` may be:
- `None`: each image's top-1 predicted class;
- an int: that class for every image;
- a sequence or array of N ints: one class per image;
- `Top(n)`: each image's n-th best class (n=1 is the prediction; seed 000's `n`).
Class names and WordNet ids are resolved to indices before this point (`Labels.index`).
Class scores are pre-softmax logits.
"""

from __future__ import annotations

from dataclasses import dataclass

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


Target = None | int | Top | np.ndarray | jax.Array | list[int] | tuple[int, ...]


def resolve_target(logits: jax.Array, target: Target) -> jax.Array:
    """Class index per image `(N,)` int32 from logits `(N, K)` and a target."""
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
    if not isinstance(t, jax.core.Tracer):
        bad = np.asarray(t)[(np.asarray(t) < 0) | (np.asarray(t) >= k)]
        if bad.size:
            raise ValueError(f"target class {int(bad[0])} out of range: the model has {k} classes (0..{k - 1})")
    return t


def one_hot(classes: jax.Array, k: int, dtype=jnp.float32) -> jax.Array:
    return jax.nn.one_hot(classes, k, dtype=dtype)
