"""jaxviz: explain convolutional networks with JAX/Flax. Public API (re-exports only)."""

from .attribution import METHODS, Top
from .models import build
from .models.base import activations, forward, layer_gradient, layer_table
from .models.loading import LoadedModel, load
from .rules import deconvnet_relu, guided_relu, relu_rule, with_rule

__version__ = "0.1.0"

__all__ = ["METHODS", "LoadedModel", "Top", "activations", "build", "deconvnet_relu", "forward",
           "guided_relu", "layer_gradient", "layer_table", "load", "relu_rule", "with_rule"]
