"""Max-pooling rules: the same forward, another backward.

`spread_max_pool` sends each window's gradient to every position of the window (the backward of a
sum pool) instead of to the window's maximum: the gradient's support is then the whole region a
unit depends on, which is how `inspect.topk` finds receptive fields of any network.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax


@dataclass(frozen=True)
class SpreadMaxPool:
    """Max-pool forward; backward spreads each window's gradient over the whole window."""

    name: str = "spread"

    kinds = ("max_pool",)

    def apply(self, site, primal, window: dict, x: jax.Array) -> jax.Array:
        @jax.custom_vjp
        def pool(x):
            return primal(x)

        def fwd(x):
            return primal(x), x

        def bwd(x, g):
            def window_sum(z):
                return lax.reduce_window(
                    z,
                    jnp.zeros((), z.dtype),
                    lax.add,
                    window["window_dimensions"],
                    window["window_strides"],
                    window["padding"],
                )

            return (jax.vjp(window_sum, jnp.zeros_like(x))[1](g.astype(x.dtype))[0],)

        pool.defvjp(fwd, bwd)
        return pool(x)


spread_max_pool = SpreadMaxPool()
