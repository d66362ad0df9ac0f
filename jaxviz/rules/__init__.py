"""Backward rules and where they go.

A *rule* replaces one kind of operation's backward pass (`relu.py`: backprop, deconvnet, guided
backprop, or your own `relu_rule(backward)`); a *composite* says which rule goes where — by kind,
layer path, position or predicate (`composite.py`); the *transformation* puts them into any model's
traced program (`transform.py`). A model under rules is `as_net(model).with_rules(composite)`, or
`jaxviz.with_rule(model, rule, layers=...)`:

    from jaxviz import relu_rule, with_rule
    import jax.numpy as jnp
    clipped = relu_rule(lambda x, g: jnp.where(x > 0, jnp.clip(g, -1, 1), 0), "clipped")
    net = with_rule(my_flax_model, clipped)      # any linen/NNX module or function
    jaxviz.attribution.saliency(net, variables, x)
"""

from __future__ import annotations

from .composite import Composite, First, Kind, Path, Site, Where, as_composite, composite, on_layers
from .pool import SpreadMaxPool, spread_max_pool
from .relu import RULES, ReluRule, backprop_relu, deconvnet_relu, guided_relu, relu_rule
from .transform import apply_rules, sites

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
    "composite",
    "deconvnet_relu",
    "guided_relu",
    "on_layers",
    "relu_rule",
    "sites",
    "spread_max_pool",
]
