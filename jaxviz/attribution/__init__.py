"""Attribution methods. Each: `method(model, variables, x (N,H,W,C), target=None, **options) -> Attribution`.

`model` is any model (`jaxviz.core`: a linen or NNX module, a function, a `Net` with rules).
`Attribution(maps, index, out, extras)`: `maps` is `(N, H, W, C)` for gradient methods, `(N, H, W)`
for CAM-like and perturbation methods; `index` the explained class (or unit channel) per image;
`out` the model output at the target's layer; `extras` e.g. IG's `completeness`. Targets: see
`targets.py`. For batches and many images use `engine.compiled(name, model, **options)`;
for several methods on the same images `fused.fused_compiled(names, model, **options)` (one
forward pass shared by the gradient and CAM methods in `FUSABLE`).
"""

from ..core import Attribution
from .cam import cam, cam_gmp, grad_cam, guided_grad_cam
from .cam_variants import grad_cam_pp, layer_cam, score_cam
from .fullgrad import fullgrad
from .fused import BUNDLE_002, FUSABLE, fused_compiled
from .gradients import (
    deconvnet,
    gradient_x_input,
    guided_backprop,
    input_gradient,
    saliency,
)
from .integrated import integrated_gradients
from .lrp import lrp
from .occlusion import Sweep, occlusion, occlusion_sweep
from .registry import METHODS
from .smoothgrad import smoothgrad
from .targets import Top, Unit, parse_target, resolve_target

__all__ = [
    "BUNDLE_002",
    "FUSABLE",
    "METHODS",
    "Attribution",
    "Top",
    "Unit",
    "cam",
    "cam_gmp",
    "deconvnet",
    "fullgrad",
    "fused_compiled",
    "grad_cam",
    "grad_cam_pp",
    "gradient_x_input",
    "guided_backprop",
    "guided_grad_cam",
    "input_gradient",
    "integrated_gradients",
    "layer_cam",
    "lrp",
    "occlusion",
    "occlusion_sweep",
    "Sweep",
    "parse_target",
    "resolve_target",
    "saliency",
    "score_cam",
    "smoothgrad",
]
