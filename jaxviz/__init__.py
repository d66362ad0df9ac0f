"""jaxviz: explain convolutional networks with JAX/Flax. Public API (re-exports only)."""

from ._xla import add_cpu_flags

add_cpu_flags()  # before anything below can start a JAX backend

from .attribution import METHODS, Top, Unit
from .core import Attribution, LayerError, Net, as_net, with_rule
from .models import build
from .models.loading import LoadedModel, load
from .rules import composite, deconvnet_relu, guided_relu, relu_rule
from .taps import layer_table

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Attribution",
    "LayerError",
    "LoadedModel",
    "Net",
    "Top",
    "Unit",
    "as_net",
    "build",
    "composite",
    "deconvnet_relu",
    "guided_relu",
    "layer_table",
    "load",
    "relu_rule",
    "with_rule",
]
