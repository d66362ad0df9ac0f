"""Gradient attribution: saliency, gradient × input, deconvnet, guided backprop.

All take any model (`core`), its variables, a batch `x` `(N, H, W, C)` (preprocessed) and a target
(see `targets.py`) and return an `Attribution` with maps `(N, H, W, C)`: one forward and one
backward pass. The backward rules are the model's own (`Net.with_rules`); deconvnet and guided
backprop put theirs at the model's ReLUs (all of them, or those under `layers`).
"""

from __future__ import annotations

import jax

from ..core import Attribution, finite_input, prepare
from ..rules import deconvnet_relu, guided_relu, on_layers
from ..taps import check_applies, output
from .targets import Target, cotangent, select, target_layer


def input_gradient(model, variables, x: jax.Array, target: Target = None) -> Attribution:
    """∂y/∂x for the target's value y, with whatever backward rules `model` carries."""
    net, variables = prepare(model, variables)
    stop = target_layer(target)
    out, vjp = jax.vjp(lambda x: output(net, variables, x, stop)[0], x)
    sel = select(out, target)
    (g,) = vjp(cotangent(out, sel))
    return Attribution(g, sel.index, out, {})


@finite_input
def saliency(model, variables, x, target: Target = None) -> Attribution:
    """Simonyan et al. 2014: the plain input gradient (views: `plot.abs_max`, `plot.clamp_max`)."""
    return input_gradient(model, variables, x, target)


@finite_input
def gradient_x_input(model, variables, x, target: Target = None) -> Attribution:
    """Shrikumar et al. 2016: x ⊙ ∂y/∂x."""
    a = input_gradient(model, variables, x, target)
    return a._replace(maps=a.maps * x)


def with_relu_rule(model, variables, x, rule, layers, what: str):
    """`(net, variables)` of `model` with `rule` at its ReLUs (under `layers`), refusing models with none."""
    net, variables = prepare(model, variables)
    if layers is not None:
        groups = getattr(net.source, "layer_groups", lambda: {})()
        names = (layers,) if isinstance(layers, str) else tuple(layers)
        layers = tuple(p for n in names for p in (groups[n] if n in groups else (net.resolve(n),)))
    net = net.with_rules(on_layers(rule, layers))
    check_applies(net, variables, x, what)
    return net, variables


@finite_input
def deconvnet(model, variables, x, target: Target = None, layers=None) -> Attribution:
    """Zeiler & Fergus 2014: ReLU backward R_l = (R_{l+1} > 0)·R_{l+1}; max-pool through switches."""
    net, variables = with_relu_rule(model, variables, x, deconvnet_relu, layers, "deconvnet")
    return input_gradient(net, variables, x, target)


@finite_input
def guided_backprop(model, variables, x, target: Target = None, layers=None) -> Attribution:
    """Springenberg et al. 2015: R_l = (f_l > 0)·(R_{l+1} > 0)·R_{l+1}."""
    net, variables = with_relu_rule(model, variables, x, guided_relu, layers, "guided backprop")
    return input_gradient(net, variables, x, target)
