"""Backward rules and where they go.

A *rule* replaces one kind of operation's backward pass (`relu.py`: backprop, deconvnet, guided
backprop, or your own `relu_rule(backward)`); a *composite* says which rule goes where — by kind,
layer path, position or predicate (`composite.py`); the *transformation* puts them into any model's
traced program (`transform.py`). A model under rules is `as_net(model).with_rules(composite)`, or
`with_rule(model, rule, layers=...)`:

    from jaxviz.rules import relu_rule, with_rule
    import jax.numpy as jnp
    clipped = relu_rule(lambda x, g: jnp.where(x > 0, jnp.clip(g, -1, 1), 0), "clipped")
    net = with_rule(my_flax_model, clipped)      # any linen/NNX module or function
    jaxviz.attribution.saliency(net, variables, x)
"""

from __future__ import annotations

from ..core import Net, as_net
from .composite import Composite, First, Kind, Path, Site, Where, as_composite, composite, on_layers
from .pool import SpreadMaxPool, spread_max_pool
from .relu import RULES, ReluRule, backprop_relu, deconvnet_relu, guided_relu, relu_rule
from .transform import apply_rules, sites


def with_rule(model, rule, layers=None) -> Net:
    """`model` (any kind) with `rule` at its ReLUs — all of them, or those under the `layers` paths.

    Raises ValueError when the composite would touch no ReLU (a tanh LeNet-5, a wrong path) only when
    the model runs (see `check_applies`).
    """
    return as_net(model).with_rules(on_layers(rule, layers))


def relu_sites(net: Net, variables, x) -> list[Site]:
    """The ReLU sites of a model's program for inputs like `x` (cached per model and shapes)."""
    from ..taps import run, shape_key

    plain = net.with_rules(None)
    key = (plain, shape_key(variables), shape_key(x))
    if key not in _RELU_SITES:
        found = sites(lambda v, x: run(plain, v, x)[0], variables, x)
        if len(_RELU_SITES) >= 64:
            _RELU_SITES.pop(next(iter(_RELU_SITES)))
        _RELU_SITES[key] = [s for s, _ in found if s.kind == "relu"]
    return _RELU_SITES[key]


_RELU_SITES: dict = {}


def check_applies(net: Net, variables, x, what: str) -> None:
    """Refuse a ReLU rule for a model with no ReLU where it points (it would change nothing silently)."""
    relus = relu_sites(net, variables, x)
    if not relus:
        raise ValueError(
            f"{net.name} has no ReLU: ReLU backward rules ({what}) do not apply; use saliency, "
            f"gradient_x_input, smoothgrad, integrated_gradients or occlusion"
        )
    if net.rules is not None and not any(net.rules.rule_for(s) is not None for s in relus):
        paths = sorted({s.path for s in relus})
        raise ValueError(
            f"{what}: no ReLU of {net.name} is under the chosen layers; ReLUs run in: "
            f"{', '.join(p or '(top level)' for p in paths)}"
        )


__all__ = [
    "RULES",
    "Composite",
    "First",
    "Kind",
    "Path",
    "ReluRule",
    "Site",
    "SpreadMaxPool",
    "Where",
    "apply_rules",
    "as_composite",
    "backprop_relu",
    "check_applies",
    "composite",
    "deconvnet_relu",
    "guided_relu",
    "on_layers",
    "relu_rule",
    "relu_sites",
    "sites",
    "spread_max_pool",
    "with_rule",
]
