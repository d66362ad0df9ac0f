"""Gradient attribution: saliency, gradient × input, deconvnet, guided backprop.

All take a batch `x` `(N, H, W, C)` (preprocessed) and a target (see `targets.py`) and return
`(maps (N, H, W, C), index (N,), out)`: one forward and one backward pass. `out` is the model
output at the target's layer (the logits for class targets). The backward rule is the model's
own `act`; deconvnet and guided backprop swap theirs in.
"""

from __future__ import annotations

import jax

from ..models.base import forward
from ..rules import deconvnet_relu, guided_relu, with_rule
from .targets import Target, cotangent, select, target_layer


def input_gradient(model, params, x: jax.Array, target: Target = None):
    """∂y/∂x for the target's value y, with whatever backward rules `model` carries."""
    out, vjp = jax.vjp(lambda x: forward(model, params, x, stop_at=target_layer(target)), x)
    sel = select(out, target)
    (g,) = vjp(cotangent(out, sel))
    return g, sel.index, out


def saliency(model, params, x, target: Target = None):
    """Simonyan et al. 2014: the plain input gradient (views: `plot.abs_max`, `plot.clamp_max`)."""
    return input_gradient(model, params, x, target)


def gradient_x_input(model, params, x, target: Target = None):
    """Shrikumar et al. 2016: x ⊙ ∂y/∂x."""
    g, index, out = input_gradient(model, params, x, target)
    return g * x, index, out


def deconvnet(model, params, x, target: Target = None, layers=None):
    """Zeiler & Fergus 2014: ReLU backward R_l = (R_{l+1} > 0)·R_{l+1}; max-pool through switches."""
    return input_gradient(with_rule(model, deconvnet_relu, layers), params, x, target)


def guided_backprop(model, params, x, target: Target = None, layers=None):
    """Springenberg et al. 2015: R_l = (f_l > 0)·(R_{l+1} > 0)·R_{l+1}."""
    return input_gradient(with_rule(model, guided_relu, layers), params, x, target)
