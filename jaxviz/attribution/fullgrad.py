"""FullGrad (Srinivas & Fleuret 2019): input-gradient ⊙ input plus every bias-gradient ⊙ bias.

For a ReLU network (piecewise linear) the target's value decomposes exactly:
y = Σ ∂y/∂x ⊙ x + Σ_layers Σ ∂y/∂z_l ⊙ b_l, z_l a layer's output before its activation and b_l
its bias. The saliency map keeps the spatial terms: the input term and one per conv layer.
Dense-layer biases have no spatial layout and are left out of the map (they enter the
decomposition, which the tests check through `_fullgrad_terms(..., dense=True)`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..models.base import CONV, DENSE, activations, forward
from .targets import Target, cotangent, select, target_layer


def fullgrad(model, params, x: jax.Array, target: Target = None):
    """FullGrad saliency `(N, H, W)` in [0, 1] for the target's value (see `targets.py`).

    As the authors' code: each term is ψ = |·|, min-max scaled to [0, 1] per image over all its
    positions and channels, bilinearly upsampled to the input size (jax's half-pixel resize,
    where theirs uses align_corners=True) and summed over channels; the sum of the terms is
    min-max scaled to [0, 1] per image. Conv layers up to the target's layer contribute.

    Returns `(maps (N, H, W), index (N,), out)`.
    """
    input_term, terms, sel, out = _fullgrad_terms(model, params, x, target)
    n, hw = x.shape[0], x.shape[1:3]
    m = jnp.sum(_scale(jnp.abs(input_term)), axis=-1)
    for t in terms.values():
        m = m + jax.image.resize(jnp.sum(_scale(jnp.abs(t)), axis=-1), (n, *hw), "bilinear")
    return _scale(m), sel.index, out


def _fullgrad_terms(model, params, x: jax.Array, target: Target = None, *, dense: bool = False):
    """The unreduced FullGrad decomposition in one backward pass.

    The net runs as segments ending at each conv (and, with `dense`, dense) layer, with a zero
    "delta" added to each segment's output; the gradient with respect to the deltas is ∂y/∂z_l
    for every layer at once. Returns `(∂y/∂x ⊙ x (N, H, W, C), {layer: ∂y/∂z_l ⊙ b_l}, sel, out)`.
    """
    stop = target_layer(target)
    layers = model.layers()
    last = len(layers) - 1 if stop is None else model.resolve(stop)
    kinds = (CONV, DENSE) if dense else (CONV,)
    names = [layer.name for layer in layers[:last + 1] if layer.kind in kinds]
    shapes = jax.eval_shape(lambda x: activations(model, params, x, names), x) if names else {}
    deltas = tuple(jnp.zeros(shapes[name].shape, shapes[name].dtype) for name in names)

    def run(x, deltas):
        h, prev = x, None
        for name, d in zip(names, deltas):
            h = forward(model, params, h, start_after=prev, stop_at=name) + d
            prev = name
        if prev is None or model.resolve(prev) < last:
            h = forward(model, params, h, start_after=prev, stop_at=stop)
        return h

    out, vjp = jax.vjp(run, x, deltas)
    sel = select(out, target)
    gx, gz = vjp(cotangent(out, sel))
    terms = {}
    for name, g in zip(names, gz):
        b = params[name]["bias"]
        terms[name] = g * b.reshape((1,) * (g.ndim - 1) + (-1,))
    return gx * x, terms, sel, out


def _scale(t: jax.Array) -> jax.Array:
    """Min-max scale each image (leading axis) to [0, 1]; a constant image becomes 0."""
    axes = tuple(range(1, t.ndim))
    lo, hi = jnp.min(t, axis=axes, keepdims=True), jnp.max(t, axis=axes, keepdims=True)
    return jnp.where(hi > lo, (t - lo) / jnp.where(hi > lo, hi - lo, 1), 0)
