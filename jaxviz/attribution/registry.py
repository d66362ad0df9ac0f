"""Every attribution method by name: what `jaxviz attribute --method`, the compiled engine, the
fused pass, studies and the sanity checks look names up in. Variants with fixed options
(`smoothgrad_squared`, `vargrad`) are entries of their own."""

from __future__ import annotations

from functools import partial

from .cam import cam, cam_gmp, grad_cam, guided_grad_cam
from .cam_variants import grad_cam_pp, layer_cam, score_cam
from .fullgrad import fullgrad
from .gradients import deconvnet, gradient_x_input, guided_backprop, saliency
from .integrated import integrated_gradients
from .lrp import lrp
from .occlusion import occlusion
from .smoothgrad import smoothgrad

__all__ = ["METHODS"]

METHODS = {
    "saliency": saliency,
    "gradient_x_input": gradient_x_input,
    "smoothgrad": smoothgrad,
    "smoothgrad_squared": partial(smoothgrad, variant="squared"),
    "vargrad": partial(smoothgrad, variant="vargrad"),
    "integrated_gradients": integrated_gradients,
    "deconvnet": deconvnet,
    "guided_backprop": guided_backprop,
    "cam": cam,
    "cam_gmp": cam_gmp,
    "grad_cam": grad_cam,
    "guided_grad_cam": guided_grad_cam,
    "grad_cam_pp": grad_cam_pp,
    "score_cam": score_cam,
    "layer_cam": layer_cam,
    "occlusion": occlusion,
    "fullgrad": fullgrad,
    "lrp": lrp,
}
