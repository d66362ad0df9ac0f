"""Short spellings of `jaxviz.taps` for tests: the logits, a layer's output, the net from a layer on."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxviz import taps
from jaxviz.core import as_net


def forward(model, variables, x, stop_at=None):
    """Logits of `x`; with `stop_at` that layer's output."""
    return taps.output(as_net(model), variables, x, stop_at)[0]


def from_layer(model, variables, a, layer, input_shape):
    """The logits of the net run from `layer`'s activation `a` on (inputs of shape `input_shape` (H, W, C))."""
    dummy = jnp.zeros((a.shape[0], *input_shape), a.dtype)
    return taps.run(as_net(model), variables, dummy, replace={layer: a})[0]


def layer_gradient(model, variables, x, layer, scalar):
    """`(A, ∂Σ scalar(logits)/∂A)` at `layer`."""
    acts, grads, _ = taps.layer_gradient(
        model, variables, x, (layer,), lambda o: jax.grad(lambda o: jnp.sum(scalar(o)))(o)
    )
    return acts[layer], grads[layer]


activations = taps.activations
