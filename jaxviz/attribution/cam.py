"""Class activation maps: CAM (GAP heads), Grad-CAM, guided Grad-CAM.

Maps are `(N, H, W)`: ReLU'd, bilinearly upsampled to the input size, scaled to [0, 1] per image.
On a GAP network Grad-CAM's α_k = w_k^c / (h·w), so Grad-CAM equals CAM up to a positive
constant (seed 004); the tests check it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..models.base import DENSE, FLATTEN, GAP, GMP, forward
from .gradients import guided_backprop
from .targets import Target, Unit, cotangent, select, target_layer


def last_conv_layer(model) -> str:
    """The activation layer right before the head (flatten / global pooling), e.g. `relu5_3`."""
    layers = model.layers()
    cut = next(i for i, layer in enumerate(layers) if layer.kind in (FLATTEN, GAP, GMP))
    acts = [layer.name for layer in layers[:cut] if layer.kind == "act"]
    if not acts:
        raise ValueError(f"{type(model).__name__} has no activation layer before its head")
    return acts[-1]


def _upsample_normalize(m: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """ReLU, then bilinear upsampling to `hw`, then scaling to [0, 1] per image (the Grad-CAM order)."""
    m = jax.image.resize(jnp.maximum(m, 0), (m.shape[0], *hw), "bilinear")
    return m / (jnp.max(m, axis=(1, 2), keepdims=True) + 1e-12)


def activation_and_gradient(model, params, x, target: Target, layer: str, method: str):
    """A = activation of `layer`, dA = ∂y/∂A for the target's value y; also the selection and output."""
    stop = target_layer(target)
    if stop is not None and model.resolve(stop) <= model.resolve(layer):
        raise ValueError(f"{method} layer {layer!r} must come before the target unit's layer {stop!r}")
    a = forward(model, params, x, stop_at=layer)
    out, vjp = jax.vjp(lambda a: forward(model, params, a, start_after=layer, stop_at=stop), a)
    sel = select(out, target)
    (da,) = vjp(cotangent(out, sel))
    return a, da, sel, out


def grad_cam(model, params, x, target: Target = None, layer: str | None = None):
    """Selvaraju et al. 2017: ReLU(Σ_k α_k A^k), α_k = mean_ij ∂y_c/∂A^k_ij, at `layer`."""
    a, da, sel, out = activation_and_gradient(model, params, x, target, layer or last_conv_layer(model), "Grad-CAM")
    alpha = jnp.mean(da, axis=(1, 2), keepdims=True)
    return _upsample_normalize(jnp.sum(alpha * a, axis=-1), x.shape[1:3]), sel.index, out


def cam(model, params, x, target: Target = None):
    """Zhou et al. 2016: M_c = Σ_k w_k^c A^k for a GAP → dense head."""
    layers = model.layers()
    kinds = [layer.kind for layer in layers]
    if GAP not in kinds or kinds[kinds.index(GAP) + 1:] != [DENSE]:
        raise ValueError(f"CAM needs a global-average-pooling head followed by one dense layer; "
                         f"{type(model).__name__} has none: use grad_cam")
    feat = layers[kinds.index(GAP) - 1].name
    head = layers[-1].name
    if isinstance(target, Unit):
        raise ValueError("CAM explains classes; for a unit use grad_cam or guided_backprop")
    a = forward(model, params, x, stop_at=feat)
    logits = forward(model, params, a, start_after=feat)
    classes = select(logits, target).index
    w = params[head]["kernel"][:, classes].T  # (N, K)
    return _upsample_normalize(jnp.einsum("nhwk,nk->nhw", a, w), x.shape[1:3]), classes, logits


def guided_grad_cam(model, params, x, target: Target = None, layer: str | None = None):
    """Grad-CAM (upsampled) ⊙ guided backprop, `(N, H, W, C)`."""
    g, classes, logits = guided_backprop(model, params, x, target)
    m, _, _ = grad_cam(model, params, x, classes, layer)
    return g * m[..., None], classes, logits
