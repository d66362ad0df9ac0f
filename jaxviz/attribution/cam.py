"""Class activation maps: CAM (global average or max pooling heads), Grad-CAM, guided Grad-CAM.

Maps are `(N, H, W)`: ReLU'd, bilinearly upsampled to the input size, scaled to [0, 1] per image.
Grad-CAM and guided Grad-CAM take `cam_norm`: "max" (divided by the maximum, default) or "minmax"
(the minimum subtracted, then divided by the maximum: seed 002's code, after kazuto1011/grad-cam-pytorch).
`layer` is a module path or alias (`layer4`, `relu5_3`); None is the model's CAM layer
(`taps.default_cam_layer`: the model's `cam_layer`, else its last spatial layer).

CAM (Zhou et al. 2016) weighs the channels of the layer feeding a global pool → linear head by the
head's weights w_k^c. For such a head ∂y_c/∂A^k_ij sums over positions to exactly w_k^c (average
pooling spreads it as w_k^c/(h·w), max pooling puts it at the maximum), so CAM is computed as
Σ_k (Σ_ij ∂y_c/∂A^k_ij) A^k on any model, without reading its weights. Grad-CAM's α_k is the
mean of the same gradient, so on a GAP network Grad-CAM equals CAM up to a positive constant
(seed 004); the tests check it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core import Attribution, finite_input, prepare
from ..taps import default_cam_layer, layer_gradient, layer_names
from .gradients import guided_backprop
from .targets import Target, Unit, cotangent, select, target_layer


def cam_layer(net, variables, x: jax.Array, layer: str | None) -> str:
    """`layer` resolved to a module path, or the model's default CAM layer for inputs like `x`."""
    return net.resolve(layer) if layer is not None else default_cam_layer(net, variables, x.shape[1:])


CAM_NORMS = ("max", "minmax")
"""How a CAM is scaled to [0, 1] after ReLU and upsampling: ÷ max, or − min then ÷ max (seed 002)."""


def upsample_normalize(m: jax.Array, hw: tuple[int, int], cam_norm: str = "max") -> jax.Array:
    """ReLU, then bilinear upsampling to `hw`, then scaling to [0, 1] per image (the Grad-CAM order).

    `cam_norm="minmax"` subtracts each map's minimum before dividing by its (new) maximum, as seed
    002's `create` does (`cam - np.min(cam)`, then `cam / np.max(cam)`)."""
    if cam_norm not in CAM_NORMS:
        raise ValueError(f"cam_norm must be one of {', '.join(CAM_NORMS)}, got {cam_norm!r}")
    m = jax.image.resize(jnp.maximum(m, 0), (m.shape[0], *hw), "bilinear")
    if cam_norm == "minmax":
        m = m - jnp.min(m, axis=(1, 2), keepdims=True)
    return m / (jnp.max(m, axis=(1, 2), keepdims=True) + 1e-12)


def check_before_unit(net, variables, x, layer: str, target: Target, method: str) -> None:
    """A Unit target must sit after the CAM layer (else ∂unit/∂A is zero everywhere)."""
    stop = target_layer(target)
    if stop is None:
        return
    order = layer_names(net, variables, x.shape[1:], x.dtype)
    stop = net.resolve(stop)
    if stop in order and layer in order and order.index(stop) <= order.index(layer):
        raise ValueError(f"{method} layer {layer!r} must come before the target unit's layer {stop!r}")


def activation_and_gradient(model, variables, x, target: Target, layer: str | None, method: str):
    """`(A, dA, sel, out)`: activation of `layer`, ∂y/∂A for the target's value y, selection, output."""
    net, variables = prepare(model, variables)
    layer = cam_layer(net, variables, x, layer)
    stop = target_layer(target)
    check_before_unit(net, variables, x, layer, target, method)
    sel_box = []

    def seed(o):
        sel_box.append(select(o, target))
        return cotangent(o, sel_box[0])

    acts, grads, out = layer_gradient(net, variables, x, (layer,), seed, stop)
    return acts[layer], grads[layer], sel_box[0], out


@finite_input
def grad_cam(
    model, variables, x, target: Target = None, layer: str | None = None, cam_norm: str = "max"
) -> Attribution:
    """Selvaraju et al. 2017: ReLU(Σ_k α_k A^k), α_k = mean_ij ∂y_c/∂A^k_ij, at `layer`; `cam_norm` see `CAM_NORMS`."""
    a, da, sel, out = activation_and_gradient(model, variables, x, target, layer, "Grad-CAM")
    alpha = jnp.mean(da, axis=(1, 2), keepdims=True)
    return Attribution(upsample_normalize(jnp.sum(alpha * a, axis=-1), x.shape[1:3], cam_norm), sel.index, out, {})


HEAD_METHODS = {"cam": "gap", "cam_gmp": "gmp"}
"""The methods that need a model's head to be one global pool (of this kind) and one dense layer."""


def declared_head(net) -> str | None:
    """The kind of head a model declares (`head` attribute or method: "gap", "gmp", "other"), or None."""
    head = getattr(net.source, "head", None)
    return head() if callable(head) else head


def check_head(net, pooling: str, method: str) -> None:
    """Refuse CAM / CAM-GMP for a model that declares (`head()`) another kind of head."""
    head = declared_head(net)
    if head is not None and head != pooling:
        hint = {"gmp": "use cam_gmp", "gap": "use cam"}.get(head, "use grad_cam")
        has = {"gap": "a global-average-pooling head", "gmp": "a global-max-pooling head"}.get(
            head, "a head without global pooling (flatten → dense)"
        )
        raise ValueError(
            f"{method} needs a global-{'average' if pooling == 'gap' else 'max'}-pooling head "
            f"followed by one dense layer; {net.name} has {has}: {hint}"
        )


def _head_cam(model, variables, x, target, layer, pooling: str, method: str) -> Attribution:
    if isinstance(target, Unit):
        raise ValueError(f"{method} explains classes; for a unit use grad_cam or guided_backprop")
    check_head(prepare(model, variables)[0], pooling, method)
    a, da, sel, out = activation_and_gradient(model, variables, x, target, layer, method)
    w = jnp.sum(da, axis=(1, 2))  # (N, K): the head's weights w_k^c for a global pool → linear head
    return Attribution(upsample_normalize(jnp.einsum("nhwk,nk->nhw", a, w), x.shape[1:3]), sel.index, out, {})


@finite_input
def cam(model, variables, x, target: Target = None, layer: str | None = None) -> Attribution:
    """Zhou et al. 2016: M_c = Σ_k w_k^c A^k for a global-average-pooling → dense head."""
    return _head_cam(model, variables, x, target, layer, "gap", "CAM")


@finite_input
def cam_gmp(model, variables, x, target: Target = None, layer: str | None = None) -> Attribution:
    """CAM for a global-max-pooling → dense head (seed 004): M_c = Σ_k w_k^c A^k.

    Unlike on a GAP head this is not Grad-CAM: there the gradient reaches only each channel's
    argmax position.
    """
    return _head_cam(model, variables, x, target, layer, "gmp", "CAM-GMP")


@finite_input
def guided_grad_cam(
    model, variables, x, target: Target = None, layer: str | None = None, cam_norm: str = "max"
) -> Attribution:
    """Grad-CAM (upsampled, scaled per `cam_norm`) ⊙ guided backprop, `(N, H, W, C)`."""
    g = guided_backprop(model, variables, x, target)
    m = grad_cam(model, variables, x, target if isinstance(target, Unit) else g.index, layer, cam_norm).maps
    return g._replace(maps=g.maps * m[..., None])
