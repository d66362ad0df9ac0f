"""More class activation maps: Grad-CAM++, Score-CAM, LayerCAM.

Same conventions as `cam.py`: `layer=None` is the model's CAM layer; maps are `(N, H, W)`,
ReLU'd, bilinearly upsampled to the input size and scaled to [0, 1] per image
(`cam.upsample_normalize`); each returns an `Attribution`. (CAM-GMP is in `cam.py`.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core import Attribution, finite_input, prepare
from ..taps import output
from .cam import activation_and_gradient, cam_layer, upsample_normalize
from .targets import Target, Unit, score, select, target_layer


@finite_input
def grad_cam_pp(model, variables, x: jax.Array, target: Target = None, layer: str | None = None):
    """Grad-CAM++ (Chattopadhay et al. 2018): weights w_k = Σ_ij α_ij^k ReLU(g_ij^k).

    α_ij^k = g² / (2g² + Σ_ab A_ab^k · g³) with g = ∂y/∂A^k_ij: the paper's closed form with the
    exponential's second and third derivatives replaced by powers of the first, as
    pytorch-grad-cam does (α = 0 where g = 0; no ε in the denominator). Map: ReLU(Σ_k w_k A^k).
    """
    a, g, sel, out = activation_and_gradient(model, variables, x, target, layer, "Grad-CAM++")
    g2 = g * g
    g3 = g2 * g
    sum_a = jnp.sum(a, axis=(1, 2), keepdims=True)
    denom = 2 * g2 + sum_a * g3
    alpha = jnp.where(g != 0, g2 / jnp.where(denom != 0, denom, 1), 0)
    w = jnp.sum(alpha * jnp.maximum(g, 0), axis=(1, 2), keepdims=True)
    return Attribution(upsample_normalize(jnp.sum(w * a, axis=-1), x.shape[1:3]), sel.index, out, {})


@finite_input
def layer_cam(model, variables, x: jax.Array, target: Target = None, layer: str | None = None):
    """LayerCAM (Jiang et al. 2021): ReLU(Σ_k ReLU(∂y/∂A^k) ⊙ A^k), position by position; any layer."""
    a, g, sel, out = activation_and_gradient(model, variables, x, target, layer, "LayerCAM")
    return Attribution(upsample_normalize(jnp.sum(jnp.maximum(g, 0) * a, axis=-1), x.shape[1:3]), sel.index, out, {})


@finite_input
def score_cam(
    model, variables, x: jax.Array, target: Target = None, layer: str | None = None, *, chunk: int | None = 32
):
    """Score-CAM (Wang et al. 2020): ReLU(Σ_k w_k A^k), w_k = the target's score on the input masked by A^k.

    Each channel's activation, bilinearly upsampled to the input size and min-max scaled to
    [0, 1] per image (a constant channel gives an all-zero mask), multiplies the input (in model
    space, so masked-out pixels become 0, the mean color). w_k is the softmax probability of the
    target class on that masked input, as in the paper's Algorithm 1 (pytorch-grad-cam instead
    takes a softmax over channels of the logits) — or, for a `Unit` target, the unit's value at
    the position selected on the clean input. `chunk` channels run per forward pass (each holds
    chunk·N images); None = all channels at once.
    """
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be None (all at once) or >= 1, got chunk={chunk}")
    net, variables = prepare(model, variables)
    layer = cam_layer(net, variables, x, layer)
    stop = target_layer(target)
    out, acts = output(net, variables, x, stop, (layer,))
    a = acts[layer]
    sel = select(out, target)
    hw = x.shape[1:3]
    unit = isinstance(target, Unit)

    def masked_score(k):  # channel k → the target's score on x masked by that channel, (N,)
        m = jax.image.resize(a[..., k], (a.shape[0], *hw), "bilinear")
        lo, hi = jnp.min(m, axis=(1, 2), keepdims=True), jnp.max(m, axis=(1, 2), keepdims=True)
        m = jnp.where(hi > lo, (m - lo) / jnp.where(hi > lo, hi - lo, 1), 0)
        o = output(net, variables, x * m[..., None], stop)[0]
        return score(o if unit else jax.nn.softmax(o, axis=-1), sel)

    k = a.shape[-1]
    w = jax.lax.map(masked_score, jnp.arange(k), batch_size=k if chunk is None else chunk).T  # (N, K)
    return Attribution(upsample_normalize(jnp.einsum("nhwk,nk->nhw", a, w), hw), sel.index, out, {})
