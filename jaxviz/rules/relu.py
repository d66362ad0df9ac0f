"""ReLU rules: forward `max(x, 0)`, backward a chosen function of the input and the incoming gradient.

A ReLU rule is one small function `backward(x, g) -> grad_in` of the ReLU's input `x` and the
incoming gradient `g` (R_{l+1}); `relu_rule(backward)` makes it a rule (seeds 003/004):

    backprop         R_l = (f_l > 0) · R_{l+1}
    deconvnet        R_l = (R_{l+1} > 0) · R_{l+1}
    guided backprop  R_l = (f_l > 0) · (R_{l+1} > 0) · R_{l+1}

A rule is a value (a frozen dataclass): two equal rules are one compiled program. Applied to a
model by `rules.transform` wherever the traced program computes a ReLU, however it was written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

Backward = Callable[[jax.Array, jax.Array], jax.Array]


@dataclass(frozen=True)
class ReluRule:
    """A ReLU whose VJP is `backward(x, g)`; its forward is always `max(x, 0)`.

    `rule(x)` is the ReLU itself (a `jax.custom_vjp` function), usable directly as an activation.
    """

    backward: Backward
    name: str = ""

    kinds = ("relu",)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _relu_vjp(self.backward)(x)

    def apply(self, site, x: jax.Array) -> jax.Array:
        """The rule at a matched ReLU site (see `rules.transform`)."""
        return self(x)

    def __repr__(self) -> str:
        return f"ReluRule({self.name or getattr(self.backward, '__name__', '?')})"


def _relu_vjp(backward: Backward):
    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, jnp.zeros((), x.dtype))

    def fwd(x):
        return relu(x), x

    def bwd(x, g):
        return (backward(x, g).astype(g.dtype),)

    relu.defvjp(fwd, bwd)
    return relu


def relu_rule(backward: Backward, name: str | None = None) -> ReluRule:
    """A ReLU rule from `backward(x, g)` (the ReLU's input and the incoming gradient)."""
    return ReluRule(backward, name or getattr(backward, "__name__", "relu_rule"))


def _backprop(x, g):
    return jnp.where(x > 0, g, 0)


def _deconvnet(x, g):
    return jnp.maximum(g, 0)


def _guided(x, g):
    return jnp.where((x > 0) & (g > 0), g, 0)


backprop_relu = relu_rule(_backprop, "backprop")
deconvnet_relu = relu_rule(_deconvnet, "deconvnet")
guided_relu = relu_rule(_guided, "guided")

RULES: dict[str, ReluRule] = {"backprop": backprop_relu, "deconvnet": deconvnet_relu, "guided": guided_relu}
