"""Optimization-based visualization: parameterization → transforms → model → objective → optimizer.

The four composable ideas (after Lucid, functional): `objectives` (with `+ - *` algebra), `param`
(`init(key) -> raw`, `to_image(raw)`), `transforms` (`(key, img) -> img`) and `regularizers`; one
loop, `render.Renderer` (`jit` of `lax.scan` over any optax optimizer, `vmap` over units).
`visualize` runs each seed's recipe from a named preset (`presets`); `commands` and `cli` write files.
"""

from . import objectives, param, regularizers, transforms
from .objectives import (
    Objective,
    channel,
    class_log_prob,
    class_logit,
    layer_mean,
    layer_norm,
    neuron,
)
from .presets import PRESETS, get_preset, hparams
from .render import Renderer, RenderResult, unit_keys
from .visualize import (
    Visualization,
    class_model,
    dream,
    filters,
    layers,
    style_transfer,
)

__all__ = [
    "PRESETS",
    "Objective",
    "RenderResult",
    "Renderer",
    "Visualization",
    "channel",
    "class_log_prob",
    "class_logit",
    "class_model",
    "dream",
    "filters",
    "get_preset",
    "hparams",
    "layer_mean",
    "layer_norm",
    "layers",
    "neuron",
    "objectives",
    "param",
    "regularizers",
    "style_transfer",
    "transforms",
    "unit_keys",
]
