"""Attribution methods. Each: `(model, params, x (N,H,W,C), target) -> (maps, classes, logits)`."""

from .cam import cam, grad_cam, guided_grad_cam, last_conv_layer
from .gradients import deconvnet, gradient_x_input, guided_backprop, input_gradient, saliency
from .targets import Top, resolve_target

METHODS = {
    "saliency": saliency,
    "gradient_x_input": gradient_x_input,
    "deconvnet": deconvnet,
    "guided_backprop": guided_backprop,
    "cam": cam,
    "grad_cam": grad_cam,
    "guided_grad_cam": guided_grad_cam,
}

__all__ = ["METHODS", "Top", "cam", "deconvnet", "grad_cam", "gradient_x_input", "guided_backprop",
           "guided_grad_cam", "input_gradient", "last_conv_layer", "resolve_target", "saliency"]
